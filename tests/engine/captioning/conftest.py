"""The synthetic world with a trained tiny captioner, shared by the captioning tests (built once)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.datasets.synthetic import write_captioning_dataset
from engine.jobs.foreground import run_foreground
from engine.workspace import Workspace


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cap")
    ws = Workspace(root / "ws")
    ws.init()
    data = write_captioning_dataset(root / "syn", 160, size=64, seed=7)
    run_foreground(ws, "ingest-captions", {"path": str(data.root), "name": "syn"})
    run_foreground(ws, "compose", {"dataset": "syn", "masks": str(data.root / "masks"), "name": "gt"})
    events: list[Any] = []
    trained = run_foreground(ws, "train-captioner", {"dataset": "syn", "composition": "gt", "name": "cap", "epochs": "8", "batch_size": "16"},
                             on_progress=events.append)
    return {"ws": ws, "root": root, "trained": trained, "events": events}
