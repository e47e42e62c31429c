"""Pairwise comparison analytics: the win rate of run B over run A with a bootstrap interval over
images, per scene, the tie rate, agreement between reviewers on the images they share, and the
position-bias check (how often the left caption won).

Scoring: per image, each reviewer's verdict counts 1 when B's caption won, 0 when A's did, and
0.5 for a tie or "both bad" (neither was better); an image's value is the mean over its reviewers
and the win rate is the mean over images, so an image two reviewers judged weighs as much as one
judged once. Intervals resample images (the unit that was sampled), never single verdicts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Protocol, TypeVar

import numpy as np

from engine.evaluation.review import krippendorff_alpha

VALUE = {"a": 0.0, "b": 1.0, "tie": 0.5, "both_bad": 0.5}
RESAMPLES = 2000
MIN_BIAS_IMAGES = 20
"""Images with a verdict that chose a side before the position-bias check reports anything."""
K = TypeVar("K", bound=Hashable)


class Verdict(Protocol):
    """One reviewer's current verdict on one image (engine.store.comparisons.Verdict)."""

    @property
    def image_id(self) -> int: ...
    @property
    def reviewer(self) -> str: ...
    @property
    def choice(self) -> str:
        """left, right, tie or both_bad, as the reviewer saw the two captions."""
    @property
    def scene(self) -> str | None: ...
    @property
    def winner(self) -> str:
        """a, b, tie or both_bad."""


def num(x: float) -> float | None:
    """A figure for a JSON file: rounded to 4 places, NaN as None (JSON has no NaN)."""
    return None if x != x else round(x, 4)


@dataclass(frozen=True)
class Rate:
    value: float
    low: float
    high: float
    n: int
    """Images it rests on."""

    def __str__(self) -> str:
        if self.n == 0:
            return "n/a (no images)"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] over {self.n} image{'s' if self.n != 1 else ''}"


