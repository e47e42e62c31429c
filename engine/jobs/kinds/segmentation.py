"""Job kinds ``train-segmenter`` and ``segment``.

``train-segmenter`` trains on a segmentation dataset (the drone set, or the synthetic world's)
into ``models/<run>/``; giving the name of an unfinished run resumes it from its last checkpoint.
``segment`` applies a trained segmenter to a captioning dataset, writing ``masks/<run>/*.png``
(class-group indices) and one masks row per image; images already done are skipped.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from engine.datasets.errors import DatasetError
from engine.jobs.base import JobContext, JobKind, JobResult, JobStopped
from engine import distributed
from engine.jobs.lookup import check_run_name, dataset_of_kind, finished_run, on_main, resumable, taken_by_other_kind
from engine.segmentation.errors import SegmentationError
from engine.store.catalog import list_images
from engine.store.runs import MaskRow, add_masks, create_version, family_runs, masked_image_ids, set_run_params, set_run_status

ARCHITECTURES = (
    "deeplabv3", "deeplabv3plus", "dpt", "fpn", "linknet", "manet", "pan", "pspnet", "segformer", "unet",
    "unetplusplus", "upernet",
)
"""smp's architectures (checked against smp by a test), so params validate without importing torch."""


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


@dataclass(frozen=True)
class TrainSegmenterParams:
    dataset: str = "drone"
    """Segmentation dataset to train on (see `workbench ingest drone`)."""
    name: str | None = None
    """Run name (default segmenter-<time>); the name of an unfinished run resumes it, a finished one gets a new version."""
    arch: str = "unet"
    """smp architecture: unet, unetplusplus, fpn, deeplabv3plus, ..."""
    encoder: str = "mobilenet_v2"
    """smp encoder, e.g. mobilenet_v2, resnet34, efficientnet-b0, or tu-<timm model>."""
    encoder_weights: str | None = None
    """Pretrained encoder weights (e.g. imagenet; needs them in the local cache) or none."""
    decoder_channels: tuple[int, ...] = ()
    """U-Net decoder widths, e.g. 128,64,32,16,8 (default: smp's 256,128,64,32,16)."""
    epochs: int = 4
    """Passes over the training images."""
    batch_size: int = 8
    """Crops per optimizer step."""
    lr: float = 2e-3
    """Peak learning rate (AdamW, warmup then cosine)."""
    input_size: int = 256
    """Side of the square training crops fed to the network (multiple of 32)."""
    eval_size: int = 512
    """Long side of whole images at validation (rounded up to a multiple of 32 by padding)."""
    max_side: int = 1024
    """Large images are decoded at reduced size so their long side is at most this."""
    crop_min: float = 0.5
    """Smallest random crop, as a share of the image's short side."""
    loss: Literal["ce", "ce+dice"] = "ce+dice"
    """Class-weighted cross-entropy, optionally plus soft Dice."""
    steps_per_epoch: int = 0
    """Cap on steps per epoch (0: one pass over the training images)."""
    num_workers: int = 2
    """DataLoader worker processes decoding images."""
    seed: int = 0
    """Seed for initialisation, crops and batch order."""
    device: str = ""
    """cpu, cuda, cuda:1 ... (default: cuda when available)."""
    processes: int = 1
    """Data-parallel processes (one per GPU on a GPU machine, CPU processes elsewhere); batch_size stays the global batch."""

    def __post_init__(self) -> None:
        check_run_name(self.name)
        if self.processes < 1 or self.batch_size < self.processes:
            raise ValueError(f"processes={self.processes}: must be at least 1 and at most batch_size ({self.batch_size})")
        if self.arch.lower() not in ARCHITECTURES:
            raise ValueError(f"arch={self.arch!r}: not an smp architecture; valid: {', '.join(ARCHITECTURES)}")
        for field in ("epochs", "batch_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field}: must be at least 1")
        for field in ("input_size", "eval_size"):
            value = getattr(self, field)
            if value < 32 or value % 32:
                raise ValueError(f"{field}={value}: must be a multiple of 32, at least 32")
        if not 0.05 <= self.crop_min <= 1:
            raise ValueError("crop_min: must be between 0.05 and 1")
        if self.lr <= 0:
            raise ValueError("lr: must be positive")
        if self.steps_per_epoch < 0 or self.num_workers < 0:
            raise ValueError("steps_per_epoch and num_workers: must be 0 or more")


