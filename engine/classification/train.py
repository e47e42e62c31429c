"""Train a scene classifier: cross-entropy, AdamW with warmup and cosine, flips and quarter turns
(an aerial scene has no up), validation each epoch (accuracy, per-scene accuracy, confusion),
a checkpoint each epoch as one unit, resume from the last one, stop on request.

Run folder: ``checkpoint`` links to the last ``ckpt-<step>/`` with ``model.safetensors``,
``params.json`` (the classifier config), ``metrics.json``, ``trainer.pt`` (loads with
``weights_only=True``) and ``confusion.png``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.classification.model import ClassifierConfig, build_classifier
from engine.segmentation.data import load_rgb, normalise
from engine.segmentation.errors import SegmentationError
from engine.training import device_for, latest_checkpoint, warmup_cosine, write_checkpoint

Progress = Callable[..., None]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    input_size: int = 224
    seed: int = 0
    num_workers: int = 2
    amp: bool = True


@dataclass
class TrainResult:
    epochs_done: int
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False
    resumed_step: int = 0


class SceneSet:
    """(image, label) pairs resized to ``size``; ``augment``: a random flip and quarter turn per
    image and epoch, seeded by (seed, epoch, index)."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], *, size: int, augment: bool, seed: int = 0) -> None:
        self.paths, self.labels = list(paths), list(labels)
        self.size, self.augment, self.seed = size, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        import torch
        from PIL import Image

        img, _ = load_rgb(self.paths[index], max_side=self.size * 4)
        rgb = np.asarray(img.resize((self.size, self.size), Image.Resampling.BILINEAR))
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            rgb = np.rot90(rgb, int(rng.integers(0, 4)))
            if rng.random() < 0.5:
                rgb = rgb[:, ::-1]
        return torch.from_numpy(normalise(np.ascontiguousarray(rgb))), self.labels[index]


