"""The durable runner: one per workspace, detached from any terminal, runs queued jobs.

- One live runner per workspace: it holds an exclusive lock on ``runner.lock`` (released by the
  kernel when the process dies, so a dead runner's claim expires by itself).
- Each job runs in a forked child in its own session and process group, with its own log file
  (``logs/job-<id>.log``). Forking (not a new interpreter) keeps the per-job overhead to a few
  milliseconds. Children die with the runner (PR_SET_PDEATHSIG), so a killed runner leaves no
  half-run job going; such jobs become ``interrupted`` once their heartbeat is stale.
- The runner heartbeats its running jobs, relays cancel requests (SIGTERM to the job's group,
  SIGKILL after a grace period) and recovers stale jobs.
- Slots: jobs that use the GPU run one per GPU; others up to ``cpu_jobs`` at a time. Without a
  GPU, every job takes a CPU slot.

Executors: this is the local executor. A cluster executor (Slurm ``sbatch``) or a multi-GPU
launcher (``accelerate launch``/``torchrun``) plugs in at :meth:`Runner._start`: instead of
forking, it submits ``workbench jobs exec ID`` to the scheduler (or under the launcher), which
runs :func:`engine.jobs.child.execute` exactly as the forked child does; the queue, progress,
cancel (``scancel``) and heartbeat protocol stay the same.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from engine.process import die_with_parent
from engine.store import jobs as q
from engine.workspace import Workspace

STALE_AFTER = float(os.environ.get("WORKBENCH_STALE_S", "30"))
"""Seconds without a heartbeat before a running job counts as interrupted."""
CANCEL_GRACE = 3.0
"""Seconds between SIGTERM and SIGKILL when a running job is cancelled."""
POLL = 0.02
"""Seconds between looks at the queue while busy."""


class RunnerBusy(Exception):
    "Another live runner serves this workspace."


def gpu_count() -> int:
    """GPUs visible to jobs, without importing torch (CUDA_VISIBLE_DEVICES or nvidia-smi)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def runner_alive(ws: Workspace) -> bool:
    """True when a runner holds this workspace's lock."""
    path = ws.root / "runner.lock"
    if not path.exists():
        return False
    with open(path, "a+") as fh:
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
    log = open(ws.logs_dir / "runner.log", "ab")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "--workspace", str(ws.root.resolve()), "worker", "--exit-when-idle"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
    )
    log.close()
    return proc.pid


def ensure_runner(ws: Workspace) -> bool:
    """Start a detached runner unless one is alive. Returns True if one was started."""
    if runner_alive(ws):
        return False
    start_detached(ws)
    return True


@dataclass
class _Running:
    job: q.Job
    pid: int
    cancel_sent: float | None = None


@dataclass
class Runner:
    workspace: Workspace
    cpu_jobs: int = 1
    gpus: int = 0
    idle_exit: float | None = None
    """Exit after this many seconds with nothing queued or running (None: run until stopped)."""
    running: dict[int, _Running] = field(default_factory=dict)
    _stop: bool = False

    def serve(self, log: Any = None) -> int:
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
        q.mark_stale(db, STALE_AFTER)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        started, idle_since, last_beat = 0, time.monotonic(), 0.0
        try:
            while not self._stop:
                self._reap(db)
                self._relay_cancels(db)
                job = self._claim(db)
                if job is not None:
                    self._start(db, job)
                    started += 1
                    idle_since = time.monotonic()
                    continue
                now = time.monotonic()
                if now - last_beat >= 1.0:
                    q.heartbeat(db, list(self.running))
                    q.runner_heartbeat(db, runner_id)
                    q.mark_stale(db, STALE_AFTER, live_pids=[r.pid for r in self.running.values()])
                    last_beat = now
                if self.running:
                    idle_since = now
                elif self.idle_exit is not None and now - idle_since >= self.idle_exit:
                    break
                time.sleep(POLL if self.running else 0.2)
        finally:
            for r in self.running.values():
                _kill_group(r.pid, signal.SIGTERM)
            q.runner_heartbeat(db, runner_id, stopped=True)
            db.close()
            lock.close()
        return started

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop = True

    def _claim(self, db: Any) -> q.Job | None:
        gpu_busy = sum(1 for r in self.running.values() if r.job.uses_gpu and self.gpus)
        cpu_busy = len(self.running) - gpu_busy
        take_cpu = cpu_busy < self.cpu_jobs
        take_gpu = gpu_busy < self.gpus if self.gpus else take_cpu
        if not take_cpu and not take_gpu:
            return None
        return q.claim_next(db, take_gpu=take_gpu, take_cpu=take_cpu)

    def _start(self, db: Any, job: q.Job) -> None:
        log_path = (self.workspace.logs_dir / f"job-{job.id}.log").resolve()  # readable from any directory
        self.workspace.logs_dir.mkdir(parents=True, exist_ok=True)
        pid = os.fork()
        if pid == 0:  # the child: its own session, dies with the runner, runs the job, never returns
            code = 1
            try:
                os.setsid()
                die_with_parent()
                fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                from engine.jobs.child import execute

                code = execute(self.workspace, job.id, str(log_path))
            finally:
                os._exit(code)
        # Recorded by the parent at once, so the row never names the wrong process.
        q.set_job_pid(db, job.id, pid, str(log_path))
        self.running[job.id] = _Running(job, pid)

    def _reap(self, db: Any) -> None:
        for job_id, r in list(self.running.items()):
            done, status = os.waitpid(r.pid, os.WNOHANG)
            if done == 0:
                continue
            del self.running[job_id]
            # The child records its own ending; this covers a child killed before it could.
            if os.WIFSIGNALED(status):
                how = "cancelled" if r.cancel_sent else "failed"
                q.finish_job(db, job_id, how, f"{how}: killed by signal {os.WTERMSIG(status)}", error=f"signal {os.WTERMSIG(status)}")
            else:
                q.finish_job(db, job_id, "failed", f"failed: exit code {os.WEXITSTATUS(status)}", error=f"exit {os.WEXITSTATUS(status)}")

    def _relay_cancels(self, db: Any) -> None:
        wanted = {j.id for j in q.cancel_requested(db)}
        now = time.monotonic()
        for job_id, r in self.running.items():
            if job_id in wanted and r.cancel_sent is None:
                _kill_group(r.pid, signal.SIGTERM)
                r.cancel_sent = now
            elif r.cancel_sent is not None and now - r.cancel_sent > CANCEL_GRACE:
                _kill_group(r.pid, signal.SIGKILL)


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
