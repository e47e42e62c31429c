"""Job kind ``evaluate``.

``evaluate`` scores a generation (or baseline) run against the references with the COCO caption
toolkit, or the references themselves leave-one-out (the human level); it stores corpus scores
under the toolkit's names with 95% bootstrap intervals, per-image scores, a per-scene table, and
the per-image statistics (``models/<run>/stats.npz``) that later comparisons resample.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from engine.evaluation.metrics import (
    ALL_METRICS, METRICS, EvaluationError, MeteorSession, Scores, bootstrap, check_metrics, group_scores, leave_one_out,
    score_captions,
)
from engine.evaluation.tokenize import java_available
from engine.jobs.base import JobContext, JobKind, JobResult
from engine.jobs.lookup import check_run_name, dataset_of_kind, finished_run, staged_run
from engine.store.catalog import captions_for, get_dataset_by_id, list_images
from engine.store.reference_flags import flagged_references
from engine.store.results import add_scores, generations_of, scores_of

GENERATION_KINDS = ("generation", "baseline")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class EvaluateParams:
    generation: str | None = None
    """Generation or baseline run to score."""
    human: str | None = None
    """Or: a captioning dataset whose references are scored leave-one-out (the level humans reach)."""
    distinct: bool = False
    """Human level only: compare each reference with the others that do not repeat it (RSICD repeats references)."""
    split: Literal["all", "train", "val", "test"] = "all"
    """Images to score (human: default all of the dataset)."""
    name: str | None = None
    """Run name (default eval.<generation> or human.<dataset>.<split>); re-running it makes a new version."""
    replace: bool = False
    """Replace the newest evaluation of that name once this one has succeeded (until then it stays as it was)."""
    subset: str | None = None
    """Score only the images that this evaluation run scored (e.g. a human distinct=true evaluation), so the two pair up."""
    refs: str | None = None
    """Score against another dataset's references (e.g. the official COCO-format val references), images matched by filename."""
    match: Literal["filename", "id"] = "filename"
    """How refs= images are matched: by filename, or by the source's image id (COCO files only: a Karpathy imgid is a list position)."""
    skip_flagged_refs: bool = False
    """Leave out the references a reviewer flags now (of an exact repeat flagged only duplicated, the first copy stays); an image whose references would all go keeps them."""
    metrics: tuple[str, ...] = METRICS
    """Comma-separated toolkit metric names (SPICE is reported unavailable)."""
    tokenizer: Literal["auto", "java", "python"] = "auto"
    """PTB tokenizer: the toolkit's Java one, the Java-free equivalent, or Java when installed."""
    resamples: int = 1000
    """Bootstrap resamples for the intervals (0: none)."""
    seed: int = 0
    """Seed of the bootstrap."""

    def __post_init__(self) -> None:
        check_run_name(self.name)
        if (self.generation is None) == (self.human is None):
            raise ValueError("give exactly one of generation=RUN or human=DATASET")
        try:
            check_metrics(self.metrics)
        except EvaluationError as exc:
            raise ValueError(f"metrics: {exc}") from None
        if not self.metrics:
            raise ValueError("metrics: name at least one")
        if self.resamples < 0:
            raise ValueError("resamples: must be 0 or more")
        if self.distinct and self.human is None:
            raise ValueError("distinct: only for human=DATASET")
        if self.refs is not None and self.generation is None:
            raise ValueError("refs: only with generation=RUN (human= scores a dataset's own references)")


def _subset_images(ctx: JobContext, name: str | None) -> set[int] | None:
    """The images an evaluation run scored (its per-image scores), for ``subset=RUN``."""
    if name is None:
        return None
    run = finished_run(ctx, "subset", name, ("evaluation",), "evaluate", EvaluationError)
    return set(scores_of(ctx.db, run.id))


