"""Faults outside the queue: a foreground job killed with SIGTERM, a redirected log, an ingest
killed while its probe workers run, and a training that fails before it succeeds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.datasets.synthetic import write_drone_dataset
from engine.jobs.foreground import run_foreground
from engine.store import jobs as q
from engine.store.runs import get_run
from engine.store.views import run_curve
from engine.workspace import Workspace

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
TINY = {"dataset": "d", "epochs": "2", "steps_per_epoch": "3", "input_size": "64", "eval_size": "64", "batch_size": "4",
        "decoder_channels": "16,16,8,8,8", "num_workers": "0"}


def _cli(ws: Workspace, *args: str, **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "workbench.cli", "--workspace", str(ws.root), *args],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, **kw)  # type: ignore[call-overload]


def _wait(check, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.fixture
def drone_ws(tmp_path: Path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.init()
    data = write_drone_dataset(tmp_path / "drone", 12, size=64, seed=1)
    run_foreground(ws, "ingest-drone", {"path": str(data.root), "name": "d"})
    return ws


def _status(ws: Workspace, name: str) -> str | None:
    db = ws.open_db()
    try:
        run = get_run(db, name)
        return run.status if run else None
    finally:
        db.close()


def test_a_foreground_run_killed_with_sigterm_is_marked_failed_and_its_log_has_progress(drone_ws: Workspace, tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        proc = _cli(drone_ws, "run", "train-segmenter", *[f"-p{k}={v}" for k, v in {**TINY, "epochs": "400", "name": "fg"}.items()],
                    stdout=out, stderr=subprocess.STDOUT)
        _wait(lambda: "epoch 1 validated" in log.read_text())  # plain progress lines, though not a terminal
        assert _status(drone_ws, "fg") == "running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 1
    text = log.read_text()
    assert "error: terminated (SIGTERM); its runs are marked failed" in text and "Traceback" not in text
    assert "train-segmenter: epoch 1 validated 3/1200" in text
    assert _status(drone_ws, "fg") == "failed"


def test_every_attempt_of_a_training_is_on_its_curve(drone_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job names its run as soon as it exists, so a failed attempt's loss stays on the curve."""
    import engine.segmentation.train as train
    from engine.jobs.child import execute

    db = drone_ws.open_db()
    first = q.submit_job(db, "train-segmenter", {**TINY, "name": "curve"})
    real, calls = train.evaluate, {"n": 0}

    def second_epoch_fails(*a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk gone")
        return real(*a, **k)

    monkeypatch.setattr(train, "evaluate", second_epoch_fails)
    monkeypatch.setattr("engine.jobs.child.FLUSH_EVERY", 0.0)
    assert execute(drone_ws, first) == 3
    monkeypatch.setattr(train, "evaluate", real)
    second = q.retry_job(db, first)
    assert execute(drone_ws, second) == 0
    run = get_run(db, "curve")
    assert run is not None and run.status == "complete"
    assert {j.run_id for j in (q.get_job(db, first), q.get_job(db, second))} == {run.id}  # type: ignore[union-attr]
    failed = [e["metrics"]["loss"] for e in q.job_events(db, first, with_metrics_only=True) if "loss" in e["metrics"]]
    resumed = [e["metrics"]["loss"] for e in q.job_events(db, second, with_metrics_only=True) if "loss" in e["metrics"]]
    assert (len(failed), len(resumed)) == (6, 3)  # two epochs of 3 steps, the second lost; the retry redoes it
    assert [c["loss"] for c in run_curve(db, run.id) if "loss" in c] == failed + resumed


def _children(pid: int) -> set[int]:
    try:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killing_an_ingest_leaves_no_probe_workers_behind(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ws.init()
    images = tmp_path / "set" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (192, 192, 3), dtype=np.uint8))
    entries = []
    for i in range(1500):
        picture.save(images / f"{i}.png", compress_level=0)
        entries.append({"filename": f"{i}.png", "split": "train", "sentences": [{"raw": "a field", "tokens": ["a", "field"]}]})
    (tmp_path / "set" / "dataset.json").write_text(json.dumps({"images": entries}))
    for how in (signal.SIGKILL, signal.SIGTERM):
        proc = _cli(ws, "ingest", "captions", str(tmp_path / "set"), "--verify", "--name", f"k{how}",
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: len(_children(proc.pid)) >= 2, timeout=30)
        workers = _children(proc.pid)
        os.kill(proc.pid, how)
        proc.wait(timeout=30)
        _wait(lambda: not any(_alive(w) for w in workers), timeout=10)  # they die with their parent
