"""Run one queued job in the current process and record how it ended.

Used by the runner's forked children, and by ``workbench jobs exec ID`` (what a cluster
scheduler or a multi-GPU launcher would run). Progress is coalesced: the job row and the events
table are written at most once a second, keeping every event that carries metrics (loss curves)
and only the latest plain message. SIGTERM asks the job to stop at its next check.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from typing import Any

from engine.errors import WorkbenchError
from engine.jobs.base import JobContext, JobStopped, Progress
from engine.jobs.registry import get_kind
from engine.store import jobs as q
from engine.store.catalog import now
from engine.workspace import Workspace

FLUSH_EVERY = 1.0
"""Seconds between progress writes."""


class ProgressSink:
    """Coalesces progress reports into few writes (see module docstring)."""

    def __init__(self, db: Any, job_id: int):
        self.db = db
        self.job_id = job_id
        self.pending: list[tuple[str, int | None, int | None, str, dict[str, float]]] = []
        self.latest: Progress | None = None
        self.last_flush = 0.0

    def __call__(self, p: Progress) -> None:
        self.latest = p
        if p.metrics:
            self.pending.append((now(), p.step, p.total, p.message, p.metrics))
        if time.monotonic() - self.last_flush >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        p = self.latest
        if p is None:
            return
        events = list(self.pending)
        if not p.metrics:
            events.append((now(), p.step, p.total, p.message, {}))
        fraction = min(1.0, p.step / p.total) if p.total else None
        q.record_progress(self.db, self.job_id, fraction, p.message, events)
        self.pending.clear()
        self.last_flush = time.monotonic()


def execute(ws: Workspace, job_id: int, log_path: str | None = None) -> int:
    """Run job ``job_id`` (claimed already, or claimed here when run by a scheduler).

    :returns: process exit code: 0 succeeded, 3 failed, 4 cancelled
    """
    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    db = ws.open_db()
    job = q.get_job(db, job_id)
    if job is None:
        print(f"no job #{job_id}", file=sys.stderr)
        return 3
    if job.status == "queued":  # started by a scheduler rather than the runner
        q.start_unclaimed(db, job_id)
    q.set_job_pid(db, job_id, os.getpid(), log_path or "")
    log = logging.getLogger(f"workbench.job.{job_id}")
    log.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.propagate = False
    sink = ProgressSink(db, job_id)
    ctx = JobContext(workspace=ws, db=db, log=log, on_progress=sink, stop_requested=lambda: stop["requested"] or _cancel_flag(db, job_id), job_id=job_id,
                     on_run=lambda run_id: q.attach_run(db, job_id, run_id))
    log.info("job #%d %s %s (attempt %d)", job_id, job.kind, job.params, job.attempt)
    try:
        kind = get_kind(job.kind)
        result = kind.run(kind.parse(job.params), ctx)
    except JobStopped:
        sink.flush()
        q.finish_job(db, job_id, "cancelled", "cancelled")
        log.info("cancelled")
        return 4
    except WorkbenchError as exc:
        sink.flush()
        q.finish_job(db, job_id, "cancelled" if stop["requested"] else "failed", str(exc), error=str(exc))
        log.error("failed: %s", exc)
        return 4 if stop["requested"] else 3
    except BaseException as exc:  # a bug: keep the traceback in the log and the row
        sink.flush()
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        status = "cancelled" if stop["requested"] else "failed"
        q.finish_job(db, job_id, status, f"{status}: {detail}", error=traceback.format_exc())
        log.error("failed:\n%s", traceback.format_exc())
        return 4 if stop["requested"] else 3
    sink.flush()
    q.finish_job(db, job_id, "succeeded", result.message, run_id=result.run_id)
    log.info("succeeded: %s", result.message)
    return 0


_LAST_CHECK: dict[int, tuple[float, bool]] = {}


def _cancel_flag(db: Any, job_id: int) -> bool:
    """The job's cancel flag, read at most twice a second (jobs call should_stop every step)."""
    at, value = _LAST_CHECK.get(job_id, (0.0, False))
    if time.monotonic() - at >= 0.5:
        value = q.is_cancel_requested(db, job_id)
        _LAST_CHECK[job_id] = (time.monotonic(), value)
    return value
