"""The parts of the GPU check (:mod:`bench.gpu`, which says what each measures), and their anchors.

Each part is a function of the shared :class:`bench.gpu.Check` returning an :class:`Outcome`; it
calls the project's own code (config bases, add_lora, train_captioner, generate_captions, the
train-segmenter and segment jobs, predict_masks) and passes the check's clock as should_stop.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.gpu import Check, Outcome, Part, Shapes, Skipped, one_line


def _sync(shapes: Shapes) -> None:
    if shapes.cuda:
        import torch

        torch.cuda.synchronize()


def _peak_gib(shapes: Shapes) -> float | None:
    if not shapes.cuda:
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2**30


def _rate(marks: Sequence[tuple[int, float]], per_step: int, what: str) -> tuple[float, int]:
    """Units per second over the steps after the warm-up ones (the first two; one for a short
    run), from (step, time at its end) marks; and the steps measured."""
    warm = 2 if len(marks) >= 6 else 1
    if len(marks) <= warm:
        raise RuntimeError(f"{what}: only {len(marks)} steps ran in the time box (needs {warm + 1})")
    (first, t0), (last, t1) = marks[warm - 1], marks[-1]
    return (last - first) * per_step / (t1 - t0), last - first


# -- captioner parts ---------------------------------------------------------------------------

def _tokenizer(check: Check) -> Any:
    """The config's tokenizer, trained on synthetic captions and padded to its vocabulary."""
    if "tokenizer" not in check.cache:
        from engine.captioning.model import config_tokenizer

        check.cache["tokenizer"] = config_tokenizer(_texts(check), check.shapes.llama)
    return check.cache["tokenizer"]


def _texts(check: Check) -> list[str]:
    if "texts" not in check.cache:
        from engine.datasets.synthetic import SCENES, caption_sentences, render_scene

        texts = []
        for i in range(48):
            _, _, facts = render_scene(i, 32, SCENES[i % len(SCENES)])
            texts += caption_sentences(facts, i)
        check.cache["texts"] = texts
    return list(check.cache["texts"])


def _examples(n: int, seq: int, vocab: int, seed: int) -> list[Any]:
    """``n`` pairs of exactly ``seq`` tokens (a quarter prompt, loss on the rest): every batch is
    batch x seq real tokens, no padding."""
    import numpy as np

    from engine.captioning.data import Encoded

    ids = np.random.default_rng(seed).integers(3, vocab, size=(n, seq))
    cut = seq // 4
    return [Encoded(row.tolist(), [-100] * cut + row[cut:].tolist()) for row in ids]


def _train_tokens_per_s(model: Any, tokenizer: Any, check: Check, batch: int) -> tuple[float, int, int]:
    """Tokens/s of ``train_captioner`` steps after the warm-up, steps measured, steps done."""
    from engine.captioning.train import TrainConfig, train_captioner

    s = check.shapes
    train = _examples(batch * s.steps, s.seq, len(tokenizer), 0)
    val = _examples(batch, s.seq, len(tokenizer), 1)
    marks: list[tuple[int, float]] = []

    def progress(step: int, total: int, message: str = "", **metrics: float) -> None:
        if "loss" in metrics:  # after an optimizer step (the loss is read back: the step is done)
            marks.append((step, time.perf_counter()))

    config = TrainConfig(epochs=1, batch_size=batch, lr=2e-4, warmup_steps=0, patience=1, max_steps=s.steps)
    with tempfile.TemporaryDirectory(dir=check.root) as out:
        train_captioner(model, tokenizer, train, val, Path(out), config, progress=progress, should_stop=check.stop, device=s.device)
    return (*_rate(marks, batch * s.seq, "training"), len(marks))


