"""Job kinds ``train-scene-classifier``, ``classify`` and ``baseline-scene``, and where scenes
come from.

A scene feeds a prompt or a baseline from ``scenes=oracle`` (the dataset's own labels: an oracle
no deployed model has) or ``scenes=RUN`` (a ``classify`` run's predictions). Runs that used
oracle scenes on the images they caption say so (``scenes: oracle`` in their metrics), and every
listing and export shows it.

The scene-consensus baseline: per scene, the train reference with the highest mean CIDEr-D
against all the other train references of that scene (document frequencies of the train
references), given to every image of the scene. On RSICD val it scores CIDEr 2.00 with true
scenes, above a published 13B model: no score is read alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from engine.errors import WorkbenchError
from engine.jobs.base import JobContext, JobKind, JobResult, JobStopped
from engine.jobs.lookup import check_run_name, dataset_of_kind, finished_run, resumable, staged_run
from engine.segmentation.errors import SegmentationError
from engine.store.catalog import captions_for, list_images
from engine.store.models import Dataset, Image
from engine.store.results import add_generations
from engine.store.runs import create_version, set_run_params, set_run_status
from engine.store.scenes import Prediction, add_predictions, predictions_of

ORACLE = "oracle"
NO_SCENES = "none"
"""``baseline-scene scenes=none``: one scene for all, the constant caption."""


class SceneError(WorkbenchError):
    "A scene source or classifier cannot be used as asked."


def scene_source(ctx: JobContext, source: str, ds: Dataset, images: list[Image]) -> dict[int, str | None]:
    """The scene of each image: the dataset's label (``oracle``) or a classify run's prediction.

    :raises SceneError: for an unknown run, one of another dataset, or images it did not classify
    """
    if source == ORACLE:
        return {im.id: im.scene for im in images}
    run = finished_run(ctx, "scenes", source, ("classification",), "classify", SceneError, dataset=ds,
                       unfinished="run `classify` to the end first")
    predicted = predictions_of(ctx.db, run.id)
    lacking = [im for im in images if im.id not in predicted]
    if lacking:
        raise SceneError(f"scenes={source!r}: {len(lacking)} images have no prediction in {run.name!r} (first: {lacking[0].filename}); "
                         "classify them (split=all)")
    return {im.id: predicted[im.id].scene for im in images}


def scenes_label(source: str, ctx: JobContext) -> str:
    """How a run's metrics name its scene source: ``oracle`` or the classify run's own name."""
    if source == ORACLE:
        return ORACLE
    from engine.store.runs import get_run

    run = get_run(ctx.db, source)
    return run.name if run else source


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def _labelled(images: list[Image], scenes: list[str]) -> tuple[list[str], list[int]]:
    index = {s: i for i, s in enumerate(scenes)}
    keep = [im for im in images if im.status == "ok" and im.scene in index]
    return [im.path for im in keep], [index[im.scene] for im in keep]  # type: ignore[index]


@dataclass(frozen=True)
class TrainClassifierParams:
    dataset: str
    """Captioning dataset whose train images and scene labels are learnt (val validates)."""
    name: str | None = None
    """Run name (default classifier-<time>); the name of an unfinished run resumes it, a finished one gets a new version."""
    encoder: str = "mobilenet_v2"
    """smp encoder (mobilenet_v2, resnet34, efficientnet-b0, tu-<timm model>, ...)."""
    encoder_weights: Literal["auto", "imagenet", "none"] = "auto"
    """ImageNet weights: auto uses them when they are in the local cache (nothing is downloaded)."""
    epochs: int = 10
    """Passes over the training images."""
    batch_size: int = 32
    """Images per step."""
    lr: float = 1e-3
    """Peak learning rate (AdamW, warmup then cosine)."""
    input_size: int = 224
    """Side the images are resized to (a multiple of 32)."""
    num_workers: int = 2
    """DataLoader worker processes decoding images."""
    seed: int = 0
    """Seed for initialisation, augmentation and batch order."""
    device: str = ""
    """cpu, cuda, ... (default: cuda when available)."""

    def __post_init__(self) -> None:
        check_run_name(self.name)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size: must be at least 1")
        if self.input_size < 32 or self.input_size % 32:
            raise ValueError(f"input_size={self.input_size}: must be a multiple of 32, at least 32")
        if self.lr <= 0 or self.num_workers < 0:
            raise ValueError("lr must be positive and num_workers 0 or more")


def train_scene_classifier(params: TrainClassifierParams, ctx: JobContext) -> JobResult:
    from engine.classification.model import ClassifierConfig, imagenet_cached
    from engine.classification.train import TrainConfig, train
    from engine.segmentation.model import check_names

    check_names("unet", params.encoder)
    ds = dataset_of_kind(ctx, params.dataset, "captioning", "ingest one with `workbench ingest captions PATH --scenes DIR`")
    train_images = list_images(ctx.db, ds.id, split="train")
    scenes = sorted({im.scene for im in train_images if im.scene})
    if len(scenes) < 2:
        raise SceneError(f"dataset {ds.name!r}: its train images carry {len(scenes)} scene labels; a classifier needs two or more "
                         "(ingest it with --scenes DIR, or names like airport_12.jpg)")
    root = Path(ds.root)
    paths, labels = _labelled(train_images, scenes)
    val_paths, val_labels = _labelled(list_images(ctx.db, ds.id, split="val"), scenes)
    if not val_paths:  # no val split: every 10th train image validates
        val_paths, val_labels, paths, labels = paths[::10], labels[::10], [p for i, p in enumerate(paths) if i % 10], [x for i, x in enumerate(labels) if i % 10]
    weights = params.encoder_weights
    use = "imagenet" if weights == "imagenet" or (weights == "auto" and imagenet_cached(params.encoder)) else None
    config = ClassifierConfig(encoder=params.encoder, scenes=tuple(scenes), encoder_weights=use)
    family = params.name or f"classifier-{_stamp()}"
    stored = {**asdict(params), "name": family}
    run = resumable(ctx, family, "classifier", stored, SceneError)
    if run is None:
        run = create_version(ctx.db, kind="classifier", family=family, params=stored, dataset_id=ds.id,
                             folder=lambda n: str(ctx.workspace.model_dir(n)))
    else:
        set_run_params(ctx.db, run.id, stored)
        set_run_status(ctx.db, run.id, "running")
    ctx.attach_run(run.id)
    out_dir = Path(run.artifact_dir or ctx.workspace.model_dir(run.name))
    ctx.log.info("training %s on %d images of %d scenes, validating on %d; encoder %s, weights %s", run.name, len(paths), len(scenes),
                 len(val_paths), params.encoder, use or "none (random)")
    tc = TrainConfig(epochs=params.epochs, batch_size=params.batch_size, lr=params.lr, input_size=params.input_size,
                     seed=params.seed, num_workers=params.num_workers)
    try:
        result = train(config, ([str(root / p) for p in paths], labels), ([str(root / p) for p in val_paths], val_labels), out_dir, tc,
                       progress=ctx.progress, should_stop=ctx.should_stop, device=params.device or None)
    except BaseException:
        set_run_status(ctx.db, run.id, "failed")
        raise
    if result.stopped:
        set_run_status(ctx.db, run.id, "failed", result.metrics or None)
        raise JobStopped()
    m = result.metrics
    history = [{k: h[k] for k in ("epoch", "train_loss", "accuracy")} for h in result.history]
    set_run_status(ctx.db, run.id, "complete", {**m, "history": history, "weights": use or "none", "train_images": len(paths)})
    resumed = f" (resumed at step {result.resumed_step})" if result.resumed_step else ""
    return JobResult(f"{run.name}: {result.epochs_done} epochs{resumed}, validation accuracy {m['accuracy']:.3f} over {len(scenes)} scenes "
                     f"on {len(val_paths)} images; checkpoint in {out_dir}", run_id=run.id, data={"accuracy": m["accuracy"]})


@dataclass(frozen=True)
class ClassifyParams:
    dataset: str
    """Captioning dataset whose images to classify."""
    classifier: str
    """A complete train-scene-classifier run."""
    split: Literal["all", "train", "val", "test"] = "all"
    """Which images."""
    name: str | None = None
    """Run name (default scenes.<classifier>.<dataset>); re-running it makes a new version."""
    replace: bool = False
    """Replace the newest run of that name once this one has succeeded."""
    batch_size: int = 64
    """Images per forward pass."""
    device: str = ""
    """cpu, cuda, ... (default: cuda when available)."""

    def __post_init__(self) -> None:
        check_run_name(self.name)
        if self.batch_size < 1:
            raise ValueError("batch_size: must be at least 1")


def classify(params: ClassifyParams, ctx: JobContext) -> JobResult:
    from engine.classification.train import accuracy_report, load_classifier, predict
    from engine.training import device_for

    ds = dataset_of_kind(ctx, params.dataset, "captioning", "ingest one with `workbench ingest captions PATH`")
    clf = finished_run(ctx, "classifier", params.classifier, ("classifier",), "train-scene-classifier", SceneError,
                       unfinished="finish (resume) its training first")
    device = device_for(params.device or None)
    model, config, size = load_classifier(Path(clf.artifact_dir or ctx.workspace.model_dir(clf.name)), device)
    images = [im for im in list_images(ctx.db, ds.id, split=None if params.split == "all" else params.split) if im.status == "ok"]
    if not images:
        raise SegmentationError(f"dataset {ds.name!r} has no readable images{'' if params.split == 'all' else f' in split {params.split}'} to classify")
    root = Path(ds.root)
    scenes = list(config.scenes)
    rows: list[Prediction] = []

    def on_batch(indices: list[int], probs: np.ndarray) -> None:
        for i, p in zip(indices, probs, strict=True):
            top = np.argsort(-p)[:3]
            rows.append(Prediction(images[i].id, scenes[top[0]], float(p[top[0]]), [(scenes[t], round(float(p[t]), 4)) for t in top]))
        ctx.progress(len(rows), len(images), "classifying")

    if not predict(model, [str(root / im.path) for im in images], size=size, device=device, batch_size=params.batch_size,
                   on_batch=on_batch, should_stop=ctx.should_stop):
        raise JobStopped()
    index = {s: i for i, s in enumerate(scenes)}
    truth = {im.id: im.scene for im in images if im.scene in index}
    cm = np.zeros((len(scenes), len(scenes)), np.int64)
    for r in rows:
        if r.image_id in truth:
            cm[index[truth[r.image_id]], index[r.scene]] += 1  # type: ignore[index]
    metrics: dict[str, object] = {"images": len(rows), "classifier": clf.name, "scenes": scenes}
    if cm.sum():
        metrics |= accuracy_report(cm, scenes) | {"labelled": int(cm.sum())}
    family = params.name or f"scenes.{clf.name}.{ds.name}"
    with staged_run(ctx, kind="classification", family=family, replace=params.replace, params={**asdict(params), "name": family},
                    parent_run_id=clf.id, dataset_id=ds.id) as stage:
        add_predictions(ctx.db, stage.run.id, rows)
        stage.publish(metrics)
    how = f", accuracy {metrics['accuracy']:.3f} on {metrics['labelled']} labelled images" if "accuracy" in metrics else ""
    return JobResult(f"{stage.message()}: {len(rows)} images classified{how}", run_id=stage.run.id,
                     data={"images": len(rows), "accuracy": metrics.get("accuracy"), "name": stage.published.run.name})  # type: ignore[union-attr]


@dataclass(frozen=True)
class BaselineSceneParams:
    dataset: str
    """Captioning dataset."""
    scenes: str = ORACLE
    """The scenes of the images to caption: oracle (the dataset's labels), a classify run, or none
    (every image gets the one most typical train reference: the constant caption)."""
    split: Literal["all", "train", "val", "test"] = "test"
    """Images to caption (the consensus comes from the train split's references)."""
    name: str | None = None
    """Run name (default scene.<dataset or scenes run>.<split>, constant.<dataset>.<split> for
    scenes=none); re-running it makes a new version."""
    replace: bool = False
    """Replace the newest run of that name once this one has succeeded (a run holding ratings is kept, superseded)."""

    def __post_init__(self) -> None:
        check_run_name(self.name)


def scene_consensus(references: dict[str, list[str]]) -> dict[str, tuple[str, float]]:
    """Per scene, the reference with the highest mean CIDEr-D against the scene's other
    references (document frequencies of all of them), and that mean.

    :param references: scene -> its train references (raw text)
    """
    from engine.evaluation.cider import CiderD
    from engine.evaluation.tokenize import ptb_tokenize

    tokenized = {s: [ptb_tokenize(r) for r in refs] for s, refs in references.items()}
    scorer = CiderD([[r] for refs in tokenized.values() for r in refs])
    out = {}
    for scene, refs in tokenized.items():
        best, scores = scorer.consensus(refs)
        out[scene] = (references[scene][best], float(scores[best]))
    return out


def baseline_scene(params: BaselineSceneParams, ctx: JobContext) -> JobResult:
    ds = dataset_of_kind(ctx, params.dataset, "captioning", "ingest one with `workbench ingest captions PATH --scenes DIR`")
    constant = params.scenes == NO_SCENES
    train = list_images(ctx.db, ds.id, split="train")
    refs = captions_for(ctx.db, [im.id for im in train])
    by_scene: dict[str, list[str]] = {}
    for im in train:
        if im.scene or constant:
            by_scene.setdefault("all" if constant else im.scene, []).extend(c.text for c in refs[im.id])  # type: ignore[arg-type]
    by_scene = {s: r for s, r in by_scene.items() if r}
    if not by_scene:
        raise SceneError(f"dataset {ds.name!r}: no train image has references" if constant else
                         f"dataset {ds.name!r}: no train image has both a scene label and references; ingest it with --scenes DIR")
    queries = list_images(ctx.db, ds.id, split=None if params.split == "all" else params.split)
    if not queries:
        raise SceneError(f"dataset {ds.name!r} has no {params.split} images")
    scene_of: dict[int, str | None] = {im.id: "all" for im in queries} if constant else scene_source(ctx, params.scenes, ds, queries)
    ctx.progress(0, len(by_scene), "choosing the consensus reference" + ("" if constant else " of each scene"))
    chosen = scene_consensus(by_scene)
    fallback = "all" if constant else Counter(im.scene for im in train if im.scene in chosen).most_common(1)[0][0]
    unknown = [im for im in queries if scene_of[im.id] not in chosen]
    rows = [(im.id, chosen[scene_of[im.id] if scene_of[im.id] in chosen else fallback][0]) for im in queries]  # type: ignore[index]
    source = NO_SCENES if constant else scenes_label(params.scenes, ctx)
    family = params.name or (f"constant.{ds.name}.{params.split}" if constant else
                             f"scene.{ds.name if params.scenes == ORACLE else source}.{params.split}")
    metrics = {"images": len(rows), "scenes": source, "consensus": {s: c for s, (c, _) in sorted(chosen.items())},
               "no_scene": len(unknown), "fallback_scene": fallback}
    with staged_run(ctx, kind="baseline", family=family, replace=params.replace, params={**asdict(params), "name": family},
                    dataset_id=ds.id) as stage:
        add_generations(ctx.db, stage.run.id, rows)
        stage.publish(metrics)
    extra = f"; {len(unknown)} images with no known scene got the {fallback!r} caption" if unknown else ""
    what = f"one caption for all: {rows[0][1]!r}" if constant else f"one per scene ({len(chosen)} scenes, scenes from {source}){extra}"
    return JobResult(f"{stage.message()}: {len(rows)} captions, {what}",
                     run_id=stage.run.id, data={"images": len(rows), "name": stage.published.run.name, "consensus": metrics["consensus"]})  # type: ignore[union-attr]


TRAIN_SCENE_CLASSIFIER = JobKind("train-scene-classifier", TrainClassifierParams, train_scene_classifier,
                                 "Train a scene classifier (an smp encoder, MobileNetV2 by default) on a dataset's scene labels", uses_gpu=True)
CLASSIFY = JobKind("classify", ClassifyParams, classify, "Predict each image's scene (and its top 3) with a trained scene classifier", uses_gpu=True)
BASELINE_SCENE = JobKind("baseline-scene", BaselineSceneParams, baseline_scene,
                         "The scene-consensus baseline: each image gets its scene's most typical train reference")
