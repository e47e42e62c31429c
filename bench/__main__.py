"""Run every benchmark and print one table: ``python -m bench [--quick] [--only NAME]``."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time

from bench.common import Row

BENCHMARKS = ["bench_ingest", "bench_compose", "bench_segment", "bench_captioning", "bench_evaluate", "bench_queue", "bench_executors",
              "bench_tui"]
"""Modules of this package, each with ``run(quick) -> list[Row]``."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    parser.add_argument("--only", action="append", help="run only this benchmark (module name without bench_)")
    args = parser.parse_args(argv)
    chosen = [b for b in BENCHMARKS if not args.only or b.removeprefix("bench_") in args.only]
    if not chosen:
        print(f"no benchmark named {args.only}; choose from {', '.join(b.removeprefix('bench_') for b in BENCHMARKS)}", file=sys.stderr)
        return 1
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    rows: list[Row] = []
    for name in chosen:
        start = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += importlib.import_module(f"bench.{name}").run(quick=args.quick)
        print(f"  {name} took {time.perf_counter() - start:.1f} s", file=sys.stderr)
    headers = ("benchmark", "measured", "baseline", "ratio", "target", "ok")
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
    return 0 if all(r.ok is not False for r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
