"""Self-critical sequence training (Rennie et al., CVPR 2017): fine-tune a trained captioner for the
metric itself.

Each step takes a batch of images; per image the model samples ``samples`` captions (plain
sampling, temperature 1) and writes its greedy caption; each is scored against that image's
references (:class:`engine.captioning.reward.Reward`, CIDEr-D by default). The loss is
``-(reward(sample) - reward(greedy)) * log p(sample)``, averaged over the samples: captions better
than what the model would write now become likelier, worse ones less likely, and the greedy
caption (what generation will write) is the baseline, so no value network is needed.

Each epoch ends with the greedy captions of the validation images scored the same way; the best
model by that score is kept in ``model/``. Checkpoints, resume and stop work as in cross-entropy
training (:mod:`engine.captioning.train`). SCST is known to drift to short or repetitive captions
as it chases the metric: every history entry holds the mean sample length, and the validation
captions' mean length and share of distinct captions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.captioning.data import IGNORE_INDEX, Encoded, collate
from engine.captioning.generate import decode, generate_ids
from engine.captioning.reward import Reward
from engine.captioning.train import TrainResult, _ddp, load_state, save_checkpoint
from engine.distributed import SINGLE, Dist, all_sum, any_true, barrier, shard
from engine.training import warmup_cosine

Progress = Callable[..., None]


@dataclass(frozen=True)
class ScstConfig:
    epochs: int = 4
    batch_size: int = 16
    """Images per optimizer step (each with ``samples`` sampled captions)."""
    samples: int = 5
    lr: float = 5e-5
    warmup_steps: int = 10
    max_steps: int = 0
    """Stop after this many optimizer steps (0: no cap)."""
    max_new_tokens: int = 40
    patience: int = 2
    """Epochs without a better validation reward before stopping."""
    seed: int = 0
    baseline: str = "greedy"
    """``greedy``: the reward of the greedy caption (Rennie et al.); ``samples``: the mean reward of
    the image's other samples (Luo, 2020; no greedy decoding during training)."""


@dataclass(frozen=True)
class Item:
    """One image: its key in the reward's references, and its prompt's token ids (BOS included)."""

    key: Hashable
    prompt: tuple[int, ...]


def _greedy(model: Any, tokenizer: Any, items: Sequence[Item], config: ScstConfig, device: str, batch: int = 64) -> list[list[int]]:
    """The greedy caption's tokens of each item; identical prompts (scene-only ones) decoded once."""
    unique = list(dict.fromkeys(it.prompt for it in items))
    done: dict[tuple[int, ...], list[int]] = {}
    for start in range(0, len(unique), batch):
        chunk = unique[start : start + batch]
        rows = generate_ids(model, tokenizer, chunk, 1, max_new_tokens=config.max_new_tokens, device=device, do_sample=False, num_beams=1)
        done.update(zip(chunk, rows, strict=True))
    return [done[it.prompt] for it in items]


def validate(model: Any, tokenizer: Any, items: Sequence[Item], reward: Reward, config: ScstConfig, device: str,
             dist: Dist = SINGLE) -> dict[str, float]:
    """Mean reward of the greedy captions of ``items`` (each process scores its share), their mean
    length in words and the share of distinct captions among them (of this process's share)."""
    mine = shard(list(items), dist)
    model.eval()
    texts = [decode(tokenizer, t) for t in _greedy(model, tokenizer, mine, config, device)] if mine else []
    total = sum(reward.batch([it.key for it in mine], texts))
    words = sum(len(t.split()) for t in texts)
    summed, counted, length = all_sum([total, float(len(mine)), float(words)], dist)
    return {"val_reward": summed / max(counted, 1), "val_length": length / max(counted, 1),
            "val_distinct": len(set(texts)) / max(len(texts), 1)}


def _log_probs(wrapped: Any, sequences: list[Encoded], pad_id: int, device: str) -> Any:
    """Summed log-probability of each sequence's labelled tokens (its sampled caption)."""
    import torch

    batch = {k: v.to(device) for k, v in collate(sequences, pad_id).items()}
    labels = batch.pop("labels")
    logits = wrapped(**batch).logits[:, :-1].float()
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    picked = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(1)


