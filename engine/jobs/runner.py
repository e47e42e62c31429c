"""The durable runner: one per workspace, detached from any terminal, starts queued jobs on their
executor and follows them.

- One live runner per workspace: it holds an exclusive lock on ``runner.lock`` (released by the
  kernel when the process dies, so a dead runner's claim expires by itself).
- Local jobs run in forked children (``engine.jobs.executors.local``): one per GPU pool share for
  GPU jobs (each with its own CUDA_VISIBLE_DEVICES), ``cpu_jobs`` at a time for the others (and
  for GPU jobs on a machine without GPUs). Children die with the runner, and such jobs become
  ``interrupted`` once their heartbeat is stale.
- Slurm jobs (``engine.jobs.executors.slurm``) are submitted when their dependencies succeeded
  and followed with squeue/scontrol; they outlive the runner, and a new runner picks them up.
- The runner heartbeats its running jobs, relays cancel requests and recovers stale jobs. Its
  store writes retry while another writer holds the database locked; it never exits while
  children run because of a busy database.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from engine.errors import WorkbenchError
from engine.jobs.executors import Launch
from engine.jobs.executors.local import LocalExecutor, gpu_ids
from engine.jobs.executors.slurm import ENDED, GRACE, SlurmExecutor, describe
from engine.store import jobs as q
from engine.store.connection import is_locked
from engine.workspace import Workspace

STALE_AFTER = float(os.environ.get("WORKBENCH_STALE_S", "30"))
"""Seconds without a heartbeat before a running job counts as interrupted."""
POLL = 0.02
"""Seconds between looks at the queue while busy."""
SLURM_POLL = 1.0
"""Seconds between questions to Slurm."""

log = logging.getLogger("workbench.runner")


class RunnerBusy(Exception):
    "Another live runner serves this workspace."


def gpu_count() -> int:
    """GPUs visible to jobs, without importing torch (CUDA_VISIBLE_DEVICES or nvidia-smi)."""
    return len(gpu_ids())


def runner_alive(ws: Workspace) -> bool:
    """True when a runner holds this workspace's lock."""
    path = ws.root / "runner.lock"
    if not path.exists():
        return False
    with open(path) as fh:  # flock needs no write access: a read-only workspace can ask too
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def start_detached(ws: Workspace) -> int:
    """Start ``workbench worker --exit-when-idle`` in its own session, detached from this terminal
    (closing it, or losing SSH, does not stop the runner). Returns its pid."""
    ws.logs_dir.mkdir(parents=True, exist_ok=True)
    out = open(ws.logs_dir / "runner.log", "ab")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "--workspace", str(ws.root.resolve()), "worker", "--exit-when-idle"],
        stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, close_fds=True,
    )
    out.close()
    return proc.pid


def ensure_runner(ws: Workspace) -> bool:
    """Start a detached runner unless one is alive. Returns True if one was started."""
    if runner_alive(ws):
        return False
    start_detached(ws)
    return True


