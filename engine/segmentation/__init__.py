"""Segmenter: an smp model trained on drone-style images with class groups, its metrics, and
batched inference. Pure compute over paths and arrays; torch is imported inside functions."""
