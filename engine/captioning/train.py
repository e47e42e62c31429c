"""Train a captioner: length-grouped batches, gradient accumulation, AdamW with warmup and cosine
decay, validation loss each epoch, early stopping, checkpoint and resume.

Folder (``out_dir``): ``checkpoint`` links to the last complete ``ckpt-NNNN/``, written as one
unit each epoch (:func:`engine.training.write_checkpoint`), and ``model`` links into it:
    model/        the best model so far (full weights, or the LoRA adapter) + tokenizer; loadable
                  with the Auto classes (peft's for an adapter), offline
    trainer.pt    last epoch's trainable weights, optimizer, schedule, epoch and history: resume;
                  tensors and plain values only (loads with ``weights_only=True``)
    metrics.json  loss curve and validation losses
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.captioning.data import Encoded, collate, length_grouped_batches, random_batches
from engine.captioning.errors import CaptioningError
from engine.distributed import SINGLE, Dist, all_sum, any_true, barrier, shard
from engine.training import latest_checkpoint, link_or_copy, warmup_cosine, write_checkpoint

Progress = Callable[..., None]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    patience: int = 2
    """Epochs without a better validation loss before stopping."""
    seed: int = 0
    max_steps: int = 0
    """Stop after this many optimizer steps (0: no cap)."""
    length_grouped: bool = True


@dataclass
class TrainResult:
    epochs_done: int
    best_val_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: bool = False
    early_stopped: bool = False
    resumed_from: int = 0
    """Epochs complete when this attempt started."""
    steps: int = 0
    resumed_step: int = 0
    """Optimizer steps done when this attempt started (0: a fresh start)."""


def validation_loss(model: Any, data: Sequence[Encoded], pad_id: int, device: str, batch_size: int = 32,
                    dist: Dist = SINGLE) -> float:
    """Mean loss per caption token over ``data`` (each process scores its share; the sums are
    gathered, so every process gets the same number)."""
    import torch

    if not data:
        return float("nan")
    mine = shard(list(data), dist)
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(mine), batch_size):
            batch = {k: v.to(device) for k, v in collate(mine[start : start + batch_size], pad_id).items()}
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(model(**batch).loss) * n
            tokens += n
    model.train()
    summed, counted = all_sum([total, float(tokens)], dist)
    return summed / max(counted, 1)


def _trainable_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().cpu().clone() for k, v in model.named_parameters() if v.requires_grad}


def train_captioner(
    model: Any,
    tokenizer: Any,
    train: Sequence[Encoded],
    val: Sequence[Encoded],
    out_dir: Path,
    config: TrainConfig,
    *,
    progress: Progress = lambda *a, **k: None,
    should_stop: Callable[[], bool] = lambda: False,
    device: str = "cpu",
    merge_lora: bool = False,
    save_extra: dict[str, Any] | None = None,
    dist: Dist = SINGLE,
) -> TrainResult:
    """Train (or resume) into ``out_dir``; the best model by validation loss is kept in model/.

    Data-parallel (``dist``): every process takes its share of each global batch of
    ``batch_size`` pairs, DDP averages the gradients, validation is gathered, and only rank 0
    writes checkpoints. A stop saves a checkpoint at the last optimizer step, mid-epoch, and a
    resume (under any number of processes) continues from there with the same batches.
    """
    import torch

    torch.manual_seed(config.seed)
    model.to(device).train()
    wrapped = _ddp(model, device, dist)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = math.ceil(len(train) / config.batch_size / config.grad_accum)
    total = per_epoch * config.epochs if not config.max_steps else min(config.max_steps, per_epoch * config.epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, config.warmup_steps, total, 0.1))
    pad_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    start_epoch, skip, step, history, best, bad_epochs = 0, 0, 0, [], float("inf"), 0
    state = load_state(out_dir, model, device)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start_epoch, step, history, best, bad_epochs = state["epoch"], state["step"], state["history"], state["best"], state["bad_epochs"]
        skip = int(state.get("batch", 0))  # a stop mid-epoch: the batches of this epoch already done
    resumed_from, resumed_step = start_epoch, step
    lengths = [len(e.input_ids) for e in train]
    result = TrainResult(start_epoch, best, history, resumed_from=resumed_from, steps=step, resumed_step=resumed_step)

    def checkpoint(epoch: int, batch: int, save_model: bool, metrics: dict[str, Any]) -> None:
        """Rank 0 writes the checkpoint: at an epoch's end (``batch`` 0 of the next), or mid-epoch."""
        if not dist.main:
            return
        state = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                 "epoch": epoch, "batch": batch, "step": step, "history": history, "best": best, "bad_epochs": bad_epochs}
        save_checkpoint(out_dir, step, model, tokenizer, state, metrics, save_model=save_model)

    def metrics_now() -> dict[str, Any]:
        return {"history": history, "best_val_loss": best, "config": asdict(config), **(save_extra or {})}

    for epoch in range(start_epoch, config.epochs):
        seed = config.seed * 1000 + epoch
        batches = length_grouped_batches(lengths, config.batch_size, seed) if config.length_grouped else random_batches(len(train), config.batch_size, seed)
        running, count, boundary, first = 0.0, 0, skip, skip
        optimizer.zero_grad(set_to_none=True)
        for k, idx in enumerate(batches):
            if k < skip:
                continue
            if any_true(should_stop(), dist):
                if boundary > first:  # keep the steps done in this epoch since the last checkpoint
                    checkpoint(epoch, boundary, False, metrics_now())
                result.stopped, result.steps = True, step
                return result
            mine = shard(idx, dist) or idx[:1]  # a short last batch: a process with no share repeats one pair
            batch = {key: v.to(device) for key, v in collate([train[i] for i in mine], pad_id).items()}
            loss = wrapped(**batch).loss
            (loss / config.grad_accum).backward()
            running += float(loss.detach())
            count += 1
            if (k + 1) % config.grad_accum == 0 or k == len(batches) - 1:
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                boundary = k + 1
                mean = all_sum([float(loss.detach())], dist)[0] / dist.world
                progress(step, total, f"epoch {epoch + 1}/{config.epochs}", loss=mean, lr=schedule.get_last_lr()[0])
                if config.max_steps and step >= config.max_steps:
                    break
        skip = 0
        val_loss = validation_loss(model, val, pad_id, device, dist=dist)
        train_loss = all_sum([running, float(count)], dist)
        history.append({"epoch": epoch + 1, "step": step, "train_loss": train_loss[0] / max(train_loss[1], 1), "val_loss": val_loss})
        improved = not math.isnan(val_loss) and val_loss < best
        if improved or math.isnan(val_loss):
            best = val_loss if improved else best
            bad_epochs = 0
        else:
            bad_epochs += 1
        checkpoint(epoch + 1, 0, improved or math.isnan(val_loss), metrics_now())
        progress(step, total, f"epoch {epoch + 1} validated", val_loss=val_loss)
        result = TrainResult(epoch + 1, best, history, resumed_from=resumed_from, steps=step, resumed_step=resumed_step)
        if bad_epochs >= config.patience:
            result.early_stopped = True
            break
        if config.max_steps and step >= config.max_steps:
            break
    barrier(dist)
    if merge_lora and dist.main:
        merge_saved_adapter(out_dir / "model")
    return result


