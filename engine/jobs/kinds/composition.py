"""Job kind ``compose``: turn masks into compositions and prompt text, one row per image.

The masks come from a ``segment`` run (class-group indices) or from a folder of ground-truth
masks named like the images (e.g. the synthetic world's ``masks/``, holding drone class indices
that the config's groups map to class groups).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from engine.composition import PROMPT_VERSION, compose, render_prompt
from engine.datasets.errors import DatasetError
from engine.datasets.synthetic import CLASS_NAMES as DRONE_CLASSES
from engine.jobs.base import JobContext, JobKind, JobResult
from engine.jobs.lookup import check_run_name, dataset_of_kind, finished_run, staged_run
from engine.segmentation.errors import SegmentationError
from engine.store.catalog import list_images
from engine.store.runs import CompositionRow, Run, add_compositions, get_run_by_id, masks_of

BATCH = 500
"""Compositions written per transaction."""


@dataclass(frozen=True)
class ComposeParams:
    dataset: str
    """Captioning dataset whose images to describe."""
    segmentation: str | None = None
    """Name of a segment run whose masks to use."""
    masks: str | None = None
    """Or: a folder of ground-truth masks <image stem>.png (e.g. WORKSPACE/synthetic/captions/masks)."""
    mask_classes: Literal["drone", "groups"] = "drone"
    """What a masks folder holds: drone class indices (mapped by config.toml's groups) or group indices."""
    name: str | None = None
    """Run name (default compose.<segmentation or dataset-gt>); re-running a name makes a new version."""
    replace: bool = False
    """Replace the newest run of that name once this one has succeeded (one that other runs use is kept, superseded)."""
    split: Literal["all", "train", "val", "test"] = "all"
    """Which images."""
    dead_zone: float = 0.1
    """Offsets below this (normalised) count as level with the dominant class."""
    speck: float = 0.001
    """Regions below this share of the image are not counted."""
    min_area: float = 0.05
    """Classes below this percentage of the image are left out."""

    def __post_init__(self) -> None:
        check_run_name(self.name)
        if (self.segmentation is None) == (self.masks is None):
            raise ValueError("give exactly one of segmentation=RUN or masks=FOLDER")
        if not 0 <= self.dead_zone < 0.5:
            raise ValueError("dead_zone: must be between 0 and 0.5")
        if not 0 <= self.speck < 0.5 or not 0 <= self.min_area < 100:
            raise ValueError("speck must be in 0..0.5 and min_area in 0..100")


def _read_mask(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P"):
                raise DatasetError(f"{path}: mode {img.mode} is not a class-index mask (one channel expected)")
            return np.asarray(img)
    except FileNotFoundError:
        raise DatasetError(f"{path}: mask not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{path}: cannot be read as a mask ({exc})") from exc


def segmenter_classes(ctx: JobContext, segmentation: Run) -> tuple[list[str], list[int]]:
    """The class names (and ignored classes) of the segmenter that made a segment run's masks:
    the masks hold its class indices, whatever config.toml's groups say today.

    :raises SegmentationError: if the segmenter's names are unknown and config.toml's groups do not
        match its masks
    """
    from engine.segmentation.train import load_params

    config = ctx.config()
    segmenter = get_run_by_id(ctx.db, segmentation.parent_run_id) if segmentation.parent_run_id else None
    stored = load_params(Path(segmenter.artifact_dir)) if segmenter is not None and segmenter.artifact_dir else None
    names = (stored or {}).get("class_names") or (segmenter.metrics.get("class_names") if segmenter else None)
    if names:
        ignore = (stored or {}).get("ignore")
        if ignore is None:
            ignore = [i for i, n in enumerate(names) if n in {g.name for g in config.groups if g.ignore}]
        if list(names) != config.group_names:
            ctx.log.info("segmenter %s predicts %s; config.toml's groups (%s) are not used for its masks",
                         segmenter.name if segmenter else "?", names, config.group_names)
        return list(names), list(ignore)
    hist = masks_of(ctx.db, segmentation.id)[:1]
    if hist and len(hist[0].class_hist) != len(config.groups):
        raise SegmentationError(
            f"segment run {segmentation.name!r}: its segmenter's class names are unknown and its masks have "
            f"{len(hist[0].class_hist)} classes, but config.toml has {len(config.groups)} groups; restore the groups it was trained with")
    return config.group_names, [i for i, g in enumerate(config.groups) if g.ignore]


def compose_job(params: ComposeParams, ctx: JobContext) -> JobResult:
    ds = dataset_of_kind(ctx, params.dataset, "captioning", "ingest one with `workbench ingest captions PATH`")
    config = ctx.config()
    names = config.group_names
    ignore = [i for i, g in enumerate(config.groups) if g.ignore]
    split = None if params.split == "all" else params.split
    images = {im.id: im for im in list_images(ctx.db, ds.id, split=split)}

    if params.segmentation is not None:
        source = finished_run(ctx, "segmentation", params.segmentation, ("segmentation",), "segment", SegmentationError, dataset=ds)
        names, ignore = segmenter_classes(ctx, source)
        work = [(images[m.image_id], ctx.workspace.root / m.path) for m in masks_of(ctx.db, source.id) if m.image_id in images]
        if not work:
            raise SegmentationError(f"segment run {source.name!r} has no masks for the {params.split} images of {ds.name!r}; run `segment` on them first")
        lut = None
        default_name = f"compose.{source.name}"
        parent = source.id
    else:
        folder = Path(params.masks).expanduser()  # type: ignore[arg-type]
        if not folder.is_dir():
            raise DatasetError(f"masks={params.masks}: folder not found")
        work = [(im, folder / f"{Path(im.filename).stem}.png") for im in images.values()]
        missing = [str(p.name) for _, p in work if not p.is_file()]
        if missing:
            raise DatasetError(f"{folder}: {len(missing)} of {len(work)} images have no mask (first: {', '.join(missing[:3])}); masks must be named <image stem>.png")
        lut = None
        if params.mask_classes == "drone":
            lut = np.full(256, ignore[0] if ignore else 0, np.uint8)
            lut[: len(DRONE_CLASSES)] = config.class_to_group(list(DRONE_CLASSES))
        default_name = f"compose.{ds.name}-gt"
        parent = None
    if not work:
        raise DatasetError(f"dataset {ds.name!r} has no images in split {params.split}")

    family = params.name or default_name
    stored = {**asdict(params), "name": family, "prompt_version": PROMPT_VERSION, "classes": names}
    areas = np.zeros(len(names))
    with staged_run(ctx, kind="composition", family=family, replace=params.replace, params=stored, parent_run_id=parent,
                    dataset_id=ds.id) as stage:
        batch: list[CompositionRow] = []
        for k, (im, path) in enumerate(work, 1):
            mask = _read_mask(path)
            if lut is not None:
                mask = lut[mask]
            elif mask.size and int(mask.max()) >= len(names):
                raise DatasetError(f"{path}: value {int(mask.max())} is not a class group (0..{len(names) - 1})")
            comp = compose(mask, names, ignore=ignore, dead_zone=params.dead_zone, speck=params.speck, min_area=params.min_area)
            for part in comp.parts:
                areas[part.index] += part.area
            batch.append(CompositionRow(im.id, {**comp.to_dict(), "prompt_version": PROMPT_VERSION}, render_prompt(comp)))
            if len(batch) >= BATCH or k == len(work):
                add_compositions(ctx.db, stage.run.id, batch)
                batch = []
                ctx.progress(k, len(work), "composing")
                ctx.check_stop()
        mean_area = {names[i]: round(float(a / len(work)), 2) for i, a in enumerate(areas) if a}
        stage.publish({"images": len(work), "mean_area": mean_area, "prompt_version": PROMPT_VERSION})
    return JobResult(f"{stage.message()}: {len(work)} compositions (prompt {PROMPT_VERSION})", run_id=stage.run.id,
                     data={"images": len(work), "name": stage.published.run.name})  # type: ignore[union-attr]


COMPOSE = JobKind("compose", ComposeParams, compose_job, "Describe each image's composition from its mask, with prompt text")
