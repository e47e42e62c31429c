"""Helpers shared by the trainers (segmenter, captioner): device choice, the learning-rate
schedule, and checkpoints written as one unit. Torch is imported inside the functions that need it."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path


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


CHECKPOINT = "checkpoint"
"""The link in a run's folder that names its last complete checkpoint folder (``ckpt-<step>``)."""


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The folder of the last complete checkpoint of a run, if there is one."""
    link = out_dir / CHECKPOINT
    return link.resolve() if link.is_dir() else None


def write_checkpoint(out_dir: Path, step: int, fill: Callable[[Path], None]) -> Path:
    """Write a checkpoint as one unit: ``fill(folder)`` writes every file into a fresh folder, which
    becomes the checkpoint only when complete, by replacing the ``checkpoint`` link atomically. A
    crash at any moment leaves the previous checkpoint whole (never files of two steps mixed).

    :param step: the optimizer steps done (names the folder: an end of epoch, or a stop mid-epoch)
    :returns: the new checkpoint's folder
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"ckpt-{step:08d}"
    tmp = out_dir / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    fill(tmp)
    _sync_tree(tmp)
    if final.exists():  # an epoch redone after a crash that came before its link was swapped
        shutil.rmtree(final)
    os.rename(tmp, final)
    link = out_dir / f".{CHECKPOINT}.tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(final.name)
    os.replace(link, out_dir / CHECKPOINT)
    for old in out_dir.glob("ckpt-*"):
        if old != final and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return final


def _sync_tree(folder: Path) -> None:
    """Flush the files to disk before the checkpoint is named (a power cut then finds them whole)."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def link_or_copy(source: Path, target: Path) -> None:
    """Put ``source`` (a file or folder tree) at ``target``: hard links where the file system
    allows (an unchanged model costs no space or time), copies elsewhere."""
    if source.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for item in source.iterdir():
            link_or_copy(item, target / item.name)
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
