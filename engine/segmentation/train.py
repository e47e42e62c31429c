"""Train a segmenter: weighted cross-entropy + Dice, cosine schedule, validation each epoch,
checkpoint each epoch, resume from the last checkpoint, stop on request.

Run folder (``out_dir``): ``checkpoint`` links to the last complete ``ckpt-NNNN/`` folder, which
holds (written as one unit, see :func:`engine.training.write_checkpoint`):
    model.safetensors   weights
    params.json         model config, training config, class names: enough to rebuild and predict
    metrics.json        validation metrics per epoch (last epoch's on top)
    trainer.pt          optimizer, schedule, epoch and history, for resume (tensors and plain
                        values only: it loads with ``weights_only=True``, so a planted file cannot
                        run code)
    confusion.png       the last validation confusion matrix
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.segmentation.data import EvalSet, Item, TrainingSet
from engine.segmentation.errors import SegmentationError
from engine.segmentation.metrics import IGNORE, confusion, iou, mean_iou, pixel_accuracy
from engine.segmentation.model import ModelConfig, build_model
from engine.distributed import SINGLE, Dist, all_sum, any_true, barrier, shard
from engine.training import device_for, latest_checkpoint, warmup_cosine, write_checkpoint

Progress = Callable[..., None]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 4
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 10
    input_size: int = 128
    eval_size: int = 256
    max_side: int = 1024
    crop_min: float = 0.5
    loss: str = "ce+dice"
    seed: int = 0
    num_workers: int = 0
    amp: bool = True
    steps_per_epoch: int | None = None
    """Cap on optimizer steps per epoch (None: one pass over the training images)."""


@dataclass
class TrainResult:
    epochs_done: int
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False
    resumed_from: int = 0
    resumed_step: int = 0


def class_weights(pixels: Sequence[int], ignore: Sequence[int]) -> list[float]:
    """Inverse square-root frequency weights, mean 1 over counted classes, clipped to [0.1, 10].

    Square root rather than plain inverse: plain inverse lets a class of a few pixels dominate
    the loss and the gradient noise.
    """
    counts = np.asarray(pixels, np.float64)
    weights = np.zeros_like(counts)
    counted = [i for i in range(len(counts)) if i not in ignore]
    freq = counts[counted] / max(counts[counted].sum(), 1)
    raw = np.where(freq > 0, 1 / np.sqrt(np.maximum(freq, 1e-12)), 0.0)
    present = raw > 0
    if present.any():
        raw[present] /= raw[present].mean()
    weights[counted] = np.clip(raw, 0.1, 10.0) * present + (~present) * 1.0
    return [float(w) for w in weights]


def _dice_loss(logits: Any, target: Any, n: int) -> Any:
    """Soft multi-class Dice over pixels whose target is not IGNORE, averaged over classes present."""
    import torch
    import torch.nn.functional as F

    valid = (target != IGNORE).unsqueeze(1)
    probs = logits.float().softmax(1) * valid
    onehot = F.one_hot(target.clamp(max=n - 1), n).permute(0, 3, 1, 2).float() * valid
    inter = (probs * onehot).sum((0, 2, 3))
    denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = (2 * inter + 1) / (denom + 1)
    return (1 - dice[present]).mean() if bool(present.any()) else torch.zeros((), device=logits.device)


def evaluate(model: Any, items: Sequence[Item], lut: np.ndarray, n: int, *, size: int, device: str, ignore: Sequence[int],
             dist: Dist = SINGLE) -> np.ndarray:
    """Confusion matrix (n, n) of the model on whole images (batch of one: sizes differ); each
    data-parallel process scores its share and the counts are summed over processes."""
    import torch

    cm = np.zeros((n, n), np.int64)
    model.eval()
    with torch.no_grad():
        evalset = EvalSet(items, lut, size=size)
        for x, y in (evalset[i] for i in shard(list(range(len(evalset))), dist)):
            logits = model(x.unsqueeze(0).to(device)).float()
            for g in ignore:
                logits[:, g] = -1e9  # never predict an ignored group (finite: resizing -inf gives NaN)
            cm += confusion(logits.argmax(1).cpu().numpy(), y.numpy(), n)
    model.train()
    if dist.parallel:
        cm = np.asarray(all_sum(cm.ravel().astype(np.float64).tolist(), dist), dtype=np.float64).round().astype(np.int64).reshape(n, n)
    return cm


def summarise(cm: np.ndarray, names: Sequence[str], ignore: Sequence[int]) -> dict[str, Any]:
    """Run metrics from a confusion matrix, with IoU labelled by class name (None when undefined)."""
    counted = [i for i in range(len(names)) if i not in ignore]
    per_class = iou(cm)
    return {
        "pixel_accuracy": pixel_accuracy(cm, counted),
        "miou": mean_iou(cm, counted),
        "iou": {names[i]: (None if np.isnan(per_class[i]) else float(per_class[i])) for i in counted},
        "confusion": cm.tolist(),
        "class_names": list(names),
    }


def train(
    model_config: ModelConfig,
    train_items: Sequence[Item],
    val_items: Sequence[Item],
    lut: np.ndarray,
    class_names: Sequence[str],
    ignore: Sequence[int],
    weights: Sequence[float],
    out_dir: Path,
    config: TrainConfig,
    *,
    progress: Progress = lambda *a, **k: None,
    should_stop: Callable[[], bool] = lambda: False,
    device: str | None = None,
    dist: Dist = SINGLE,
) -> TrainResult:
    """Train (or resume) into ``out_dir``; returns the last validation metrics.

    Data-parallel (``dist``): every process loads its share of each global batch of
    ``batch_size`` crops (the crops are the same whatever the process count: they are seeded by
    image and epoch), DDP averages the gradients (on CUDA with SyncBatchNorm, so batch statistics
    are the global batch's; on CPU each process normalises its own share), validation counts are
    summed, and only rank 0 writes. A stop saves a checkpoint at the step reached; a resume, under
    any number of processes, continues there.
    """
    import torch
    from safetensors.torch import load_file, save_file

    if not train_items:
        raise SegmentationError("no training images: the dataset's train split is empty")
    if not val_items:
        raise SegmentationError("no validation images: the dataset's val split is empty")
    device = dist.device(device_for(device))
    n = model_config.classes
    torch.manual_seed(config.seed)
    model = build_model(model_config).to(device)
    cuda = device.startswith("cuda")
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    wrapped = model
    if dist.parallel:
        from torch.nn.parallel import DistributedDataParallel

        if cuda:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        wrapped = DistributedDataParallel(model, device_ids=[int(device.split(":")[1])] if cuda else None)
    data = TrainingSet(train_items, lut, size=config.input_size, max_side=config.max_side, crop_min=config.crop_min, seed=config.seed)
    per_epoch = config.steps_per_epoch or max(1, len(data) // config.batch_size)
    total_steps = per_epoch * config.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, config.warmup_steps, total_steps, 0.05))
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and config.amp and amp_dtype == torch.float16)
    ce = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32, device=device), ignore_index=IGNORE)

    out_dir.mkdir(parents=True, exist_ok=True)
    start_epoch, skip, step, history = 0, 0, 0, []
    last = latest_checkpoint(out_dir)
    if last is not None:
        state = torch.load(last / "trainer.pt", map_location=device, weights_only=True)
        if state.get("model_config") != model_config.to_dict():
            raise SegmentationError(f"{out_dir}: its checkpoint was trained with {state.get('model_config')}; it cannot be resumed as {model_config.to_dict()}")
        model.load_state_dict(load_file(last / "model.safetensors", device=device))
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        skip = int(state.get("batch", 0))  # stopped mid-epoch: the steps of this epoch already done
    resumed_from, resumed_step = start_epoch, step

    def save(epoch: int, batch: int) -> None:
        if dist.main:
            _save(out_dir, model, {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "scaler": scaler.state_dict()},
                  epoch, step, history, model_config, config, class_names, ignore, save_file, batch=batch)

    metrics: dict[str, Any] = history[-1] if history else {}
    model.train()
    for epoch in range(start_epoch, config.epochs):
        data.epoch = epoch
        order = np.random.default_rng([config.seed, epoch, 1]).permutation(len(data))
        needed = per_epoch * config.batch_size
        order = np.resize(order, needed)  # repeats the permutation when steps_per_epoch asks for more
        batches = [order[i : i + config.batch_size].tolist() for i in range(0, needed, config.batch_size)]
        mine = [shard(b, dist) or b[:1] for b in batches[skip:]]  # this process's share of each global batch
        loader: Any = torch.utils.data.DataLoader(
            data,  # type: ignore[arg-type]
            batch_sampler=mine, num_workers=config.num_workers, pin_memory=cuda,
            persistent_workers=False,
        )
        running, first = 0.0, skip
        for k, (x, y) in enumerate(loader, start=skip):
            if any_true(should_stop(), dist):
                if k > first:
                    save(epoch, k)  # the steps done in this epoch are kept
                return TrainResult(epoch, metrics, history, stopped=True, resumed_from=resumed_from, resumed_step=resumed_step)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if cuda:
                x = x.to(memory_format=torch.channels_last)
            with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=amp_dtype, enabled=cuda and config.amp):
                logits = wrapped(x)
                loss = ce(logits.float(), y)
                if config.loss == "ce+dice":
                    loss = loss + _dice_loss(logits, y, n)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            step += 1
            value = all_sum([float(loss.detach())], dist)[0] / dist.world
            running += value
            progress(step, total_steps, f"epoch {epoch + 1}/{config.epochs}", loss=value, lr=schedule.get_last_lr()[0])
        cm = evaluate(model, val_items, lut, n, size=config.eval_size, device=device, ignore=ignore, dist=dist)
        metrics = {"epoch": epoch + 1, "step": step, "train_loss": running / max(1, per_epoch - skip), **summarise(cm, class_names, ignore)}
        skip = 0
        history.append(metrics)
        save(epoch + 1, 0)
        progress(step, total_steps, f"epoch {epoch + 1} validated", miou=metrics["miou"], pixel_accuracy=metrics["pixel_accuracy"])
    barrier(dist)
    return TrainResult(config.epochs, metrics, history, resumed_from=resumed_from, resumed_step=resumed_step)


def _save(out_dir: Path, model: Any, states: dict[str, Any], epoch: int, step: int, history: list[dict[str, Any]],
          model_config: ModelConfig, config: TrainConfig, class_names: Sequence[str], ignore: Sequence[int], save_file: Any,
          *, batch: int = 0) -> None:
    """Write a checkpoint as one unit (a crash leaves the previous one whole): at the start of
    ``epoch``, ``batch`` steps into it."""
    import torch

    state_dict = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    params = {"model": model_config.to_dict(), "train": asdict(config), "class_names": list(class_names), "ignore": list(ignore)}
    trainer = {**states, "epoch": epoch, "batch": batch, "step": step, "history": history, "model_config": model_config.to_dict()}

    def fill(folder: Path) -> None:
        save_file(state_dict, str(folder / "model.safetensors"))
        (folder / "params.json").write_text(json.dumps(params, indent=2), encoding="utf-8")
        (folder / "metrics.json").write_text(json.dumps({"last": history[-1] if history else {}, "history": history}, indent=2), encoding="utf-8")
        if history:
            draw_confusion(np.array(history[-1]["confusion"]), class_names, ignore).save(folder / "confusion.png", format="PNG")
        torch.save(trainer, folder / "trainer.pt")

    write_checkpoint(out_dir, step, fill)


def draw_confusion(cm: np.ndarray, names: Sequence[str], ignore: Sequence[int]) -> Any:
    """The confusion matrix as a PNG: rows true class, columns predicted, each row normalised."""
    from PIL import Image, ImageDraw

    keep = [i for i in range(len(names)) if i not in ignore]
    sub = cm[np.ix_(keep, keep)].astype(np.float64)
    rows = sub / np.maximum(sub.sum(1, keepdims=True), 1)
    cell, left, top = 34, 150, 150
    size = len(keep)
    img = Image.new("RGB", (left + cell * size + 10, top + cell * size + 10), "white")
    draw = ImageDraw.Draw(img)
    for r in range(size):
        draw.text((4, top + r * cell + 10), names[keep[r]][:22], fill="black")
        for c in range(size):
            v = rows[r, c]
            shade = int(255 - 200 * v)
            x0, y0 = left + c * cell, top + r * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=(shade, shade, 255))
            draw.text((x0 + 4, y0 + 10), f"{v:.2f}"[1:] if v < 1 else "1.0", fill="black" if v < 0.6 else "white")
    for c in range(size):
        label = Image.new("RGB", (top - 10, 14), "white")
        ImageDraw.Draw(label).text((0, 0), names[keep[c]][:22], fill="black")
        img.paste(label.rotate(90, expand=True), (left + c * cell + 10, 4))
    draw.text((4, 4), "true \\ predicted", fill="black")
    return img


def load_params(model_dir: Path) -> dict[str, Any] | None:
    """The params.json of a run folder's last checkpoint (model config, class names, ...), if any."""
    folder = latest_checkpoint(model_dir) or model_dir
    try:
        data = json.loads((folder / "params.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_checkpoint(model_dir: Path, device: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Rebuild a trained model from its run folder (its last checkpoint; runs from before
    checkpoint folders kept the files at the top); returns ``(model in eval mode, params)``.

    :raises SegmentationError: if the folder holds no checkpoint
    """
    from safetensors.torch import load_file

    model_dir = latest_checkpoint(model_dir) or model_dir
    params_file = model_dir / "params.json"
    weights = model_dir / "model.safetensors"
    if not params_file.is_file() or not weights.is_file():
        raise SegmentationError(f"{model_dir}: no segmenter checkpoint (model.safetensors + params.json)")
    params = json.loads(params_file.read_text())
    device = device_for(device)
    model = build_model(ModelConfig.from_dict(params["model"]))
    try:
        model.load_state_dict(load_file(weights, device="cpu"))
    except RuntimeError as exc:
        raise SegmentationError(f"{weights}: does not fit {params['model']} ({str(exc).splitlines()[0]})") from exc
    return model.to(device).eval(), params
