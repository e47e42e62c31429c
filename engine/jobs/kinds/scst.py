"""``train-captioner objective=scst``: self-critical fine-tuning of a trained captioner run
(:mod:`engine.captioning.scst`).

The new run keeps what generation needs from its ``init`` run (base, LoRA and 4-bit settings,
prompt source, composition, prompt budget), so ``generate captioner=NEW`` works as for any
captioner; its model starts as a copy of init's (full weights, or the LoRA adapter made
trainable again) and is written to its own folder.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.captioning.errors import CaptioningError
from engine.jobs.base import JobContext, JobResult, JobStopped
from engine.jobs.kinds.captioning import _composition_run, _dataset_name, claim_captioner, held_out, open_captioner, prompts_for
from engine.jobs.lookup import dataset_of_kind, finished_run
from engine.store.catalog import captions_for, list_images
from engine.store.models import Dataset, Image
from engine.store.runs import Run, set_run_status

if TYPE_CHECKING:
    from engine.jobs.kinds.captioning import TrainCaptionerParams

KEPT = ("base", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "load_in_4bit", "trust_remote_code", "max_length")
"""Params of the init run that the SCST run keeps (what loading and generation read)."""


def _images(ctx: JobContext, ds: Dataset, seed: int) -> tuple[list[Image], list[Image], str]:
    """Train and validation images with references: the val split, or 5% of train images held out."""
    train = list_images(ctx.db, ds.id, split="train")
    val = list_images(ctx.db, ds.id, split="val")
    if val or not train:
        return train, val, "val split"
    held = held_out({im.id for im in train}, seed)
    return [im for im in train if im.id not in held], [im for im in train if im.id in held], f"{len(held)} train images held out"


def _load_trainable(folder: Path, device: str, init: Run, gradient_checkpointing: bool) -> tuple[Any, Any]:
    """The init run's model, every weight it trained trainable again, and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.captioning.model import load_adapter

    if not folder.is_dir():
        raise CaptioningError(f"init={init.name!r}: its model folder {folder} is missing")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    trust = bool(init.params.get("trust_remote_code"))
    if (folder / "adapter_config.json").exists():
        model = load_adapter(folder, device=device, load_in_4bit=bool(init.params.get("load_in_4bit")), trust_remote_code=trust)
        for n, p in model.named_parameters():
            p.requires_grad_("lora_" in n)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, trust_remote_code=trust)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, tokenizer


