"""Images and label masks as tensors: training crops with augmentation, whole-image evaluation,
and inference inputs.

Large images (the real drone set is 6000x4000) are first decoded at reduced size (JPEG draft
mode) so their long side is at most ``max_side``; training then takes random square crops of
``crop_min..1`` times the short side, resized to ``size``, with flips and colour jitter.
Augmentation draws from a generator seeded by (seed, epoch, index), so an epoch is the same
whatever the number of loader workers, and a resumed run sees the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.segmentation.metrics import IGNORE

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
"""ImageNet normalisation, so ImageNet encoder weights work when a user has them."""


@dataclass(frozen=True)
class Item:
    image: str
    label: str | None = None


def group_lut(class_to_group: Sequence[int], ignore_groups: Sequence[int]) -> np.ndarray:
    """Lookup table (256,) uint8: source class index -> group index, or IGNORE."""
    lut = np.full(256, IGNORE, np.uint8)
    for cls, group in enumerate(class_to_group):
        lut[cls] = IGNORE if group in ignore_groups else group
    return lut


def load_rgb(path: str, max_side: int | None = None) -> tuple[Any, tuple[int, int]]:
    """A PIL RGB image, decoded at reduced size when ``max_side`` allows (JPEG draft mode), and
    the file's full (width, height)."""
    from PIL import Image

    img: Any = Image.open(path)
    full = img.size
    if max_side and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img.draft("RGB", (int(img.size[0] * scale), int(img.size[1] * scale)))
        if max(img.size) > max_side:
            scale = max_side / max(img.size)
            img = img.convert("RGB").resize((round(img.size[0] * scale), round(img.size[1] * scale)), Image.Resampling.BILINEAR)
    return img.convert("RGB"), full


def normalise(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float32 normalised."""
    x = (rgb.astype(np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class TrainingSet:
    """Random crops of drone images with group labels (a map-style torch dataset)."""

    def __init__(self, items: Sequence[Item], lut: np.ndarray, *, size: int, max_side: int, crop_min: float, seed: int):
        self.items = list(items)
        self.lut = lut
        self.size = size
        self.max_side = max_side
        self.crop_min = crop_min
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        import torch
        from PIL import Image

        rng = np.random.default_rng([self.seed, self.epoch, index])
        item = self.items[index]
        img, _ = load_rgb(item.image, self.max_side)
        label: Any = Image.open(item.label)  # type: ignore[arg-type]
        if label.size != img.size:
            label = label.resize(img.size, Image.Resampling.NEAREST)
        w, h = img.size
        side = int(min(w, h) * rng.uniform(self.crop_min, 1.0))
        x0 = int(rng.integers(0, w - side + 1))
        y0 = int(rng.integers(0, h - side + 1))
        box = (x0, y0, x0 + side, y0 + side)
        rgb = np.asarray(img.crop(box).resize((self.size, self.size), Image.Resampling.BILINEAR))
        lab = self.lut[np.asarray(label.crop(box).resize((self.size, self.size), Image.Resampling.NEAREST))]
        if rng.random() < 0.5:
            rgb, lab = rgb[:, ::-1], lab[:, ::-1]
        if rng.random() < 0.5:
            rgb, lab = rgb[::-1], lab[::-1]
        x = normalise(rgb)
        # Colour jitter: brightness and contrast, per image.
        x = x * rng.uniform(0.8, 1.2) + rng.uniform(-0.2, 0.2)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(np.ascontiguousarray(lab).astype(np.int64))


class EvalSet:
    """Whole images rescaled so the long side is ``size``, padded to a multiple of 32 (ignored)."""

    def __init__(self, items: Sequence[Item], lut: np.ndarray, *, size: int):
        self.items = list(items)
        self.lut = lut
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        import torch
        from PIL import Image

        item = self.items[index]
        img, _ = load_rgb(item.image, self.size)
        w, h = img.size
        scale = self.size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        rgb = np.asarray(img.resize((nw, nh), Image.Resampling.BILINEAR))
        label: Any = Image.open(item.label)  # type: ignore[arg-type]
        lab = self.lut[np.asarray(label.resize((nw, nh), Image.Resampling.NEAREST))]
        ph, pw = -nh % 32, -nw % 32
        x = np.pad(normalise(rgb), ((0, 0), (0, ph), (0, pw)))
        y = np.pad(lab, ((0, ph), (0, pw)), constant_values=IGNORE)
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


class InferenceSet:
    """Images resized to ``size`` x ``size`` for batched inference; returns the original size too."""

    def __init__(self, paths: Sequence[str], *, size: int):
        self.paths = list(paths)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int, int, int]:
        import torch
        from PIL import Image

        img, (w, h) = load_rgb(self.paths[index], max_side=self.size * 4)
        rgb = np.asarray(img.resize((self.size, self.size), Image.Resampling.BILINEAR))
        return torch.from_numpy(normalise(rgb)), index, h, w
