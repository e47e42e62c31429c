"""The composition of a class mask: what covers how much of the image, where, in how many pieces,
and where it lies relative to the dominant class.

Image conventions throughout: x grows to the right, y grows downward, coordinates are normalised
to 0..1 by the image's width (x) and height (y).

Per class present (pixels of ignored groups are left out):
- ``area``: share of the image in percent;
- ``regions``: connected regions (8-connected) of at least ``speck`` of the image; smaller
  specks are not counted as regions (segmentation noise);
- ``centre``: the centre of mass of the class's kept regions; position words compare centres;
- ``circle``: the minimum enclosing circle ``(x, y, r)`` of the kept regions, all of them
  together. We chose all regions rather than the largest one: the circle then says how far the
  class extends (a wide circle with many regions means "scattered"), while ``centre`` and
  ``regions`` say where its mass is and how broken up it is. ``r`` is normalised by the longer
  image side;
- ``position``: relative to the dominant class (the largest area): left of / right of / above /
  below / upper-left of / upper-right of / lower-left of / lower-right of / at the centre of.
  Offsets smaller than ``dead_zone`` on an axis count as zero, so near-equal centres do not flip
  between words.

One histogram pass per mask, then per present class a comparison and a contour trace; the full
connected-components labelling runs only for classes in more than one piece (or with holes, which
may hold more of the class). No per-pixel Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEAD_ZONE = 0.1
"""Normalised offset below which an axis counts as level with the dominant class."""
SPECK = 0.001
"""Regions smaller than this share of the image are specks, not counted."""
MIN_AREA = 0.05
"""Classes covering less than this percentage of the image are left out."""


@dataclass(frozen=True)
class ClassPart:
    name: str
    index: int
    area: float
    """Percent of the image."""
    regions: int
    centre: tuple[float, float]
    circle: tuple[float, float, float]
    position: str | None
    """Relative to the dominant class; None for the dominant class itself."""


@dataclass(frozen=True)
class Composition:
    width: int
    height: int
    parts: tuple[ClassPart, ...]
    """By area, largest first; the first is the dominant class."""

    @property
    def dominant(self) -> ClassPart | None:
        return self.parts[0] if self.parts else None

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "parts": [asdict(p) for p in self.parts]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Composition:
        parts = tuple(
            ClassPart(**{**p, "centre": tuple(p["centre"]), "circle": tuple(p["circle"])}) for p in data["parts"]
        )
        return cls(width=data["width"], height=data["height"], parts=parts)


_WORDS = {
    (-1, -1): "upper-left of", (0, -1): "above", (1, -1): "upper-right of",
    (-1, 0): "left of", (0, 0): "at the centre of", (1, 0): "right of",
    (-1, 1): "lower-left of", (0, 1): "below", (1, 1): "lower-right of",
}


def position_word(dx: float, dy: float, dead_zone: float = DEAD_ZONE) -> str:
    """Words for an offset (dx, dy) from the dominant class's centre: x right, y down."""
    sx = 0 if abs(dx) < dead_zone else (1 if dx > 0 else -1)
    sy = 0 if abs(dy) < dead_zone else (1 if dy > 0 else -1)
    return _WORDS[(sx, sy)]


