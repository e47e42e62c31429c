"""The GPU check, ``python -m bench --gpu [--json FILE]``: proves the CUDA paths in minutes.

Parts, each through the project's own code and each in its own time box (the time box works through
the should_stop hook that training, generation and the jobs already take):

1. ``qlora``: ``config:llama-2-7b`` in NF4 (bitsandbytes, bf16 compute), LoRA r=16 on q,k,v,o,
   gradient checkpointing, 30 steps of batch 16 at 256 tokens through ``train_captioner``: tokens/s
   and peak GPU memory. When batch 16 runs out of memory the part halves it and says so.
2. ``lora``: the same on the bf16 base.
3. ``generate``: 64 prompts, 32 new tokens, through ``generate_captions`` at batch 32 and at batch 1:
   tokens/s and the ratio.
4. ``segmenter-train``: the ``train-segmenter`` job (U-Net, MobileNetV2 encoder, 10 classes; AMP and
   channels_last on CUDA) on 512x512 crops of a synthetic drone set: images/s.
5. ``segmenter-infer``: ``predict_masks`` over 2,000 synthetic 224x224 images at batch 256, against
   the bare forward pass of the same batches (decoded beforehand).
6. ``segment-job``: the ``segment`` job on the same images against the same bare forward.

Without CUDA the same steps run at tiny shapes on the CPU (:data:`CPU`: ``config:llama-tiny``,
64-pixel images, a few steps), and the bitsandbytes part is skipped with the reason: CI runs it so.
The parts themselves are in :mod:`bench.gpu_parts`; this module runs them and reports.

The models are built from configs with random weights (nothing is downloaded; speed and memory do
not depend on the weights). Nothing is written but one temporary folder (the workspace the jobs
need, their synthetic images, training checkpoints), removed at the end, and the JSON file.
A part that fails (out of memory, a missing kernel) is a table row with its error, and the rest
still run. Anchors beside the figures are information and never change the exit code: 0 when every
part ran or was skipped with a reason, 2 when one failed.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Row, print_table

HEADERS = ("part", "measured", "against (same run)", "ratio", "anchor (information)", "ran")


@dataclass(frozen=True)
class Shapes:
    """How big each part is."""

    device: str
    llama: str
    seq: int
    batch: int
    steps: int
    prompts: int
    new_tokens: int
    gen_batch: int
    crop: int
    seg_batch: int
    seg_steps: int
    drone_images: int
    drone_size: int
    images: int
    image_size: int
    infer_batch: int
    workers: int
    box_s: float
    """Each part's time box, in seconds (model building and the synthetic data not counted)."""

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


GPU = Shapes("cuda", "config:llama-2-7b", seq=256, batch=16, steps=30, prompts=64, new_tokens=32, gen_batch=32, crop=512,
             seg_batch=16, seg_steps=30, drone_images=24, drone_size=640, images=2000, image_size=224, infer_batch=256,
             workers=min(8, os.cpu_count() or 1), box_s=75.0)
CPU = Shapes("cpu", "config:llama-tiny", seq=64, batch=4, steps=4, prompts=8, new_tokens=8, gen_batch=8, crop=64,
             seg_batch=2, seg_steps=3, drone_images=8, drone_size=96, images=16, image_size=64, infer_batch=8,
             workers=0, box_s=60.0)


class Skipped(Exception):
    """A part that cannot run here, and why (not a failure)."""


@dataclass
class Outcome:
    """What a part measured: the table's cells and the numbers behind them."""

    measured: str
    figures: dict[str, float]
    against: str = ""
    ratio: float | None = None
    name: str | None = None
    """The row's label when the part ran other than planned (a smaller batch)."""


@dataclass
class Check:
    """The state a run of parts shares: shapes, the temporary folder, the clock, built things."""

    shapes: Shapes
    root: Path
    deadline: float = 0.0
    cache: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> bool:
        return time.perf_counter() > self.deadline


@dataclass(frozen=True)
class Part:
    key: str
    title: Callable[[Shapes], str]
    run: Callable[[Check], Outcome]
    anchor: Callable[[Shapes], str]


@dataclass
class Result:
    """One part's row in the table and the JSON file."""

    part: str
    status: str
    """ran, skipped or failed."""
    row: Row
    figures: dict[str, float]
    seconds: float
    reason: str = ""
    """Why it was skipped, or its error (one line)."""


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def run_parts(parts: Sequence[Part], shapes: Shapes, root: Path) -> list[Result]:
    """Run each part in turn inside its time box; a part that raises is a failed row, one that
    raises :class:`Skipped` a skipped row, and the next part runs either way."""
    check = Check(shapes, root)
    results = []
    for part in parts:
        title = part.title(shapes)
        anchor = part.anchor(shapes) if shapes.cuda else "none at tiny CPU shapes"
        print(f"gpu check: {part.key} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        check.deadline = start + shapes.box_s
        if shapes.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        try:
            out = part.run(check)
        except Skipped as exc:
            result = Result(part.key, "skipped", Row(title, f"skipped: {exc}", "", None, anchor, None), {}, 0.0, str(exc))
        except Exception as exc:  # reported in its row; the other parts still run
            error = one_line(exc)
            result = Result(part.key, "failed", Row(title, f"FAILED: {error}", "", None, anchor, False), {}, 0.0, error)
        else:
            row = Row(out.name or title, out.measured, out.against, out.ratio, anchor, True)
            result = Result(part.key, "ran", row, out.figures, 0.0)
        result.seconds = time.perf_counter() - start
        print(f"  {part.key}: {result.status} in {result.seconds:.1f} s", file=sys.stderr, flush=True)
        results.append(result)
        gc.collect()
        if shapes.cuda:
            import torch

            torch.cuda.empty_cache()
    return results


def run_check(*, json_path: Path | None = None, parts: Sequence[Part] | None = None, shapes: Shapes | None = None) -> int:
    """Run the GPU check (tiny CPU shapes without CUDA), print its table, optionally write JSON;
    return the exit code (0 every part ran or was skipped, 2 one failed)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded, ever
    import torch

    from engine.captioning.model import quiet_transformers

    quiet_transformers()
    if shapes is None:
        shapes = GPU if torch.cuda.is_available() else CPU
    where = torch.cuda.get_device_name(0) if shapes.cuda else f"CPU ({torch.get_num_threads()} threads; no CUDA: tiny shapes)"
    print(f"gpu check on {where}; {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="workbench-gpu-check-") as tmp:
        if parts is None:
            from bench.gpu_parts import PARTS

            parts = PARTS
        results = run_parts(parts, shapes, Path(tmp))
    seconds = time.perf_counter() - start
    print_table([r.row for r in results], HEADERS)
    print(f"{len(results)} parts in {seconds:.1f} s: " + ", ".join(f"{sum(r.status == k for r in results)} {k}" for k in ("ran", "skipped", "failed")))
    if json_path is not None:
        data = {"device": where, "torch": torch.__version__, "seconds": seconds, "shapes": asdict(shapes),
                "parts": [asdict(r) for r in results]}
        json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r.status != "failed" for r in results) else 2
