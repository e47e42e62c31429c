"""Job kinds ``import-generations`` and ``export``: captions in and out of the workbench.

Ids mean one thing everywhere. ``image_id`` is the *source's* id of an image (the id its
annotation file gave it: a COCO ``id``, or a Karpathy ``imgid``), written with its type
(integers stay integers, so pycocotools accepts a COCO results file), or the filename with
``id=filename``; ``store_image_id`` is the workbench's own row id and ``generation_id`` names a
caption for ``workbench rate``. A Karpathy ``imgid`` is the image's position in that file, so it
matches only COCO files made from the same Karpathy file; filenames match anywhere.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from engine.datasets.errors import DatasetError
from engine.evaluation.metrics import ALL_METRICS, EvaluationError
from engine.jobs.base import JobContext, JobKind, JobResult
from engine.jobs.review import pairwise_summaries, review_summary
from engine.jobs.kinds.evaluation import GENERATION_KINDS
from engine.jobs.lookup import check_run_name, dataset_of_kind, staged_run
from engine.store.catalog import get_dataset_by_id, list_images
from engine.store.models import Dataset, Image
from engine.store.reference_flags import flags_by_reference
from engine.store.results import add_generations, export_rows, latest_evaluation
from engine.store.runs import get_run, get_run_by_id

def typed_id(source_id: str | None) -> int | str | None:
    """A source id as its file wrote it: the store keeps ids as text, COCO and Karpathy ids are
    integers (``"9828"`` -> ``9828``); anything else stays text."""
    if source_id is not None and source_id.lstrip("-").isdigit() and str(int(source_id)) == source_id:
        return int(source_id)
    return source_id


# ------------------------------------------------------------------------------------------------
# import-generations
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImportGenerationsParams:
    results: str
    """COCO results file: [{"image_id": ..., "caption": ...}]; image_id is a filename or the source's id."""
    dataset: str
    """Captioning dataset the captions describe."""
    match: Literal["auto", "filename", "id"] = "auto"
    """How image_id finds an image: filename, id (the source file's image id), or auto: filenames
    when they are filenames, ids when the dataset came from a COCO file (a Karpathy imgid is a
    list position, so numbers need match=id there)."""
    name: str | None = None
    """Run name (default: the file's stem); an existing name gets a new version."""
    replace: bool = False
    """Replace the newest run of that name once the import has succeeded (a run holding ratings is kept, superseded)."""

    def __post_init__(self) -> None:
        check_run_name(self.name)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value.strip().isdigit())


def match_images(path: Path, ds: Dataset, images: list[Image], ids: list[Any], match: str) -> tuple[list[int], str]:
    """The store id of each result's image and how they were matched (for the summary).

    :raises DatasetError: naming how many ids found no image, or why numbers cannot be trusted
    """
    by_name = {im.filename: im.id for im in images}
    by_id = {str(im.source_id): im.id for im in images if im.source_id is not None}
    if match == "auto":
        if all(isinstance(i, str) and i in by_name for i in ids):
            match = "filename"
        elif all(_is_number(i) for i in ids):
            if ds.source_format != "coco":
                raise DatasetError(
                    f"{path}: image ids are numbers, and dataset {ds.name!r} came from a {ds.source_format} file, whose image ids "
                    "(Karpathy imgid) are list positions that another file numbers differently; give match=id if these ids come "
                    "from that same file, or write filenames (`workbench export RUN --id filename`)")
            match = "id"
        else:
            match = "filename"
    table: dict[Any, int] = by_name if match == "filename" else by_id
    found = [table.get(str(i).strip() if match == "id" else i) for i in ids]
    unknown = [str(i) for i, f in zip(ids, found, strict=True) if f is None]
    if unknown:
        what = "filenames" if match == "filename" else "image ids"
        raise DatasetError(f"{path}: {len(unknown)} of {len(ids)} {what} are not in dataset {ds.name!r} (first: {', '.join(unknown[:3])})")
    how = "by filename" if match == "filename" else f"by the image ids of {ds.name}'s {ds.source_format} file"
    return found, how  # type: ignore[return-value]


