"""The Slurm executor against a real single-node Slurm (`scripts/slurm-up`; CI starts it).

Jobs are submitted with sbatch, followed with squeue/scontrol (there is no accounting database:
`sacct` fails here, as on many clusters), cancelled with scancel, and run by `workbench jobs exec
ID` on the node, which writes the workspace database directly (journal mode DELETE, as a workspace
on a shared file system needs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.datasets.synthetic import write_drone_dataset
from engine.jobs.foreground import run_foreground
from engine.store import jobs as q
from engine.workspace import Workspace

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]
SEGMENTER = ["-pdataset=d", "-pinput_size=64", "-peval_size=64", "-pbatch_size=4", "-pdecoder_channels=16,16,8,8,8",
             "-pnum_workers=0", "-psteps_per_epoch=2"]


def cli(ws: Workspace, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "-w", str(ws.root), *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def submit(ws: Workspace, *args: str) -> int:
    out = cli(ws, "jobs", "submit", *args, "--executor", "slurm").stdout
    return int(re.search(r"queued job #(\d+)", out).group(1))  # type: ignore[union-attr]


def job(ws: Workspace, job_id: int) -> q.Job:
    db = ws.open_db()
    try:
        found = q.get_job(db, job_id)
        assert found is not None
        return found
    finally:
        db.close()


def wait(check, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError("timed out waiting")


def slurm_state(slurm_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "-o", slurm_id], capture_output=True, text=True).stdout
    found = re.search(r"JobState=(\w+)", out)
    return found.group(1) if found else "UNKNOWN"


def running_on_node(ws: Workspace, job_id: int) -> bool:
    found = job(ws, job_id)
    return found.status == "running" and found.pid is not None and found.external_id is not None


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    w = Workspace(tmp_path / "ws")
    w.init()
    text = w.config_path.read_text().replace("# [store]\n# journal = \"delete\"", "[store]\njournal = \"delete\"")
    w.config_path.write_text(text)
    yield w
    db = w.open_db()
    for j in q.active_jobs(db, "slurm"):
        if j.external_id:
            subprocess.run(["scancel", j.external_id], check=False)
    subprocess.run(["pkill", "-f", f"workbench.cli --workspace {w.root.resolve()} worker"], check=False)


@pytest.fixture
def drone(ws: Workspace, tmp_path: Path) -> Workspace:
    data = write_drone_dataset(tmp_path / "drone", 12, size=64, seed=1)
    run_foreground(ws, "ingest-drone", {"path": str(data.root), "name": "d"})
    return ws


def test_the_demo_runs_through_slurm(ws: Workspace) -> None:
    out = cli(ws, "demo", "--fast", "--images", "24", "--drone-images", "6", "--no-tui", "--executor", "slurm").stdout
    assert "jobs did not succeed" not in out and "eval.gen.cap.test\n" in out
    db = ws.open_db()
    jobs = q.list_jobs(db)
    assert len(jobs) == 12 and all(j.status == "succeeded" and j.executor == "slurm" for j in jobs), [(j.kind, j.message) for j in jobs]
    ids = [j.external_id for j in jobs]
    assert all(i and i.isdigit() for i in ids) and len(set(ids)) == 12
    shown = cli(ws, "jobs", "show", str(jobs[-1].id)).stdout
    assert f"executor  slurm, Slurm job {jobs[-1].external_id}" in shown and "gpus: none" in shown
    assert "sacct" not in shown


def test_a_cancel_reaches_slurm_and_the_row_is_cancelled_within_10_s(ws: Workspace) -> None:
    job_id = submit(ws, "noop", "-pseconds=120")
    wait(lambda: running_on_node(ws, job_id))
    slurm_id = job(ws, job_id).external_id
    start = time.monotonic()
    assert "cancelled" in cli(ws, "jobs", "cancel", str(job_id)).stdout
    wait(lambda: job(ws, job_id).status == "cancelled", timeout=10)
    assert time.monotonic() - start < 10
    wait(lambda: slurm_state(slurm_id) == "CANCELLED", timeout=10)  # type: ignore[arg-type]
    queued = submit(ws, "noop", "-pseconds=120", "--partition", "no-such-partition")
    wait(lambda: job(ws, queued).status == "failed")
    assert "sbatch refused job" in job(ws, queued).message and "partition" in job(ws, queued).message


def test_scancel_from_outside_and_a_kill_on_the_node_give_interrupted_with_slurms_reason(ws: Workspace) -> None:
    first = submit(ws, "noop", "-pseconds=120")
    wait(lambda: running_on_node(ws, first))
    subprocess.run(["scancel", job(ws, first).external_id], check=True)  # type: ignore[list-item]
    wait(lambda: "CANCELLED" in job(ws, first).message, timeout=30)
    assert job(ws, first).status == "interrupted" and "cancelled outside the workbench (scancel)" in job(ws, first).message
    second = submit(ws, "noop", "-pseconds=3")
    wait(lambda: running_on_node(ws, second))
    subprocess.run(["scancel", "--signal=KILL", "--full", job(ws, second).external_id], check=True)  # type: ignore[list-item]
    wait(lambda: job(ws, second).status != "running", timeout=40)  # the process could not say so itself
    assert job(ws, second).status == "interrupted" and "retry" in job(ws, second).message
    retried = int(re.search(r"#(\d+)", cli(ws, "jobs", "retry", str(second)).stdout).group(1))  # type: ignore[union-attr]
    wait(lambda: job(ws, retried).status == "succeeded", timeout=60)
    assert job(ws, retried).executor == "slurm" and job(ws, retried).attempt == 2


def test_after_orders_slurm_jobs_and_none_runs_twice_beside_a_local_runner(ws: Workspace) -> None:
    a = submit(ws, "noop", "-pseconds=1")
    b = submit(ws, "noop", "-pseconds=1", "--after", str(a))
    c = int(re.search(r"#(\d+)", cli(ws, "jobs", "submit", "noop", "--after", str(b), "--executor", "local").stdout).group(1))  # type: ignore[union-attr]
    d = submit(ws, "noop", "-pseconds=1", "--after", str(c))
    wait(lambda: job(ws, d).status == "succeeded", timeout=120)
    jobs = [job(ws, x) for x in (a, b, c, d)]
    assert [j.executor for j in jobs] == ["slurm", "slurm", "local", "slurm"]
    for earlier, later in zip(jobs, jobs[1:], strict=False):
        assert earlier.finished_at <= later.started_at  # type: ignore[operator]
    # A job Slurm runs is refused to anyone else, the runner included.
    long = submit(ws, "noop", "-pseconds=20")
    wait(lambda: running_on_node(ws, long))
    stolen = cli(ws, "jobs", "exec", str(long), check=False)
    assert stolen.returncode == 2 and "already running by slurm" in stolen.stderr
    many = [submit(ws, "noop") for _ in range(6)]
    wait(lambda: all(job(ws, x).status == "succeeded" for x in many), timeout=120)
    for x in many:
        assert Path(job(ws, x).log_path).read_text().count("succeeded:") == 1  # type: ignore[arg-type]


def test_a_time_limit_interrupts_with_timeout_and_a_retry_resumes_training(drone: Workspace) -> None:
    """--time=1: Slurm sends SIGTERM at its limit (checked every 30 s), the trainer saves a
    checkpoint at the step it reached, the row says TIMEOUT; the retry carries on from that step.
    The training is far longer than the limit on any machine, so no machine's speed decides."""
    ws = drone
    job_id = submit(ws, "train-segmenter", *SEGMENTER, "-pname=limited", "-pepochs=100000", "--time", "1")
    wait(lambda: job(ws, job_id).status not in ("running", "queued"), timeout=200)
    wait(lambda: "TIMEOUT" in job(ws, job_id).message, timeout=30)
    first = job(ws, job_id)
    assert first.status == "interrupted" and "its time limit" in first.message, first.message
    reached = max(e["step"] for e in steps(ws, job_id))
    retried = int(re.search(r"#(\d+)", cli(ws, "jobs", "retry", str(job_id), "--time", "10").stdout).group(1))  # type: ignore[union-attr]
    wait(lambda: len(steps(ws, retried)) > 0, timeout=120)
    assert job(ws, retried).resources == {"time": "10"}
    assert min(e["step"] for e in steps(ws, retried)) > reached >= 1  # from the checkpoint, not from step 1
    cli(ws, "jobs", "cancel", str(retried))
    wait(lambda: job(ws, retried).status == "cancelled", timeout=30)
    assert "resuming run limited" in Path(job(ws, retried).log_path).read_text()  # type: ignore[arg-type]


def steps(ws: Workspace, job_id: int) -> list[dict[str, object]]:
    db = ws.open_db()
    try:
        return [e for e in q.job_events(db, job_id) if e["step"] is not None]
    finally:
        db.close()
