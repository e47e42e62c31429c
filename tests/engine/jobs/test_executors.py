"""The local executor's GPU pool, `jobs exec`'s claim and heartbeat, and a runner that outlasts a
database locked for longer than busy_timeout."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.jobs.queue import submit
from engine.store import jobs as q
from engine.workspace import Workspace
from tests.conftest import db_fingerprint

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_STALE_S": "3", **extra}


def _cli(ws: Workspace, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "workbench.cli", "--workspace", str(ws.root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env(**env), start_new_session=True)


def _wait(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _job(ws: Workspace, job_id: int) -> q.Job:
    db = ws.open_db()
    try:
        job = q.get_job(db, job_id)
        assert job is not None
        return job
    finally:
        db.close()


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    w = Workspace(tmp_path / "ws")
    w.init()
    yield w
    subprocess.run(["pkill", "-f", f"workbench.cli --workspace {w.root}"], check=False)


def test_each_gpu_job_gets_its_own_gpus_and_waits_for_enough_free(ws: Workspace) -> None:
    """Under CUDA_VISIBLE_DEVICES=0,1 (no GPU needed to see it): two one-GPU jobs run at once on
    different GPUs; a two-GPU job waits until both are free."""
    a = submit(ws, "noop", {"seconds": "3", "gpus": "1"}, start_runner=False)
    b = submit(ws, "noop", {"seconds": "3", "gpus": "1"}, start_runner=False)
    both = submit(ws, "noop", {"seconds": "0.2", "gpus": "2"}, start_runner=False)
    runner = _cli(ws, "worker", CUDA_VISIBLE_DEVICES="0,1")
    _wait(lambda: _job(ws, a).status == "running" and _job(ws, b).status == "running" and _job(ws, b).gpus is not None)
    assert {_job(ws, a).gpus, _job(ws, b).gpus} == {"0", "1"}
    assert _job(ws, both).status == "queued"  # needs two GPUs; none is free
    _wait(lambda: _job(ws, both).status == "succeeded", timeout=30)
    ja, jb, jboth = _job(ws, a), _job(ws, b), _job(ws, both)
    assert ja.message.endswith(f"on GPUs {ja.gpus}") and jb.message.endswith(f"on GPUs {jb.gpus}")
    assert jboth.gpus == "0,1" and jboth.message.endswith("on GPUs 0,1")
    assert jboth.started_at >= max(ja.finished_at, jb.finished_at)  # type: ignore[operator]
    too_many = submit(ws, "noop", {"gpus": "3"}, start_runner=False)
    _wait(lambda: _job(ws, too_many).status == "failed")
    assert "needs 3 GPUs; this runner has 2 (0, 1)" in _job(ws, too_many).message
    runner.send_signal(signal.SIGTERM)
    runner.wait(10)


def test_jobs_exec_refuses_what_it_may_not_run_and_changes_nothing(ws: Workspace) -> None:
    done = submit(ws, "noop", {}, start_runner=False)
    assert subprocess.run([sys.executable, "-m", "workbench.cli", "-w", str(ws.root), "jobs", "exec", str(done)], env=_env()).returncode == 0
    assert _job(ws, done).status == "succeeded"
    before = db_fingerprint(ws)
    again = subprocess.run([sys.executable, "-m", "workbench.cli", "-w", str(ws.root), "jobs", "exec", str(done)],
                           env=_env(), capture_output=True, text=True)
    assert again.returncode == 2 and f"job #{done} is succeeded; nothing to run" in again.stderr
    assert db_fingerprint(ws) == before
    # A job a launcher claimed runs only in the process holding its claim token.
    db = ws.open_db()
    claimed = q.submit_job(db, "noop", {}, claim="slurm-like-42")
    other = subprocess.run([sys.executable, "-m", "workbench.cli", "-w", str(ws.root), "jobs", "exec", str(claimed)],
                           env=_env(WORKBENCH_CLAIM="someone-else"), capture_output=True, text=True)
    assert other.returncode == 2 and "already running" in other.stderr and _job(ws, claimed).status == "running"
    mine = subprocess.run([sys.executable, "-m", "workbench.cli", "-w", str(ws.root), "jobs", "exec", str(claimed)],
                          env=_env(WORKBENCH_CLAIM="slurm-like-42"))
    assert mine.returncode == 0 and _job(ws, claimed).status == "succeeded"


def test_a_silent_jobs_exec_job_heartbeats_and_is_not_thrown_away(ws: Workspace) -> None:
    """No progress for 12 s against a 3 s staleness limit (30 s by default; the same 4x margin as a
    model loading for two minutes): its heartbeat thread keeps it alive, and its success counts."""
    job = submit(ws, "noop", {"seconds": "12", "silent": "true"}, start_runner=False)
    proc = _cli(ws, "jobs", "exec", str(job), WORKBENCH_HEARTBEAT_S="1")
    _wait(lambda: _job(ws, job).status == "running")
    for _ in range(10):  # what `workbench jobs list` does without a runner
        listing = subprocess.run([sys.executable, "-m", "workbench.cli", "-w", str(ws.root), "jobs", "list"], env=_env(),
                                 capture_output=True, text=True)
        assert listing.returncode == 0
        time.sleep(1)
    assert proc.wait(30) == 0
    assert _job(ws, job).status == "succeeded"


def test_a_writer_holding_the_lock_past_busy_timeout_neither_fails_the_job_nor_stops_the_runner(ws: Workspace) -> None:
    env = {"WORKBENCH_BUSY_TIMEOUT_MS": "300"}
    runner = _cli(ws, "worker", **env)
    job = submit(ws, "noop", {"seconds": "4"}, start_runner=False)
    _wait(lambda: _job(ws, job).status == "running")
    holder = sqlite3.connect(ws.db_path, timeout=30)
    holder.execute("BEGIN IMMEDIATE")
    time.sleep(3)  # ten times busy_timeout: progress, heartbeats and claims meet "database is locked"
    holder.rollback()
    holder.close()
    _wait(lambda: _job(ws, job).status == "succeeded", timeout=30)
    assert runner.poll() is None  # still serving
    later = submit(ws, "noop", {}, start_runner=False)
    _wait(lambda: _job(ws, later).status == "succeeded")
    runner.send_signal(signal.SIGTERM)
    runner.wait(10)