def import_generations(params: ImportGenerationsParams, ctx: JobContext) -> JobResult:
    from engine.datasets.captions import load_json

    ds = dataset_of_kind(ctx, params.dataset, "captioning", "ingest one with `workbench ingest captions PATH`")
    path = Path(params.results).expanduser()
    data = load_json(path)
    if not isinstance(data, list) or not all(isinstance(r, dict) and "image_id" in r and isinstance(r.get("caption"), str) for r in data):
        raise DatasetError(f"{path}: not a COCO results file; expected [{{\"image_id\": ..., \"caption\": \"...\"}}, ...]")
    if not data:
        raise DatasetError(f"{path}: holds no captions")
    found, how = match_images(path, ds, list_images(ctx.db, ds.id), [r["image_id"] for r in data], params.match)
    rows = [(image_id, r["caption"].strip()) for image_id, r in zip(found, data, strict=True)]
    if len({i for i, _ in rows}) != len(rows):
        raise DatasetError(f"{path}: some images have more than one caption; give one per image")
    family = params.name or path.stem
    try:
        check_run_name(family)
    except ValueError:
        raise DatasetError(f"{path}: {family!r} (the file's name) cannot name a run; give name=NAME") from None
    with staged_run(ctx, kind="generation", family=family, replace=params.replace,
                    params={**asdict(params), "name": family, "imported": True}, dataset_id=ds.id) as stage:
        add_generations(ctx.db, stage.run.id, rows)
        stage.publish({"images": len(rows), "matched": how})
    return JobResult(f"{stage.message()}: imported {len(rows)} captions for {ds.name}, matched {how}", run_id=stage.run.id,
                     data={"images": len(rows), "name": stage.published.run.name, "matched": how})  # type: ignore[union-attr]


IMPORT_GENERATIONS = JobKind("import-generations", ImportGenerationsParams, import_generations, "Import captions made elsewhere (COCO results JSON) as a generation run")


# ------------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportParams:
    run: str
    """Generation or baseline run (or an evaluation run: its generation run is exported)."""
    format: Literal["csv", "jsonl", "coco"] = "jsonl"
    """csv / jsonl: a row per image; coco: the results file. Each with a metrics file beside it (scores, review, comparisons)."""
    output: str = ""
    """File to write (default: WORKSPACE/exports/<run>.<format>)."""
    split: Literal["all", "train", "val", "test"] = "all"
    """Images to export."""
    id: Literal["source", "filename"] = "source"
    """What image_id holds: the source file's image id (its own type; the filename where it gave none) or the filename."""
    force: bool = False
    """Overwrite an existing file."""