def evaluate(params: EvaluateParams, ctx: JobContext) -> JobResult:
    split = None if params.split == "all" else params.split
    use_java = {"auto": None, "java": True, "python": False}[params.tokenizer]
    if use_java and not java_available():
        raise EvaluationError("tokenizer=java: Java is not installed; use tokenizer=python (METEOR needs Java)")
    subset = _subset_images(ctx, params.subset)
    skipped = (0, 0, 0)
    if params.generation is not None:
        source = finished_run(ctx, "generation", params.generation, GENERATION_KINDS, "generation or baseline", EvaluationError)
        gens = generations_of(ctx.db, source.id)
        images = {im.id: im for im in list_images(ctx.db, source.dataset_id or 0, split=split)}
        gens = [g for g in gens if g.image_id in images and (subset is None or g.image_id in subset)]
        if not gens:
            where = "" if split is None else f" for split {split}"
            where += "" if subset is None else f" among the {len(subset)} images of {params.subset!r}"
            raise EvaluationError(f"generation run {source.name!r} has no captions{where}; nothing to score")
        if subset is not None and len(gens) < len(subset):
            raise EvaluationError(f"generation run {source.name!r} captions {len(gens)} of the {len(subset)} images of "
                                  f"{params.subset!r}; a paired comparison needs them all")
        if params.refs is not None:
            references, scene_of, skipped = _other_references(ctx, params, images, gens)
        else:
            refs = captions_for(ctx.db, [g.image_id for g in gens])
            missing = [images[g.image_id].filename for g in gens if not refs[g.image_id]]
            if missing:
                raise EvaluationError(f"references missing for {len(missing)} images (first: {', '.join(missing[:3])}); every scored image needs references")
            references = {g.image_id: [c.text for c in refs[g.image_id]] for g in gens}
            if params.skip_flagged_refs:
                references, skipped = leave_out_flagged(
                    references, {g.image_id: images[g.image_id].filename for g in gens}, flagged_references(ctx.db, source.dataset_id or 0))
            scene_of = {g.image_id: images[g.image_id].scene or "(none)" for g in gens}
        hypotheses: dict[Hashable, str] = {g.image_id: g.text for g in gens}
        family = params.name or (f"eval.{source.name}" + (f".refs-{params.refs}" if params.refs else "")
                                  + (".skip-flagged" if params.skip_flagged_refs else ""))
        parent, dataset_id = source.id, source.dataset_id
        label = f"{source.name} ({len(gens)} images)"
    else:
        ds = dataset_of_kind(ctx, params.human, "captioning", "ingest one with `workbench ingest captions PATH`")  # type: ignore[arg-type]
        images = {im.id: im for im in list_images(ctx.db, ds.id, split=split) if subset is None or im.id in subset}
        refs = captions_for(ctx.db, list(images))
        own: dict[Hashable, list[str]] = {i: [c.text for c in refs[i]] for i in images}
        if params.skip_flagged_refs:
            own, skipped = leave_out_flagged(own, {i: im.filename for i, im in images.items()}, flagged_references(ctx.db, ds.id))
        references, hypotheses = leave_one_out(own, distinct=params.distinct)
        if not hypotheses:
            raise EvaluationError(f"dataset {ds.name!r} has no images with two or more references{'' if split is None else f' in split {split}'}")
        scene_of = {key: images[key[0]].scene or "(none)" for key in hypotheses if isinstance(key, tuple)}
        family = params.name or (f"human{'-distinct' if params.distinct else ''}.{ds.name}.{params.split}"
                                  + (".skip-flagged" if params.skip_flagged_refs else ""))
        parent, dataset_id = None, ds.id
        scored = len({key[0] for key in hypotheses if isinstance(key, tuple)})
        label = f"references of {ds.name} leave-one-out ({scored} of {len(images)} images, {len(hypotheses)} captions)"

    ctx.progress(0, 3, "scoring")
    session = MeteorSession() if "METEOR" in params.metrics and (use_java if use_java is not None else java_available()) else None
    try:
        scores = score_captions(references, hypotheses, metrics=params.metrics, use_java=use_java, meteor=session)
        ctx.check_stop()
        ctx.progress(1, 3, "bootstrap intervals")
        intervals = bootstrap(scores, resamples=params.resamples, seed=params.seed, meteor=session) if params.resamples else {}
        per_scene = group_scores(scores, [scene_of[k] for k in scores.keys], meteor=session)
    finally:
        if session is not None:
            session.close()
    ctx.check_stop()
    ctx.progress(2, 3, "storing")
    per_image = _per_image(scores)
    metrics: dict[str, Any] = dict(scores.corpus)
    metrics |= {
        "ci95": {m: list(v) for m, v in intervals.items()}, "per_scene": per_scene, "images": len(per_image),
        "captions": len(scores.keys), "tokenizer": scores.tokenizer, "unavailable": scores.unavailable,
        "resamples": params.resamples, "human": params.human is not None, "subset": params.subset, "refs": params.refs,
    }
    if params.skip_flagged_refs:
        metrics |= {"skipped_flagged_refs": skipped[0], "kept_flagged_refs": skipped[1], "images_all_refs_flagged": skipped[2]}
        label += f"; {flagged_phrase(*skipped)}"
    if params.generation is not None and source.metrics.get("scenes"):
        metrics["scenes"] = source.metrics["scenes"]  # "oracle": it read the true scene of the images it captions
    stored = {**asdict(params), "name": family, "metrics": list(params.metrics)}
    # The old evaluation of this name (if replaced) stays whole until the new one is complete.
    with staged_run(ctx, kind="evaluation", family=family, replace=params.replace, params=stored, parent_run_id=parent,
                    dataset_id=dataset_id, artifacts=True) as stage:
        add_scores(ctx.db, stage.run.id, [(image_id, m, v) for image_id, row in per_image.items() for m, v in row.items()])
        save_stats(stage.artifact_dir, scores)  # type: ignore[arg-type]
        stage.publish(metrics)
    ctx.progress(3, 3, "done")
    headline = ", ".join(f"{m} {scores.corpus[m]:.3f}" for m in ALL_METRICS if m in scores.corpus)
    return JobResult(f"{stage.message()}: {label}: {headline}", run_id=stage.run.id,
                     data={"corpus": scores.corpus, "ci95": intervals, "name": stage.published.run.name})  # type: ignore[union-attr]