def load_state(out_dir: Path, model: Any, device: str) -> dict[str, Any] | None:
    """The last checkpoint's trainer state with its trainable weights loaded into ``model``;
    None for a fresh start.

    :raises CaptioningError: if the checkpoint's trainable weights are not this model's
    """
    import torch

    last = latest_checkpoint(out_dir) or (out_dir if (out_dir / "trainer.pt").is_file() else None)
    if last is None:
        return None
    state: dict[str, Any] = torch.load(last / "trainer.pt", map_location=device, weights_only=True)
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(state["weights"]) != expected:
        odd = sorted(set(state["weights"]) ^ expected)
        raise CaptioningError(f"{out_dir}: its checkpoint's trainable weights differ from this model's ({len(odd)} differ, "
                              f"e.g. {odd[0]}); it was trained with another base or LoRA settings")
    loaded = model.load_state_dict(state["weights"], strict=False)
    if set(loaded.unexpected_keys):
        raise CaptioningError(f"{out_dir}: checkpoint weights {loaded.unexpected_keys[:3]} are not in this model")
    return state


def save_checkpoint(out_dir: Path, step: int, model: Any, tokenizer: Any, state: dict[str, Any], metrics: dict[str, Any], *,
                    save_model: bool) -> None:
    """Write ``ckpt-<step>/`` as one unit: ``trainer.pt`` (``state`` with the trainable weights),
    ``metrics.json``, and ``model/``: this model when ``save_model`` (the best so far), else the
    previous checkpoint's best, linked."""
    import torch

    state = {"weights": _trainable_state(model), **state}
    previous = latest_checkpoint(out_dir)
    save_model = save_model or previous is None or not (previous / "model").is_dir()

    def fill(folder: Path) -> None:
        if save_model:
            _save_model(model, tokenizer, folder / "model", merge_lora=False)
        else:  # the best model is an earlier one: the same files, linked
            link_or_copy(previous / "model", folder / "model")  # type: ignore[operator]
        torch.save(state, folder / "trainer.pt")
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))

    write_checkpoint(out_dir, step, fill)
    _link_model(out_dir)


def _ddp(model: Any, device: str, dist: Dist) -> Any:
    """The model DDP-wrapped for a data-parallel run (gradients averaged over processes); the
    bare model otherwise."""
    if not dist.parallel:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [int(device.split(":")[1])] if device.startswith("cuda:") else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def _link_model(out_dir: Path) -> None:
    """``out_dir/model`` names the best model of the last checkpoint (where loaders look)."""
    link = out_dir / "model"
    if link.is_symlink():
        return
    if link.is_dir():  # a run from before checkpoint folders: its model now lives in the checkpoint
        shutil.rmtree(link)
    link.symlink_to("checkpoint/model")


def _save_model(model: Any, tokenizer: Any, folder: Path, *, merge_lora: bool) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    to_save = model.merge_and_unload() if merge_lora and hasattr(model, "merge_and_unload") else model
    kwargs: dict[str, Any] = {}
    adapter = getattr(to_save, "peft_config", {}).get("default")
    if adapter is not None and str(adapter.base_model_name_or_path or "").startswith("config:") \
            and "embed_tokens" not in (adapter.target_modules or ()):
        # A base built from a config has no config.json for peft to look up (it warned, and would
        # ask the hub); its vocabulary is never resized, so there are no embeddings to save.
        kwargs["save_embedding_layers"] = False
    to_save.save_pretrained(tmp, **kwargs)
    tokenizer.save_pretrained(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def merge_saved_adapter(folder: Path, *, trust_remote_code: bool = False) -> bool:
    """Replace a saved LoRA adapter by the base model with the adapter merged in (for inference).

    The base is loaded from the local cache or its folder only (nothing is downloaded), in full
    precision even for a QLoRA run: merging into 4-bit weights would round the adapter away.

    :returns: False if the folder held a full model already
    """
    folder = folder.resolve()
    if not (folder / "adapter_config.json").exists():
        return False
    from transformers import AutoTokenizer

    from engine.captioning.model import load_adapter

    model = load_adapter(folder, device="cpu", load_in_4bit=False, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    _save_model(model, tokenizer, folder, merge_lora=True)
    return True
