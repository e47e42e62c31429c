"""Jobs: the one layer that joins the store with compute.

A kind is a ``JobKind`` (params dataclass + ``run(params, ctx)``); :data:`KINDS` lists them.
"""

from __future__ import annotations

from engine.jobs.base import JobContext, JobKind, JobResult, JobStopped, ParamsError, Progress
from engine.jobs.registry import KINDS, get_kind

__all__ = ["KINDS", "JobContext", "JobKind", "JobResult", "JobStopped", "ParamsError", "Progress", "get_kind"]
