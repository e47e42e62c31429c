"""Looking up what a job works on (datasets and runs by name, with messages that say what exists
and what to do) and writing a job's run so that it appears only once complete. Shared by every
job kind."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from engine.datasets.errors import DatasetError
from engine.errors import WorkbenchError
from engine.jobs.base import JobContext
from engine.store.catalog import get_dataset, list_datasets
from engine.store.models import Dataset
from engine.store.runs import RESERVED, Published, Run, discard_run, family_runs, get_run, get_run_exact, publish_run, stage_run


def check_run_name(name: str | None) -> None:
    """For params `__post_init__`: a run name is also a folder name under models/ and masks/."""
    if name is None:
        return
    if not name or len(name) > 80 or any(c in name for c in "/\\\0") or name.startswith("."):
        raise ValueError(f"name={name!r}: a run name needs 1-80 characters, no slashes, not starting with '.'")
    if any(c in name for c in RESERVED):
        raise ValueError(f"name={name!r}: '~' and '@' are reserved (superseded runs, NAME@VERSION); choose another name")


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
    """The complete run ``name`` (a bare name: its newest complete version) of one of ``kinds``
    (and of ``dataset`` when given). A superseded run named exactly counts as complete.

    :param param: the parameter that named it, for the message
    :param what: how the user knows such runs ("compose", "train-segmenter", ...)
    :raises error: if there is no such run, it describes another dataset, or it is not complete
    """
    run = get_run(ctx.db, name)
    if run is None or run.kind not in kinds:
        raise error(f"{param}={name!r}: no {what} run of that name")
    if dataset is not None and run.dataset_id != dataset.id:
        raise error(f"{what} run {run.name!r} describes another dataset, not {dataset.name!r}")
    if run.status not in ("complete", "superseded"):
        raise error(f"{what} run {run.name!r} is {run.status}; {unfinished}")
    return run


def taken_by_other_kind(ctx: JobContext, family: str, kind: str) -> None:
    """:raises WorkbenchError: if ``family`` already names a run of another kind"""
    other = get_run(ctx.db, family)
    if other is not None and other.kind != kind:
        raise WorkbenchError(f"name={family!r} is taken by a {other.kind} run; choose another name")


@dataclass
class Stage:
    """A job's run while it is being written: invisible until :meth:`publish`."""

    ctx: JobContext
    run: Run
    family: str
    replace: bool
    artifact_dir: Path | None = None
    published: Published | None = field(default=None, init=False)

    def publish(self, metrics: dict[str, Any]) -> Published:
        self.published = publish_run(self.ctx.db, self.run.id, self.family, replace=self.replace, metrics=metrics)
        for gone in self.published.deleted:
            if gone.artifact_dir and Path(gone.artifact_dir).is_dir():
                shutil.rmtree(gone.artifact_dir, ignore_errors=True)
        return self.published

    def message(self) -> str:
        """`name` plus what happened to the name (a new version, a replacement), for the job's message."""
        assert self.published is not None, "publish first"
        note = self.published.describe()
        return f"{self.published.run.name}" + (f" ({note})" if note else "")


@contextmanager
def staged_run(
    ctx: JobContext,
    *,
    kind: str,
    family: str,
    replace: bool = False,
    params: dict[str, Any],
    parent_run_id: int | None = None,
    dataset_id: int | None = None,
    artifacts: bool = False,
) -> Iterator[Stage]:
    """Write a run that becomes visible only when the block calls ``stage.publish(metrics)``;
    leaving the block by an error removes it and its files, and an earlier run of the family is
    untouched. ``artifacts`` gives it a folder under models/.
    """
    taken_by_other_kind(ctx, family, kind)
    folder = None
    if artifacts:
        folder = ctx.workspace.model_dir(family)
        if folder.exists() or get_run_exact(ctx.db, family) is not None:
            folder = ctx.workspace.model_dir(f"{family}.{_free_suffix(ctx, family)}")
    run = stage_run(ctx.db, kind=kind, params=params, parent_run_id=parent_run_id, dataset_id=dataset_id,
                    artifact_dir=str(folder) if folder else None)
    ctx.attach_run(run.id)
    stage = Stage(ctx, run, family, replace, folder)
    try:
        yield stage
        if stage.published is None:
            raise RuntimeError("staged run left without publish()")
    except BaseException:
        discard_run(ctx.db, run.id)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _free_suffix(ctx: JobContext, family: str) -> str:
    """A folder suffix no run of the family uses yet: the next version number, or higher."""
    n = 2
    while ctx.workspace.model_dir(f"{family}.{n}").exists() or get_run_exact(ctx.db, f"{family}.{n}") is not None:
        n += 1
    return str(n)


T = TypeVar("T")


def on_main(ctx: JobContext, fn: Callable[[], T], error: type[WorkbenchError]) -> T:
    """``fn()`` computed by rank 0 alone (it names runs, writes the store) and handed to every
    process of a data-parallel job; an error raised there is raised in every process, so none
    waits forever for the others."""
    from engine import distributed

    dist = distributed.from_env()
    if not dist.parallel:
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    if dist.main:
        try:
            outcome = (True, fn())
        except WorkbenchError as exc:
            outcome = (False, str(exc))
    ok, value = distributed.broadcast(outcome, dist)
    if not ok:
        raise error(value)
    return value  # type: ignore[no-any-return]


RUNTIME_PARAMS = ("device", "num_workers", "processes", "executor", "gradient_checkpointing")
"""Params that say where or how fast a job runs, not what it computes: a resume may change them."""


def resumable(ctx: JobContext, family: str, kind: str, params: dict[str, Any], error: type[WorkbenchError]) -> Run | None:
    """The family's newest version when it is unfinished (a training to resume), else None (the
    caller starts the next version).

    :raises error: if the name belongs to another kind, or the unfinished run had other params
        (the message names them; params in :data:`RUNTIME_PARAMS` may change)
    """
    taken_by_other_kind(ctx, family, kind)
    members = family_runs(ctx.db, family)
    run = members[-1] if members else None
    if run is None or run.status == "complete":
        return None
    differs = [k for k in sorted(set(params) | set(run.params))
               if k not in (*RUNTIME_PARAMS, "name") and run.params.get(k) != params.get(k)]
    if differs:
        changes = "; ".join(f"{k}: {run.params.get(k)!r} -> {params.get(k)!r}" for k in differs[:4])
        raise error(f"run {run.name!r} is unfinished and was started with other params ({changes}); "
                    "resume it with the same params, or give another name")
    return run
