"""The Slurm executor: each job is ``sbatch --parsable`` of ``workbench -w WORKSPACE jobs exec ID``.

A thin backend over sbatch, squeue, scontrol and scancel, chosen on the facts: our jobs are one
command each (submitit pickles Python callables), and many clusters run without an accounting
database, where ``sacct`` fails and submitit's job state stays UNKNOWN. While Slurm knows a job,
squeue gives its state; after it leaves the queue, scontrol remembers it for MinJobAge (the
reason: TIMEOUT, NODE_FAIL, CANCELLED, ...); after that the row's own ending is what counts.

Resources come from config.toml (``[slurm]``, ``[slurm.kinds.KIND]``) and per-call overrides
stored on the job row. A data-parallel job gets ``--gres=gpu:N`` and runs torchrun inside its
allocation. ``--after`` is the runner's own: a dependant is submitted when its dependencies
succeeded, not with ``--dependency=afterok`` (one mechanism for every executor, a Slurm job may
wait on a local one, and a failed dependency fails its dependants with the cause instead of
leaving them pending in Slurm forever as DependencyNeverSatisfied).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from engine.config import SlurmResources
from engine.errors import WorkbenchError
from engine.jobs.executors import Launch, exec_command, job_log
from engine.store import jobs as q
from engine.workspace import Workspace

TIMEOUT = 30.0
"""Seconds a Slurm command may take (a busy controller answers slowly, never not at all)."""
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
         "REVOKED", "SPECIAL_EXIT")
GRACE = 10.0
"""Seconds after Slurm says a job ended before its unfinished row is declared interrupted (the
job's own last write may still be on its way)."""


class SlurmError(WorkbenchError):
    "sbatch, squeue or scancel failed or is missing."


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    if shutil.which(args[0]) is None:
        raise SlurmError(f"{args[0]} not found: this machine is not a Slurm submit host (install slurm-client, "
                         "or run `scripts/slurm-up` for a single-node Slurm), or use --executor local")
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise SlurmError(f"{args[0]} did not answer within {TIMEOUT:.0f} s") from exc


def resources_for(ws: Workspace, job: q.Job) -> SlurmResources:
    """config.toml's resources of the job's kind, with the job's own overrides on top."""
    base = ws.config().slurm_for(job.kind)
    o = job.resources
    own = SlurmResources(partition=o.get("partition", ""), time=o.get("time", ""), gpus=o.get("gpus"),
                         extra=tuple(o.get("extra", ())))
    return own.over(base)


def cluster_has_gpus(partition: str = "") -> bool:
    """Whether the (partition's) nodes offer GPUs as a generic resource (sinfo's GRES column)."""
    done = _run(["sinfo", "-h", "-o", "%G", *(["-p", partition] if partition else [])])
    return "gpu" in done.stdout


def sbatch_args(ws: Workspace, job: q.Job, has_gpus: bool = True) -> list[str]:
    """sbatch's arguments for a job. A GPU kind asks for one GPU per data-parallel process when
    the cluster has GPUs (``has_gpus``), none on a CPU-only cluster; ``gpus`` in config.toml or
    ``--gpus`` on the call says otherwise."""
    r = resources_for(ws, job)
    gpus = r.gpus if r.gpus is not None else (job.gpus_needed if has_gpus else 0)
    args = ["sbatch", "--parsable", f"--job-name=wb{job.id}-{job.kind}", f"--output={job_log(ws, job)}", "--open-mode=append",
            f"--chdir={ws.root.resolve()}"]
    for flag, value in (("--partition", r.partition), ("--account", r.account), ("--qos", r.qos), ("--time", r.time),
                        ("--cpus-per-task", r.cpus or ""), ("--mem", r.memory)):
        if value:
            args.append(f"{flag}={value}")
    if gpus:
        args.append(f"--gres=gpu:{gpus}")
    args += list(r.extra)
    args += ["--wrap", shlex.join(exec_command(ws, job))]
    return args


class SlurmExecutor:
    name = "slurm"

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._gpus: dict[str, bool] = {}

    def start(self, db: Any, job: q.Job) -> Launch:
        """Submit the claimed job; its Slurm job id becomes the row's claim token.

        :raises SlurmError: if sbatch is missing or refuses (the message says why)
        """
        self.ws.logs_dir.mkdir(parents=True, exist_ok=True)
        partition = resources_for(self.ws, job).partition
        if partition not in self._gpus:
            self._gpus[partition] = cluster_has_gpus(partition)
        done = _run(sbatch_args(self.ws, job, self._gpus[partition]))
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise SlurmError(f"sbatch refused job #{job.id}: {lines[-1] if lines else 'no reason given'}")
        slurm_id = done.stdout.strip().split(";")[0]
        log = job_log(self.ws, job)
        q.set_launch(db, job.id, log_path=str(log), external_id=slurm_id, message=f"submitted to Slurm as job {slurm_id}")
        return Launch(job, log, external_id=slurm_id, state="PENDING")

    def states(self, launches: Sequence[Launch]) -> dict[str, dict[str, str]]:
        """Slurm's view of each launch (JobState, Reason, ExitCode, NodeList), keyed by Slurm id;
        a job Slurm has forgotten is absent."""
        ids = [launch.external_id for launch in launches if launch.external_id]
        if not ids:
            return {}
        out: dict[str, dict[str, str]] = {}
        queue = _run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i|%T|%r|%N"])
        for line in queue.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 4:
                out[parts[0]] = {"JobState": parts[1], "Reason": parts[2], "NodeList": parts[3]}
        for slurm_id in ids:
            if slurm_id in out and out[slurm_id]["JobState"] not in ENDED:
                continue
            shown = _run(["scontrol", "show", "job", "-o", slurm_id])
            if shown.returncode == 0 and "JobState=" in shown.stdout:
                out[slurm_id] = dict(field.split("=", 1) for field in shown.stdout.split() if "=" in field)
        return out

    def cancel(self, launch: Launch, now: float) -> None:
        """scancel: Slurm sends SIGTERM, then SIGKILL after its KillWait; a pending job just leaves."""
        if launch.cancel_sent is None and launch.external_id:
            _run(["scancel", launch.external_id])
            launch.cancel_sent = now

    def stop(self, launch: Launch) -> None:
        """A runner that stops leaves Slurm's jobs running: they are the cluster's, and a later
        runner follows them again."""


def describe(state: dict[str, str]) -> str:
    """Slurm's reason for an ending, in words: "TIMEOUT (time limit)", "NODE_FAIL", ..."""
    job_state = state.get("JobState", "UNKNOWN")
    words = {"TIMEOUT": "its time limit", "NODE_FAIL": "its node failed", "PREEMPTED": "it was preempted",
             "OUT_OF_MEMORY": "it ran out of memory", "CANCELLED": "it was cancelled outside the workbench (scancel)",
             "FAILED": "its process failed", "BOOT_FAIL": "its node did not boot", "DEADLINE": "its deadline passed"}
    reason = state.get("Reason", "")
    extra = f", reason {reason}" if reason and reason not in ("None", "(null)") else ""
    code = state.get("ExitCode", "")
    extra += f", exit code {code}" if code and code != "0:0" else ""
    return f"{job_state} ({words.get(job_state, 'it ended')}{extra})"