def compose(
    mask: np.ndarray,
    names: Sequence[str],
    *,
    ignore: Sequence[int] = (),
    dead_zone: float = DEAD_ZONE,
    speck: float = SPECK,
    min_area: float = MIN_AREA,
) -> Composition:
    """The composition of one class-index mask.

    :param mask: (H, W) integer class indices into ``names``
    :param ignore: class indices left out (unlabelled pixels)
    """
    import cv2

    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    h, w = mask.shape
    total = h * w
    # One comparison per class gives both its pixel count and the binary image reused below
    # (cheaper than a histogram pass followed by the same comparisons).
    binaries = {c: (mask == c).view(np.uint8) for c in range(len(names)) if c not in ignore}
    counts = {c: int(np.count_nonzero(b)) for c, b in binaries.items()}
    min_pixels = max(1, int(round(speck * total)))
    # 16-bit labels halve the labelling time; safe while the image cannot hold 65,535 regions
    # (8-connected regions need at least two pixels each).
    label_type = cv2.CV_16U if total < 2 * 65_535 else cv2.CV_32S
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    parts: list[ClassPart] = []
    scratch = np.zeros_like(mask)
    dom_x = dom_y = 0.0
    # Plain Python floats from here on: numpy scalar arithmetic costs more than the image work.
    for cls in sorted(counts, key=lambda c: (-counts[c], c)):
        count = counts[cls]
        if count == 0 or 100.0 * count / total < min_area:
            continue
        binary = binaries[cls]
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if len(contours) == 1 and (_fills_exactly(contours[0], count, scratch)
                                   or cv2.connectedComponentsWithAlgorithm(binary, 8, label_type, cv2.CCL_DEFAULT)[0] == 2):
            # One region (the common case): no labelling needed; the centre from row/column sums.
            regions = 1
            cx = float(cv2.reduce(binary, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel().dot(xs)) / count
            cy = float(cv2.reduce(binary, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel().dot(ys)) / count
            points = contours[0]
        else:
            n, labels, stats, centroids = cv2.connectedComponentsWithStatsWithAlgorithm(binary, 8, label_type, cv2.CCL_DEFAULT)
            areas = stats[1:, cv2.CC_STAT_AREA]
            kept = np.flatnonzero(areas >= min_pixels) + 1
            if kept.size == 0:  # only specks: describe them all rather than nothing
                kept = np.arange(1, n)
            if kept.size < n - 1:  # drop the specks: a lookup on the component labels
                keep = np.zeros(n, np.uint8)
                keep[kept] = 1
                contours, _ = cv2.findContours(keep[labels], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            weights = stats[kept, cv2.CC_STAT_AREA].astype(np.float64)
            cx, cy = (float(v) for v in (centroids[kept] * weights[:, None]).sum(0) / weights.sum())
            regions = int(kept.size)
            points = np.concatenate(contours)
        (ex, ey), er = cv2.minEnclosingCircle(points)
        x, y = (cx + 0.5) / w, (cy + 0.5) / h  # pixel centres: pixel 0 spans 0..1/w
        if parts:
            position: str | None = position_word(x - dom_x, y - dom_y, dead_zone)
        else:
            position, dom_x, dom_y = None, x, y
        parts.append(ClassPart(
            name=names[cls], index=cls, area=round(100.0 * count / total, 2), regions=regions,
            centre=(round(x, 4), round(y, 4)),
            circle=(round((ex + 0.5) / w, 4), round((ey + 0.5) / h, 4), round(er / max(w, h), 4)),
            position=position,
        ))
    return Composition(width=w, height=h, parts=tuple(parts))


def _fills_exactly(contour: np.ndarray, count: int, scratch: np.ndarray) -> bool:
    """True when the class is one region without holes: its one outer contour, filled, covers
    exactly its pixels. A single outer contour alone does not prove one region: another region of
    the class may lie inside a hole (an island in a lake on an island), which the outer contour
    does not show; then the fill covers more than the class, and the caller counts the regions.
    (The enclosing circle needs only outer contours: nested regions lie inside them.)
    """
    import cv2

    scratch[:] = 0
    cv2.drawContours(scratch, [contour], -1, 1, thickness=-1)
    return int(cv2.countNonZero(scratch)) == count


def feature_vector(comp: Composition, n_classes: int) -> np.ndarray:
    """A fixed-length vector per composition (for retrieval): per class area share, centre x, centre
    y, circle radius and log region count; absent classes are zeros. Shape (n_classes * 5,)."""
    v = np.zeros((n_classes, 5), np.float32)
    for p in comp.parts:
        v[p.index] = (p.area / 100.0, p.centre[0], p.centre[1], p.circle[2], np.log1p(p.regions))
    return v.ravel()
