"""The job queue's rows: submit, claim, progress, finish, cancel, retry, recovery.

Claims happen in ``BEGIN IMMEDIATE`` transactions, so two runners can never take the same job.
A job waits until every job it runs ``--after`` has succeeded; if one of them failed, was
cancelled or interrupted, the waiting job fails at once with a message naming the cause.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlite_utils

from engine.store.catalog import now

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled", "interrupted")


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    params: dict[str, Any]
    status: str
    progress: float
    message: str
    run_id: int | None
    pid: int | None
    host: str | None
    log_path: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    heartbeat_at: str | None
    error: str | None
    cancel_requested: bool
    attempt: int
    retry_of: int | None
    uses_gpu: bool
    after: tuple[int, ...] = ()

    def time_left(self, now: datetime | None = None) -> str:
        """Time a running job still needs, extrapolated from its progress so far ("" when unknown)."""
        if self.status != "running" or not self.started_at or self.progress <= 0.01:
            return ""
        spent = ((now or datetime.now(UTC)) - datetime.fromisoformat(self.started_at)).total_seconds()
        left = spent * (1 - self.progress) / self.progress
        return f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"


def _job(row: dict[str, Any], after: Sequence[int] = ()) -> Job:
    return Job(**{**row, "params": json.loads(row["params"]), "cancel_requested": bool(row["cancel_requested"]),
                  "uses_gpu": bool(row["uses_gpu"]), "after": tuple(after)})


def submit_job(db: sqlite_utils.Database, kind: str, params: dict[str, Any], *, after: Sequence[int] = (), uses_gpu: bool = False,
               retry_of: int | None = None, attempt: int = 1) -> int:
    """Queue a job (params already validated).

    :raises ValueError: if a job named in ``after`` does not exist
    """
    with db.atomic():
        for dep in after:
            if db.execute("SELECT 1 FROM jobs WHERE id = ?", [dep]).fetchone() is None:
                raise ValueError(f"--after {dep}: no job with that id")
        cur = db.execute(
            "INSERT INTO jobs (kind, params, status, created_at, uses_gpu, retry_of, attempt) VALUES (?, ?, 'queued', ?, ?, ?, ?)",
            [kind, json.dumps(params), now(), int(uses_gpu), retry_of, attempt],
        )
        job_id = int(cur.lastrowid or 0)
        db.conn.executemany("INSERT INTO job_deps (job_id, after_job_id) VALUES (?, ?)", [(job_id, d) for d in after])
    return job_id


def get_job(db: sqlite_utils.Database, job_id: int) -> Job | None:
    rows = list(db.query("SELECT * FROM jobs WHERE id = ?", [job_id]))
    if not rows:
        return None
    after = [r[0] for r in db.conn.execute("SELECT after_job_id FROM job_deps WHERE job_id = ? ORDER BY after_job_id", [job_id])]
    return _job(rows[0], after)


def list_jobs(db: sqlite_utils.Database, *, limit: int = 50, status: str | None = None) -> list[Job]:
    where, args = ("WHERE status = ?", [status]) if status else ("", [])
    rows = list(db.query(f"SELECT * FROM jobs {where} ORDER BY id DESC LIMIT ?", [*args, limit]))
    deps: dict[int, list[int]] = {}
    for job_id, dep in db.conn.execute("SELECT job_id, after_job_id FROM job_deps"):
        deps.setdefault(job_id, []).append(dep)
    return [_job(r, deps.get(r["id"], ())) for r in rows]


def claim_next(db: sqlite_utils.Database, *, take_gpu: bool, take_cpu: bool) -> Job | None:
    """Take the oldest runnable queued job (its dependencies succeeded), atomically.

    Queued jobs whose dependencies ended badly are failed here, naming the cause.
    :param take_gpu: a job that uses the GPU may be taken (a GPU slot is free)
    :param take_cpu: a job that does not may be taken (a CPU slot is free)
    """
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        chosen = None
        for (job_id, uses_gpu) in conn.execute("SELECT id, uses_gpu FROM jobs WHERE status = 'queued' ORDER BY id").fetchall():
            deps = conn.execute(
                "SELECT j.id, j.status, j.kind FROM job_deps d JOIN jobs j ON j.id = d.after_job_id WHERE d.job_id = ?", [job_id]
            ).fetchall()
            bad = [d for d in deps if d[1] in ("failed", "cancelled", "interrupted")]
            if bad:
                dep_id, dep_status, dep_kind = bad[0]
                conn.execute(
                    "UPDATE jobs SET status = 'failed', finished_at = ?, message = ?, error = ? WHERE id = ?",
                    [now(), f"not run: dependency #{dep_id} ({dep_kind}) {dep_status}", f"dependency #{dep_id} {dep_status}", job_id],
                )
                continue
            if any(d[1] != "succeeded" for d in deps):
                continue
            if take_gpu if uses_gpu else take_cpu:
                chosen = job_id
                break
        if chosen is None:
            conn.execute("COMMIT")
            return None
        stamp = now()
        conn.execute(
            "UPDATE jobs SET status = 'running', pid = NULL, host = ?, started_at = ?, heartbeat_at = ?, message = 'starting' WHERE id = ?",
            [socket.gethostname(), stamp, stamp, chosen],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return get_job(db, chosen)


def start_unclaimed(db: sqlite_utils.Database, job_id: int) -> None:
    """Mark a queued job running when something other than the runner starts it (a scheduler)."""
    with db.atomic():
        db.execute("UPDATE jobs SET status = 'running', started_at = ?, heartbeat_at = ? WHERE id = ? AND status = 'queued'", [now(), now(), job_id])


def is_cancel_requested(db: sqlite_utils.Database, job_id: int) -> bool:
    row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", [job_id]).fetchone()
    return bool(row and row[0])


def set_job_pid(db: sqlite_utils.Database, job_id: int, pid: int, log_path: str) -> None:
    with db.atomic():
        db.execute("UPDATE jobs SET pid = ?, log_path = ? WHERE id = ?", [pid, log_path, job_id])


def record_progress(db: sqlite_utils.Database, job_id: int, fraction: float | None, message: str,
                    events: Sequence[tuple[str, int | None, int | None, str, dict[str, float]]]) -> None:
    """Store coalesced progress: the job's latest state and its pending events in one transaction."""
    with db.atomic():
        if fraction is not None:
            db.execute("UPDATE jobs SET progress = ?, message = ?, heartbeat_at = ? WHERE id = ?", [fraction, message, now(), job_id])
        else:
            db.execute("UPDATE jobs SET message = ?, heartbeat_at = ? WHERE id = ?", [message, now(), job_id])
        db.conn.executemany(
            "INSERT INTO job_events (job_id, ts, step, total, message, metrics) VALUES (?, ?, ?, ?, ?, ?)",
            [(job_id, ts, step, total, msg, json.dumps(metrics)) for ts, step, total, msg, metrics in events],
        )


