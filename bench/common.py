"""What every benchmark returns, and where it may cache generated inputs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    name: str
    measured: str
    baseline: str
    ratio: float | None
    target: str
    ok: bool | None
    """None when the figure has no target (information only)."""


def cache_dir() -> Path:
    """Generated inputs are kept between runs (they are deterministic): $WORKBENCH_BENCH_CACHE or ~/.cache."""
    root = Path(os.environ.get("WORKBENCH_BENCH_CACHE") or Path.home() / ".cache" / "workbench-bench")
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def timer() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())