def train_segmenter(params: TrainSegmenterParams, ctx: JobContext) -> JobResult:
    from engine.segmentation.data import Item, group_lut
    from engine.segmentation.model import ModelConfig, check_names
    from engine.segmentation.train import TrainConfig, class_weights, train

    check_names(params.arch.lower(), params.encoder)
    ds = dataset_of_kind(ctx, params.dataset, "segmentation", "ingest one with `workbench ingest drone PATH`")
    config = ctx.config()
    source_classes = [c["name"] for c in ds.meta.get("classes", [])]
    mapping = config.class_to_group(source_classes)
    ignore = [i for i, g in enumerate(config.groups) if g.ignore]
    lut = group_lut(mapping, ignore)
    root = Path(ds.root)
    items = {
        split: [Item(str(root / im.path), str(root / im.label_path)) for im in list_images(ctx.db, ds.id, split=split, status="ok") if im.label_path]
        for split in ("train", "val")
    }
    pixels = np.zeros(len(config.groups), np.int64)
    for cls, count in enumerate(ds.meta.get("class_pixels", [])):
        pixels[mapping[cls]] += count
    weights = class_weights(pixels.tolist(), ignore)

    family = params.name or f"segmenter-{_stamp()}"
    stored = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(params).items()} | {"name": family}

    def open_run() -> tuple[int, str, str]:
        run = resumable(ctx, family, "segmenter", stored, SegmentationError)
        if run is None:
            run = create_version(ctx.db, kind="segmenter", family=family, params=stored, dataset_id=ds.id,
                                 folder=lambda n: str(ctx.workspace.model_dir(n)))
        else:
            set_run_params(ctx.db, run.id, stored)  # runtime params (device, ...) as this attempt runs
            set_run_status(ctx.db, run.id, "running")
            ctx.log.info("resuming run %s from %s", run.name, run.artifact_dir)
        return run.id, run.name, run.artifact_dir or str(ctx.workspace.model_dir(run.name))

    run_id, name, folder = on_main(ctx, open_run, SegmentationError)  # rank 0 names it; every process trains into it
    ctx.attach_run(run_id)
    out_dir = Path(folder)
    model_config = ModelConfig(params.arch.lower(), params.encoder, len(config.groups), params.encoder_weights, params.decoder_channels or None)
    train_config = TrainConfig(
        epochs=params.epochs, batch_size=params.batch_size, lr=params.lr, input_size=params.input_size,
        eval_size=params.eval_size, max_side=params.max_side, crop_min=params.crop_min, loss=params.loss,
        seed=params.seed, num_workers=params.num_workers, steps_per_epoch=params.steps_per_epoch or None,
    )
    ctx.log.info("training %s on %d images, validating on %d; class weights %s", name, len(items["train"]), len(items["val"]), weights)
    try:
        result = train(
            model_config, items["train"], items["val"], lut, config.group_names, ignore, weights, out_dir, train_config,
            progress=ctx.progress, should_stop=ctx.should_stop, device=params.device or None, dist=distributed.from_env(),
        )
    except BaseException:
        if ctx.main:
            set_run_status(ctx.db, run_id, "failed")
        raise
    if result.stopped:
        if ctx.main:
            set_run_status(ctx.db, run_id, "failed", result.metrics or None)
        raise JobStopped()
    if ctx.main:
        set_run_status(ctx.db, run_id, "complete", {**result.metrics, "processes": ctx.world,
                       "history": [{k: h[k] for k in ("epoch", "train_loss", "miou", "pixel_accuracy")} for h in result.history]})
    m = result.metrics
    resumed = f" (resumed at step {result.resumed_step})" if result.resumed_step else ""
    message = f"{name}: {result.epochs_done} epoch{'s' if result.epochs_done != 1 else ''}{resumed}, mIoU {m['miou']:.3f}, pixel accuracy {m['pixel_accuracy']:.3f}; checkpoint in {out_dir}"
    return JobResult(message, run_id=run_id, data={"miou": m["miou"], "pixel_accuracy": m["pixel_accuracy"], "history": result.history})


@dataclass(frozen=True)
class SegmentParams:
    dataset: str
    """Captioning dataset whose images to segment."""
    segmenter: str
    """Name of a complete train-segmenter run."""
    name: str | None = None
    """Run name (default <segmenter>.<dataset>); re-running it with the same segmenter skips images already done."""
    split: Literal["all", "train", "val", "test"] = "all"
    """Which images."""
    batch_size: int = 16
    """Images per forward pass."""
    input_size: int = 0
    """Side the images are resized to for the network (0: the segmenter's training input size)."""
    num_workers: int = 2
    """DataLoader worker processes decoding images."""
    force: bool = False
    """Segment again images that already have a mask in this run."""
    device: str = ""
    """cpu, cuda, ... (default: cuda when available)."""

    def __post_init__(self) -> None:
        check_run_name(self.name)
        if self.batch_size < 1:
            raise ValueError("batch_size: must be at least 1")
        if self.input_size < 0 or self.input_size % 32:
            raise ValueError(f"input_size={self.input_size}: must be 0 or a multiple of 32")


