"""Helpers shared by the two trainers (segmenter, captioner): device choice and the learning-rate
schedule. Torch is imported inside the functions that need it."""

from __future__ import annotations

import math


def device_for(preferred: str | None = None) -> str:
    """The device a job runs on: the one asked for, else cuda when available, else cpu."""
    import torch

    if preferred:
        return preferred
    return "cuda" if torch.cuda.is_available() else "cpu"


def warmup_cosine(step: int, warmup: int, total: int, floor: float) -> float:
    """Learning-rate factor: 1) linear warmup over ``warmup`` steps, 2) cosine decay to ``floor``
    (a share of the peak) at step ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
