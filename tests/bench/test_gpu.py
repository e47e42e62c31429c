"""The GPU check (``python -m bench --gpu``) at its tiny CPU shapes: every part is reported, the
bitsandbytes part is skipped with its reason, and a part that fails does not stop the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import gpu, gpu_parts

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_cpu_run_reports_every_part_with_positive_figures(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}  # the CPU shapes, even on a GPU machine
    done = subprocess.run([sys.executable, "-m", "bench", "--gpu", "--json", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    parts = {p["part"]: p for p in data["parts"]}
    assert list(parts) == [p.key for p in gpu_parts.PARTS]
    assert parts["qlora"]["status"] == "skipped" and "CUDA" in parts["qlora"]["reason"]
    assert parts["qlora"]["row"]["measured"].startswith("skipped: ")
    for key, part in parts.items():
        if key == "qlora":
            continue
        assert part["status"] == "ran", part
        assert part["figures"] and all(v > 0 for v in part["figures"].values()), part
        assert part["row"]["ok"] is True
        assert part["row"]["name"] in done.stdout  # one table row each
    assert parts["lora"]["figures"]["tokens_per_s"] > 0 and parts["generate"]["figures"]["ratio"] > 0
    assert parts["segment-job"]["figures"]["ratio"] > 0
    assert "none at tiny CPU shapes" in done.stdout  # the GPU anchors are not shown against CPU figures


def test_a_failing_part_is_a_row_with_its_error_and_the_rest_still_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    def out_of_memory(check: Any, quantized: bool) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\n(the rest of the message)")

    monkeypatch.setattr(gpu_parts, "_lora_part", out_of_memory)
    parts = [p for p in gpu_parts.PARTS if p.key in ("lora", "generate")]
    out = tmp_path / "gpu.json"
    assert gpu.run_check(json_path=out, parts=parts, shapes=gpu.CPU) == 2
    data = json.loads(out.read_text())
    lora, generate = data["parts"]
    assert lora["status"] == "failed" and lora["reason"] == "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert lora["row"]["ok"] is False and lora["row"]["measured"] == "FAILED: " + lora["reason"]
    assert generate["status"] == "ran" and generate["figures"]["tokens_per_s_batched"] > 0
    table = capsys.readouterr().out
    assert "FAILED: OutOfMemoryError: CUDA out of memory" in table and "1 ran, 0 skipped, 1 failed" in table


def test_a_skipped_part_keeps_the_exit_code_zero(tmp_path: Path) -> None:
    def skip(check: gpu.Check) -> gpu.Outcome:
        raise gpu.Skipped("needs a thing this machine lacks")

    parts = [gpu.Part("nothing", lambda s: "a part that cannot run here", skip, lambda s: "")]
    assert gpu.run_check(json_path=tmp_path / "g.json", parts=parts, shapes=gpu.CPU) == 0
    (part,) = json.loads((tmp_path / "g.json").read_text())["parts"]
    assert part["status"] == "skipped" and part["reason"] == "needs a thing this machine lacks"


def test_every_part_has_its_label_and_anchor_at_the_gpu_shapes() -> None:
    for part in gpu_parts.PARTS:
        assert part.title(gpu.GPU) and part.anchor(gpu.GPU)
    qlora = next(p for p in gpu_parts.PARTS if p.key == "qlora")
    assert "config:llama-2-7b" in qlora.title(gpu.GPU) and "seq 256 batch 16, 30 steps" in qlora.title(gpu.GPU)
    assert "~4,900 tok/s" in qlora.anchor(gpu.GPU)
