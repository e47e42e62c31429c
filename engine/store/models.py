"""Typed rows of the store: what queries return and what inserts take.

Rows are frozen dataclasses; JSON columns are decoded into dicts and lists here, so callers never
see SQL text or JSON strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Dataset:
    id: int
    name: str
    kind: str
    """'captioning' or 'segmentation'."""
    source_format: str
    """'karpathy', 'coco' or 'drone'."""
    root: str
    """Absolute folder that image paths are relative to."""
    annotations: str | None
    meta: dict[str, Any]
    created_at: str
    superseded_at: str | None = None
    """Set when a dataset of the same name replaced it; it is kept because its captions were rated."""


@dataclass(frozen=True)
class Image:
    id: int
    dataset_id: int
    filename: str
    path: str
    label_path: str | None
    split: str | None
    scene: str | None
    width: int | None
    height: int | None
    file_size: int | None
    sha256: str | None
    status: str
    status_detail: str | None
    source_id: str | None


@dataclass(frozen=True)
class Caption:
    id: int
    image_id: int
    idx: int
    text: str
    tokens: str
    is_duplicate: bool


class NewCaption(NamedTuple):
    """A reference caption to insert (a NamedTuple: ingest makes them by the ten thousand)."""

    text: str
    tokens: str
    is_duplicate: bool = False


class NewImage(NamedTuple):
    """An image (with its references) to insert."""

    filename: str
    path: str
    status: str
    split: str | None = None
    scene: str | None = None
    width: int | None = None
    height: int | None = None
    file_size: int | None = None
    sha256: str | None = None
    status_detail: str | None = None
    source_id: str | None = None
    label_path: str | None = None
    captions: Sequence[NewCaption] = ()


@dataclass(frozen=True)
class DatasetStats:
    """A dataset summary for `workbench stats` and the ingest report."""

    dataset: Dataset
    images: int
    captions: int
    duplicate_captions: int
    images_with_duplicates: int
    vocabulary: int
    by_split: dict[str, int]
    """Image count per split ('none' for images without one)."""
    by_status: dict[str, int]
    by_split_status: dict[str, dict[str, int]]
    scenes: dict[str, int]
    """Image count per scene, most frequent first."""
    flagged_references: int = 0
    """References a reviewer flags now (misspelt, duplicated, not this image)."""
    flags_by_reason: dict[str, int] = field(default_factory=dict)
    """Flagged references per reason (a reference two reviewers flag differently counts under both)."""
    unmatched_flags: int = 0
    """Current flags whose filename and text no reference of the dataset reads now."""
