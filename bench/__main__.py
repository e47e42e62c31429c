"""Run every benchmark and print one table: ``python -m bench [--quick] [--only NAME] [--json FILE]``;
``python -m bench --gpu [--json FILE]`` runs the GPU check instead (:mod:`bench.gpu`)."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from pathlib import Path

from bench.common import Row, print_table, write_json

BENCHMARKS = ["bench_ingest", "bench_compose", "bench_segment", "bench_captioning", "bench_evaluate", "bench_queue", "bench_executors",
              "bench_tui", "bench_reward"]
"""Modules of this package, each with ``run(quick) -> list[Row]``."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    parser.add_argument("--only", action="append", help="run only this benchmark (module name without bench_)")
    parser.add_argument("--gpu", action="store_true", help="the GPU check: QLoRA, LoRA, generation and segmenter figures "
                        "(tiny shapes on the CPU where there is no CUDA)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the table to FILE as JSON")
    args = parser.parse_args(argv)
    if args.gpu:
        from bench.gpu import run_check

        return run_check(json_path=args.json)
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
    print_table(rows)
    if args.json:
        write_json(args.json, rows, benchmarks=chosen)
    return 0 if all(r.ok is not False for r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
