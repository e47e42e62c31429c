"""Review analytics of a generation run: agreement between reviewers, and how ratings follow the
per-image metrics of its newest evaluation. A quick read for the CLI and the TUI."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import mean

import sqlite_utils

from engine.evaluation.metrics import ALL_METRICS, EvaluationError
from engine.evaluation.review import Correlation, krippendorff_alpha, rating_metric_correlations
from engine.store.results import current_ratings, generation_images, latest_evaluation, scores_of
from engine.store.runs import get_run, get_run_by_id


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


def review_summary(db: sqlite_utils.Database, run_name: str) -> ReviewSummary:
    """:raises EvaluationError: if the run is not a generation or baseline run"""
    run = get_run(db, run_name)
    if run is None or run.kind not in ("generation", "baseline"):
        raise EvaluationError(f"run={run_name!r}: no generation or baseline run of that name")
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
    return ReviewSummary(
        run=run.name, reviewers=reviewers, rated_images=len(by_image),
        alpha_ordinal=krippendorff_alpha(units, "ordinal") if units else float("nan"),
        pairable_images=sum(1 for u in units if len(u) >= 2),
        mean_rating=mean(s for u in units for s in u) if units else float("nan"),
        flags=flags, correlations=correlations, evaluation=eval_run.name if eval_run else None,
    )