def attach_run(db: sqlite_utils.Database, job_id: int, run_id: int) -> None:
    """Record the run a job works on while it runs (its curve then includes failed attempts)."""
    with db.atomic():
        db.execute("UPDATE jobs SET run_id = ? WHERE id = ?", [run_id, job_id])


def heartbeat(db: sqlite_utils.Database, job_ids: Sequence[int]) -> None:
    if job_ids:
        with db.atomic():
            db.conn.executemany("UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND status = 'running'", [(now(), j) for j in job_ids])


def finish_job(db: sqlite_utils.Database, job_id: int, status: str, message: str, *, error: str | None = None, run_id: int | None = None) -> None:
    """End a job (only a running job changes: a job already ended keeps its first verdict)."""
    with db.atomic():
        db.execute(
            "UPDATE jobs SET status = ?, message = ?, error = ?, run_id = COALESCE(?, run_id), finished_at = ?,"
            " progress = CASE WHEN ? = 'succeeded' THEN 1.0 ELSE progress END WHERE id = ? AND status = 'running'",
            [status, message, error, run_id, now(), status, job_id],
        )


def request_cancel(db: sqlite_utils.Database, job_id: int) -> str:
    """Cancel: a queued job leaves the queue at once; a running one is flagged for its runner.

    :returns: the job's status afterwards
    :raises ValueError: unknown job, or a job already finished
    """
    with db.atomic():
        row = db.execute("SELECT status FROM jobs WHERE id = ?", [job_id]).fetchone()
        if row is None:
            raise ValueError(f"no job #{job_id}")
        status = row[0]
        if status == "queued":
            db.execute("UPDATE jobs SET status = 'cancelled', finished_at = ?, message = 'cancelled before it started' WHERE id = ?", [now(), job_id])
            return "cancelled"
        if status == "running":
            db.execute("UPDATE jobs SET cancel_requested = 1, message = 'cancelling' WHERE id = ?", [job_id])
            return "cancelling"
    raise ValueError(f"job #{job_id} is already {status}")