def _baselines(rewards: Sequence[float], greedy: Sequence[float], config: ScstConfig) -> list[float]:
    """Each sample's baseline: its image's greedy reward, or the mean of the image's other samples."""
    k = config.samples
    if config.baseline == "greedy":
        return [greedy[row // k] for row in range(len(rewards))]
    out = []
    for row, r in enumerate(rewards):
        own = rewards[row - row % k : row - row % k + k]
        out.append((sum(own) - r) / (k - 1) if k > 1 else r)
    return out


def train_scst(
    model: Any,
    tokenizer: Any,
    train: Sequence[Item],
    val: Sequence[Item],
    reward: Reward,
    out_dir: Path,
    config: ScstConfig,
    *,
    progress: Progress = lambda *a, **k: None,
    should_stop: Callable[[], bool] = lambda: False,
    device: str = "cpu",
    save_extra: dict[str, Any] | None = None,
    dist: Dist = SINGLE,
) -> TrainResult:
    """Fine-tune ``model`` by SCST into ``out_dir`` (or resume there); ``best_val_loss`` of the
    result holds the best validation reward (higher is better)."""
    import numpy as np
    import torch

    torch.manual_seed(config.seed)
    model.to(device)
    wrapped = _ddp(model, device, dist)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    per_epoch = math.ceil(len(train) / config.batch_size)
    total = per_epoch * config.epochs if not config.max_steps else min(config.max_steps, per_epoch * config.epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, config.warmup_steps, total, 0.1))
    out_dir.mkdir(parents=True, exist_ok=True)
    start_epoch, skip, step, history, best, bad_epochs = 0, 0, 0, [], -math.inf, 0
    state = load_state(out_dir, model, device)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start_epoch, step, history, best, bad_epochs = state["epoch"], state["step"], state["history"], state["best"], state["bad_epochs"]
        skip = int(state.get("batch", 0))
    result = TrainResult(start_epoch, best, history, resumed_from=start_epoch, steps=step, resumed_step=step)
    pad_id = tokenizer.pad_token_id

    def checkpoint(epoch: int, batch: int, save_model: bool) -> None:
        if dist.main:
            state = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "epoch": epoch, "batch": batch,
                     "step": step, "history": history, "best": best, "bad_epochs": bad_epochs}
            metrics = {"history": history, "best_val_reward": best, "config": asdict(config), "objective": "scst", **(save_extra or {})}
            save_checkpoint(out_dir, step, model, tokenizer, state, metrics, save_model=save_model)

    if state is None:  # the starting point, kept as the best until SCST beats it; the curve starts there
        history.append({"epoch": 0, "step": 0, **validate(model, tokenizer, val, reward, config, device, dist)})
        best = history[0]["val_reward"] if val else -math.inf
        checkpoint(0, 0, True)
        result.best_val_loss = best

    for epoch in range(start_epoch, config.epochs):
        order = np.random.default_rng(config.seed * 1000 + epoch).permutation(len(train)).tolist()
        batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        sums = np.zeros(4)  # reward, baseline, sample length, samples
        first = skip
        for k, idx in enumerate(batches):
            if k < skip:
                continue
            if any_true(should_stop(), dist):
                if k > first:
                    checkpoint(epoch, k, False)
                result.stopped, result.steps = True, step
                return result
            mine = [train[i] for i in (shard(idx, dist) or idx[:1])]
            model.eval()  # no dropout while decoding
            greedy = (reward.batch([it.key for it in mine], [decode(tokenizer, t) for t in _greedy(model, tokenizer, mine, config, device)])
                      if config.baseline == "greedy" else [])
            torch.manual_seed(config.seed * 100_003 + step * dist.world + dist.rank)  # resumable draws
            drawn = generate_ids(model, tokenizer, [it.prompt for it in mine], config.samples, max_new_tokens=config.max_new_tokens,
                                 device=device, keep_eos=True, do_sample=True, top_k=0, top_p=1.0, temperature=1.0, num_beams=1)
            sequences, texts = [], []
            for row, tokens in enumerate(drawn):
                it = mine[row // config.samples]
                texts.append(decode(tokenizer, tokens))
                body = tokens or [tokenizer.eos_token_id]
                sequences.append(Encoded([*it.prompt, *body], [IGNORE_INDEX] * len(it.prompt) + body))
            rewards = reward.batch([mine[row // config.samples].key for row in range(len(texts))], texts)
            lengths = [len(t.split()) for t in texts]
            base = _baselines(rewards, greedy, config)
            advantages = [r - b for r, b in zip(rewards, base, strict=True)]
            model.train()
            logp = _log_probs(wrapped, sequences, pad_id, device)
            loss = -(torch.tensor(advantages, device=logp.device) * logp).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            batch_sums = all_sum([sum(rewards), sum(base), float(sum(lengths)), float(len(rewards))], dist)
            sums += batch_sums
            n = max(batch_sums[3], 1)
            progress(step, total, f"epoch {epoch + 1}/{config.epochs}", reward=batch_sums[0] / n, baseline=batch_sums[1] / n,
                     length=batch_sums[2] / n)
            if config.max_steps and step >= config.max_steps:
                break
        skip = 0
        seen = max(sums[3], 1)
        entry = {"epoch": epoch + 1, "step": step, "reward": float(sums[0] / seen), "baseline": float(sums[1] / seen),
                 "sample_length": float(sums[2] / seen),
                 **validate(model, tokenizer, val, reward, config, device, dist)}
        history.append(entry)
        improved = entry["val_reward"] > best or not val
        best = max(best, entry["val_reward"]) if val else best
        bad_epochs = 0 if improved else bad_epochs + 1
        checkpoint(epoch + 1, 0, improved)
        progress(step, total, f"epoch {epoch + 1} validated", val_reward=entry["val_reward"], val_length=entry["val_length"])
        result = TrainResult(epoch + 1, best, history, resumed_from=result.resumed_from, steps=step, resumed_step=result.resumed_step)
        if bad_epochs >= config.patience or (config.max_steps and step >= config.max_steps):
            result.early_stopped = bad_epochs >= config.patience
            break
    barrier(dist)
    return result
