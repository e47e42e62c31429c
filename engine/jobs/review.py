"""Review of generation runs: the queues reviewers are served (ratings and blind pairwise
comparisons, with the overlap that agreement needs), agreement between reviewers, how ratings
follow the per-image metrics of the newest evaluation, and the win rate of one run over another.
One read for the CLI, the TUI and exports."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import mean
from typing import Any

import sqlite_utils

from engine.evaluation.metrics import ALL_METRICS, EvaluationError
from engine.evaluation.pairwise import MIN_BIAS_IMAGES, RESAMPLES, PairwiseSummary, num, overlap_order, summarise
from engine.evaluation.review import Correlation, krippendorff_alpha, rating_metric_correlations
from engine.store.results import current_ratings, generation_images, latest_evaluation, scores_of
from engine.store.comparisons import PairItem, compared_pairs, current_verdicts, pair_items
from engine.store.runs import Run, get_run, get_run_by_id, list_runs
from engine.store.views import ReviewItem, image_scenes, rated_by_others, review_queue


@dataclass(frozen=True)
class Queue:
    """A reviewer's items in the order they are served, with their progress."""

    items: list[ReviewItem]
    others: frozenset[int]
    """Items (generation ids) another reviewer judged."""


def rating_queue(db: sqlite_utils.Database, run_id: int, reviewer: str, overlap: float = 0.0) -> Queue:
    """A run's captions for ``reviewer``: with ``overlap`` 0 the unrated ones first in filename
    order; above it, those another reviewer rated first until that share of theirs is shared
    (:func:`engine.evaluation.pairwise.overlap_order`)."""
    items = review_queue(db, run_id, reviewer)
    by_id = {i.generation_id: i for i in items}
    others = frozenset(rated_by_others(db, run_id, reviewer))
    order, _, _ = overlap_order(by_id, {i.generation_id for i in items if i.score is not None}, set(others), overlap,
                                f"{reviewer}\0ratings\0{run_id}")
    return Queue([by_id[g] for g in order], others)


@dataclass(frozen=True)
class ReviewSummary:
    run: str
    reviewers: dict[str, int]
    """Reviewer -> captions rated."""
    rated_images: int
    alpha_ordinal: float
    """Krippendorff's alpha over images rated by two or more reviewers (NaN if none)."""
    pairable_images: int
    mean_rating: float
    flags: dict[str, int]
    correlations: list[Correlation]
    evaluation: str | None
    per_scene: dict[str, tuple[float, int]] = field(default_factory=dict)
    """Scene -> (mean rating over its ratings, images rated)."""

    def to_dict(self) -> dict[str, Any]:
        """The numbers, for an export's metrics file (NaN as null)."""
        return {"run": self.run, "reviewers": self.reviewers, "rated_images": self.rated_images,
                "alpha_ordinal": num(self.alpha_ordinal) if self.pairable_images >= 2 else None,
                "alpha_images": self.pairable_images, "mean_rating": num(self.mean_rating), "flags": self.flags, "mean_rating_per_scene": {k: {"mean": num(m), "images": n} for k, (m, n) in self.per_scene.items()},
                "evaluation": self.evaluation,
                "correlations": {c.metric: {"spearman": num(c.spearman), "spearman_p": num(c.spearman_p), "kendall": num(c.kendall),
                                            "n": c.n} for c in self.correlations}}


def review_summary(db: sqlite_utils.Database, run_name: str) -> ReviewSummary:
    """:raises EvaluationError: if the run is not a generation or baseline run"""
    run = generation_run(db, run_name)
    ratings = current_ratings(db, run.id)
    image_of = generation_images(db, run.id)
    by_image: dict[int, list[int]] = {}
    reviewers: dict[str, int] = {}
    flags: dict[str, int] = {}
    for r in ratings:
        reviewers[r.reviewer] = reviewers.get(r.reviewer, 0) + 1
        for f in r.flags:
            flags[f] = flags.get(f, 0) + 1
        if r.score is not None:
            by_image.setdefault(image_of[r.generation_id], []).append(r.score)
    units = list(by_image.values())
    evaluation = latest_evaluation(db, run.id)
    scores = scores_of(db, evaluation) if evaluation is not None else {}
    metrics = [m for m in ALL_METRICS if any(m in s for s in scores.values())]
    correlations = rating_metric_correlations({i: mean(v) for i, v in by_image.items()}, scores, metrics) if scores else []
    eval_run = get_run_by_id(db, evaluation) if evaluation else None
    scene_of = image_scenes(db, run.id)
    scenes: dict[str, list[int]] = {}
    images_of: dict[str, int] = {}
    for image, values in by_image.items():  # the mean over ratings, as the overall mean is
        scene = scene_of.get(image) or "(no scene)"
        scenes.setdefault(scene, []).extend(values)
        images_of[scene] = images_of.get(scene, 0) + 1
    return ReviewSummary(
        run=run.name, reviewers=reviewers, rated_images=len(by_image),
        alpha_ordinal=krippendorff_alpha(units, "ordinal") if units else float("nan"),
        pairable_images=sum(1 for u in units if len(u) >= 2),
        mean_rating=mean(s for u in units for s in u) if units else float("nan"),
        flags=flags, correlations=correlations, evaluation=eval_run.name if eval_run else None,
        per_scene={k: (mean(v), images_of[k]) for k, v in sorted(scenes.items())},
    )


