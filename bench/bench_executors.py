"""Executors: the time from submit to succeeded of a no-op job through Slurm beside the local
runner, in the same run, and data-parallel training throughput, 2 CPU processes against 1.

Slurm: each job is queued, then the runner submits it with sbatch, Slurm starts it, `jobs exec`
runs it on the node, and the runner sees the ending (it asks Slurm once a second). Measured on the
single-node Slurm of `scripts/slurm-up`; the row says so and is skipped when no Slurm answers.
Training: the same tiny captioner (global batch 16) as pairs per second; on two CPU cores two
processes only share the cores, so this is information: the speed-up belongs to GPUs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Row

JOBS = 5


def _submit_to_succeeded(ws: object, executor: str, n: int) -> float:
    from engine.jobs.queue import submit
    from engine.store import jobs as q

    db = ws.open_db()  # type: ignore[attr-defined]
    times = []
    for _ in range(n):
        start = time.perf_counter()
        job_id = submit(ws, "noop", {}, executor=executor, start_runner=False)  # type: ignore[arg-type]
        while (job := q.get_job(db, job_id)) is not None and job.status in ("queued", "running"):
            time.sleep(0.02)
        if job is None or job.status != "succeeded":
            raise RuntimeError(f"{executor} noop ended {job.status if job else 'missing'}: {job.message if job else ''}")
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return out.returncode == 0 and any(s.strip() in ("idle", "mixed", "allocated") for s in out.stdout.splitlines())


def _overhead(quick: bool) -> list[Row]:
    from engine.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        ws.init()
        ws.config_path.write_text(ws.config_path.read_text().replace("# [store]\n# journal = \"delete\"", "[store]\njournal = \"delete\""))
        runner = subprocess.Popen([sys.executable, "-m", "workbench.cli", "--workspace", str(ws.root), "worker"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            time.sleep(1.0)
            n = 3 if quick else JOBS
            local = _submit_to_succeeded(ws, "local", n)
            rows = [Row(f"noop submit to succeeded, local (median of {n})", f"{local * 1000:.0f} ms", "", None, "", None)]
            if _slurm_up():
                slurm = _submit_to_succeeded(ws, "slurm", n)
                rows.append(Row(f"noop submit to succeeded, Slurm (median of {n})", f"{slurm:.2f} s", f"{local * 1000:.0f} ms local",
                                slurm / local, "", None))
            else:
                rows.append(Row("noop submit to succeeded, Slurm", "skipped", "no Slurm answers (scripts/slurm-up)", None, "", None))
        finally:
            os.killpg(runner.pid, signal.SIGTERM)
            runner.wait(10)
    return rows


def _training(quick: bool) -> list[Row]:
    from engine.datasets.synthetic import write_captioning_dataset
    from engine.jobs.foreground import run_foreground
    from engine.store.runs import get_run
    from engine.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        ws.init()
        data = write_captioning_dataset(Path(tmp) / "syn", 64 if quick else 160, size=48, seed=2)
        run_foreground(ws, "ingest-captions", {"path": str(data.root), "name": "syn"})
        run_foreground(ws, "compose", {"dataset": "syn", "masks": str(data.root / "masks"), "name": "gt"})
        rates = {}
        for processes in (1, 2):
            params = {"dataset": "syn", "composition": "gt", "name": f"p{processes}", "epochs": "2", "batch_size": "16",
                      "processes": str(processes)}
            start = time.perf_counter()
            run_foreground(ws, "train-captioner", params)
            elapsed = time.perf_counter() - start
            pairs = get_run(ws.open_db(), f"p{processes}").metrics["train_pairs"] * 2  # type: ignore[union-attr]
            rates[processes] = pairs / elapsed
    return [Row("train-captioner tiny, 2 CPU processes (incl. start-up)", f"{rates[2]:.0f} pairs/s", f"{rates[1]:.0f} pairs/s, 1 process",
                rates[2] / rates[1], "", None)]


def run(quick: bool = False) -> list[Row]:
    return _overhead(quick) + _training(quick)