def _mask_names(images: list) -> dict[int, str]:  # type: ignore[type-arg]
    """File name of each image's mask: its own stem, or id-stem where two images share a stem."""
    stems = [Path(im.filename).stem for im in images]
    seen: dict[str, int] = {}
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
    return {im.id: (f"{s}.png" if seen[s] == 1 else f"{im.id}-{s}.png") for im, s in zip(images, stems, strict=True)}


def segment(params: SegmentParams, ctx: JobContext) -> JobResult:
    import cv2
    from PIL import Image

    from engine.segmentation.predict import predict_masks
    from engine.segmentation.train import load_checkpoint
    from engine.training import device_for

    ds = dataset_of_kind(ctx, params.dataset, "captioning", "ingest one with `workbench ingest captions PATH`")
    seg_run = finished_run(ctx, "segmenter", params.segmenter, ("segmenter",), "train-segmenter", SegmentationError,
                           unfinished="finish (resume) its training first")
    device = device_for(params.device or None)
    model, model_params = load_checkpoint(Path(seg_run.artifact_dir or ctx.workspace.model_dir(seg_run.name)), device)
    ignore = model_params.get("ignore", [])
    input_size = params.input_size or model_params["train"]["input_size"]

    family = params.name or f"{seg_run.name}.{ds.name}"
    taken_by_other_kind(ctx, family, "segmentation")
    members = family_runs(ctx.db, family)
    run = members[-1] if members else None
    if run is not None and (run.parent_run_id != seg_run.id or run.dataset_id != ds.id):
        run = None  # another segmenter or dataset under this name: a new version, the old masks stay
    if run is None:
        run = create_version(ctx.db, kind="segmentation", family=family, params={**asdict(params), "name": family, "input_size": input_size},
                             parent_run_id=seg_run.id, dataset_id=ds.id, folder=lambda n: str(ctx.workspace.masks_dir(n)))
    ctx.attach_run(run.id)
    name, out_dir = run.name, Path(run.artifact_dir or ctx.workspace.masks_dir(run.name))
    split = None if params.split == "all" else params.split
    images = [im for im in list_images(ctx.db, ds.id, split=split, status="ok")]
    if not images:
        raise DatasetError(f"dataset {ds.name!r} has no readable images{'' if split is None else f' in split {split}'} to segment")
    names = _mask_names(list_images(ctx.db, ds.id))
    done = set() if params.force else masked_image_ids(ctx.db, run.id)
    todo = [im for im in images if im.id not in done]
    if not todo:
        set_run_status(ctx.db, run.id, "complete")
        return JobResult(f"{name}: all {len(images)} images already have masks (force=true redoes them)", run_id=run.id, data={"segmented": 0, "skipped": len(images)})
    set_run_status(ctx.db, run.id, "running")
    out_dir.mkdir(parents=True, exist_ok=True)
    n_classes = len(model_params["class_names"])
    root = Path(ds.root)
    written = 0

    def on_batch(indices: list[int], masks: list[np.ndarray]) -> None:
        nonlocal written
        rows = []
        for i, mask in zip(indices, masks, strict=True):
            im = todo[i]
            path = out_dir / names[im.id]
            tmp = path.with_suffix(".tmp.png")
            Image.fromarray(mask, mode="L").save(tmp, compress_level=1)
            os.replace(tmp, path)
            hist = cv2.calcHist([mask], [0], None, [n_classes], [0, n_classes]).ravel()
            rows.append(MaskRow(im.id, str(path.relative_to(ctx.workspace.root)), [int(v) for v in hist]))
        add_masks(ctx.db, run.id, rows)
        written += len(rows)
        ctx.progress(written, len(todo), "segmenting")

    try:
        finished = predict_masks(
            model, [str(root / im.path) for im in todo], input_size=input_size, ignore=ignore, on_batch=on_batch,
            batch_size=params.batch_size, num_workers=params.num_workers, device=device, should_stop=ctx.should_stop,
        )
    except BaseException:
        set_run_status(ctx.db, run.id, "failed")
        raise
    if not finished:
        set_run_status(ctx.db, run.id, "failed")
        raise JobStopped()
    total = len(masked_image_ids(ctx.db, run.id))
    set_run_status(ctx.db, run.id, "complete", {"images": total, "input_size": input_size, "segmenter": seg_run.name})
    skipped = len(images) - len(todo)
    return JobResult(
        f"{name}: segmented {written} images ({skipped} already done) into {out_dir}", run_id=run.id,
        data={"segmented": written, "skipped": skipped},
    )


TRAIN_SEGMENTER = JobKind(
    "train-segmenter", TrainSegmenterParams, train_segmenter,
    "Train a segmenter (smp U-Net/MobileNet by default) on a drone-style dataset", uses_gpu=True,
)
SEGMENT = JobKind(
    "segment", SegmentParams, segment,
    "Segment every image of a captioning dataset with a trained segmenter", uses_gpu=True,
)
