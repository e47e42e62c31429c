"""A small workspace with something on every screen, built once per session and copied per test.

30 synthetic images with references, ground-truth masks as a segmentation run, compositions, two
generation runs (the first reference; a constant caption) both evaluated with the Java-free
tokenizer, a segmenter run with a confusion matrix, and jobs with a loss curve and a log.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from engine.datasets.synthetic import write_captioning_dataset
from engine.jobs.foreground import run_foreground
from engine.store import jobs as q
from engine.store.catalog import get_dataset, list_images, now
from engine.store.runs import MaskRow, add_masks, create_run, get_run, set_run_status
from engine.workspace import Workspace

PY = {"tokenizer": "python", "resamples": "200"}
GROUPS = ["Unlabeled", "Artificial Surface", "Natural Surface", "Water", "Vegetation", "Building", "Fences & Poles",
          "People & Animals", "Vehicles", "Markers & Obstacles"]


def build(root: Path) -> Workspace:
    ws = Workspace(root / "ws")
    ws.init()
    data = write_captioning_dataset(root / "syn", 30, size=48, seed=4)
    run_foreground(ws, "ingest-captions", {"path": str(data.root), "name": "syn"})
    db = ws.open_db()
    dataset = get_dataset(db, "syn")
    assert dataset is not None
    seg = create_run(db, kind="segmentation", name="gt-masks", params={}, dataset_id=dataset.id)
    add_masks(db, seg.id, [MaskRow(im.id, str(data.root / "masks" / Path(im.filename).with_suffix(".png").name), [1] * 10)
                           for im in list_images(db, dataset.id)])
    set_run_status(db, seg.id, "complete", {"images": 30})
    run_foreground(ws, "compose", {"dataset": "syn", "masks": str(data.root / "masks"), "name": "compose.gt"})
    ann = json.loads(data.annotations.read_text())  # type: ignore[union-attr]
    (root / "first.json").write_text(json.dumps([{"image_id": e["filename"], "caption": e["sentences"][0]["raw"]} for e in ann["images"]]))
    (root / "constant.json").write_text(json.dumps([{"image_id": e["filename"], "caption": "a piece of green land"} for e in ann["images"]]))
    for name in ("first", "constant"):
        run_foreground(ws, "import-generations", {"results": str(root / f"{name}.json"), "dataset": "syn", "name": name})
        run_foreground(ws, "evaluate", {"generation": name, **PY})
    segmenter = create_run(db, kind="segmenter", name="seg", params={"arch": "Unet"})
    names = GROUPS[:3]
    set_run_status(db, segmenter.id, "complete", {
        "miou": 0.5, "pixel_accuracy": 0.9, "iou": {n: 0.5 for n in names}, "class_names": names,
        "confusion": [[8, 1, 1], [0, 9, 1], [2, 0, 8]],
        "history": [{"epoch": e, "train_loss": 1.0 / (e + 1)} for e in range(4)]})
    job = q.submit_job(db, "train-captioner", {"dataset": "syn"})
    q.start_unclaimed(db, job)
    log = ws.logs_dir / f"job-{job}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("training on 120 pairs\nepoch 1 loss 2.5\n")
    q.set_job_pid(db, job, 0, str(log))
    q.record_progress(db, job, 0.5, "epoch 1", [(now(), s, 10, "step", {"loss": 3.0 - 0.2 * s}) for s in range(5)])
    q.finish_job(db, job, "succeeded", "trained", run_id=segmenter.id)
    q.submit_job(db, "evaluate", {"generation": "first"})  # stays queued: tests cancel it
    db.close()
    return ws


@pytest.fixture(scope="session")
def tui_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tui-template")
    build(root)
    return root


@pytest.fixture
def tui_ws(tui_template: Path, tmp_path: Path) -> Workspace:
    """A private copy of the small workspace (dataset paths stay valid: they point at the template)."""
    shutil.copytree(tui_template / "ws", tmp_path / "ws")
    return Workspace(tmp_path / "ws")


@pytest.fixture
def settle() -> Callable[[Pilot[Any]], Awaitable[None]]:
    """Let thread workers finish and their messages be handled (no sleeps)."""

    async def wait(pilot: Pilot[Any]) -> None:
        for _ in range(3):
            for _attempt in range(5):  # a newer refresh may cancel an exclusive reader: wait for its successor
                try:
                    await pilot.app.workers.wait_for_complete()
                    break
                except WorkerCancelled:
                    continue
            await pilot.pause()

    return wait


@pytest.fixture(autouse=True)
def no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    from textual.widgets import Input

    monkeypatch.setattr(Input, "cursor_blink", False)


def rating_rows(ws: Workspace) -> list[dict[str, Any]]:
    db = ws.open_db()
    try:
        return list(db.query("SELECT * FROM ratings ORDER BY id"))
    finally:
        db.close()


def run_id(ws: Workspace, name: str) -> int:
    db = ws.open_db()
    try:
        run = get_run(db, name)
        assert run is not None
        return run.id
    finally:
        db.close()
