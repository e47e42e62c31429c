"""The durable queue under faults: runners killed, submitters gone, cancels, races, chains.

Runners run as real detached processes (``workbench worker``); every fault test ends with
``PRAGMA integrity_check``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.jobs.base import ParamsError
from engine.jobs.queue import submit
from engine.store import jobs as q
from engine.workspace import Workspace

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {**os.environ, "WORKBENCH_STALE_S": "2", "PYTHONPATH": str(Path(__file__).resolve().parents[3])}


def start_runner(ws: Workspace, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "--workspace", str(ws.root), "worker", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env(), start_new_session=True,
    )


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def status(ws: Workspace, job_id: int) -> str:
    db = ws.open_db()
    try:
        job = q.get_job(db, job_id)
        assert job is not None
        return job.status
    finally:
        db.close()


def running_pid(ws: Workspace, job_id: int) -> int:
    """Wait until the job runs and its process is recorded; returns that pid."""
    def recorded() -> bool:
        db = ws.open_db()
        try:
            job = q.get_job(db, job_id)
            return job is not None and job.status == "running" and job.pid is not None
        finally:
            db.close()

    wait_for(recorded)
    db = ws.open_db()
    try:
        return q.get_job(db, job_id).pid  # type: ignore[return-value, union-attr]
    finally:
        db.close()


def integrity_ok(ws: Workspace) -> bool:
    db = ws.open_db()
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    w = Workspace(tmp_path / "ws")
    w.init()
    yield w
    # Leave no runner behind.
    subprocess.run(["pkill", "-f", f"workbench.cli --workspace {w.root} worker"], check=False)


def test_kill_9_of_the_runner_interrupts_the_job_and_retry_completes(ws: Workspace) -> None:
    runner = start_runner(ws)
    job = submit(ws, "noop", {"seconds": "3"}, start_runner=False)
    pid = running_pid(ws, job)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    wait_for(lambda: not _alive(pid), timeout=5)  # the job's process died with its runner
    time.sleep(2.5)  # heartbeat goes stale (WORKBENCH_STALE_S=2 here; 30 s by default)
    second = start_runner(ws, "--exit-when-idle")
    wait_for(lambda: status(ws, job) == "interrupted")
    db = ws.open_db()
    assert "no heartbeat" in q.get_job(db, job).message  # type: ignore[union-attr]
    retry = q.retry_job(db, job)
    wait_for(lambda: status(ws, retry) == "succeeded", timeout=20)
    assert q.get_job(db, retry).retry_of == job and q.get_job(db, retry).attempt == 2  # type: ignore[union-attr]
    second.send_signal(signal.SIGTERM)
    second.wait(10)
    assert integrity_ok(ws)


def test_submitter_exiting_or_hangup_does_not_stop_the_job(ws: Workspace) -> None:
    # The submitter starts the detached runner itself, as `workbench jobs submit` does.
    code = (
        "import sys, time; from pathlib import Path; from engine.workspace import Workspace; from engine.jobs.queue import submit; "
        f"print(submit(Workspace(Path({str(ws.root)!r})), 'noop', {{'seconds': '3'}}), flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=_env(), start_new_session=True)
    assert proc.stdout is not None
    job = int(proc.stdout.readline().decode().strip())
    wait_for(lambda: status(ws, job) == "running")
    os.killpg(proc.pid, signal.SIGHUP)  # the terminal (SSH session) goes away
    proc.wait(10)
    wait_for(lambda: status(ws, job) == "succeeded", timeout=20)
    assert integrity_ok(ws)


def test_cancel_of_a_running_job_within_5_s_and_its_children_gone(ws: Workspace) -> None:
    runner = start_runner(ws)
    job = submit(ws, "noop", {"seconds": "60"}, start_runner=False)
    pid = running_pid(ws, job)
    assert pid != runner.pid
    db = ws.open_db()
    start = time.monotonic()
    assert q.request_cancel(db, job) == "cancelling"
    wait_for(lambda: status(ws, job) == "cancelled", timeout=5)
    assert time.monotonic() - start < 5
    wait_for(lambda: not _alive(pid), timeout=5)
    queued = submit(ws, "noop", {"seconds": "1"}, after=[job], start_runner=False)
    wait_for(lambda: status(ws, queued) == "failed")
    assert "dependency" in q.get_job(db, queued).message  # type: ignore[union-attr]
    waiting = submit(ws, "noop", {"seconds": "30"}, start_runner=False)
    blocked = submit(ws, "noop", {}, start_runner=False, after=[waiting])
    assert q.request_cancel(db, blocked) == "cancelled"  # a queued job leaves the queue at once
    q.request_cancel(db, waiting)
    runner.send_signal(signal.SIGTERM)
    runner.wait(10)
    assert integrity_ok(ws)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its parent counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped between the two looks: gone
        return False


def test_two_runners_never_double_run_and_200_jobs_from_4_processes_run_once(ws: Workspace) -> None:
    from engine.jobs.runner import runner_alive

    first = start_runner(ws)
    wait_for(lambda: runner_alive(ws))
    second = start_runner(ws)
    out, _ = second.communicate(timeout=30)
    assert second.returncode == 1 and b"a runner already serves this workspace" in out
    code = (
        "from pathlib import Path; from engine.workspace import Workspace; from engine.jobs.queue import submit; "
        f"ws = Workspace(Path({str(ws.root)!r})); [submit(ws, 'noop', {{}}, start_runner=False) for _ in range(50)]"
    )
    submitters = [subprocess.Popen([sys.executable, "-c", code], env=_env()) for _ in range(4)]
    for p in submitters:
        assert p.wait(60) == 0
    db = ws.open_db()
    wait_for(lambda: db.execute("SELECT COUNT(*) FROM jobs WHERE status != 'succeeded'").fetchone()[0] == 0, timeout=120)
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 200
    assert db.execute("SELECT COUNT(DISTINCT id) FROM jobs WHERE started_at IS NOT NULL").fetchone()[0] == 200
    logs = [p for p in ws.logs_dir.glob("job-*.log")]
    assert all(p.read_text().count("succeeded:") == 1 for p in logs) and len(logs) == 200
    first.send_signal(signal.SIGTERM)
    first.wait(10)
    assert integrity_ok(ws)


def test_a_chain_runs_in_order_and_a_failure_stops_its_dependants(ws: Workspace) -> None:
    a = submit(ws, "noop", {"seconds": "0.3"}, start_runner=False)
    b = submit(ws, "noop", {}, after=[a], start_runner=False)
    c = submit(ws, "noop", {"fail": "true"}, after=[b], start_runner=False)
    d = submit(ws, "noop", {}, after=[c], start_runner=False)
    e = submit(ws, "noop", {}, after=[d], start_runner=False)
    runner = start_runner(ws, "--exit-when-idle")
    wait_for(lambda: status(ws, e) not in ("queued", "running"))
    db = ws.open_db()
    jobs = {j: q.get_job(db, j) for j in (a, b, c, d, e)}
    assert [jobs[j].status for j in (a, b, c, d, e)] == ["succeeded", "succeeded", "failed", "failed", "failed"]  # type: ignore[union-attr]
    assert jobs[a].finished_at <= jobs[b].started_at  # type: ignore[operator, union-attr]
    assert jobs[d].message == f"not run: dependency #{c} (noop) failed"  # type: ignore[union-attr]
    assert jobs[e].message == f"not run: dependency #{d} (noop) failed"  # type: ignore[union-attr]
    runner.send_signal(signal.SIGTERM)
    runner.wait(10)
    assert integrity_ok(ws)


def test_bad_params_queue_nothing(ws: Workspace) -> None:
    with pytest.raises(ParamsError, match="seconds='soon': must be a number"):
        submit(ws, "noop", {"seconds": "soon"}, start_runner=False)
    with pytest.raises(ValueError, match="--after 99: no job with that id"):
        submit(ws, "noop", {}, after=[99], start_runner=False)
    assert ws.open_db().execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


def _captions_only(ws: Workspace, tmp_path: Path, name: str = "x") -> None:
    from engine.jobs.foreground import run_foreground

    images = [{"filename": f"{k}.jpg", "imgid": k, "split": "train", "sentences": [{"raw": "a road", "tokens": []}]} for k in range(3)]
    (tmp_path / f"{name}.json").write_text(json.dumps({"images": images}))
    run_foreground(ws, "ingest-captions", {"path": str(tmp_path / f"{name}.json"), "name": name, "allow_missing": True})


def test_training_kinds_get_a_stable_name_so_retries_resume(ws: Workspace, tmp_path: Path) -> None:
    _captions_only(ws, tmp_path)
    job = submit(ws, "train-captioner", {"dataset": "x", "prompt": "scene"}, start_runner=False)
    params = q.get_job(ws.open_db(), job).params  # type: ignore[union-attr]
    assert params["name"].startswith("captioner-")


def test_names_of_datasets_and_runs_are_checked_at_submit(ws: Workspace, tmp_path: Path) -> None:
    _captions_only(ws, tmp_path)
    count = "SELECT COUNT(*) FROM jobs"
    with pytest.raises(ParamsError, match=r"train-segmenter: dataset='nosuch': no dataset of that name \(datasets: x\)"):
        submit(ws, "train-segmenter", {"dataset": "nosuch"}, start_runner=False)
    with pytest.raises(ParamsError, match="segmenter='seg': no run of that name .* submit with --after JOB"):
        submit(ws, "segment", {"dataset": "x", "segmenter": "seg"}, start_runner=False)
    with pytest.raises(ParamsError, match="scenes='scenes.x': no run of that name"):
        submit(ws, "baseline-scene", {"dataset": "x", "scenes": "scenes.x"}, start_runner=False)
    assert ws.open_db().execute(count).fetchone()[0] == 0
    # a run a job it waits for will make is fine: named there, or further up the chain
    train = submit(ws, "train-captioner", {"dataset": "x", "prompt": "scene", "name": "cap"}, start_runner=False)
    gen = submit(ws, "generate", {"captioner": "cap", "name": "gen.cap"}, after=[train], start_runner=False)
    submit(ws, "evaluate", {"generation": "gen.cap"}, after=[gen], start_runner=False)
    submit(ws, "generate", {"captioner": "cap@1"}, after=[gen], start_runner=False)  # cap is two steps up
    submit(ws, "baseline-scene", {"dataset": "x", "scenes": "oracle"}, start_runner=False)
    with pytest.raises(ParamsError, match="generation='other': no run of that name"):
        submit(ws, "evaluate", {"generation": "other"}, after=[gen], start_runner=False)
    assert ws.open_db().execute(count).fetchone()[0] == 5
