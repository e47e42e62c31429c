"""Checkpoints written as one unit: a crash while writing leaves the previous one whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.training import latest_checkpoint, write_checkpoint


def _fill(epoch: int, fail_after: int | None = None):  # type: ignore[no-untyped-def]
    def fill(folder: Path) -> None:
        for k, name in enumerate(("model.safetensors", "trainer.pt", "metrics.json")):
            if fail_after is not None and k == fail_after:
                raise OSError("disk full")
            (folder / name).write_text(f"{name} of epoch {epoch}")

    return fill


def test_a_crash_mid_checkpoint_leaves_the_previous_one_whole(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    write_checkpoint(tmp_path, 1, _fill(1))
    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(tmp_path, 2, _fill(2, fail_after=2))  # model and trainer state written, metrics not
    last = latest_checkpoint(tmp_path)
    assert last is not None and last.name == "ckpt-00000001"
    assert {p.name: p.read_text() for p in last.iterdir()} == {
        n: f"{n} of epoch 1" for n in ("model.safetensors", "trainer.pt", "metrics.json")}
    write_checkpoint(tmp_path, 2, _fill(2))  # the redone epoch replaces the leftovers
    assert latest_checkpoint(tmp_path).name == "ckpt-00000002"  # type: ignore[union-attr]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "ckpt-00000002"]
