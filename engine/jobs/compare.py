"""Paired comparison of two evaluations on the same images (bootstrap over shared resamples)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.evaluation.metrics import EvaluationError, MeteorSession, image_of, paired_bootstrap
from engine.evaluation.tokenize import java_available
from engine.jobs.kinds.evaluation import load_stats
from engine.store.results import latest_evaluation
from engine.store.runs import Run, get_run, get_run_by_id
from engine.errors import WorkbenchError
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
    if ra.id == rb.id:
        raise WorkbenchError(f"{a!r} and {b!r} are the same evaluation ({ra.name}): compare two different runs")
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


@dataclass(frozen=True)
class Beside:
    """A baseline's scores on exactly the images an evaluation scored."""

    label: str
    """"scene consensus" or "kNN"."""
    run: str
    scores: dict[str, float]
    scenes: str | None
    """The baseline's scene source ("oracle" or a classify run), for the scene consensus."""


BASELINE_FAMILIES = (("constant.", "constant caption"), ("scene.", "scene consensus"), ("knn.", "kNN"))


def baselines_beside(ws: Workspace, evaluation: Run, *, meteor: bool = True) -> list[Beside]:
    """The scene-consensus and kNN baselines of the evaluated run's dataset, scored on the same
    images (from their newest evaluations' cached statistics), so no score is read alone. A
    baseline whose evaluation does not cover those images is left out."""
    import numpy as np

    from engine.evaluation.metrics import corpus_from_weights, image_of
    from engine.store.runs import list_runs

    db = ws.open_db()
    try:
        if evaluation.kind != "evaluation" or evaluation.metrics.get("human"):
            return []
        source = get_run_by_id(db, evaluation.parent_run_id) if evaluation.parent_run_id else None
        mine = load_stats(Path(evaluation.artifact_dir or ""))
        wanted = {image_of(k) for k in mine.keys}
        out = []
        for prefix, label in BASELINE_FAMILIES:
            candidates = [r for r in list_runs(db, "baseline", superseded=False)
                          if r.name.startswith(prefix) and r.dataset_id == evaluation.dataset_id and r.status == "complete"
                          and (source is None or r.id != source.id)]
            for run in reversed(candidates):  # the newest that covers the images
                ev = latest_evaluation(db, run.id)
                ev_run = get_run_by_id(db, ev) if ev else None
                if ev_run is None or not ev_run.artifact_dir:
                    continue
                try:
                    stats = load_stats(Path(ev_run.artifact_dir))
                except EvaluationError:
                    continue
                images = [image_of(k) for k in stats.keys]
                if not wanted <= set(images) or stats.tokenizer != mine.tokenizer:
                    continue
                weights = np.array([[1.0 if im in wanted else 0.0 for im in images]])
                session = MeteorSession() if meteor and "METEOR" in stats.corpus and stats.meteor_stats is not None and java_available() else None
                try:
                    scores = {m: float(v[0]) for m, v in corpus_from_weights(stats, weights, session, with_meteor=meteor).items()}
                finally:
                    if session is not None:
                        session.close()
                out.append(Beside(label, run.name, scores, run.metrics.get("scenes")))
                break
        return out
    finally:
        db.close()
