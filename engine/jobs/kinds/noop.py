"""Job kind ``noop``: does nothing (or sleeps); for trying the queue and measuring its overhead."""

from __future__ import annotations

import time
from dataclasses import dataclass

from engine.jobs.base import JobContext, JobKind, JobResult


@dataclass(frozen=True)
class NoopParams:
    seconds: float = 0.0
    """How long to wait (checking for cancel every 0.1 s)."""
    fail: bool = False
    """End with an error instead (to try dependants and retries)."""

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError("seconds: must be 0 or more")


def noop(params: NoopParams, ctx: JobContext) -> JobResult:
    end = time.monotonic() + params.seconds
    step = 0
    while time.monotonic() < end:
        ctx.check_stop()
        time.sleep(0.1)
        step += 1
        ctx.progress(step, max(1, int(params.seconds * 10)), "waiting")
    if params.fail:
        from engine.errors import WorkbenchError

        raise WorkbenchError("noop: asked to fail (fail=true)")
    return JobResult(f"noop: done after {params.seconds:g} s")


NOOP = JobKind("noop", NoopParams, noop, "Do nothing (optionally wait); for trying the queue")
