"""Job kind ``synthesize``: write the synthetic world to disk in the real dataset layouts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.datasets.synthetic import write_captioning_dataset, write_drone_dataset
from engine.jobs.base import JobContext, JobKind, JobResult


@dataclass(frozen=True)
class SynthesizeParams:
    out: str = ""
    """Folder to write into; default: <workspace>/synthetic."""
    images: int = 240
    """Captioning images (Karpathy layout, 5 captions each, split 80/10/10)."""
    size: int = 224
    """Side of the captioning images in pixels (RSICD: 224)."""
    drone_images: int = 48
    """Drone-style images with class-index masks (0 for none)."""
    drone_size: int = 256
    """Side of the drone-style images in pixels."""
    seed: int = 0
    """Everything follows from the seed."""

    def __post_init__(self) -> None:
        if self.images < 1:
            raise ValueError("images: must be at least 1")
        if self.drone_images < 0:
            raise ValueError("drone_images: must be 0 or more")
        for name in ("size", "drone_size"):
            if not 32 <= getattr(self, name) <= 4096:
                raise ValueError(f"{name}: must be between 32 and 4096 pixels")


def synthesize(params: SynthesizeParams, ctx: JobContext) -> JobResult:
    out = Path(params.out).expanduser() if params.out else ctx.workspace.synthetic_dir
    workers = max(1, min(4, os.cpu_count() or 1))
    captioning = write_captioning_dataset(
        out / "captions", params.images, size=params.size, seed=params.seed, workers=workers,
        progress=lambda i, n: ctx.progress(i, n, "drawing captioning scenes"),
    )
    message = f"wrote {captioning.images} captioning images to {captioning.root}"
    if params.drone_images:
        dr = write_drone_dataset(
            out / "drone", params.drone_images, size=params.drone_size, seed=params.seed, workers=workers,
            progress=lambda i, n: ctx.progress(i, n, "drawing drone scenes"),
        )
        message += f" and {dr.images} drone-style images to {dr.root}"
    ctx.log.info(message)
    return JobResult(message, data={"captions": str(out / "captions"), "drone": str(out / "drone") if params.drone_images else None})


SYNTHESIZE = JobKind("synthesize", SynthesizeParams, synthesize, "Draw the synthetic world (captioning + drone-style datasets)")
