"""Job kinds ``ingest-captions`` and ``ingest-drone``: read a dataset from disk into the store.

An ingest checks everything first (annotation file, names, images, masks) and then writes the
dataset in one transaction; a failed or interrupted ingest leaves the database as it was.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from engine.datasets import drone
from engine.datasets.captions import read_caption_file
from engine.datasets.errors import DatasetError
from engine.datasets.images import FolderProbe, ProbeBatch, outside_links, probe_images, relative_inside, summarize_problems
from engine.datasets.scenes import read_scene_lists, scene_from_filename
from engine.jobs.base import JobContext, JobKind, JobResult
from engine.store.catalog import DatasetWriter, dataset_stats, get_dataset, held_phrase, insert_dataset
from engine.store.models import Dataset, NewImage

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
IMAGE_FOLDER_NAMES = ("images", "RSICD_images", "imgs", "Images", "image")


def _check_name(name: str | None) -> None:
    if name is not None and not _NAME.match(name):
        raise ValueError(f"name={name!r}: use letters, digits, '.', '_' or '-' (at most 64), starting with a letter or digit")


@dataclass(frozen=True)
class IngestCaptionsParams:
    path: str
    """Annotation file (Karpathy or COCO JSON), or the folder that holds it."""
    name: str | None = None
    """Dataset name; default: the file's own (Karpathy "dataset" key) or its folder's name."""
    images: str | None = None
    """Folder of the images; default: an images/ or *_images/ folder beside the annotation file."""
    scenes: str | None = None
    """Folder of per-scene lists (Scene.txt, one filename a line); default: the filename prefix."""
    split: str | None = None
    """Split of every image, for COCO files (train, val or test)."""
    split_from: str | None = None
    """Karpathy file whose splits a COCO file's images take."""
    allow_missing: bool = False
    """Store missing or corrupt images with that status instead of failing."""
    replace: bool = False
    """Replace a dataset of the same name (one whose captions were rated is kept, renamed NAME~ID)."""
    verify: bool = False
    """Decode every image fully (slower; catches damage inside the compressed data)."""

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("path: give the annotation file or its folder")
        _check_name(self.name)
        if self.split is not None and self.split not in ("train", "val", "test"):
            raise ValueError(f"split={self.split!r}: must be train, val or test")


@dataclass(frozen=True)
class IngestDroneParams:
    path: str
    """Folder of the Semantic Drone Dataset (original_images/, label_images_semantic/, class_dict_seg.csv)."""
    name: str = "drone"
    """Dataset name."""
    replace: bool = False
    """Replace a dataset of the same name."""

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("path: give the dataset folder")
        _check_name(self.name)


