"""The job queue's rows: submit, claim, progress, finish, cancel, retry, recovery.

Claims happen in ``BEGIN IMMEDIATE`` transactions, so two runners can never take the same job.
A job waits until every job it runs ``--after`` has succeeded; if one of them failed, was
cancelled or interrupted, the waiting job fails at once with a message naming the cause.

A claim is the row going from ``queued`` to ``running`` with a *claim token* in
``external_id``: the Slurm job id for a job handed to Slurm, ``local-...`` for a launcher the
local runner started, ``fg-...`` for a foreground ``workbench run``. ``workbench jobs exec ID``
runs a job only when it can take the claim: the row is queued, or running under the token the
process was started with; anything else is refused and nothing changes. The runner's and a job's
own writes retry while another writer holds the database locked (:func:`retry_locked`).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlite_utils

from engine.store.catalog import now
from engine.store.connection import retry_locked

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
    executor: str = "local"
    external_id: str | None = None
    """The claim token: Slurm's job id, or the local launcher's or foreground process's token."""
    gpus_needed: int = 0
    gpus: str | None = None
    """The GPUs the job was given (CUDA_VISIBLE_DEVICES), or Slurm's allocation."""
    processes: int = 1
    resources: dict[str, Any] = field(default_factory=dict)
    """Per-call Slurm overrides: partition, time, gpus, extra."""
    after: tuple[int, ...] = ()

    @property
    def where(self) -> str:
        """Where it runs, in a few words: the executor, Slurm's job id, the GPUs ("slurm 1234", "local gpu 0,1")."""
        parts = [self.executor]
        if self.executor == "slurm" and self.external_id:
            parts.append(self.external_id)
        if self.gpus:
            parts.append(f"gpu {self.gpus}")
        return " ".join(parts)

    def time_left(self, now: datetime | None = None) -> str:
        """Time a running job still needs, extrapolated from its progress so far ("" when unknown)."""
        if self.status != "running" or not self.started_at or self.progress <= 0.01:
            return ""
        spent = ((now or datetime.now(UTC)) - datetime.fromisoformat(self.started_at)).total_seconds()
        left = spent * (1 - self.progress) / self.progress
        return f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"


def _job(row: dict[str, Any], after: Sequence[int] = ()) -> Job:
    return Job(**{**row, "params": json.loads(row["params"]), "cancel_requested": bool(row["cancel_requested"]),
                  "uses_gpu": bool(row["uses_gpu"]), "resources": json.loads(row["resources"] or "{}"), "after": tuple(after)})


def submit_job(db: sqlite_utils.Database, kind: str, params: dict[str, Any], *, after: Sequence[int] = (), uses_gpu: bool = False,
               retry_of: int | None = None, attempt: int = 1, executor: str = "local", gpus_needed: int = 0,
               processes: int = 1, resources: dict[str, Any] | None = None, claim: str | None = None) -> int:
    """Queue a job (params already validated).

    :param claim: insert it already running under this claim token (a foreground process that runs
        it itself), so no runner can ever take it
    :raises ValueError: if a job named in ``after`` does not exist
    """
    with db.atomic():
        for dep in after:
            if db.execute("SELECT 1 FROM jobs WHERE id = ?", [dep]).fetchone() is None:
                raise ValueError(f"--after {dep}: no job with that id")
        stamp = now()
        cur = db.execute(
            "INSERT INTO jobs (kind, params, status, created_at, uses_gpu, retry_of, attempt, executor, gpus_needed, processes, resources,"
            " external_id, host, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [kind, json.dumps(params), "running" if claim else "queued", stamp, int(uses_gpu), retry_of, attempt, executor,
             gpus_needed, processes, json.dumps(resources or {}), claim, socket.gethostname() if claim else None,
             stamp if claim else None, stamp if claim else None],
        )
        job_id = int(cur.lastrowid or 0)
        db.conn.executemany("INSERT INTO job_deps (job_id, after_job_id) VALUES (?, ?)", [(job_id, d) for d in after])
    return job_id


@retry_locked
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


