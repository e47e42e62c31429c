"""Job rows: what readers derive from them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from engine.store.jobs import Job

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RUNNING = Job(1, "noop", {}, "running", 0.25, "", None, None, None, None, "", (NOW - timedelta(seconds=30)).isoformat(),
              None, None, None, False, 1, None, False)


def test_time_left_extrapolates_progress_and_says_nothing_when_unknown() -> None:
    assert RUNNING.time_left(NOW) == "2 min"  # 90 s left: from 90 s on, minutes
    assert replace(RUNNING, progress=0.5).time_left(NOW) == "30 s"
    assert replace(RUNNING, status="queued").time_left(NOW) == ""
    assert replace(RUNNING, progress=0.0).time_left(NOW) == ""
