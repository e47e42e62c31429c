"""Paired comparison of two evaluations on the same images (bootstrap over shared resamples)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.evaluation.metrics import EvaluationError, MeteorSession, image_of, paired_bootstrap
from engine.evaluation.tokenize import java_available
from engine.jobs.kinds.evaluation import load_stats
from engine.store.results import latest_evaluation
from engine.store.runs import Run, get_run, get_run_by_id
from engine.workspace import Workspace


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    images: int
    rows: dict[str, dict[str, float]]
    """metric -> a, b, difference (b - a), low, high, p_not_better."""


def evaluation_run(ws: Workspace, name: str) -> Run:
    """The evaluation run called ``name``, or the newest evaluation of the generation run ``name``."""
    db = ws.open_db()
    run = get_run(db, name)
    if run is not None and run.kind in ("generation", "baseline"):
        newest = latest_evaluation(db, run.id)
        run = get_run_by_id(db, newest) if newest is not None else None
        if run is None:
            raise EvaluationError(f"run {name!r} has not been evaluated; run `workbench run evaluate -p generation={name}`")
    if run is None or run.kind != "evaluation":
        raise EvaluationError(f"{name!r}: no evaluation (or evaluated generation) run of that name")
    return run


def compare_runs(ws: Workspace, a: str, b: str, *, resamples: int = 1000, seed: int = 0) -> Comparison:
    ra, rb = evaluation_run(ws, a), evaluation_run(ws, b)
    sa, sb = load_stats(Path(ra.artifact_dir or "")), load_stats(Path(rb.artifact_dir or ""))
    need_meteor = "METEOR" in sa.corpus and "METEOR" in sb.corpus and sa.meteor_stats is not None and java_available()
    session = MeteorSession() if need_meteor else None
    try:
        diff = paired_bootstrap(sa, sb, resamples=resamples, seed=seed, meteor=session)
    finally:
        if session is not None:
            session.close()
    rows = {m: {"a": sa.corpus[m], "b": sb.corpus[m], **d} for m, d in sorted(diff.items(), key=lambda kv: list(sa.corpus).index(kv[0]))}
    return Comparison(ra.name, rb.name, len({image_of(k) for k in sa.keys}), rows)
