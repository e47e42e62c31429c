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
from engine.jobs.lookup import check_run_name, dataset_of_kind, finished_run
from engine.segmentation.errors import SegmentationError
from engine.store.catalog import list_images
from engine.store.runs import CompositionRow, add_compositions, create_run, get_run, masks_of, set_run_status

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
    """Run name (default compose.<segmentation or dataset-gt>); re-running a name replaces its rows."""
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


def compose_job(params: ComposeParams, ctx: JobContext) -> JobResult:
    ds = dataset_of_kind(ctx, params.dataset, "captioning", "ingest one with `workbench ingest captions PATH`")
    config = ctx.config()
    names = config.group_names
    ignore = [i for i, g in enumerate(config.groups) if g.ignore]
    split = None if params.split == "all" else params.split
    images = {im.id: im for im in list_images(ctx.db, ds.id, split=split)}

    if params.segmentation is not None:
        source = finished_run(ctx, "segmentation", params.segmentation, ("segmentation",), "segment", SegmentationError, dataset=ds)
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

    name = params.name or default_name
    run = get_run(ctx.db, name)
    stored = {**asdict(params), "name": name, "prompt_version": PROMPT_VERSION}
    if run is not None:
        if run.kind != "composition" or run.dataset_id != ds.id:
            raise SegmentationError(f"name={name!r} is taken by another run; choose another name")
        set_run_status(ctx.db, run.id, "running")
    else:
        run = create_run(ctx.db, kind="composition", name=name, params=stored, parent_run_id=parent, dataset_id=ds.id)
    try:
        batch: list[CompositionRow] = []
        areas = np.zeros(len(names))
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
                add_compositions(ctx.db, run.id, batch)
                batch = []
                ctx.progress(k, len(work), "composing")
                ctx.check_stop()
    except BaseException:
        set_run_status(ctx.db, run.id, "failed")
        raise
    mean_area = {names[i]: round(float(a / len(work)), 2) for i, a in enumerate(areas) if a}
    set_run_status(ctx.db, run.id, "complete", {"images": len(work), "mean_area": mean_area, "prompt_version": PROMPT_VERSION})
    return JobResult(f"{name}: {len(work)} compositions (prompt {PROMPT_VERSION})", run_id=run.id, data={"images": len(work)})


COMPOSE = JobKind("compose", ComposeParams, compose_job, "Describe each image's composition from its mask, with prompt text")
