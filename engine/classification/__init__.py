"""Scene classification: an image encoder by name (smp's, MobileNetV2 by default) with a pooled
linear head, trained on a captioning dataset's scene labels, and batched prediction with the
top classes and their probabilities. Its predictions replace the dataset's true scene (an oracle
no deployed model has) wherever a scene feeds a prompt or a baseline."""
