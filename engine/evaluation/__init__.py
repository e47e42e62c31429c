"""Caption evaluation: the COCO caption toolkit's metrics done right (PTB tokenization, corpus
and per-image scores, CIDEr-D with corpus document frequencies), bootstrap intervals from cached
per-image statistics, paired comparison, the human leave-one-out reference, and review analytics.
Pure compute; the toolkit and Java are used inside functions."""
