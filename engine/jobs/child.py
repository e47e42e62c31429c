"""Run one job in the current process and record how it ended.

Used by the runner's forked children, and by ``workbench jobs exec ID``: what Slurm runs, what a
launcher (torchrun) runs once per data-parallel rank, and what a user may run by hand.

- ``jobs exec`` claims the job first (:func:`engine.store.jobs.exec_claim`): a queued job, or one
  its launcher claimed for it under the token it passed on (WORKBENCH_CLAIM, or SLURM_JOB_ID).
  Any other status is refused with a message, and nothing changes: a job never runs twice.
- Under torchrun only rank 0 claims, heartbeats and finishes the row; the others run the job's
  compute with the store read-only (job kinds write only where ``ctx.main``).
- A thread heartbeats the row every few seconds, so a job that reports no progress for minutes
  (loading a 7B base, METEOR) is not taken for dead and its result not thrown away.
- SIGTERM (a cancel, or Slurm's warning before a time limit or preemption kills the job) asks the
  job to stop at its next check; training kinds save their checkpoint. The job ends ``cancelled``
  when a cancel was requested, else ``interrupted`` (retry resumes it).
- Progress is coalesced: the row and the events table are written at most once a second,
  keeping every event that carries metrics (loss curves) and only the latest plain message.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

from engine import distributed
from engine.errors import WorkbenchError
from engine.jobs.base import JobContext, JobStopped, Progress
from engine.jobs.registry import get_kind
from engine.store import jobs as q
from engine.store.catalog import now
from engine.workspace import Workspace

FLUSH_EVERY = 1.0
"""Seconds between progress writes."""
HEARTBEAT_EVERY = float(os.environ.get("WORKBENCH_HEARTBEAT_S", "5"))
"""Seconds between a running job's own heartbeats."""
REFUSED = 2
"""Exit code of a `jobs exec` that found nothing it may run."""


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


class Heartbeat(threading.Thread):
    """Heartbeats the job's row from its own connection until stopped."""

    def __init__(self, ws: Workspace, job_id: int) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.ws, self.job_id = ws, job_id
        self.done = threading.Event()

    def run(self) -> None:
        db = self.ws.open_db()
        try:
            while not self.done.wait(HEARTBEAT_EVERY):
                q.heartbeat(db, [self.job_id])
        finally:
            db.close()


def _shared_store_problem(ws: Workspace, db: Any) -> str | None:
    """Why this process cannot safely write the workspace from a Slurm node, if it cannot."""
    probe = ws.root / ".lock-check"
    try:
        with open(probe, "a") as fh:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(fh, fcntl.LOCK_UN)
    except OSError as exc:
        return (f"{ws.root}: file locks do not work here ({exc.strerror}); SQLite needs them. Put the workspace on a "
                "file system with working POSIX locks (many NFS mounts need `lock` enabled)")
    from engine.store.connection import journal_mode

    runner = q.runner_host(db)
    if journal_mode(db) == "wal" and runner is not None and runner != socket.gethostname():
        return (f"the database is in WAL mode, which needs every writer on one host, and this job runs on {socket.gethostname()}, "
                f"the runner on {runner}; set `[store] journal = \"delete\"` in {ws.config_path}")
    return None


