"""Data-parallel training on the CPU (2 processes over gloo, as on a GPU machine with NCCL): the
same result as one process within a stated tolerance, one run and one set of rows, and a
checkpoint written by two processes resumed by one."""

from __future__ import annotations

from typing import Any

import pytest

from engine.datasets.synthetic import write_captioning_dataset, write_drone_dataset
from engine.jobs import JobStopped
from engine.jobs.foreground import run_foreground
from engine.store import jobs as q
from engine.store.runs import get_run, list_runs
from engine.workspace import Workspace

pytestmark = pytest.mark.slow
CAPTIONER = {"dataset": "syn", "composition": "gt", "epochs": "2", "batch_size": "16", "patience": "5"}
SEGMENTER = {"dataset": "d", "epochs": "2", "steps_per_epoch": "4", "input_size": "64", "eval_size": "64", "batch_size": "8",
             "decoder_channels": "16,16,8,8,8", "num_workers": "0"}
CAPTIONER_TOLERANCE = 0.01
"""Relative difference of the validation loss, 2 processes against 1 (measured: equal to 4 digits;
a global batch's token mean differs from the mean of its two halves' means by a hair)."""
SEGMENTER_TOLERANCE = 0.15
"""Relative difference of the last epoch's training loss (on CPU each process normalises its own
half batch: BatchNorm statistics differ; on CUDA SyncBatchNorm makes them the global batch's)."""


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("ddp")
    w = Workspace(root / "ws")
    w.init()
    data = write_captioning_dataset(root / "syn", 64, size=64, seed=3)
    run_foreground(w, "ingest-captions", {"path": str(data.root), "name": "syn"})
    run_foreground(w, "compose", {"dataset": "syn", "masks": str(data.root / "masks"), "name": "gt"})
    drone = write_drone_dataset(root / "drone", 12, size=64, seed=1)
    run_foreground(w, "ingest-drone", {"path": str(drone.root), "name": "d"})
    return w


def _one_set_of_rows(ws: Workspace, family: str) -> None:
    db = ws.open_db()
    assert len([r for r in list_runs(db) if r.family == family]) == 1
    [job] = [j for j in q.list_jobs(db, limit=100) if j.params.get("name") == family]
    steps = [e["step"] for e in q.job_events(db, job.id, with_metrics_only=True) if "loss" in e["metrics"]]
    assert steps == sorted(set(steps)), steps  # rank 0 alone reported progress
    assert job.processes == 2 and job.executor == "foreground" and job.status == "succeeded"


def test_two_processes_train_the_captioner_as_one_does(ws: Workspace) -> None:
    one = run_foreground(ws, "train-captioner", {**CAPTIONER, "name": "cap1"})
    two = run_foreground(ws, "train-captioner", {**CAPTIONER, "name": "cap2", "processes": "2"})
    db = ws.open_db()
    v1, v2 = get_run(db, "cap1").metrics["val_loss"], get_run(db, "cap2").metrics["val_loss"]  # type: ignore[union-attr]
    assert abs(v2 - v1) <= CAPTIONER_TOLERANCE * v1, (v1, v2)
    assert get_run(db, "cap2").metrics["processes"] == 2 and "cap2: 2 epochs" in two.message  # type: ignore[union-attr]
    assert one.message.startswith("cap1: 2 epochs")
    _one_set_of_rows(ws, "cap2")
    assert (ws.model_dir("cap2") / "model" / "config.json").is_file()


def test_two_processes_fine_tune_by_scst(ws: Workspace) -> None:
    """SCST under torchrun: each process samples for its share of the images, rank 0 writes."""
    if get_run(ws.open_db(), "cap1") is None:
        run_foreground(ws, "train-captioner", {**CAPTIONER, "name": "cap1"})
    done = run_foreground(ws, "train-captioner", {"objective": "scst", "init": "cap1", "name": "scst2", "processes": "2", "epochs": "1",
                                                  "batch_size": "16", "scst_samples": "2", "max_new_tokens": "12"})
    db = ws.open_db()
    run = get_run(db, "scst2")
    assert run is not None and run.status == "complete" and run.metrics["processes"] == 2
    assert [h["epoch"] for h in run.metrics["history"]] == [0, 1] and "SCST from cap1" in done.message
    assert len([r for r in list_runs(db) if r.family == "scst2"]) == 1
    [job] = [j for j in q.list_jobs(db, limit=100) if j.params.get("name") == "scst2"]
    steps = [e["step"] for e in q.job_events(db, job.id, with_metrics_only=True) if "reward" in e["metrics"]]
    assert steps and steps == sorted(set(steps)), steps  # rank 0 alone reported progress
    assert (ws.model_dir("scst2") / "model" / "config.json").is_file()


def test_a_two_process_captioner_checkpoint_resumes_with_one_process(ws: Workspace) -> None:
    events: list[Any] = []

    def after_first_epoch() -> bool:
        return any("val_loss" in e.metrics for e in events)

    with pytest.raises(JobStopped):
        run_foreground(ws, "train-captioner", {**CAPTIONER, "name": "half", "processes": "2", "epochs": "3"},
                       on_progress=events.append, stop_requested=after_first_epoch)
    db = ws.open_db()
    assert get_run(db, "half").status == "failed"  # type: ignore[union-attr]
    resumed = run_foreground(ws, "train-captioner", {**CAPTIONER, "name": "half", "processes": "1", "epochs": "3"})
    assert "resumed at step" in resumed.message and get_run(db, "half").status == "complete"  # type: ignore[union-attr]
    assert [h["epoch"] for h in resumed.data["history"]] == [1, 2, 3]


def test_two_processes_train_the_segmenter_as_one_does(ws: Workspace) -> None:
    one = run_foreground(ws, "train-segmenter", {**SEGMENTER, "name": "seg1"})
    run_foreground(ws, "train-segmenter", {**SEGMENTER, "name": "seg2", "processes": "2"})
    db = ws.open_db()
    l1 = one.data["history"][-1]["train_loss"]
    l2 = get_run(db, "seg2").metrics["history"][-1]["train_loss"]  # type: ignore[union-attr]
    assert abs(l2 - l1) <= SEGMENTER_TOLERANCE * l1, (l1, l2)
    _one_set_of_rows(ws, "seg2")


def test_a_two_process_segmenter_checkpoint_resumes_with_one_process(ws: Workspace) -> None:
    """Stopped once its first epoch is validated; the epochs after it leave the stop (a cancel flag
    rank 0 reads twice a second) time to arrive on a fast machine (3 epochs did not)."""
    events: list[Any] = []
    epochs = 12
    with pytest.raises(JobStopped):
        run_foreground(ws, "train-segmenter", {**SEGMENTER, "name": "seg-half", "processes": "2", "epochs": str(epochs)},
                       on_progress=events.append, stop_requested=lambda: any("miou" in e.metrics for e in events))
    resumed = run_foreground(ws, "train-segmenter", {**SEGMENTER, "name": "seg-half", "epochs": str(epochs)})
    assert "(resumed at step" in resumed.message and [h["epoch"] for h in resumed.data["history"]] == list(range(1, epochs + 1))


def test_bad_process_counts_are_refused() -> None:
    from engine.jobs import ParamsError
    from engine.jobs.registry import get_kind

    with pytest.raises(ParamsError, match="processes=0: must be at least 1"):
        get_kind("train-captioner").parse({**CAPTIONER, "processes": "0"})
    with pytest.raises(ParamsError, match=r"processes=9: must be at least 1 and at most batch_size \(8\)"):
        get_kind("train-segmenter").parse({**SEGMENTER, "processes": "9"})