@retry_locked
def claim_next(db: sqlite_utils.Database, fits: Callable[[str, int], bool]) -> Job | None:
    """Take the oldest runnable queued job (its dependencies succeeded) that ``fits``, atomically.

    Queued jobs whose dependencies ended badly are failed here, naming the cause.
    :param fits: ``(executor, gpus_needed) -> bool``: whether the runner can start it now
    """
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        chosen = None
        for (job_id, executor, gpus_needed) in conn.execute(
                "SELECT id, executor, gpus_needed FROM jobs WHERE status = 'queued' ORDER BY id").fetchall():
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
            if fits(executor, gpus_needed):
                chosen = job_id
                break
        if chosen is None:
            conn.execute("COMMIT")
            return None
        stamp = now()
        conn.execute(
            "UPDATE jobs SET status = 'running', pid = NULL, external_id = NULL, host = ?, started_at = ?, heartbeat_at = ?,"
            " message = 'starting' WHERE id = ?",
            [socket.gethostname(), stamp, stamp, chosen],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return get_job(db, chosen)


@retry_locked
def set_launch(db: sqlite_utils.Database, job_id: int, *, log_path: str, pid: int | None = None, external_id: str | None = None,
               gpus: str | None = None, message: str | None = None) -> None:
    """What a runner started for a claimed job: its process or scheduler id, log and GPUs."""
    with db.atomic():
        db.execute("UPDATE jobs SET pid = COALESCE(?, pid), external_id = COALESCE(?, external_id), log_path = ?,"
                   " gpus = COALESCE(?, gpus), message = COALESCE(?, message) WHERE id = ?",
                   [pid, external_id, log_path, gpus, message, job_id])


@retry_locked
def exec_claim(db: sqlite_utils.Database, job_id: int, token: str | None) -> tuple[Job | None, str]:
    """Take a job for `workbench jobs exec` in this process: a queued job, or a running one whose
    claim token is ``token`` (the one its launcher passed on). Anything else is refused, unchanged.

    :returns: (the job, "") or (None, why it was refused)
    """
    with db.atomic():
        row = db.execute("SELECT status, external_id, executor FROM jobs WHERE id = ?", [job_id]).fetchone()
        if row is None:
            return None, f"no job #{job_id}"
        status, claim, executor = row
        if status == "queued":
            stamp = now()
            db.execute("UPDATE jobs SET status = 'running', executor = CASE WHEN executor = 'local' THEN 'exec' ELSE executor END,"
                       " host = ?, pid = ?, started_at = ?, heartbeat_at = ?, message = 'starting' WHERE id = ?",
                       [socket.gethostname(), os.getpid(), stamp, stamp, job_id])
        elif status == "running" and token is not None and claim == token:
            db.execute("UPDATE jobs SET host = ?, pid = ?, heartbeat_at = ? WHERE id = ?", [socket.gethostname(), os.getpid(), now(), job_id])
        elif status == "running":
            how = f" by {executor}" + (f" ({claim})" if claim else "")
            return None, f"job #{job_id} is already running{how}; it is not run twice"
        else:
            return None, f"job #{job_id} is {status}; nothing to run (`workbench jobs retry {job_id}` queues it again)"
    return get_job(db, job_id), ""


@retry_locked
def start_unclaimed(db: sqlite_utils.Database, job_id: int) -> None:
    """Mark a queued job running when something other than the runner starts it (tests, tools)."""
    with db.atomic():
        db.execute("UPDATE jobs SET status = 'running', started_at = ?, heartbeat_at = ? WHERE id = ? AND status = 'queued'", [now(), now(), job_id])


@retry_locked
def is_cancel_requested(db: sqlite_utils.Database, job_id: int) -> bool:
    row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", [job_id]).fetchone()
    return bool(row and row[0])


@retry_locked
def set_job_pid(db: sqlite_utils.Database, job_id: int, pid: int, log_path: str) -> None:
    with db.atomic():
        db.execute("UPDATE jobs SET pid = ?, log_path = ? WHERE id = ?", [pid, log_path, job_id])


@retry_locked
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


@retry_locked
def attach_run(db: sqlite_utils.Database, job_id: int, run_id: int) -> None:
    """Record the run a job works on while it runs (its curve then includes failed attempts)."""
    with db.atomic():
        db.execute("UPDATE jobs SET run_id = ? WHERE id = ?", [run_id, job_id])


@retry_locked
def heartbeat(db: sqlite_utils.Database, job_ids: Sequence[int]) -> None:
    if job_ids:
        with db.atomic():
            db.conn.executemany("UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND status = 'running'", [(now(), j) for j in job_ids])


@retry_locked
def finish_job(db: sqlite_utils.Database, job_id: int, status: str, message: str, *, error: str | None = None, run_id: int | None = None) -> None:
    """End a job (only a running job changes: a job already ended keeps its first verdict)."""
    with db.atomic():
        db.execute(
            "UPDATE jobs SET status = ?, message = ?, error = ?, run_id = COALESCE(?, run_id), finished_at = ?,"
            " progress = CASE WHEN ? = 'succeeded' THEN 1.0 ELSE progress END WHERE id = ? AND status = 'running'",
            [status, message, error, run_id, now(), status, job_id],
        )


@retry_locked
def amend_message(db: sqlite_utils.Database, job_id: int, message: str) -> None:
    """Say more about how a job ended (the scheduler's reason, known only after the job's own
    ending was written)."""
    with db.atomic():
        db.execute("UPDATE jobs SET message = ? WHERE id = ? AND status IN ('interrupted', 'cancelled', 'failed')", [message, job_id])


@retry_locked
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


@retry_locked
def cancel_requested(db: sqlite_utils.Database) -> list[Job]:
    return [_job(r) for r in db.query("SELECT * FROM jobs WHERE status = 'running' AND cancel_requested = 1")]


@retry_locked
def mark_stale(db: sqlite_utils.Database, stale_after: float, *, live_pids: Sequence[int] = ()) -> list[int]:
    """Running jobs whose heartbeat is older than ``stale_after`` seconds (and not run by a live
    child of this runner) become ``interrupted``. Slurm's jobs are left to the runner, which asks
    Slurm about them: one waiting in Slurm's queue has no heartbeat, and is not lost."""
    cutoff = (datetime.now(UTC) - timedelta(seconds=stale_after)).isoformat(timespec="seconds")
    with db.atomic():
        rows = db.execute("SELECT id, pid FROM jobs WHERE status = 'running' AND executor != 'slurm'"
                          " AND (heartbeat_at IS NULL OR heartbeat_at < ?)", [cutoff]).fetchall()
        stale = [job_id for job_id, pid in rows if pid not in live_pids]
        db.conn.executemany(
            "UPDATE jobs SET status = 'interrupted', finished_at = ?, message = ?, error = ? WHERE id = ?",
            [(now(), f"interrupted: its runner stopped answering (no heartbeat for {stale_after:.0f} s); `workbench jobs retry {j}` runs it again",
              "heartbeat stale", j) for j in stale],
        )
    return stale


def retry_job(db: sqlite_utils.Database, job_id: int, *, executor: str | None = None, resources: dict[str, Any] | None = None) -> int:
    """Queue a job again with the same params (a new row pointing at the old one), on the executor
    it ran on unless ``executor`` says otherwise, with its Slurm resources changed by ``resources``;
    jobs that were waiting on the old one are failed already, so the new one has no dependants.

    :raises ValueError: unknown job, or one still queued or running
    """
    job = get_job(db, job_id)
    if job is None:
        raise ValueError(f"no job #{job_id}")
    if job.status in ACTIVE:
        raise ValueError(f"job #{job_id} is {job.status}; only a finished job can be retried")
    again = executor or ("local" if job.executor in ("exec", "foreground") else job.executor)
    return submit_job(db, job.kind, job.params, uses_gpu=job.uses_gpu, retry_of=job.id, attempt=job.attempt + 1, executor=again,
                      gpus_needed=job.gpus_needed, processes=job.processes, resources={**job.resources, **(resources or {})})


@retry_locked
def active_jobs(db: sqlite_utils.Database, executor: str) -> list[Job]:
    """Running jobs of one executor (a runner that starts picks up Slurm's jobs this way)."""
    return [_job(r) for r in db.query("SELECT * FROM jobs WHERE status = 'running' AND executor = ? ORDER BY id", [executor])]


def job_events(db: sqlite_utils.Database, job_id: int, *, with_metrics_only: bool = False) -> list[dict[str, Any]]:
    where = " AND metrics != '{}'" if with_metrics_only else ""
    return [{**r, "metrics": json.loads(r["metrics"])} for r in db.query(f"SELECT * FROM job_events WHERE job_id = ?{where} ORDER BY id", [job_id])]


@retry_locked
def register_runner(db: sqlite_utils.Database, pid: int) -> int:
    with db.atomic():
        cur = db.execute("INSERT INTO runners (pid, host, started_at, heartbeat_at) VALUES (?, ?, ?, ?)", [pid, socket.gethostname(), now(), now()])
    return int(cur.lastrowid or 0)


@retry_locked
def runner_host(db: sqlite_utils.Database) -> str | None:
    """The host of the newest runner (the submitting side of a cluster's jobs)."""
    row = db.execute("SELECT host FROM runners ORDER BY id DESC LIMIT 1").fetchone()
    return str(row[0]) if row else None


@retry_locked
def runner_heartbeat(db: sqlite_utils.Database, runner_id: int, stopped: bool = False) -> None:
    with db.atomic():
        db.execute("UPDATE runners SET heartbeat_at = ?, stopped_at = ? WHERE id = ?", [now(), now() if stopped else None, runner_id])