def train_scst_job(params: TrainCaptionerParams, ctx: JobContext) -> JobResult:
    from engine import distributed
    from engine.captioning.data import fit_prompt, prompt_length
    from engine.captioning.model import quiet_transformers
    from engine.captioning.reward import Reward
    from engine.captioning.scst import Item, ScstConfig, train_scst
    from engine.training import device_for

    quiet_transformers()
    dist = distributed.from_env()
    init = finished_run(ctx, "init", str(params.init), ("captioner",), "train-captioner", CaptioningError,
                        unfinished="finish (resume) its training first")
    ds = dataset_of_kind(ctx, params.dataset or _dataset_name(ctx, init), "captioning", "ingest one first")
    source = init.params["prompt"]
    if params.prompt is not None and params.prompt != source:
        raise CaptioningError(f"prompt={params.prompt}: init run {init.name!r} learnt prompt={source}; SCST keeps its prompts")
    composition = _composition_run(ctx, params.composition or init.params.get("composition"), ds, source)
    budget = init.metrics.get("prompt_budget")
    train_images, val_images, validation = _images(ctx, ds, params.seed)
    refs = {i: [c.text for c in cs] for i, cs in captions_for(ctx.db, [im.id for im in train_images + val_images]).items() if cs}
    train_prompts, lacking = prompts_for(ctx, [im for im in train_images if im.id in refs], source, composition, params.scenes)
    val_prompts, _ = prompts_for(ctx, [im for im in val_images if im.id in refs], source, composition, params.scenes)
    if not train_prompts:
        why = f" ({len(lacking)} have no composition in {composition.name!r})" if lacking and composition else ""
        raise CaptioningError(f"no training images: dataset {ds.name!r} has no train images with references{why}")
    device = dist.device(device_for(params.device or None))
    family = params.name or f"{init.family}.scst"
    stored = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(params).items()}
    stored |= {k: init.params.get(k) for k in KEPT} | {
        "name": family, "dataset": ds.name, "prompt": source, "composition": composition.name if composition else None, "init": init.name}

    name, out_dir, existing = claim_captioner(ctx, family, stored)
    model, tokenizer = _load_trainable(Path(init.artifact_dir or ctx.workspace.model_dir(init.name)) / "model", device, init,
                                       params.gradient_checkpointing)
    length = prompt_length(tokenizer)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    encoded: dict[str, tuple[int, ...]] = {}

    def items(prompts: dict[int, str]) -> list[Item]:
        for p in set(prompts.values()) - set(encoded):
            fitted = fit_prompt(p, length, budget) if budget else p
            encoded[p] = tuple(bos + tokenizer(fitted, add_special_tokens=False).input_ids)
        return [Item(i, encoded[p]) for i, p in prompts.items()]

    train, val = items(train_prompts), items(val_prompts)
    ctx.progress(0, None, "tokenizing references for the reward")
    reward = Reward({i: refs[i] for i in [*train_prompts, *val_prompts]}, corpus=[im.id for im in train_images if im.id in refs],
                    metric=params.reward)

    run_id = open_captioner(ctx, existing, name=name, family=family, stored=stored, parent_run_id=init.id, dataset_id=ds.id,
                            out_dir=out_dir)
    ctx.attach_run(run_id)
    ctx.log.info("SCST of %s into %s: %d train images (%d validation: %s), %d samples each, reward %s, device %s%s",
                 init.name, name, len(train), len(val), validation, params.scst_samples, params.reward, device,
                 f", {dist.world} data-parallel processes" if dist.parallel else "")
    config = ScstConfig(epochs=params.epochs, batch_size=params.batch_size, samples=params.scst_samples, lr=params.lr or 5e-5,
                        warmup_steps=params.warmup_steps, max_steps=params.max_steps, max_new_tokens=params.max_new_tokens,
                        patience=params.patience, seed=params.seed, baseline=params.scst_baseline)
    extra = {"prompt": source, "composition": stored["composition"], "prompt_budget": budget, "init": init.name, "reward": params.reward}
    try:
        result = train_scst(model, tokenizer, train, val, reward, out_dir, config, progress=ctx.progress, should_stop=ctx.should_stop,
                            device=device, save_extra=extra, dist=dist)
    except BaseException:
        if ctx.main:
            set_run_status(ctx.db, run_id, "failed")
        raise
    start = result.history[0]["val_reward"] if result.history else float("nan")
    metrics = {"objective": "scst", "init": init.name, "reward": params.reward, "val_reward": result.best_val_loss,
               "start_val_reward": start, "train_images": len(train), "val_images": len(val), "validation": validation,
               "epochs": result.epochs_done, "steps": result.steps, "history": result.history, "prompt_budget": budget,
               "processes": dist.world, "trainable_parameters": int(sum(p.numel() for p in model.parameters() if p.requires_grad))}
    if result.stopped:
        if ctx.main:
            set_run_status(ctx.db, run_id, "failed", metrics)
        raise JobStopped()
    if ctx.main:
        set_run_status(ctx.db, run_id, "complete", metrics)
    last = result.history[-1] if result.history else {}
    drift = f"; validation captions {last.get('val_length', 0):.1f} words, {last.get('val_distinct', 0):.0%} distinct" if last else ""
    return JobResult(f"{name}: SCST from {init.name}, {result.epochs_done} epochs ({result.steps} steps); validation {params.reward} "
                     f"{start:.3f} -> best {result.best_val_loss:.3f}{drift}; model in {out_dir / 'model'}",
                     run_id=run_id, data={"val_reward": result.best_val_loss, "history": result.history, "name": name})

