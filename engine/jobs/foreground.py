"""Run one job kind in this process: ``workbench run KIND`` and the demo use it.

The job gets the same context it would get from the durable runner, with its log written to
``logs/<kind>-<time>.log`` in the workspace. A data-parallel job (``processes=N``) cannot run in
this process: it becomes a job row claimed by this process (so no runner takes it), run by
``torchrun ... workbench jobs exec ID`` as the runner would, and followed here until it ends.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from engine.errors import WorkbenchError
from engine.jobs.base import JobContext, JobResult, JobStopped, Progress, processes_of
from engine.jobs.registry import get_kind
from engine.store.connection import is_read_only
from engine.workspace import Workspace, WorkspaceError


READS_ONLY = ("export",)
"""Kinds that write nothing to the database, so they run on a read-only workspace."""


def run_foreground(
    workspace: Workspace,
    kind: str,
    params: Any,
    *,
    on_progress: Callable[[Progress], None] = lambda p: None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> JobResult:
    """Run ``kind`` with ``params`` (a params instance or a mapping of strings) to completion.

    :raises ParamsError: for invalid params, before anything runs
    :raises WorkbenchError: for problems the job reports
    """
    job_kind = get_kind(kind)
    if not isinstance(params, job_kind.params):
        params = job_kind.parse(params)
    if kind not in READS_ONLY and is_read_only(workspace.db_path):
        raise WorkspaceError(f"{workspace.db_path}: read-only for you, and {kind} writes to it; copy the workspace, or ask its owner")
    if processes_of(params) > 1:
        return run_launched(workspace, kind, params, on_progress=on_progress, stop_requested=stop_requested)
    db = workspace.open_db()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    log = logging.getLogger(f"workbench.job.{kind}.{stamp}")
    log.setLevel(logging.INFO)
    log.propagate = False
    handler: logging.Handler
    try:
        workspace.logs_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(workspace.logs_dir / f"{kind}-{stamp}.log", encoding="utf-8")
    except PermissionError:  # a read-only workspace still exports and reads; it just keeps no log
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    ctx = JobContext(workspace=workspace, db=db, log=log, on_progress=on_progress, stop_requested=stop_requested)
    try:
        log.info("start %s %s", kind, params)
        result = job_kind.run(params, ctx)
        log.info("done: %s", result.message)
        return result
    except Exception as exc:
        log.error("failed: %s", exc, exc_info=True)
        raise
    finally:
        handler.close()
        log.removeHandler(handler)
        db.close()


def run_launched(
    ws: Workspace,
    kind: str,
    params: Any,
    *,
    on_progress: Callable[[Progress], None] = lambda p: None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> JobResult:
    """A data-parallel job run under torchrun from here: a job row this process claims, its
    progress relayed to ``on_progress``, its ending turned into a result or an error.

    :raises JobStopped: when it was cancelled or stopped
    :raises WorkbenchError: with the job's message when it failed
    """
    from engine.jobs.executors import exec_command, job_log
    from engine.store import jobs as q

    job_kind = get_kind(kind)
    stored = {f.name: (list(v) if isinstance(v := getattr(params, f.name), tuple) else v) for f in fields(params)}
    db = ws.open_db()
    token = f"fg-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    job_id = q.submit_job(db, kind, stored, uses_gpu=job_kind.uses_gpu, executor="foreground",
                          gpus_needed=job_kind.gpus_needed(params), processes=processes_of(params), claim=token)
    job = q.get_job(db, job_id)
    assert job is not None
    log_path = job_log(ws, job)
    ws.logs_dir.mkdir(parents=True, exist_ok=True)
    q.set_launch(db, job_id, log_path=str(log_path))
    with open(log_path, "ab") as out:
        child = subprocess.Popen(exec_command(ws, job), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 env={**os.environ, "WORKBENCH_CLAIM": token})
    seen, beat, asked = 0, 0.0, False
    try:
        while child.poll() is None:
            if not asked and stop_requested():
                q.request_cancel(db, job_id)  # rank 0 sees the flag at its next step
                asked = True
            for event in q.job_events(db, job_id)[seen:]:
                on_progress(Progress(event["step"] or 0, event["total"], event["message"], event["metrics"]))
                seen += 1
            if time.monotonic() - beat > 2:  # alive while torchrun starts its ranks; then rank 0 heartbeats too
                q.heartbeat(db, [job_id])
                beat = time.monotonic()
            time.sleep(0.2)
    except BaseException:  # Ctrl-C, SIGTERM: stop the launcher (it stops its ranks) and record it
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
        q.finish_job(db, job_id, "interrupted", "interrupted: the foreground `workbench run` was stopped")
        raise
    done = q.get_job(db, job_id)
    if done is None or done.status == "running":  # the launcher died before rank 0 could record the ending
        q.finish_job(db, job_id, "failed", f"failed: torchrun exited with code {child.returncode}; see {log_path}")
        done = q.get_job(db, job_id)
    assert done is not None
    if done.status == "succeeded":
        return JobResult(done.message, run_id=done.run_id)
    if done.status in ("cancelled", "interrupted"):
        raise JobStopped()
    raise WorkbenchError(f"{done.message} (job #{job_id}, log {log_path})")