def generation_run(db: sqlite_utils.Database, name: str) -> Run:
    """:raises EvaluationError: if ``name`` is not a generation or baseline run"""
    run = get_run(db, name)
    if run is None or run.kind not in ("generation", "baseline"):
        known = ", ".join(r.name for r in list_runs(db) if r.kind in ("generation", "baseline") and r.status == "complete")
        raise EvaluationError(f"{name!r} is not a generation or baseline run (those here: {known or 'none yet'})")
    return run


def pairwise_summary(db: sqlite_utils.Database, run_a: str, run_b: str, *, resamples: int = RESAMPLES) -> PairwiseSummary:
    """Blind comparisons of two runs, B's win rate over A first.

    :raises EvaluationError: for unknown runs, one run twice, or runs with no image in common
    """
    a, b = generation_run(db, run_a), generation_run(db, run_b)
    if a.id == b.id:
        raise EvaluationError(f"{a.name!r} twice: compare two different runs")
    return _summarise(db, a, b, resamples=resamples)


def _summarise(db: sqlite_utils.Database, a: Run, b: Run, *, resamples: int = RESAMPLES) -> PairwiseSummary:
    items = pair_items(db, a.id, b.id)
    if not items:
        raise EvaluationError(f"{a.name} and {b.name} captioned no image in common: nothing to compare")
    verdicts = current_verdicts(db, a.id, b.id)
    return summarise(verdicts, a.name, b.name, images=len(items), identical=sum(1 for i in items if i.identical),
                     resamples=resamples)


def pairwise_summaries(db: sqlite_utils.Database, run_id: int) -> list[PairwiseSummary]:
    """Every pair this run was compared in (it as A), for the Runs screen and exports."""
    run = get_run_by_id(db, run_id)
    others = [get_run_by_id(db, b) for _, b in compared_pairs(db, run_id)]
    return [_summarise(db, run, other) for other in others if run is not None and other is not None]


def pairwise_lines(s: PairwiseSummary) -> list[str]:
    """A pairwise summary in words (the CLI's report; the Runs screen shows the same lines)."""
    lines = [f"{s.run_b} vs {s.run_a}: {s.images} images in common, {s.identical} with identical captions (skipped)"]
    if not s.judgments:
        return [*lines, "  no comparisons yet: `workbench tui --screen compare` shows the two runs' captions side by side, blind"]
    c = s.counts
    lines += [
        f"  {s.judgments} verdicts by {len(s.reviewers)} reviewer{'s' if len(s.reviewers) != 1 else ''} "
        f"({', '.join(f'{k} {v}' for k, v in s.reviewers.items())}): {s.run_b} better {c['b']}, {s.run_a} better {c['a']}, "
        f"tie {c['tie']}, both bad {c['both_bad']}",
        f"  win rate of {s.run_b} over {s.run_a}: {s.win_rate} (95% interval, bootstrap over images; a tie counts half)",
        f"  tie or both bad: {s.tie_rate:.1%} of verdicts",
    ]
    if s.shared_images:
        lines.append(f"  agreement on {s.shared_images} images judged by two or more: {s.agreement:.1%} of reviewer pairs agree, "
                     f"Krippendorff's alpha (nominal) {s.alpha:.3f}")
    else:
        lines.append("  agreement: no image judged by two reviewers yet (config.toml [review] overlap serves shared items)")
    if not s.bias_checkable:
        bias = f"too few to check position bias (needs {MIN_BIAS_IMAGES} images)"
    elif s.position_bias:
        bias = f"position bias: the {'left' if s.left_rate.value > 0.5 else 'right'} side wins more often than chance"
    else:
        bias = "no position bias detected"
    r = s.left_rate
    lines.append(f"  the left caption won {r.value:.3f} [{r.low:.3f}, {r.high:.3f}] of the verdicts that chose a side "
                 f"({r.n} image{'s' if r.n != 1 else ''}): {bias}")
    if len(s.per_scene) > 1:
        lines.append("  per scene: " + "; ".join(f"{k} {r.value:.2f} ({r.n})" for k, r in s.per_scene))
    return lines


@dataclass(frozen=True)
class CompareQueue:
    """A reviewer's items of a pair of runs in the order served (identical captions left out)."""

    items: list[PairItem]
    identical: int
    verdicts: dict[int, str]
    """Image id -> this reviewer's current choice (left, right, tie, both_bad)."""
    others: frozenset[int]
    """Images another reviewer judged."""


def compare_queue(db: sqlite_utils.Database, run_a: int, run_b: int, reviewer: str, overlap: float = 0.0) -> CompareQueue:
    items = pair_items(db, run_a, run_b)
    shown = {i.image_id: i for i in items if not i.identical}
    verdicts = current_verdicts(db, run_a, run_b)
    mine = {v.image_id: v.choice for v in verdicts if v.reviewer == reviewer}
    others = frozenset(v.image_id for v in verdicts if v.reviewer != reviewer)
    lo, hi = sorted((run_a, run_b))
    order, _, _ = overlap_order(shown, set(mine), set(others), overlap, f"{reviewer}\0compare\0{lo}\0{hi}")
    return CompareQueue([shown[i] for i in order], len(items) - len(shown), mine, others)

