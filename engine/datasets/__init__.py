"""Reading datasets from disk: caption files, images, scene lists, the drone layout, and the
synthetic world. Pure compute over paths; nothing here touches the store or the job queue."""
