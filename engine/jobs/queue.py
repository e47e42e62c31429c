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


def submit(ws: Workspace, kind: str, raw: Mapping[str, Any], *, after: Sequence[int] = (), start_runner: bool = True,
           executor: str | None = None, resources: Mapping[str, Any] | None = None) -> int:
    """Validate and queue a job; returns its id.

    :param executor: local or slurm (default: config.toml's ``[executor] name``)
    :param resources: Slurm overrides for this job: partition, time, gpus, extra
    :raises ParamsError: for bad params or an unknown executor (nothing is queued)
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
        job_id = q.submit_job(db, kind, stored, after=after, uses_gpu=job_kind.uses_gpu, executor=executor,
                              gpus_needed=job_kind.gpus_needed(params), processes=processes_of(params), resources=dict(resources or {}))
    finally:
        db.close()
    if start_runner:
        from engine.jobs.runner import ensure_runner

        ensure_runner(ws)
    return job_id