def cancel_requested(db: sqlite_utils.Database) -> list[Job]:
    return [_job(r) for r in db.query("SELECT * FROM jobs WHERE status = 'running' AND cancel_requested = 1")]


def mark_stale(db: sqlite_utils.Database, stale_after: float, *, live_pids: Sequence[int] = ()) -> list[int]:
    """Running jobs whose heartbeat is older than ``stale_after`` seconds (and not run by a live
    child of this runner) become ``interrupted``."""
    cutoff = (datetime.now(UTC) - timedelta(seconds=stale_after)).isoformat(timespec="seconds")
    with db.atomic():
        rows = db.execute("SELECT id, pid FROM jobs WHERE status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < ?)", [cutoff]).fetchall()
        stale = [job_id for job_id, pid in rows if pid not in live_pids]
        db.conn.executemany(
            "UPDATE jobs SET status = 'interrupted', finished_at = ?, message = ?, error = ? WHERE id = ?",
            [(now(), f"interrupted: its runner stopped answering (no heartbeat for {stale_after:.0f} s); `workbench jobs retry {j}` runs it again",
              "heartbeat stale", j) for j in stale],
        )
    return stale


def retry_job(db: sqlite_utils.Database, job_id: int) -> int:
    """Queue a job again with the same params (a new row pointing at the old one); jobs that were
    waiting on the old one are failed already, so the new one has no dependants.

    :raises ValueError: unknown job, or one still queued or running
    """
    job = get_job(db, job_id)
    if job is None:
        raise ValueError(f"no job #{job_id}")
    if job.status in ACTIVE:
        raise ValueError(f"job #{job_id} is {job.status}; only a finished job can be retried")
    return submit_job(db, job.kind, job.params, uses_gpu=job.uses_gpu, retry_of=job.id, attempt=job.attempt + 1)


def job_events(db: sqlite_utils.Database, job_id: int, *, with_metrics_only: bool = False) -> list[dict[str, Any]]:
    where = " AND metrics != '{}'" if with_metrics_only else ""
    return [{**r, "metrics": json.loads(r["metrics"])} for r in db.query(f"SELECT * FROM job_events WHERE job_id = ?{where} ORDER BY id", [job_id])]


def register_runner(db: sqlite_utils.Database, pid: int) -> int:
    with db.atomic():
        cur = db.execute("INSERT INTO runners (pid, host, started_at, heartbeat_at) VALUES (?, ?, ?, ?)", [pid, socket.gethostname(), now(), now()])
    return int(cur.lastrowid or 0)


def runner_heartbeat(db: sqlite_utils.Database, runner_id: int, stopped: bool = False) -> None:
    with db.atomic():
        db.execute("UPDATE runners SET heartbeat_at = ?, stopped_at = ? WHERE id = ?", [now(), now() if stopped else None, runner_id])
