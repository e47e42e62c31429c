"""The segment job end to end (read images, infer, write masks and rows) against the bare model
forward on the same batches, in the same run: images per second at the same batch size.

The model is the default U-Net/MobileNetV2 at 224x224 (untrained weights; speed does not depend
on them). The bare side runs the forward pass only, on batches decoded beforehand.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.common import Row, timer

TARGET = 0.85


def run(quick: bool = False) -> list[Row]:
    import torch

    from engine.datasets.synthetic import write_captioning_dataset, write_drone_dataset
    from engine.jobs.foreground import run_foreground
    from engine.segmentation.data import InferenceSet
    from engine.segmentation.train import load_checkpoint
    from engine.workspace import Workspace

    n = 64 if quick else 256
    batch = 32
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ws = Workspace(root / "ws")
        ws.init()
        drone = write_drone_dataset(root / "drone", 12, size=64, seed=0)
        run_foreground(ws, "ingest-drone", {"path": str(drone.root), "name": "d"})
        run_foreground(ws, "train-segmenter", {"dataset": "d", "name": "seg", "epochs": 1, "steps_per_epoch": 1,
                                               "input_size": 224, "eval_size": 64, "batch_size": 2, "num_workers": 0})
        captions = write_captioning_dataset(root / "captions", n, size=224, seed=0, workers=os.cpu_count() or 1)
        run_foreground(ws, "ingest-captions", {"path": str(captions.root), "name": "c"})
        model, _ = load_checkpoint(ws.model_dir("seg"), "cpu")
        data = InferenceSet(sorted(str(p) for p in (captions.root / "images").iterdir()), size=224)
        batches = [torch.stack([data[i][0] for i in range(s, min(s + batch, n))]) for s in range(0, n, batch)]
        with torch.inference_mode():
            model(batches[0])  # warm-up
            with timer() as t:
                for x in batches:
                    model(x).argmax(1)
        bare = n / t()
        with timer() as t:
            run_foreground(ws, "segment", {"dataset": "c", "segmenter": "seg", "batch_size": batch, "num_workers": 2, "input_size": 224})
        end_to_end = n / t()
    ratio = end_to_end / bare
    return [Row(
        f"segment job {n} images, batch {batch} (CPU, {torch.get_num_threads()} threads)",
        f"{end_to_end:.1f} img/s", f"{bare:.1f} img/s bare forward", ratio, f">= {TARGET}x", ratio >= TARGET,
    )]