def shareable_mode() -> int:
    """The mode an ordinary new file gets here (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: Path, text: str, force: bool) -> None:
    """Write ``text`` to ``path`` whole or not at all.

    :raises DatasetError: one line for an existing file (without ``force``), a folder in the
        way, a missing or unwritable folder
    """
    if path.is_dir():
        raise DatasetError(f"{path}: is a folder; give a file name (-o {path / path.name}.json, say)")
    if path.exists() and not force:
        raise DatasetError(f"{path}: exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise DatasetError(f"{path.parent}: folder not found; create it or choose another output")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise DatasetError(f"{path.parent}: cannot write here ({exc.strerror}); choose another output") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, shareable_mode())  # mkstemp makes it 0600: an export is for others to read
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DatasetError(f"{path}: cannot write it ({exc.strerror})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _image_id(row: dict[str, Any], by: str) -> int | str:
    return row["filename"] if by == "filename" or row["source_id"] is None else typed_id(row["source_id"])  # type: ignore[return-value]


def export(params: ExportParams, ctx: JobContext) -> JobResult:
    run = get_run(ctx.db, params.run)
    if run is not None and run.kind == "evaluation" and run.parent_run_id is not None:
        run = get_run_by_id(ctx.db, run.parent_run_id)
    if run is None or run.kind not in GENERATION_KINDS:
        raise EvaluationError(f"run={params.run!r}: no generation, baseline or evaluation-of-generation run of that name")
    rows = export_rows(ctx.db, run.id, None if params.split == "all" else params.split)
    if not rows:
        raise EvaluationError(f"run {run.name!r} has no generated captions{'' if params.split == 'all' else f' in split {params.split}'} to export")
    rows = [{"image_id": _image_id(r, params.id), "run": run.name, **{k: v for k, v in r.items() if k != "source_id"}} for r in rows]
    dataset = get_dataset_by_id(ctx.db, run.dataset_id) if run.dataset_id else None
    if dataset is not None and params.format != "coco":
        _add_reference_flags(ctx, dataset.name, rows)
    suffix = {"csv": "csv", "jsonl": "jsonl", "coco": "json"}[params.format]
    path = Path(params.output).expanduser() if params.output else ctx.workspace.exports_dir / f"{run.name}.{suffix}"
    evaluation = latest_evaluation(ctx.db, run.id)
    metrics = get_run_by_id(ctx.db, evaluation).metrics if evaluation is not None else {}  # type: ignore[union-attr]
    # coco: beside results.json as results.metrics.json (what evaluators expect); csv and jsonl:
    # beside the file as FILE.metrics.json, so exports of one run in several formats never collide.
    metrics_path = path.with_name((path.stem if params.format == "coco" else path.name) + ".metrics.json")
    if metrics_path.exists() and not params.force:
        raise DatasetError(f"{metrics_path}: exists; pass --force to overwrite it")
    if params.format == "jsonl":
        write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), params.force)
    elif params.format == "csv":
        write_atomic(path, _csv(rows), params.force)
    else:
        write_atomic(path, json.dumps([{"image_id": r["image_id"], "caption": r["caption"]} for r in rows], ensure_ascii=False),
                     params.force)
    corpus = {m: metrics[m] for m in ALL_METRICS if m in metrics}
    write_atomic(metrics_path, json.dumps({
        "run": run.name, "corpus": corpus, "ci95": metrics.get("ci95", {}), "unavailable": metrics.get("unavailable", {}),
        "tokenizer": metrics.get("tokenizer"), "scenes": run.metrics.get("scenes"), "image_id": params.id,
        "review": review_summary(ctx.db, run.name).to_dict(),
        "comparisons": [s.to_dict() for s in pairwise_summaries(ctx.db, run.id)]}, indent=2), True)
    written = [path, metrics_path]
    return JobResult(f"wrote {len(rows)} rows of {run.name}{f' ({dataset.name})' if dataset else ''} to {', '.join(map(str, written))}",
                     run_id=run.id, data={"rows": len(rows), "paths": [str(p) for p in written]})


def _add_reference_flags(ctx: JobContext, dataset: str, rows: list[dict[str, Any]]) -> None:
    """``reference_flags``, beside ``references``: for each reference (same order), every reviewer's
    current flag on it (flag, reviewer, note); an empty list where nobody flags it."""
    flags = flags_by_reference(ctx.db, dataset, [r["filename"] for r in rows])
    for r in rows:
        r["reference_flags"] = [[{"flag": f.flag, "reviewer": f.reviewer, "note": f.note} for f in flags.get((r["filename"], text), [])]
                                for text in r["references"]]


CSV_COLUMNS = ("image_id", "filename", "store_image_id", "generation_id", "run", "split", "scene", "caption")


def _csv(rows: list[dict[str, Any]]) -> str:
    """One row per image; list and dict fields are JSON in their cell, so nothing is lost."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    metric_names = [m for m in ALL_METRICS if any(m in r["scores"] for r in rows)]
    writer.writerow([*CSV_COLUMNS, *metric_names, "references", "ratings", "reference_flags"])
    for r in rows:
        writer.writerow([
            *("" if r[c] is None else r[c] for c in CSV_COLUMNS),
            *[repr(r["scores"][m]) if m in r["scores"] else "" for m in metric_names],
            json.dumps(r["references"], ensure_ascii=False), json.dumps(r["ratings"], ensure_ascii=False),
            json.dumps(r.get("reference_flags", [[] for _ in r["references"]]), ensure_ascii=False),
        ])
    return buf.getvalue()


EXPORT = JobKind("export", ExportParams, export, "Export a run's captions with references, scores and ratings (csv, jsonl, coco)")