def _other_references(ctx: JobContext, params: EvaluateParams, images: dict[int, Any],
                      gens: list[Any]) -> tuple[dict[Hashable, list[str]], dict[Hashable, str], tuple[int, int, int]]:
    """References (and scenes) of the generated captions' images from another dataset, matched by
    filename (or by source id, for COCO files only); with ``skip_flagged_refs``, less the ones
    flagged there (and the counts of :func:`leave_out_flagged`).

    :raises EvaluationError: if the match is ambiguous by construction or images are missing
    """

    other = dataset_of_kind(ctx, params.refs, "captioning", "ingest the references with `workbench ingest captions PATH`")  # type: ignore[arg-type]
    mine = get_dataset_by_id(ctx.db, next(iter(images.values())).dataset_id)
    if params.match == "id":
        karpathy = [d.name for d in (mine, other) if d is not None and d.source_format == "karpathy"]
        if karpathy:
            raise EvaluationError(f"match=id: {', '.join(karpathy)} came from a Karpathy file, whose imgid is a list position, not a "
                                  "stable id (00001.jpg is 0 in one RSICD file, airport_61.jpg is 318 in the COCO val references); "
                                  "match by filename")
    theirs = list_images(ctx.db, other.id)
    key = (lambda im: str(im.source_id)) if params.match == "id" else (lambda im: im.filename)
    by_key = {key(im): im for im in theirs}
    pairs = {g.image_id: by_key.get(key(images[g.image_id])) for g in gens}
    missing = [images[i].filename for i, im in pairs.items() if im is None]
    if missing:
        raise EvaluationError(f"refs={other.name!r}: {len(missing)} of {len(gens)} images have no match by {params.match} "
                              f"(first: {', '.join(missing[:3])}); score a split the references cover, or subset=")
    refs = captions_for(ctx.db, [im.id for im in pairs.values()])  # type: ignore[union-attr]
    empty = [images[i].filename for i, im in pairs.items() if not refs[im.id]]  # type: ignore[union-attr]
    if empty:
        raise EvaluationError(f"refs={other.name!r}: {len(empty)} matched images have no references (first: {', '.join(empty[:3])})")
    references: dict[Hashable, list[str]] = {i: [c.text for c in refs[im.id]] for i, im in pairs.items()}  # type: ignore[union-attr]
    skipped = (0, 0, 0)
    if params.skip_flagged_refs:
        references, skipped = leave_out_flagged(references, {i: im.filename for i, im in pairs.items()},  # type: ignore[union-attr]
                                                flagged_references(ctx.db, other.id))
    scene_of: dict[Hashable, str] = {i: im.scene or images[i].scene or "(none)" for i, im in pairs.items()}  # type: ignore[union-attr]
    return references, scene_of, skipped