def _lora_part(check: Check, quantized: bool) -> Outcome:
    import torch

    from engine.captioning.model import LoraSettings, add_lora, build_from_config

    s = check.shapes
    if quantized and not s.cuda:
        raise Skipped("bitsandbytes 4-bit (QLoRA) needs a CUDA GPU; none here")
    tokenizer = _tokenizer(check)
    model, _ = build_from_config(s.llama, tokenizer=tokenizer, device=s.device, load_in_4bit=quantized, init_device=s.device)
    model = add_lora(model, LoraSettings(r=16, alpha=32, dropout=0.05), quantized=quantized, gradient_checkpointing=True)
    batch, too_big = s.batch, []
    while True:
        try:
            rate, steps, done = _train_tokens_per_s(model, tokenizer, check, batch)
            break
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
        # out of the except block: the failed attempt's tensors are unreachable now, and freed
        too_big.append(batch)
        batch //= 2
        gc.collect()
        torch.cuda.empty_cache()
    peak = _peak_gib(s)
    figures = {"tokens_per_s": rate, "batch": batch, "steps_measured": steps, "seq": s.seq}
    measured = f"{rate:,.0f} tok/s" + (f", peak {peak:.1f} GiB" if peak is not None else "")
    if done < s.steps:
        measured += f" ({done} of {s.steps} steps in the time box)"
    if peak is not None:
        figures["peak_gib"] = peak
    name = None
    if too_big:
        name = _lora_title(s, quantized).replace(f"batch {s.batch}", f"batch {batch} (largest that fit; {too_big[0]} ran out of memory)")
    return Outcome(measured, figures, name=name)


def _lora_title(s: Shapes, quantized: bool) -> str:
    how = "QLoRA: NF4 base (bitsandbytes)" if quantized else f"LoRA: {'bf16' if s.cuda else 'fp32'} base"
    return f"{how} {s.llama}, r=16 q,k,v,o, checkpointing; seq {s.seq} batch {s.batch}, {s.steps} steps"