@dataclass
class Runner:
    workspace: Workspace
    cpu_jobs: int = 1
    gpus: list[str] | None = None
    """The GPUs it may hand out (default: its CUDA_VISIBLE_DEVICES, else nvidia-smi's)."""
    idle_exit: float | None = None
    """Exit after this many seconds with nothing queued or running (None: run until stopped)."""
    running: dict[int, Launch] = field(default_factory=dict)
    _stop: bool = False

    def __post_init__(self) -> None:
        self.local = LocalExecutor(self.workspace, self.gpus)
        self.slurm = SlurmExecutor(self.workspace)
        self._last_slurm = 0.0

    @property
    def gpu_pool(self) -> list[str]:
        return self.local.pool

    def serve(self) -> int:
        """Run jobs until stopped (SIGTERM/SIGINT) or idle; returns the number of jobs started.

        :raises RunnerBusy: if another runner holds the workspace
        """
        lock = open(self.workspace.root / "runner.lock", "a+")  # noqa: SIM115 (held for the runner's life)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RunnerBusy(f"{self.workspace.root}: a runner already serves this workspace") from None
        db = self.workspace.open_db()
        runner_id = q.register_runner(db, os.getpid())
        for active in q.active_jobs(db, "slurm"):  # Slurm's jobs outlive runners: follow them again
            if active.external_id:
                self.running[active.id] = Launch(active, self.workspace.logs_dir / f"job-{active.id}.log", external_id=active.external_id)
        q.mark_stale(db, STALE_AFTER)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        started, idle_since, last_beat = 0, time.monotonic(), 0.0
        try:
            while not self._stop:
                try:
                    self._follow(db)
                    claimed = q.claim_next(db, self._fits)
                    if claimed is not None:
                        self._start(db, claimed)
                        started += 1
                        idle_since = time.monotonic()
                        continue
                    now = time.monotonic()
                    if now - last_beat >= 1.0:
                        q.heartbeat(db, [j for j, launch in self.running.items() if launch.job.executor != "slurm"])
                        q.runner_heartbeat(db, runner_id)
                        q.mark_stale(db, STALE_AFTER, live_pids=[r.pid for r in self.running.values() if r.pid])
                        last_beat = now
                except sqlite3.OperationalError as exc:  # the queue's writes retry; a read can still meet a lock
                    if not is_locked(exc):
                        raise
                    log.warning("database busy; retrying")
                    time.sleep(0.5)
                    continue
                if self.running:
                    idle_since = now
                elif self.idle_exit is not None and now - idle_since >= self.idle_exit:
                    break
                time.sleep(POLL if self.running else 0.2)
        finally:
            for launch in self.running.values():
                self._executor(launch.job).stop(launch)
            q.runner_heartbeat(db, runner_id, stopped=True)
            db.close()
            lock.close()
        return started

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop = True

    def _executor(self, job: q.Job) -> Any:
        return self.slurm if job.executor == "slurm" else self.local

    def _fits(self, executor: str, gpus_needed: int) -> bool:
        """Whether a queued job of this executor and GPU need can start now."""
        if executor == "slurm":
            return True  # Slurm queues it; its resources are the cluster's business
        local = [r for r in self.running.values() if r.job.executor != "slurm"]
        if gpus_needed and self.local.pool:
            return gpus_needed <= len(self.local.free_gpus(local)) or gpus_needed > len(self.local.pool)
        return sum(1 for r in local if not r.gpus) < self.cpu_jobs

    def _start(self, db: Any, job: q.Job) -> None:
        try:
            if job.executor == "slurm":
                launch = self.slurm.start(db, job)
            else:
                gpus: list[str] = []
                if job.gpus_needed and self.local.pool:
                    if job.gpus_needed > len(self.local.pool):
                        raise WorkbenchError(f"needs {job.gpus_needed} GPUs; this runner has {len(self.local.pool)} "
                                             f"({', '.join(self.local.pool)})")
                    local = [r for r in self.running.values() if r.job.executor != "slurm"]
                    gpus = self.local.free_gpus(local)[: job.gpus_needed]
                launch = self.local.start(db, job, gpus)
        except WorkbenchError as exc:
            q.finish_job(db, job.id, "failed", f"failed: {exc}", error=str(exc))
            return
        self.running[job.id] = launch

    def _follow(self, db: Any) -> None:
        """Reap ended local children, follow Slurm's jobs, relay cancel requests."""
        now = time.monotonic()
        wanted = {j.id for j in q.cancel_requested(db)}
        for job_id, launch in list(self.running.items()):
            executor = self._executor(launch.job)
            if job_id in wanted or launch.cancel_sent is not None:
                executor.cancel(launch, now)
            if launch.job.executor != "slurm" and self.local.reap(db, launch):
                del self.running[job_id]
        if now - self._last_slurm >= SLURM_POLL and any(r.job.executor == "slurm" for r in self.running.values()):
            self._last_slurm = now
            self._follow_slurm(db, now, wanted)

    def _follow_slurm(self, db: Any, now: float, cancelled: set[int]) -> None:
        launches = [r for r in self.running.values() if r.job.executor == "slurm"]
        try:
            states = self.slurm.states(launches)
        except WorkbenchError as exc:
            log.warning("cannot ask Slurm: %s", exc)
            return
        alive = []
        for launch in launches:
            row = q.get_job(db, launch.job.id)
            state = states.get(launch.external_id or "", {})
            launch.state = state.get("JobState", "UNKNOWN")
            if row is None or row.status != "running":  # its process recorded the ending
                if row is not None and row.error == "SIGTERM" and state and launch.state not in ENDED:
                    continue  # stopped by a signal: once Slurm says why (TIMEOUT, ...), the message says so too
                if row is not None and row.error == "SIGTERM" and state:
                    q.amend_message(db, row.id, f"interrupted: Slurm job {launch.external_id} ended {describe(state)}; "
                                    f"`workbench jobs retry {row.id}` runs it again (training resumes from its checkpoint)")
                del self.running[launch.job.id]
                continue
            if state and launch.state not in ENDED:
                alive.append(launch.job.id)
                if launch.state == "PENDING" and row.pid is None:
                    reason = state.get("Reason", "")
                    q.set_launch(db, row.id, log_path=str(launch.log_path), message=f"waiting in Slurm as job {launch.external_id}"
                                 + (f" ({reason})" if reason and reason not in ("None", "(null)") else ""))
                continue
            launch.ended_seen = launch.ended_seen or now
            if now - launch.ended_seen < GRACE:
                continue
            if row.id in cancelled or launch.cancel_sent is not None:
                q.finish_job(db, row.id, "cancelled", "cancelled (Slurm job ended)")
            else:
                what = f"ended {describe(state)}" if state else "ended (Slurm no longer knows it)"
                q.finish_job(db, row.id, "interrupted",
                             f"interrupted: Slurm job {launch.external_id} {what} before the job finished; "
                             f"`workbench jobs retry {row.id}` runs it again (training resumes from its checkpoint)",
                             error=f"slurm {launch.state}")
            del self.running[launch.job.id]
        q.heartbeat(db, alive)  # Slurm still has them: pending ones have no process to heartbeat
