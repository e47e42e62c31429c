"""Looking up what a job works on: datasets and runs by name, with messages that say what exists
and what to do. Shared by every job kind."""

from __future__ import annotations

from engine.datasets.errors import DatasetError
from engine.errors import WorkbenchError
from engine.jobs.base import JobContext
from engine.store.catalog import get_dataset, list_datasets
from engine.store.models import Dataset
from engine.store.runs import Run, delete_run, get_run


def check_run_name(name: str | None) -> None:
    """For params `__post_init__`: a run name is also a folder name under models/ and masks/."""
    if name is not None and (not name or len(name) > 80 or any(c in name for c in "/\\\0") or name.startswith(".")):
        raise ValueError(f"name={name!r}: a run name needs 1-80 characters, no slashes, not starting with '.'")


def dataset_of_kind(ctx: JobContext, name: str, kind: str, hint: str) -> Dataset:
    """The dataset called ``name``, which must be of ``kind``; the message lists the right ones."""
    ds = get_dataset(ctx.db, name)
    if ds is not None and ds.kind == kind:
        return ds
    have = ", ".join(d.name for d in list_datasets(ctx.db) if d.kind == kind) or "none yet"
    if ds is None:
        raise DatasetError(f"no dataset named {name!r} ({kind} datasets: {have}); {hint}")
    raise DatasetError(f"{name!r} is a {ds.kind} dataset; this needs a {kind} dataset ({have}); {hint}")


def finished_run(
    ctx: JobContext,
    param: str,
    name: str,
    kinds: tuple[str, ...],
    what: str,
    error: type[WorkbenchError],
    *,
    dataset: Dataset | None = None,
    unfinished: str = "finish it first",
) -> Run:
    """The complete run ``name`` of one of ``kinds`` (and of ``dataset`` when given).

    :param param: the parameter that named it, for the message
    :param what: how the user knows such runs ("compose", "train-segmenter", ...)
    :raises error: if there is no such run, it describes another dataset, or it is not complete
    """
    run = get_run(ctx.db, name)
    if run is None or run.kind not in kinds:
        raise error(f"{param}={name!r}: no {what} run of that name")
    if dataset is not None and run.dataset_id != dataset.id:
        raise error(f"{what} run {name!r} describes another dataset, not {dataset.name!r}")
    if run.status != "complete":
        raise error(f"{what} run {name!r} is {run.status}; {unfinished}")
    return run


def free_run_name(ctx: JobContext, name: str, kind: str) -> None:
    """Let a re-run of the same kind replace its earlier run of that name.

    :raises WorkbenchError: if the name belongs to a run of another kind
    """
    old = get_run(ctx.db, name)
    if old is None:
        return
    if old.kind != kind:
        raise WorkbenchError(f"name={name!r} is taken by a {old.kind} run; choose another name")
    delete_run(ctx.db, old.id)
