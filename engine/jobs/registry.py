"""The registered job kinds, by name."""

from __future__ import annotations

from engine.jobs.base import JobKind, ParamsError
from engine.jobs.kinds.ingest import INGEST_CAPTIONS, INGEST_DRONE
from engine.jobs.kinds.synthesize import SYNTHESIZE

KINDS: dict[str, JobKind] = {k.name: k for k in (INGEST_CAPTIONS, INGEST_DRONE, SYNTHESIZE)}


def get_kind(name: str) -> JobKind:
    """:raises ParamsError: listing the valid kinds"""
    try:
        return KINDS[name]
    except KeyError:
        raise ParamsError(f"unknown job kind {name!r}; valid: {', '.join(sorted(KINDS))}") from None
