"""The local executor: forked children on this machine, a pool of GPUs handed out per job.

A single-process job runs in a forked child (a few milliseconds of overhead, no new interpreter);
a data-parallel one in a forked child that becomes ``torchrun ... jobs exec ID``. Each child has
its own session and process group and dies with the runner (PR_SET_PDEATHSIG). A GPU job gets
the GPUs it needs from the runner's pool, which are free until it ends, and runs with
CUDA_VISIBLE_DEVICES naming only them, so its ``cuda`` is its own card.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Sequence
from typing import Any

from engine.jobs.executors import Launch, exec_command, job_log
from engine.process import die_with_parent
from engine.store import jobs as q
from engine.workspace import Workspace

CANCEL_GRACE = 3.0
"""Seconds between SIGTERM and SIGKILL when a running job is cancelled."""


def gpu_ids() -> list[str]:
    """GPUs this runner may hand out: its own CUDA_VISIBLE_DEVICES, else what nvidia-smi lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]


class LocalExecutor:
    name = "local"

    def __init__(self, ws: Workspace, gpus: Sequence[str] | None = None) -> None:
        self.ws = ws
        self.pool = list(gpu_ids() if gpus is None else gpus)

    def free_gpus(self, launches: Sequence[Launch]) -> list[str]:
        busy = {g for launch in launches for g in launch.gpus}
        return [g for g in self.pool if g not in busy]

    def start(self, db: Any, job: q.Job, gpus: Sequence[str]) -> Launch:
        """Fork the job's process (the runner claimed the row already)."""
        log_path = job_log(self.ws, job)
        self.ws.logs_dir.mkdir(parents=True, exist_ok=True)
        token = f"local-{job.id}-{uuid.uuid4().hex[:8]}" if job.processes > 1 else None
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        if token:
            env["WORKBENCH_CLAIM"] = token
        pid = os.fork()
        if pid == 0:  # the child: its own session, dies with the runner, never returns
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
                if gpus:
                    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
                if job.processes > 1:
                    command = exec_command(self.ws, job)
                    os.execve(command[0], command, env)
                from engine.jobs.child import execute

                code = execute(self.ws, job.id, str(log_path), claimed=True)
            finally:
                os._exit(code)
        # Recorded by the parent at once, so the row never names the wrong process.
        q.set_launch(db, job.id, log_path=str(log_path), pid=pid, external_id=token, gpus=",".join(gpus) or None)
        return Launch(job, log_path, pid=pid, external_id=token, gpus=tuple(gpus))

    def reap(self, db: Any, launch: Launch) -> bool:
        """True when the job's process has ended; its row is finished if the child could not."""
        assert launch.pid is not None
        done, status = os.waitpid(launch.pid, os.WNOHANG)
        if done == 0:
            return False
        # The child records its own ending; this covers a child killed before it could.
        if os.WIFSIGNALED(status):
            how = "cancelled" if launch.cancel_sent else "failed"
            q.finish_job(db, launch.job.id, how, f"{how}: killed by signal {os.WTERMSIG(status)}", error=f"signal {os.WTERMSIG(status)}")
        else:
            code = os.WEXITSTATUS(status)
            q.finish_job(db, launch.job.id, "failed", f"failed: exit code {code}", error=f"exit {code}")
        return True

    def cancel(self, launch: Launch, now: float) -> None:
        """SIGTERM to the job's process group, SIGKILL once the grace period is over."""
        assert launch.pid is not None
        if launch.cancel_sent is None:
            kill_group(launch.pid, signal.SIGTERM)
            launch.cancel_sent = now
        elif now - launch.cancel_sent > CANCEL_GRACE:
            kill_group(launch.pid, signal.SIGKILL)

    def stop(self, launch: Launch) -> None:
        if launch.pid is not None:
            kill_group(launch.pid, signal.SIGTERM)


def kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