def ratio_interval(num: Sequence[float], den: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0,
                   level: float = 0.95) -> Rate:
    """sum(num) / sum(den) over units (images), with a percentile bootstrap interval that resamples
    units; a unit with den 0 is left out."""
    n_arr, d_arr = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    keep = d_arr > 0
    n_arr, d_arr = n_arr[keep], d_arr[keep]
    if len(d_arr) == 0:
        return Rate(float("nan"), float("nan"), float("nan"), 0)
    value = float(n_arr.sum() / d_arr.sum())
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    step = max(1, 2_000_000 // len(d_arr))  # resamples at a time: memory stays bounded at any size
    for start in range(0, resamples, step):
        picks = rng.integers(0, len(d_arr), size=(min(step, resamples - start), len(d_arr)))
        draws[start : start + len(picks)] = n_arr[picks].sum(1) / d_arr[picks].sum(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Rate(value, float(low), float(high), int(len(d_arr)))


@dataclass(frozen=True)
class PairwiseSummary:
    run_a: str
    run_b: str
    images: int
    """Images both runs captioned."""
    identical: int
    """Of those, images whose two captions are the same text: skipped, never shown."""
    judgments: int
    reviewers: dict[str, int]
    counts: dict[str, int]
    """a, b, tie, both_bad: current verdicts of each kind."""
    win_rate: Rate
    """Of B over A: 1 a win of B, 0 a win of A, 0.5 a tie or both bad."""
    per_scene: list[tuple[str, Rate]] = field(default_factory=list)
    shared_images: int = 0
    """Images judged by two or more reviewers."""
    agreement: float = float("nan")
    """Share of reviewer pairs on a shared image that gave the same verdict."""
    alpha: float = float("nan")
    """Krippendorff's alpha (nominal) over the shared images' verdicts."""
    left_rate: Rate = field(default_factory=lambda: Rate(float("nan"), float("nan"), float("nan"), 0))
    """How often the left caption won among verdicts that chose a side."""

    @property
    def tie_rate(self) -> float:
        return (self.counts["tie"] + self.counts["both_bad"]) / self.judgments if self.judgments else float("nan")

    @property
    def bias_checkable(self) -> bool:
        """Enough verdicts chose a side for the check to mean something (a bootstrap over a few
        images gives an interval far too narrow)."""
        return self.left_rate.n >= MIN_BIAS_IMAGES

    @property
    def position_bias(self) -> bool:
        """The left side won more (or less) often than chance: 0.5 lies outside its interval,
        over at least :data:`MIN_BIAS_IMAGES` images."""
        return self.bias_checkable and not self.left_rate.low <= 0.5 <= self.left_rate.high

    def to_dict(self) -> dict[str, Any]:
        """The numbers, for an export's metrics file (NaN as null)."""
        def rate(r: Rate) -> dict[str, Any]:
            return {"value": num(r.value), "ci95": [num(r.low), num(r.high)], "images": r.n}

        return {"a": self.run_a, "b": self.run_b, "images": self.images, "identical_skipped": self.identical,
                "verdicts": self.judgments, "reviewers": self.reviewers, "counts": self.counts,
                "win_rate_of_b": rate(self.win_rate), "tie_rate": num(self.tie_rate),
                "per_scene": {k: rate(r) for k, r in self.per_scene}, "shared_images": self.shared_images,
                "agreement": num(self.agreement), "alpha_nominal": num(self.alpha), "left_won": rate(self.left_rate),
                "position_bias": self.position_bias if self.bias_checkable else None}


def summarise(verdicts: Sequence[Verdict], run_a: str, run_b: str, *, images: int, identical: int,
              resamples: int = RESAMPLES, seed: int = 0) -> PairwiseSummary:
    """The current verdicts on a pair of runs (A, B) as win rates, ties, agreement and the
    position-bias check; ``images`` and ``identical`` say how many images the pair shares and how
    many of those were skipped for identical captions."""
    by_image: dict[int, list[Verdict]] = {}
    for v in verdicts:
        by_image.setdefault(v.image_id, []).append(v)
    reviewers: dict[str, int] = {}
    counts = {"a": 0, "b": 0, "tie": 0, "both_bad": 0}
    for v in verdicts:
        reviewers[v.reviewer] = reviewers.get(v.reviewer, 0) + 1
        counts[v.winner] += 1
    units = list(by_image.values())
    win = ratio_interval([float(np.mean([VALUE[v.winner] for v in u])) for u in units], [1.0] * len(units),
                         resamples=resamples, seed=seed)
    scenes: dict[str, list[list[Verdict]]] = {}
    for u in units:
        scenes.setdefault(u[0].scene or "(no scene)", []).append(u)
    per_scene = [(scene, ratio_interval([float(np.mean([VALUE[v.winner] for v in u])) for u in us], [1.0] * len(us),
                                        resamples=resamples, seed=seed)) for scene, us in sorted(scenes.items())]
    shared = [u for u in units if len(u) >= 2]
    pairs = [(x.winner, y.winner) for u in shared for x, y in combinations(u, 2)]
    code = {"a": 0, "tie": 1, "both_bad": 2, "b": 3}
    left = ratio_interval([sum(1 for v in u if v.choice == "left") for u in units],
                          [sum(1 for v in u if v.choice in ("left", "right")) for u in units], resamples=resamples, seed=seed)
    return PairwiseSummary(
        run_a=run_a, run_b=run_b, images=images, identical=identical, judgments=len(verdicts), reviewers=reviewers,
        counts=counts, win_rate=win, per_scene=per_scene, shared_images=len(shared),
        agreement=sum(1 for x, y in pairs if x == y) / len(pairs) if pairs else float("nan"),
        alpha=krippendorff_alpha([[code[v.winner] for v in u] for u in shared], "nominal") if shared else float("nan"),
        left_rate=left,
    )


def overlap_order(keys: Iterable[K], mine: set[K], others: set[K], overlap: float, seed: str) -> tuple[list[K], int, int]:
    """The order a reviewer is served items in, with their progress (done, shared).

    With ``overlap`` 0 the items they have not judged come first, in the given order. Above 0,
    an item someone else already judged comes next whenever fewer than that share of the
    reviewer's items would otherwise be shared, so a second reviewer starts on shared items and
    keeps a fixed share of them; within each kind the order is random, drawn per item from
    ``seed`` (the reviewer and what they review), so judging one item never reorders the rest. Items the reviewer
    judged already come last, in the given order.

    :returns: (ordered keys, items done, items done that someone else judged too)
    """
    keys = list(keys)
    done = [k for k in keys if k in mine]
    shared_done = sum(1 for k in done if k in others)
    todo = [k for k in keys if k not in mine]
    if overlap <= 0:
        return todo + done, len(done), shared_done
    def draw(k: K) -> bytes:  # each item's place depends on it and the seed only, not on the rest of the set
        return hashlib.sha256(f"{seed}\0{k}".encode()).digest()

    shared = sorted((k for k in todo if k in others), key=draw, reverse=True)
    fresh = sorted((k for k in todo if k not in others), key=draw, reverse=True)
    order: list[K] = []
    d, s = len(done), shared_done
    while shared or fresh:
        if shared and (s < overlap * (d + 1) or not fresh):
            order.append(shared.pop())
            s += 1
        else:
            order.append(fresh.pop())
        d += 1
    return order + done, len(done), shared_done