def accuracy_report(cm: np.ndarray, scenes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-scene accuracy (recall) and the confusion matrix (rows true, columns predicted)."""
    total = cm.sum()
    per = cm.diagonal() / np.maximum(cm.sum(1), 1)
    return {"accuracy": float(cm.diagonal().sum() / max(total, 1)),
            "per_scene": {s: float(per[i]) for i, s in enumerate(scenes) if cm[i].sum()},
            "confusion": cm.tolist(), "class_names": list(scenes)}


def recalibrate_batchnorm(model: Any, data: SceneSet, *, device: str, batch_size: int, batches: int = 20) -> None:
    """Re-estimate BatchNorm's running statistics as a plain average over up to ``batches``
    training batches. After a few dozen steps from scratch the running averages still remember
    the first batches, and in eval mode such a model predicts one class for every image
    (measured: 12.5% accuracy in eval mode, 83% in train mode, on the demo's synthetic world)."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    order = np.random.default_rng(0).permutation(len(data)).tolist()[: batches * batch_size]
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            x = torch.stack([data[i][0] for i in order[start : start + batch_size]]).to(device)
            model(x)
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum


def evaluate(model: Any, data: SceneSet, n: int, *, device: str, batch_size: int = 64) -> np.ndarray:
    import torch

    cm = np.zeros((n, n), np.int64)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = [data[i] for i in range(start, min(start + batch_size, len(data)))]
            x = torch.stack([b[0] for b in batch]).to(device)
            predicted = model(x).argmax(1).cpu().numpy()
            for truth, guess in zip((b[1] for b in batch), predicted, strict=True):
                cm[truth, guess] += 1
    model.train()
    return cm


def train(
    config: ClassifierConfig,
    train_items: tuple[Sequence[str], Sequence[int]],
    val_items: tuple[Sequence[str], Sequence[int]],
    out_dir: Path,
    tc: TrainConfig,
    *,
    progress: Progress = lambda *a, **k: None,
    should_stop: Callable[[], bool] = lambda: False,
    device: str | None = None,
) -> TrainResult:
    """Train (or resume) into ``out_dir``; returns the last validation metrics."""
    import torch
    from safetensors.torch import load_file, save_file

    from engine.segmentation.train import draw_confusion

    if not train_items[0]:
        raise SegmentationError("no training images with a scene: the dataset's train split has none")
    if not val_items[0]:
        raise SegmentationError("no validation images with a scene: the dataset's val split has none")
    device = device_for(device)
    cuda = device.startswith("cuda")
    n = len(config.scenes)
    torch.manual_seed(tc.seed)
    model = build_classifier(config).to(device)
    data = SceneSet(*train_items, size=tc.input_size, augment=True, seed=tc.seed)
    val = SceneSet(*val_items, size=tc.input_size, augment=False)
    per_epoch = max(1, -(-len(data) // tc.batch_size))
    total = per_epoch * tc.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, tc.warmup_steps, total, 0.05))
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and tc.amp and amp_dtype == torch.float16)
    loss_fn = torch.nn.CrossEntropyLoss()
    start_epoch, skip, step, history = 0, 0, 0, []
    last = latest_checkpoint(out_dir)
    if last is not None:
        state = torch.load(last / "trainer.pt", map_location=device, weights_only=True)
        if state.get("config") != config.to_dict():
            raise SegmentationError(f"{out_dir}: its checkpoint was trained as {state.get('config')}; it cannot be resumed as {config.to_dict()}")
        model.load_state_dict(load_file(last / "model.safetensors", device=device))
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, skip, step, history = state["epoch"], int(state.get("batch", 0)), state["step"], state["history"]
    resumed_step = step

    def save(epoch: int, batch: int) -> None:
        weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        trainer = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "scaler": scaler.state_dict(),
                   "epoch": epoch, "batch": batch, "step": step, "history": history, "config": config.to_dict()}

        def fill(folder: Path) -> None:
            save_file(weights, str(folder / "model.safetensors"))
            (folder / "params.json").write_text(json.dumps({"classifier": config.to_dict(), "train": asdict(tc)}, indent=2))
            (folder / "metrics.json").write_text(json.dumps({"history": history}, indent=2))
            if history:
                draw_confusion(np.array(history[-1]["confusion"]), list(config.scenes), []).save(folder / "confusion.png")
            torch.save(trainer, folder / "trainer.pt")

        write_checkpoint(out_dir, step, fill)

    metrics: dict[str, Any] = history[-1] if history else {}
    model.train()
    for epoch in range(start_epoch, tc.epochs):
        data.epoch = epoch
        order = np.random.default_rng([tc.seed, epoch, 7]).permutation(len(data)).tolist()
        batches = [order[i : i + tc.batch_size] for i in range(0, len(order), tc.batch_size)]
        loader: Any = torch.utils.data.DataLoader(data, batch_sampler=batches[skip:], num_workers=tc.num_workers, pin_memory=cuda)  # type: ignore[arg-type]
        running, first = 0.0, skip
        for k, (x, y) in enumerate(loader, start=skip):
            if should_stop():
                if k > first:
                    save(epoch, k)
                return TrainResult(epoch, metrics, history, stopped=True, resumed_step=resumed_step)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=amp_dtype, enabled=cuda and tc.amp):
                loss = loss_fn(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            step += 1
            running += float(loss.detach())
            progress(step, total, f"epoch {epoch + 1}/{tc.epochs}", loss=float(loss.detach()), lr=schedule.get_last_lr()[0])
        skip = 0
        recalibrate_batchnorm(model, data, device=device, batch_size=tc.batch_size)
        metrics = {"epoch": epoch + 1, "step": step, "train_loss": running / max(1, per_epoch - first),
                   **accuracy_report(evaluate(model, val, n, device=device), config.scenes)}
        history.append(metrics)
        save(epoch + 1, 0)
        progress(step, total, f"epoch {epoch + 1} validated", accuracy=metrics["accuracy"])
    return TrainResult(tc.epochs, metrics, history, resumed_step=resumed_step)


def load_classifier(run_dir: Path, device: str | None = None) -> tuple[Any, ClassifierConfig, int]:
    """The trained classifier of a run folder (eval mode), its config and input size.

    :raises SegmentationError: if the folder holds no checkpoint
    """
    from safetensors.torch import load_file

    folder = latest_checkpoint(run_dir)
    if folder is None or not (folder / "model.safetensors").is_file():
        raise SegmentationError(f"{run_dir}: no scene classifier checkpoint here; train one first")
    params = json.loads((folder / "params.json").read_text())
    config = ClassifierConfig.from_dict(params["classifier"])
    model = build_classifier(config)
    model.load_state_dict(load_file(folder / "model.safetensors", device="cpu"))
    return model.to(device_for(device)).eval(), config, int(params["train"]["input_size"])


def predict(model: Any, paths: Sequence[str], *, size: int, device: str, batch_size: int = 64, top: int = 3,
            on_batch: Callable[[list[int], np.ndarray], None], should_stop: Callable[[], bool] = lambda: False,
            num_workers: int = 0) -> bool:
    """Scene probabilities (softmax) of every image, handed to ``on_batch`` with the images' indices.

    :returns: False if stopped early
    """
    import torch

    from engine.segmentation.data import InferenceSet

    loader: Any = torch.utils.data.DataLoader(InferenceSet(paths, size=size), batch_size=batch_size, num_workers=num_workers)  # type: ignore[arg-type]
    with torch.inference_mode():
        for x, index, _, _ in loader:
            if should_stop():
                return False
            on_batch([int(i) for i in index], model(x.to(device)).float().softmax(1).cpu().numpy())
    return True