def leave_out_flagged(references: Mapping[K, list[str]], filename_of: Mapping[Any, str],
                      flagged: Mapping[tuple[str, str], set[str]]) -> tuple[dict[K, list[str]], tuple[int, int, int]]:
    """Each image's references less the ones a reviewer flags now. A flag names a text, so it marks
    every copy of a repeated reference; a text flagged only ``duplicated`` keeps its first copy
    where the image repeats it exactly (the copies are the problem, not the text). An image whose
    references would all go keeps them all, rather than having none to be scored against.

    :returns: the references, and (references left out, flagged references kept that way, their images)
    """
    out: dict[K, list[str]] = {}
    left_out = kept = kept_images = 0
    for key, texts in references.items():
        filename = filename_of[key]
        seen: set[str] = set()
        usable = []
        for text in texts:
            reasons = flagged.get((filename, text))
            if not reasons or (reasons == {"duplicated"} and texts.count(text) > 1 and text not in seen):
                usable.append(text)
            seen.add(text)
        if usable:
            left_out += len(texts) - len(usable)
            out[key] = usable
        else:
            kept += len(texts)
            kept_images += 1
            out[key] = texts
    return out, (left_out, kept, kept_images)


def flagged_phrase(left_out: int, kept: int, kept_images: int) -> str:
    """What skip_flagged_refs did, for the job's message."""
    text = f"left out {left_out} flagged reference{'s' if left_out != 1 else ''}"
    if kept:
        text += (f" (kept {kept} more, of {kept_images} image{'s' if kept_images != 1 else ''} whose every reference is flagged:"
                 " without them there would be nothing to score against)")
    return text


def _per_image(scores: Scores) -> dict[int, dict[str, float]]:
    """Per-image values; leave-one-out keys (image, i) are averaged per image."""
    sums: dict[int, dict[str, list[float]]] = {}
    for idx, key in enumerate(scores.keys):
        image_id = int(key[0] if isinstance(key, tuple) else key)  # type: ignore[arg-type]
        row = sums.setdefault(image_id, {})
        for m, values in scores.per_image.items():
            row.setdefault(m, []).append(float(values[idx]))
    return {i: {m: float(np.mean(v)) for m, v in row.items()} for i, row in sums.items()}


def save_stats(folder: Path, scores: Scores) -> None:
    """Keep what bootstraps and paired comparisons need: keys, per-image scores, counts."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {"keys": np.array([json.dumps(k) for k in scores.keys]), "bleu_stats": scores.bleu_stats}
    if scores.meteor_stats is not None:
        arrays["meteor_stats"] = scores.meteor_stats
    arrays |= {f"per_image.{m}": v for m, v in scores.per_image.items()}
    tmp = folder / ".stats.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, folder / "stats.npz")
    (folder / "corpus.json").write_text(json.dumps({"corpus": scores.corpus, "unavailable": scores.unavailable, "tokenizer": scores.tokenizer}))


def load_stats(folder: Path) -> Scores:
    """:raises EvaluationError: if the folder holds no statistics"""
    path = folder / "stats.npz"
    if not path.is_file():
        raise EvaluationError(f"{path}: no evaluation statistics; evaluate the run again")
    data = np.load(path)
    head = json.loads((folder / "corpus.json").read_text())
    keys = [json.loads(k) for k in data["keys"]]
    keys = [tuple(k) if isinstance(k, list) else k for k in keys]
    per_image = {name.split(".", 1)[1]: data[name] for name in data.files if name.startswith("per_image.")}
    return Scores(keys, head["corpus"], per_image, data["bleu_stats"], data["meteor_stats"] if "meteor_stats" in data.files else None,
                  head["unavailable"], head["tokenizer"])


EVALUATE = JobKind("evaluate", EvaluateParams, evaluate, "Score generated captions (or the references leave-one-out) with BLEU, METEOR, ROUGE-L, CIDEr")
