"""Runner overhead: 200 no-op jobs through the durable queue, wall time per job.

The jobs are queued first; the time runs from starting a runner (a real ``workbench worker``
process, one CPU slot as configured by default) until the last job has succeeded, and includes
claiming, forking, logging, progress and the final status write of every job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Row

TARGET_MS = 100.0


def run(quick: bool = False) -> list[Row]:
    from engine.jobs.queue import submit
    from engine.workspace import Workspace

    n = 50 if quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        ws.init()
        for _ in range(n):
            submit(ws, "noop", {}, start_runner=False)
        db = ws.open_db()
        start = time.perf_counter()
        runner = subprocess.Popen([sys.executable, "-m", "workbench.cli", "--workspace", str(ws.root), "worker"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        while db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'").fetchone()[0] < n:
            if runner.poll() is not None:
                raise RuntimeError("the runner stopped early")
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        os.kill(runner.pid, signal.SIGTERM)
        runner.wait(10)
        ok = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'").fetchone()[0]
    per_job = elapsed / n * 1000
    return [Row(f"runner: {n} no-op jobs ({ok} succeeded)", f"{per_job:.1f} ms/job", f"{elapsed:.1f} s in all, incl. runner start", None,
                f"<= {TARGET_MS:.0f} ms", per_job <= TARGET_MS)]
