"""What every benchmark returns, and where it may cache generated inputs."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


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


HEADERS = ("benchmark", "measured", "baseline", "ratio", "target", "ok")


def print_table(rows: Sequence[Row], headers: Sequence[str] = HEADERS) -> None:
    """The results as one aligned table on stdout (``ok``: yes, NO, or - for information)."""
    cells = [
        (r.name, r.measured, r.baseline, "" if r.ratio is None else f"{r.ratio:.2f}x", r.target,
         "-" if r.ok is None else "yes" if r.ok else "NO")
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-" * len(line))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


def write_json(path: Path, rows: Sequence[Row], **extra: Any) -> None:
    """The table as JSON (one object per row), with ``extra`` top-level fields."""
    path.write_text(json.dumps({**extra, "rows": [asdict(r) for r in rows]}, indent=2) + "\n", encoding="utf-8")