def execute(ws: Workspace, job_id: int, log_path: str | None = None, *, claimed: bool = False) -> int:
    """Run job ``job_id`` in this process.

    :param claimed: the caller (the runner's forked child) claimed the row already
    :returns: process exit code: 0 succeeded, 3 failed, 4 cancelled or interrupted, 2 refused
    """
    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    dist = distributed.from_env()
    if dist.parallel:
        from engine.process import die_with_parent

        die_with_parent()  # a rank dies with its launcher
        distributed.init(dist)
    db = ws.open_db()
    refusal = None
    if dist.main:
        if claimed:
            job = q.get_job(db, job_id)
            refusal = None if job is not None else f"no job #{job_id}"
        else:
            job, refusal = q.exec_claim(db, job_id, os.environ.get("WORKBENCH_CLAIM") or os.environ.get("SLURM_JOB_ID"))
            refusal = refusal or None
        if refusal is None and os.environ.get("SLURM_JOB_ID"):
            refusal = _shared_store_problem(ws, db)
            if refusal:
                q.finish_job(db, job_id, "failed", f"failed: {refusal}", error=refusal)
    refusal = distributed.broadcast(refusal, dist)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        distributed.finish(dist)
        return REFUSED
    job = q.get_job(db, job_id)
    assert job is not None
    if dist.main and log_path:
        q.set_job_pid(db, job_id, os.getpid(), log_path)
    if dist.main and os.environ.get("SLURM_JOB_ID"):  # what Slurm gave it
        gpus = os.environ.get("SLURM_JOB_GPUS") or os.environ.get("CUDA_VISIBLE_DEVICES")
        if gpus:
            q.set_launch(db, job_id, log_path=job.log_path or "", gpus=gpus)
    log = logging.getLogger(f"workbench.job.{job_id}")
    log.setLevel(logging.INFO if dist.main else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s " + (f"[rank {dist.rank}] " if dist.parallel else "") + "%(message)s"))
    log.addHandler(handler)
    log.propagate = False
    sink = ProgressSink(db, job_id) if dist.main else (lambda p: None)
    heartbeat = Heartbeat(ws, job_id) if dist.main else None
    if heartbeat is not None:
        heartbeat.start()
    ctx = JobContext(workspace=ws, db=db, log=log, on_progress=sink, job_id=job_id, rank=dist.rank, world=dist.world,
                     stop_requested=lambda: stop["requested"] or (dist.main and _cancel_flag(db, job_id)),
                     on_run=lambda run_id: q.attach_run(db, job_id, run_id))
    log.info("job #%d %s %s (attempt %d%s)", job_id, job.kind, job.params, job.attempt,
             f", {dist.world} processes" if dist.parallel else "")
    try:
        kind = get_kind(job.kind)
        result = kind.run(kind.parse(job.params), ctx)
    except BaseException as exc:  # noqa: BLE001 (every ending is recorded, then the code says which)
        return _ended_badly(db, job_id, exc, stop["requested"], sink, log, dist)
    finally:
        if heartbeat is not None:
            heartbeat.done.set()
        distributed.finish(dist)
    if dist.main:
        sink.flush()  # type: ignore[union-attr]
        q.finish_job(db, job_id, "succeeded", result.message, run_id=result.run_id)
        log.info("succeeded: %s", result.message)
    return 0


def _ended_badly(db: Any, job_id: int, exc: BaseException, terminated: bool, sink: Any, log: logging.Logger,
                 dist: distributed.Dist) -> int:
    """Record a job that did not succeed: cancelled (asked to), interrupted (SIGTERM with no
    cancel request: a time limit, a preemption, a shutdown) or failed."""
    if not dist.main:
        log.error("rank %d: %s", dist.rank, "".join(traceback.format_exception_only(type(exc), exc)).strip())
        return 4 if isinstance(exc, JobStopped) else 3
    if isinstance(sink, ProgressSink):
        sink.flush()
    cancelled = q.is_cancel_requested(db, job_id)
    if isinstance(exc, JobStopped) or terminated:
        if cancelled or not terminated:
            q.finish_job(db, job_id, "cancelled", "cancelled")
            log.info("cancelled")
        else:
            q.finish_job(db, job_id, "interrupted", f"interrupted by SIGTERM (a time limit, preemption or shutdown); "
                         f"`workbench jobs retry {job_id}` runs it again (training resumes from its checkpoint)", error="SIGTERM")
            log.info("interrupted by SIGTERM")
        return 4
    if isinstance(exc, WorkbenchError):
        q.finish_job(db, job_id, "failed", str(exc), error=str(exc))
        log.error("failed: %s", exc)
        return 3
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()  # a bug: keep the traceback
    q.finish_job(db, job_id, "failed", f"failed: {detail}", error=traceback.format_exc())
    log.error("failed:\n%s", traceback.format_exc())
    return 3


_LAST_CHECK: dict[int, tuple[float, bool]] = {}


def _cancel_flag(db: Any, job_id: int) -> bool:
    """The job's cancel flag, read at most twice a second (jobs call should_stop every step)."""
    at, value = _LAST_CHECK.get(job_id, (0.0, False))
    if time.monotonic() - at >= 0.5:
        value = q.is_cancel_requested(db, job_id)
        _LAST_CHECK[job_id] = (time.monotonic(), value)
    return value
