"""Captioner throughput on the synthetic world (tiny preset, CPU or GPU as available).

1. Generation: the same 64 prompts, batch of 32 vs one at a time, same model and settings (greedy,
   40 new tokens), in the same run: generated tokens per second.
2. Training: real (non-padding) tokens per second with length-grouped batches vs random batches
   padded to their longest, same model size, data, batch size and number of steps.
3. Minimum-Bayes-risk decoding (``generate mbr_candidates=8``): 8 beams kept and the CIDEr-D
   consensus chosen among them, against beam search with 8 beams keeping its best: seconds per
   image, same prompts (information: the price of MBR).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Row


def _setup(root: Path) -> tuple[Any, Any, list[str], list[Any]]:
    import logging

    from engine.captioning.data import encode
    from engine.captioning.model import load_captioner
    from engine.datasets.synthetic import write_captioning_dataset
    from engine.jobs.base import JobContext
    from engine.jobs.foreground import run_foreground
    from engine.jobs.kinds.captioning import _split_examples
    from engine.store.catalog import get_dataset
    from engine.store.runs import get_run
    from engine.workspace import Workspace

    ws = Workspace(root / "ws")
    ws.init()
    data = write_captioning_dataset(root / "syn", 240, size=64, seed=3)
    run_foreground(ws, "ingest-captions", {"path": str(data.root), "name": "syn"})
    run_foreground(ws, "compose", {"dataset": "syn", "masks": str(data.root / "masks"), "name": "gt"})
    run_foreground(ws, "train-captioner", {"dataset": "syn", "composition": "gt", "name": "cap", "epochs": "2"})
    model, tok = load_captioner(ws.model_dir("cap"), "cpu")
    db = ws.open_db()
    ctx = JobContext(workspace=ws, db=db, log=logging.getLogger("bench"))
    examples, _ = _split_examples(ctx, get_dataset(db, "syn"), "train", "composition", get_run(db, "gt"))  # type: ignore[arg-type]
    prompts = sorted({e.prompt for e in examples})[:64]
    return model, tok, prompts, encode(examples, tok, 256)


def _train_tokens_per_s(tok: Any, encoded: list[Any], grouped: bool, steps: int) -> float:
    import torch

    from engine.captioning.data import collate, length_grouped_batches, random_batches
    from engine.captioning.model import build_preset

    model = build_preset("tiny", tok, 256, seed=0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    lengths = [len(e.input_ids) for e in encoded]
    batches = (length_grouped_batches(lengths, 16, 0) if grouped else random_batches(len(encoded), 16, 0))[:steps]
    real = 0
    start = time.perf_counter()
    for idx in batches:
        batch = collate([encoded[i] for i in idx], tok.pad_token_id)
        real += int(batch["attention_mask"].sum())
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return real / (time.perf_counter() - start)


def _mbr_cost(model: Any, tok: Any, prompts: list[str]) -> tuple[float, float]:
    """Seconds per image of beam 8 (best beam) and of MBR over its 8 beams."""
    from engine.captioning.generate import GenerationSettings, generate_candidates, generate_captions
    from engine.evaluation.cider import CiderD
    from engine.evaluation.tokenize import ptb_tokenize

    start = time.perf_counter()
    generate_captions(model, tok, prompts, GenerationSettings(max_new_tokens=40, num_beams=8), batch_size=32)
    beam = (time.perf_counter() - start) / len(prompts)
    start = time.perf_counter()
    out = generate_candidates(model, tok, prompts, GenerationSettings(max_new_tokens=40, candidates=8), batch_size=32)
    assert out is not None
    scorer = CiderD([[ptb_tokenize(p)] for p in prompts])  # document frequencies of a reference set of this size
    for options in out[0]:
        scorer.consensus([ptb_tokenize(c) for c in options])
    return beam, (time.perf_counter() - start) / len(prompts)


def run(quick: bool = False) -> list[Row]:
    from engine.captioning.generate import GenerationSettings, generate_captions

    with tempfile.TemporaryDirectory() as tmp:
        model, tok, prompts, encoded = _setup(Path(tmp))
        settings = GenerationSettings(max_new_tokens=40)
        rates = {}
        for batch in (32, 1):
            start = time.perf_counter()
            out = generate_captions(model, tok, prompts, settings, batch_size=batch)
            assert out is not None
            rates[batch] = out[1] / (time.perf_counter() - start)
        beam, mbr = _mbr_cost(model, tok, prompts[:16] if quick else prompts)
        steps = 15 if quick else 40
        grouped = _train_tokens_per_s(tok, encoded, True, steps)
        plain = _train_tokens_per_s(tok, encoded, False, steps)
    gen_ratio = rates[32] / rates[1]
    train_ratio = grouped / plain
    return [
        Row(f"generate {len(prompts)} prompts, batch 32 vs 1 (tiny, greedy)", f"{rates[32]:,.0f} tok/s", f"{rates[1]:,.0f} tok/s one by one",
            gen_ratio, ">= 5x", gen_ratio >= 5),
        Row(f"train {steps} steps, length-grouped vs random batches", f"{grouped:,.0f} real tok/s", f"{plain:,.0f} real tok/s random",
            train_ratio, ">= 1.3x", train_ratio >= 1.3),
        Row("MBR over 8 beams vs beam 8 (s per image)", f"{mbr * 1000:,.0f} ms/image", f"{beam * 1000:,.0f} ms/image beam 8",
            mbr / beam, "information", None),
    ]
