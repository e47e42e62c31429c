"""Executors: where the runner starts a claimed job and how it follows it.

One interface, two implementations: :class:`~engine.jobs.executors.local.LocalExecutor` forks a
child on this machine (or a torchrun launcher for data-parallel jobs), handing each GPU job its
own GPUs through CUDA_VISIBLE_DEVICES; :class:`~engine.jobs.executors.slurm.SlurmExecutor`
submits ``workbench -w WORKSPACE jobs exec ID`` with sbatch and follows it with squeue and
scontrol. Job kinds never know which one runs them: the process that runs a job is always
``engine.jobs.child.execute``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from engine.store import jobs as q
from engine.workspace import Workspace


@dataclass
class Launch:
    """A job the runner started and still follows."""

    job: q.Job
    log_path: Path
    pid: int | None = None
    """The local child (its process group)."""
    external_id: str | None = None
    """Slurm's job id, or the local launcher's claim token."""
    gpus: tuple[str, ...] = ()
    cancel_sent: float | None = None
    ended_seen: float | None = None
    """When the scheduler first said the job ended while its row still ran (a grace period starts)."""
    state: str = ""
    """The scheduler's last word on it (PENDING, RUNNING, TIMEOUT, ...)."""
    detail: dict[str, str] = field(default_factory=dict)


def exec_command(ws: Workspace, job: q.Job) -> list[str]:
    """The command that runs a job in a process of its own: ``workbench jobs exec ID``, under
    torchrun with one process per data-parallel rank when the job has several."""
    exec_args = ["-m", "workbench.cli", "--workspace", str(ws.root.resolve()), "jobs", "exec", str(job.id)]
    if job.processes > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={job.processes}", *exec_args]
    return [sys.executable, *exec_args]


def job_log(ws: Workspace, job: q.Job) -> Path:
    return (ws.logs_dir / f"job-{job.id}.log").resolve()  # absolute: readable from any directory
