"""Job kind ``noop``: does nothing (or sleeps); for trying the queue and measuring its overhead."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from engine.jobs.base import JobContext, JobKind, JobResult


@dataclass(frozen=True)
class NoopParams:
    seconds: float = 0.0
    """How long to wait (checking for cancel every 0.1 s)."""
    fail: bool = False
    """End with an error instead (to try dependants and retries)."""
    silent: bool = False
    """Report no progress while waiting (a job busy loading a large model looks like this)."""
    gpus: int = 0
    """GPUs to ask for (to try the GPU pool and Slurm's --gres)."""

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError("seconds: must be 0 or more")
        if self.gpus < 0:
            raise ValueError("gpus: must be 0 or more")


def noop(params: NoopParams, ctx: JobContext) -> JobResult:
    end = time.monotonic() + params.seconds
    step = 0
    while time.monotonic() < end:
        ctx.check_stop()
        time.sleep(0.1)
        step += 1
        if not params.silent:
            ctx.progress(step, max(1, int(params.seconds * 10)), "waiting")
    if params.fail:
        from engine.errors import WorkbenchError

        raise WorkbenchError("noop: asked to fail (fail=true)")
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    return JobResult(f"noop: done after {params.seconds:g} s" + (f" on GPUs {gpus}" if params.gpus and gpus else ""))


NOOP = JobKind("noop", NoopParams, noop, "Do nothing (optionally wait); for trying the queue", gpus=lambda p: p.gpus)