def find_annotation_file(path: Path) -> Path:
    """The annotation file itself, or the one JSON file (preferring ``dataset*.json``) in a folder."""
    if path.is_file():
        return path
    if not path.exists():
        raise DatasetError(f"{path}: not found")
    candidates = sorted(path.glob("*.json"))
    preferred = [p for p in candidates if p.name.startswith("dataset")]
    if len(preferred) == 1:
        return preferred[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetError(f"{path}: no annotation file (*.json) in this folder; give the file's path")
    names = ", ".join(p.name for p in candidates[:5])
    raise DatasetError(f"{path}: several JSON files ({names}); give the annotation file's path")


def find_images_dir(annotation: Path, filenames: list[str]) -> Path:
    """The folder beside the annotation file where the listed images are (most hits wins)."""
    base = annotation.parent
    candidates = [base / n for n in IMAGE_FOLDER_NAMES if (base / n).is_dir()]
    candidates += [p for p in sorted(base.glob("*_images")) if p.is_dir() and p not in candidates]
    candidates.append(base)
    sample = filenames[:: max(1, len(filenames) // 50)][:50]

    def hits(folder: Path) -> int:
        return sum((folder / n).is_file() for n in sample if not Path(n).is_absolute())

    return max(candidates, key=hits)


def _dataset_exists_message(existing: Dataset) -> str:
    return (
        f"dataset {existing.name!r} already exists (from {existing.annotations or existing.root}); "
        "pass --replace to replace it, or --name to ingest under another name"
    )


def _likely_images_dir(annotation: Path) -> Path | None:
    base = annotation.parent
    for folder in [*(base / n for n in IMAGE_FOLDER_NAMES), *sorted(base.glob("*_images"))]:
        if folder.is_dir():
            return folder.resolve()
    return None


BYTES_PER_ENTRY = 500
"""A Karpathy/COCO entry with five references takes at least this many bytes of JSON."""


def ingest_captions(params: IngestCaptionsParams, ctx: JobContext) -> JobResult:
    annotation = find_annotation_file(Path(params.path).expanduser())
    explicit = Path(params.images).expanduser().resolve() if params.images else None
    if explicit is not None and not explicit.is_dir():
        raise DatasetError(f"--images {params.images}: folder not found")
    # Reading the images is most of an ingest's work, so it starts on the likely images folder at
    # once, in worker processes, while this process parses the annotation file and stores the
    # references. A folder far larger than the file could list is not read speculatively.
    guess = explicit or _likely_images_dir(annotation)
    early = FolderProbe.start(guess, verify=params.verify, at_most=annotation.stat().st_size // BYTES_PER_ENTRY + 1000) if guess else None
    batch: ProbeBatch | None = None
    try:
        split_from = Path(params.split_from).expanduser() if params.split_from else None
        parsed = read_caption_file(annotation, split=params.split, split_from=split_from)
        filenames = [e.filename for e in parsed.entries]
        name = params.name or parsed.name or annotation.parent.name or annotation.stem
        if not _NAME.match(name):
            name = re.sub(r"[^A-Za-z0-9._-]", "-", name).strip("-._")[:64] or "captions"
        existing = get_dataset(ctx.db, name)
        if existing is not None and not params.replace:
            raise DatasetError(_dataset_exists_message(existing))
        images_dir = explicit or find_images_dir(annotation, filenames).resolve()
        relative = [relative_inside(images_dir, n) for n in filenames]
        outside = outside_links(images_dir, relative)
        if outside:
            raise DatasetError(f"{len(outside)} images in {images_dir} are symlinks to files outside it (first: {outside[0][0]} -> "
                               f"{outside[0][1]}); refusing to read them: point --images at the folder that holds the files")
        scene_lists = read_scene_lists(Path(params.scenes).expanduser()) if params.scenes else {}
        ctx.log.info("ingest %s: %d images listed in %s, images in %s", name, len(relative), annotation, images_dir)

        def report(i: int, n: int) -> None:
            ctx.progress(i, n, "reading images")

        if early is not None and early.folder == images_dir:
            get_probes = lambda: early.result_for(relative, report)  # noqa: E731
        else:
            prefix = os.path.join(images_dir, "")
            batch = ProbeBatch([prefix + r for r in relative], verify=params.verify)
            get_probes = lambda: batch.result(report)  # type: ignore[union-attr]  # noqa: E731
        ctx.progress(0, len(relative), "reading images")
        # Probe first, then write everything in one short transaction: the write lock is never
        # held while files are read (other writers, a runner's heartbeats, would wait on it).
        probes = get_probes()
        ctx.check_stop()
        bad = [(n, p) for n, p in zip(filenames, probes, strict=True) if p.status != "ok"]
        if bad and not params.allow_missing:
            names, bad_probes = zip(*bad, strict=True)
            raise DatasetError(
                f"{len(bad)} of {len(relative)} images in {images_dir} cannot be used: "
                f"{summarize_problems(names, bad_probes)}. Point --images at the folder that holds them, "
                "or pass --allow-missing to store the captions with those images marked"
            )
        by_base = {os.path.basename(k): v for k, v in scene_lists.items()}

        def scene_of(filename: str) -> str | None:  # a list may name files with or without their folder
            return scene_lists.get(filename) or by_base.get(os.path.basename(filename)) or scene_from_filename(filename)

        ctx.progress(len(relative), len(relative), "writing to the database")
        with DatasetWriter(
            ctx.db, name=name, kind="captioning", source_format=parsed.format, root=str(images_dir),
            annotations=str(annotation.resolve()),
            meta={"scenes": str(Path(params.scenes).resolve()) if params.scenes else None, "allow_missing": params.allow_missing},
            replace=params.replace,
        ) as writer:
            writer.add_images([
                NewImage(
                    filename=entry.filename,
                    path=rel,
                    status=probe.status,
                    split=entry.split,
                    scene=scene_of(entry.filename),
                    width=probe.width,
                    height=probe.height,
                    file_size=probe.file_size,
                    sha256=probe.sha256,
                    status_detail=probe.detail,
                    source_id=entry.source_id,
                    # zip() yields (text, tokens, is_duplicate) in NewCaption's field order, at C speed.
                    captions=list(zip(entry.captions, entry.tokens, entry.duplicates, strict=True)),  # type: ignore[arg-type]
                )
                for entry, rel, probe in zip(parsed.entries, relative, probes, strict=True)
            ])
    finally:
        for pending in (early, batch):
            if pending is not None:
                pending.close()
    status = Counter(p.status for p in probes)
    splits = Counter(e.split or "none" for e in parsed.entries)
    captions = sum(len(e.captions) for e in parsed.entries)
    duplicates = [sum(e.duplicates) for e in parsed.entries]
    message = (
        f"{name}: {len(relative)} images ({', '.join(f'{s} {n}' for s, n in sorted(splits.items()))}), {captions} captions, "
        f"{sum(duplicates)} repeated references in {sum(1 for d in duplicates if d)} images, "
        f"{status['missing']} missing, {status['corrupt']} corrupt"
    )
    empty = sum(e.empty for e in parsed.entries)
    if empty:
        message += f"; {empty} empty references left out"
    unreferenced = [e.filename for e in parsed.entries if not e.captions]
    if unreferenced:
        message += f"; {len(unreferenced)} images have no references (first: {', '.join(unreferenced[:3])})"
    no_scene = [e.filename for e in parsed.entries if scene_of(e.filename) is None]
    if no_scene:
        message += (f"; {len(no_scene)} images got no scene (first: {', '.join(no_scene[:3])}"
                    + (f"; not in the lists of {params.scenes})" if params.scenes else "; give --scenes DIR)"))
    if writer.superseded is not None:
        kept, rated = writer.superseded
        message += f"; the dataset it replaced holds {held_phrase(*rated)} and is kept as {kept}, with its runs"
    _remove_folders(ctx, writer.emptied)
    ctx.log.info(message)
    return JobResult(
        message,
        data={"dataset": name, "images": len(relative), "captions": captions, **{k: status[k] for k in ("ok", "missing", "corrupt")}},
    )


def _remove_folders(ctx: JobContext, runs: list[tuple[str, str | None]]) -> None:
    """Folders of runs deleted with a replaced dataset (masks, evaluation statistics)."""
    import shutil

    for name, folder in runs:
        if folder and Path(folder).is_dir():
            shutil.rmtree(folder, ignore_errors=True)
    if runs:
        ctx.log.info("removed %d runs of the replaced dataset: %s", len(runs), ", ".join(n for n, _ in runs))


def ingest_drone(params: IngestDroneParams, ctx: JobContext) -> JobResult:
    layout = drone.find_layout(Path(params.path).expanduser())
    existing = get_dataset(ctx.db, params.name)
    if existing is not None and not params.replace:
        raise DatasetError(_dataset_exists_message(existing))
    classes = drone.read_class_table(layout.class_table)
    pairs = drone.pair_files(layout)
    total = len(pairs)
    ctx.progress(0, total, "reading images")
    probes = probe_images([p.image for p in pairs], progress=lambda i, n: ctx.progress(i, n, "reading images"))
    bad = [(p.image.name, pr) for p, pr in zip(pairs, probes, strict=True) if pr.status != "ok"]
    if bad:
        names, bad_probes = zip(*bad, strict=True)
        raise DatasetError(f"{layout.images_dir}: {summarize_problems(names, bad_probes)}; fix or remove those files")
    ctx.check_stop()
    hist_total = [0] * len(classes)
    labels = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for k, label in enumerate(pool.map(lambda p: drone.check_label(p.label, len(classes)), pairs), 1):
            labels.append(label)
            ctx.progress(k, total, "checking masks")
            ctx.check_stop()
    rows = []
    for pair, probe, label in zip(pairs, probes, labels, strict=True):
        if (probe.width, probe.height) != (label.width, label.height):
            raise DatasetError(
                f"{pair.image}: is {probe.width}x{probe.height} but its mask {pair.label.name} is "
                f"{label.width}x{label.height}; image and mask must be the same size"
            )
        hist_total = [a + b for a, b in zip(hist_total, label.class_hist, strict=True)]
        rows.append(
            NewImage(
                filename=pair.image.name,
                path=str(pair.image.relative_to(layout.root)),
                label_path=str(pair.label.relative_to(layout.root)),
                status="ok",
                split=drone.split_of(pair.stem),
                width=probe.width,
                height=probe.height,
                file_size=probe.file_size,
                sha256=probe.sha256,
            )
        )
    dataset = insert_dataset(
        ctx.db,
        name=params.name,
        kind="segmentation",
        source_format="drone",
        root=str(layout.root.resolve()),
        annotations=str(layout.class_table.resolve()),
        meta={
            "classes": [{"index": c.index, "name": c.name, "rgb": list(c.rgb)} for c in classes],
            "class_pixels": hist_total,
        },
        images=rows,
        replace=params.replace,
    )
    stats = dataset_stats(ctx.db, dataset)
    splits = ", ".join(f"{s} {n}" for s, n in stats.by_split.items())
    message = f"{dataset.name}: {stats.images} images with masks ({splits}), {len(classes)} classes"
    ctx.log.info(message)
    return JobResult(message, data={"dataset": dataset.name, "images": stats.images, "classes": len(classes)})


INGEST_CAPTIONS = JobKind(
    "ingest-captions", IngestCaptionsParams, ingest_captions,
    "Read a captioning dataset (Karpathy or COCO JSON + images) into the store",
)
INGEST_DRONE = JobKind(
    "ingest-drone", IngestDroneParams, ingest_drone,
    "Read a Semantic Drone Dataset folder (images, class-index masks, class table) into the store",
)
