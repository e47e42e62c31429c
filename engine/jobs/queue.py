"""Submitting jobs: validate at once (a bad param queues nothing), fill names that must be stable
across retries, queue, and make sure a runner serves the workspace."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from engine.config import EXECUTORS
from engine.jobs.base import ParamsError, processes_of
from engine.jobs.registry import get_kind
from engine.store import jobs as q
from engine.workspace import Workspace

STABLE_NAMES = {"train-segmenter": "segmenter", "train-captioner": "captioner"}
"""Kinds whose default run name has a timestamp: fixed at submit, so a retry resumes the same run."""

DATASET_PARAMS = ("dataset", "human", "refs")
RUN_PARAMS = ("segmenter", "segmentation", "composition", "classifier", "captioner", "generation", "subset", "run", "scenes", "init")
"""Params that name a dataset or a run, checked at submit (``scenes`` may also be oracle or none)."""
MAKERS = ("ingest-captions", "ingest-drone", "synthesize")
"""Kinds that make datasets (not runs), so their params name nothing that must exist."""


def check_references(db: Any, kind: str, values: Mapping[str, Any], after: Sequence[int]) -> None:
    """Every dataset and run a job's params name exists now, or is what a job it waits for
    (``--after``, directly or further up) will make: named there, or that job names nothing.

    :raises ParamsError: naming the param, the name, and what exists
    """
    from engine.store.catalog import get_dataset, list_datasets
    from engine.store.runs import get_run

    if kind in MAKERS or kind == "noop":
        return
    upstream: dict[int, q.Job] = {}
    todo = list(after)
    while todo:
        job_id = todo.pop()
        job = None if job_id in upstream else q.get_job(db, job_id)
        if job is not None:
            upstream[job_id] = job
            todo += job.after
    made = {str(j.params.get("name")) for j in upstream.values() if j.params.get("name")}
    unnamed = {j.kind for j in upstream.values() if not j.params.get("name")}
    for param in DATASET_PARAMS:
        name = values.get(param)
        if name and get_dataset(db, str(name)) is None and name not in made and not unnamed & {"ingest-captions", "ingest-drone"}:
            names = ", ".join(d.name for d in list_datasets(db)) or "none yet"
            raise ParamsError(f"{kind}: {param}={name!r}: no dataset of that name (datasets: {names})")
    for param in RUN_PARAMS:
        name = values.get(param)
        if not name or (param == "scenes" and name in ("oracle", "none")):
            continue
        family = str(name).rpartition("@")[0] or str(name)
        if get_run(db, str(name)) is None and family not in made and not unnamed - set(MAKERS):
            raise ParamsError(f"{kind}: {param}={name!r}: no run of that name (`workbench runs list`); to use a run a queued job "
                              "will make, submit with --after JOB")


def submit(ws: Workspace, kind: str, raw: Mapping[str, Any], *, after: Sequence[int] = (), start_runner: bool = True,
           executor: str | None = None, resources: Mapping[str, Any] | None = None) -> int:
    """Validate and queue a job; returns its id.

    :param executor: local or slurm (default: config.toml's ``[executor] name``)
    :param resources: Slurm overrides for this job: partition, time, gpus, extra
    :raises ParamsError: for bad params, a dataset or run that does not exist (and that no job
        in ``after`` will make), or an unknown executor (nothing is queued)
    :raises ValueError: for an unknown ``after`` job
    """
    job_kind = get_kind(kind)
    params = job_kind.parse(raw)
    executor = executor or ws.config().executor
    if executor not in EXECUTORS:
        raise ParamsError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    values = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    if kind in STABLE_NAMES and values.get("name") is None:
        values["name"] = f"{STABLE_NAMES[kind]}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S-%f')}"
    stored = {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}
    db = ws.open_db()
    try:
        check_references(db, kind, values, after)
        job_id = q.submit_job(db, kind, stored, after=after, uses_gpu=job_kind.uses_gpu, executor=executor,
                              gpus_needed=job_kind.gpus_needed(params), processes=processes_of(params), resources=dict(resources or {}))
    finally:
        db.close()
    if start_runner:
        from engine.jobs.runner import ensure_runner

        ensure_runner(ws)
    return job_id
