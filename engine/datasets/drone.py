"""The Semantic Drone Dataset layout: ``original_images/*.jpg``, ``label_images_semantic/*.png``
(one class index per pixel) and ``class_dict_seg.csv`` (``name, r, g, b`` in index order).

The Kaggle download nests these one or two folders down (``dataset/semantic_drone_dataset/``);
:func:`find_layout` looks there too.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.datasets.errors import DatasetError

IMAGE_DIR = "original_images"
LABEL_DIR = "label_images_semantic"
CLASS_TABLE = "class_dict_seg.csv"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}


@dataclass(frozen=True)
class DroneClass:
    index: int
    name: str
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class DroneLayout:
    root: Path
    images_dir: Path
    labels_dir: Path
    class_table: Path


@dataclass(frozen=True)
class DronePair:
    """An image and its label mask, by the stem they share."""

    stem: str
    image: Path
    label: Path


def find_layout(path: Path) -> DroneLayout:
    """Locate the three parts under ``path``: the image and label folders side by side (at most
    two folders down), the class table beside them or in a folder above them, up to ``path``.

    :raises DatasetError: saying which part is missing
    """
    if not path.is_dir():
        raise DatasetError(f"{path}: folder not found")
    for root in [path, *sorted(p for p in path.glob("*") if p.is_dir()), *sorted(p for p in path.glob("*/*") if p.is_dir())]:
        if (root / IMAGE_DIR).is_dir():
            # The Kaggle download keeps the class table at its top, two folders above the images.
            table = next((d / CLASS_TABLE for d in (root, *root.parents) if (d / CLASS_TABLE).is_file()
                          and (d == path or path in d.parents)), None)
            missing = [n for n, there in ((LABEL_DIR, (root / LABEL_DIR).is_dir()), (CLASS_TABLE, table is not None)) if not there]
            if missing:
                raise DatasetError(f"{root}: has {IMAGE_DIR}/ but no {' or '.join(missing)} (the class table may also lie in a "
                                   f"folder above, up to {path}); expected the Semantic Drone Dataset layout")
            return DroneLayout(root, root / IMAGE_DIR, root / LABEL_DIR, table)  # type: ignore[arg-type]
    raise DatasetError(
        f"{path}: not a Semantic Drone Dataset folder; expected {IMAGE_DIR}/, {LABEL_DIR}/ and {CLASS_TABLE}"
    )


def read_class_table(path: Path) -> list[DroneClass]:
    """Parse ``class_dict_seg.csv`` (header ``name, r, g, b``; rows in class-index order).

    :raises DatasetError: on a malformed row, naming its line
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{path}: class table not found") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from exc
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip().lower() for c in rows[0]] != ["name", "r", "g", "b"]:
        raise DatasetError(f"{path}: first line must be the header 'name, r, g, b'")
    classes: list[DroneClass] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            name, r, g, b = (c.strip() for c in row)
            rgb = (int(r), int(g), int(b))
        except ValueError:
            raise DatasetError(f"{path}: line {line} must be 'name, r, g, b' with whole numbers, got {','.join(row)!r}") from None
        if not name or not all(0 <= v <= 255 for v in rgb):
            raise DatasetError(f"{path}: line {line} needs a name and colours in 0..255")
        classes.append(DroneClass(len(classes), name, rgb))
    if not classes:
        raise DatasetError(f"{path}: lists no classes")
    if len({c.name for c in classes}) != len(classes):
        raise DatasetError(f"{path}: class names must be unique")
    return classes


def pair_files(layout: DroneLayout) -> list[DronePair]:
    """Match images to label masks by file stem.

    :raises DatasetError: if an image lacks its mask or a mask its image, naming the first few
    """
    images = {p.stem: p for p in layout.images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    labels = {p.stem: p for p in layout.labels_dir.iterdir() if p.suffix.lower() == ".png"}
    if not images:
        raise DatasetError(f"{layout.images_dir}: no images (.jpg, .png, .tif)")
    for what, have, lack, folder in (
        ("image", images, labels, layout.labels_dir),
        ("mask", labels, images, layout.images_dir),
    ):
        orphans = sorted(set(have) - set(lack))
        if orphans:
            first = ", ".join(have[s].name for s in orphans[:3])
            raise DatasetError(
                f"{len(orphans)} {what}{'s' if len(orphans) > 1 else ''} without a partner in {folder} "
                f"(first: {first}); every image needs a mask of the same name (.png)"
            )
    return [DronePair(stem, images[stem], labels[stem]) for stem in sorted(images)]


@dataclass(frozen=True)
class LabelProbe:
    width: int
    height: int
    sha256: str
    file_size: int
    class_hist: list[int]
    """Pixel count per class index."""


def check_label(path: Path, n_classes: int) -> LabelProbe:
    """Decode one label mask and check it holds class indices below ``n_classes``.

    :raises DatasetError: naming the file and the bad value
    """
    from PIL import Image, UnidentifiedImageError

    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            if img.mode not in ("L", "P", "I", "I;16"):
                raise DatasetError(
                    f"{path}: mode {img.mode} is not a class-index mask; expected one channel of class indices "
                    f"0..{n_classes - 1} (the label_images_semantic PNGs, not the RGB colour masks)"
                )
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(f"{path}: cannot be decoded as a PNG mask ({exc})") from exc
    hist = np.bincount(arr.ravel(), minlength=n_classes) if arr.size else np.zeros(n_classes, dtype=np.int64)
    if hist.size > n_classes:
        bad = int(np.flatnonzero(hist[n_classes:])[0]) + n_classes
        raise DatasetError(
            f"{path}: value {bad} ({int(hist[bad])} pixels) is outside the class table (0..{n_classes - 1})"
        )
    return LabelProbe(
        width=arr.shape[1], height=arr.shape[0], sha256=hashlib.sha256(data).hexdigest(),
        file_size=len(data), class_hist=[int(v) for v in hist],
    )


def split_of(stem: str) -> str:
    """A fixed split for a file (the dataset ships none): about 80/10/10, stable as files are added."""
    bucket = int(hashlib.sha256(stem.encode()).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"