def _generate_part(check: Check) -> Outcome:
    from engine.captioning.data import build_prompt
    from engine.captioning.generate import GenerationSettings, generate_captions
    from engine.captioning.model import build_from_config
    from engine.datasets.synthetic import SCENES

    s = check.shapes
    model, tokenizer = build_from_config(s.llama, tokenizer=_tokenizer(check), device=s.device, init_device=s.device)
    model.eval()
    texts = _texts(check)
    prompts = [build_prompt("both", SCENES[i % len(SCENES)], f"{texts[i]}\n{texts[i + 1]}") for i in range(s.prompts)]
    settings = GenerationSettings(max_new_tokens=s.new_tokens)
    for batch in (s.gen_batch, 1):  # warm-up at both batch sizes (first calls choose kernels)
        generate_captions(model, tokenizer, prompts[:batch], GenerationSettings(max_new_tokens=2), batch_size=batch, device=s.device)
    start = time.perf_counter()
    out = generate_captions(model, tokenizer, prompts, settings, batch_size=s.gen_batch, device=s.device, should_stop=check.stop)
    if out is None:
        raise RuntimeError(f"generation at batch {s.gen_batch} ran past the time box ({s.box_s:.0f} s)")
    batched = out[1] / (time.perf_counter() - start)
    tokens, done, chunk = 0, 0, max(1, s.prompts // 8)
    start = time.perf_counter()
    while done < len(prompts) and not check.stop():  # one prompt at a time, in chunks so the time box can cut in
        part = generate_captions(model, tokenizer, prompts[done : done + chunk], settings, batch_size=1, device=s.device)
        assert part is not None
        tokens, done = tokens + part[1], done + chunk
    single = tokens / (time.perf_counter() - start)
    cut = f" ({done} of {len(prompts)} prompts in the time box)" if done < len(prompts) else ""
    return Outcome(f"{batched:,.0f} tok/s at batch {s.gen_batch}", {"tokens_per_s_batched": batched, "tokens_per_s_single": single,
                   "ratio": batched / single, "prompts_single": done}, f"{single:,.0f} tok/s at batch 1{cut}", batched / single)


# -- segmenter parts ---------------------------------------------------------------------------

def _world(check: Check) -> dict[str, Any]:
    """A temporary workspace with a synthetic drone set (training) and synthetic captioning images
    (inference); built once, by the first part that needs it (a failure is every such part's)."""
    if "world" in check.cache:
        if isinstance(check.cache["world"], BaseException):
            raise RuntimeError(f"the synthetic world could not be built: {one_line(check.cache['world'])}")
        return dict(check.cache["world"])
    from engine.datasets.synthetic import write_captioning_dataset, write_drone_dataset
    from engine.jobs.foreground import run_foreground
    from engine.workspace import Workspace

    s, root = check.shapes, check.root / "world"
    try:
        ws = Workspace(root / "ws")
        ws.init()
        cpus = os.cpu_count() or 1 if s.images >= 200 else 1  # a pool costs more than it saves on a few images
        drone = write_drone_dataset(root / "drone", s.drone_images, size=s.drone_size, seed=0, workers=cpus)
        run_foreground(ws, "ingest-drone", {"path": str(drone.root), "name": "drone"})
        captions = write_captioning_dataset(root / "captions", s.images, size=s.image_size, seed=0, workers=cpus)
        run_foreground(ws, "ingest-captions", {"path": str(captions.root), "name": "captions"})
    except Exception as exc:
        check.cache["world"] = exc
        raise
    check.cache["world"] = {"ws": ws, "images": sorted(str(p) for p in (captions.root / "images").iterdir())}
    return dict(check.cache["world"])


def _segmenter(check: Check) -> tuple[str, Any, dict[str, Any]]:
    """A finished segmenter run for inference, its model and params: the training part's, or one
    trained for a single step when that part did not finish (speed does not depend on weights)."""
    if "segmenter" not in check.cache:
        from engine.jobs.foreground import run_foreground
        from engine.segmentation.train import load_checkpoint

        ws = _world(check)["ws"]
        s = check.shapes
        name = check.cache.get("trained", "")
        if not name:
            name = "seg"
            run_foreground(ws, "train-segmenter", {"dataset": "drone", "name": name, "epochs": 1, "steps_per_epoch": 1,
                                                   "input_size": s.image_size, "eval_size": 64, "batch_size": 2, "num_workers": 0})
        check.cache["segmenter"] = (name, *load_checkpoint(ws.model_dir(name), s.device))
    name, model, params = check.cache["segmenter"]
    return name, model, params


def _bare_forward(check: Check) -> float:
    """Images/s of the segmenter's forward pass (and argmax) alone, on the same batches as the
    job, decoded and on the device beforehand, with predict_masks's precision and memory format."""
    if "bare" not in check.cache:
        import torch

        from engine.segmentation.data import InferenceSet

        s = check.shapes
        _, model, _ = _segmenter(check)
        paths = _world(check)["images"]
        data = InferenceSet(paths, size=s.image_size)
        fmt = torch.channels_last if s.cuda else torch.contiguous_format
        model = model.to(memory_format=fmt)
        batches = [torch.stack([data[i][0] for i in range(k, min(k + s.infer_batch, len(paths)))]).to(s.device).to(memory_format=fmt)
                   for k in range(0, len(paths), s.infer_batch)]
        with torch.inference_mode(), torch.autocast(device_type="cuda" if s.cuda else "cpu", dtype=torch.bfloat16, enabled=s.cuda):
            for x in batches[:2]:  # warm-up (first calls choose kernels)
                model(x).float().argmax(1)
            _sync(s)
            start = time.perf_counter()
            for x in batches:
                model(x).float().argmax(1)
            _sync(s)
        check.cache["bare"] = len(paths) / (time.perf_counter() - start)
    return float(check.cache["bare"])


def _segmenter_train_part(check: Check) -> Outcome:
    from engine.jobs.base import JobStopped, Progress
    from engine.jobs.foreground import run_foreground

    s = check.shapes
    ws = _world(check)["ws"]
    marks: list[tuple[int, float]] = []

    def on_progress(p: Progress) -> None:
        if "loss" in p.metrics:
            marks.append((p.step, time.perf_counter()))

    try:
        run_foreground(ws, "train-segmenter", {"dataset": "drone", "name": "seg-train", "epochs": 1, "steps_per_epoch": s.seg_steps,
                                               "input_size": s.crop, "eval_size": 128 if s.cuda else 64, "batch_size": s.seg_batch,
                                               "num_workers": s.workers}, on_progress=on_progress, stop_requested=check.stop)
    except JobStopped:
        pass  # the time box: the steps done still give the rate
    else:
        check.cache["trained"] = "seg-train"  # a finished run: the inference parts use it
    rate, steps = _rate(marks, s.seg_batch, "segmenter training")
    cut = f" ({len(marks)} of {s.seg_steps} steps in the time box)" if len(marks) < s.seg_steps else ""
    return Outcome(f"{rate:,.1f} img/s{cut}", {"images_per_s": rate, "steps_measured": steps})


def _segmenter_infer_part(check: Check) -> Outcome:
    from engine.segmentation.predict import predict_masks

    s = check.shapes
    _, model, params = _segmenter(check)
    paths = _world(check)["images"]
    bare = _bare_forward(check)
    start = time.perf_counter()
    finished = predict_masks(model, paths, input_size=s.image_size, ignore=params.get("ignore", []), on_batch=lambda i, m: None,
                             batch_size=s.infer_batch, num_workers=s.workers, device=s.device, should_stop=check.stop)
    if not finished:
        raise RuntimeError(f"predict_masks ran past the time box ({s.box_s:.0f} s)")
    rate = len(paths) / (time.perf_counter() - start)
    return Outcome(f"{rate:,.0f} img/s predict_masks", {"images_per_s": rate, "bare_images_per_s": bare, "ratio": rate / bare},
                   f"{bare:,.0f} img/s bare forward", rate / bare)


def _segment_job_part(check: Check) -> Outcome:
    from engine.jobs.base import JobStopped
    from engine.jobs.foreground import run_foreground

    s = check.shapes
    ws, paths = _world(check)["ws"], _world(check)["images"]
    bare = _bare_forward(check)
    segmenter = _segmenter(check)[0]
    start = time.perf_counter()
    try:
        run_foreground(ws, "segment", {"dataset": "captions", "segmenter": segmenter, "batch_size": s.infer_batch, "num_workers": s.workers,
                                       "input_size": s.image_size, "force": True}, stop_requested=check.stop)
    except JobStopped:
        raise RuntimeError(f"the segment job ran past the time box ({s.box_s:.0f} s)") from None
    rate = len(paths) / (time.perf_counter() - start)
    return Outcome(f"{rate:,.0f} img/s end to end", {"images_per_s": rate, "bare_images_per_s": bare, "ratio": rate / bare},
                   f"{bare:,.0f} img/s bare forward", rate / bare)


# -- anchors (information) ---------------------------------------------------------------------

def _llama_params(name: str) -> float:
    from engine.captioning.model import LLAMA_CONFIGS

    c = LLAMA_CONFIGS[name.removeprefix("config:")]
    h, kv = c["hidden_size"], c["hidden_size"] * c["num_key_value_heads"] // c["num_attention_heads"]
    layer = 2 * h * h + 2 * h * kv + 3 * h * c["intermediate_size"] + 2 * h
    return float(2 * c["vocab_size"] * h + c["num_hidden_layers"] * layer + h)


def _anchor_lora(s: Shapes) -> str:
    # LoRA with recompute: forward, recomputed forward and the backward through the activations
    # (the frozen weights get no gradient) are 2N FLOP a token each.
    n = _llama_params(s.llama)
    return f"estimate ~{0.4 * 989e12 / (6 * n):,.0f} tok/s: 6 x {n / 1e9:.2f}B FLOP a token at 40% of 989 TFLOP/s (H100/H200 bf16)"


def _anchor_generate(s: Shapes) -> str:
    weights = 2 * _llama_params(s.llama)  # bf16 bytes, all read once a decoding step
    return (f"batch-1 ceiling {3.35e12 / weights:,.0f} tok/s on an H100, {4.8e12 / weights:,.0f} on an H200 (weights / memory "
            f"bandwidth); the CPU bench asks >= 5x for batch 32 vs 1")


PARTS: list[Part] = [
    Part("qlora", lambda s: _lora_title(s, True), lambda c: _lora_part(c, True),
         lambda s: "~4,900 tok/s for 7B Llama seq 256 batch 16 on an A100 (optimum-benchmark); aim on H100/H200: at least that"),
    Part("lora", lambda s: _lora_title(s, False), lambda c: _lora_part(c, False), _anchor_lora),
    Part("generate", lambda s: f"generate {s.prompts} prompts, {s.new_tokens} new tokens, {s.llama}: batch {s.gen_batch} vs 1",
         _generate_part, _anchor_generate),
    Part("segmenter-train", lambda s: f"train U-Net/MobileNetV2, 10 classes, {s.crop}x{s.crop} crops, batch {s.seg_batch}"
         + (", AMP, channels_last" if s.cuda else " (fp32: AMP is CUDA-only)"), _segmenter_train_part,
         lambda s: "no published figure for this model and size: compare with earlier runs of this check"),
    Part("segmenter-infer", lambda s: f"predict_masks {s.images:,} images {s.image_size}x{s.image_size}, batch {s.infer_batch}",
         _segmenter_infer_part, lambda s: "no published figure: against its own bare forward"),
    Part("segment-job", lambda s: f"segment job {s.images:,} synthetic {s.image_size}x{s.image_size} images, batch {s.infer_batch}",
         _segment_job_part, lambda s: "bench_segment asks >= 0.85x of the bare forward on a CPU"),
]
"""The parts, in the order they run."""
