"""Job kinds ``train-captioner``, ``generate`` and ``baseline-knn``.

Prompts come from a composition run, the scene label, or both. A captioner run keeps its model in
``models/<run>/model`` (loadable offline with the Auto classes); generation and baseline runs
store one caption per image.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from engine.captioning.data import Example, build_prompt, encode, make_examples
from engine.captioning.errors import CaptioningError
from engine.jobs.base import JobContext, JobKind, JobResult, JobStopped
from engine.jobs.lookup import check_run_name, dataset_of_kind, finished_run, on_main, resumable, staged_run, taken_by_other_kind
from engine.store.catalog import captions_for, get_dataset_by_id, list_images
from engine.store.models import Dataset, Image
from engine.jobs.kinds.scenes import ORACLE, scene_source, scenes_label
from engine.store.results import add_generations
from engine.store.scenes import add_candidates
from engine.store.runs import Run, compositions_of, create_run, next_run_name, set_run_params, set_run_status

Split = Literal["all", "train", "val", "test"]


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def _composition_run(ctx: JobContext, name: str | None, ds: Dataset, source: str) -> Run | None:
    if source == "scene":
        return None
    if name is None:
        raise CaptioningError(f"prompt={source} needs composition=RUN (a compose run of {ds.name!r}); or use prompt=scene")
    return finished_run(ctx, "composition", name, ("composition",), "compose", CaptioningError, dataset=ds)


def prompts_for(ctx: JobContext, images: list[Image], source: str, composition: Run | None,
                scenes: str = ORACLE) -> tuple[dict[int, str], list[Image]]:
    """Prompt per image id, and the images that have no composition (when one is needed).

    :param scenes: where a scene line's scene comes from: ``oracle`` (the dataset's labels) or a
        classify run
    """
    comps = {r.image_id: r.prompt for r in compositions_of(ctx.db, composition.id)} if composition else {}
    scene_of: dict[int, str | None] = {im.id: im.scene for im in images}
    if source != "composition" and scenes != ORACLE and images:
        ds = get_dataset_by_id(ctx.db, images[0].dataset_id)
        assert ds is not None
        scene_of = scene_source(ctx, scenes, ds, images)
    prompts, lacking = {}, []
    for im in images:
        if composition is not None and im.id not in comps:
            lacking.append(im)
            continue
        prompts[im.id] = build_prompt(source, scene_of[im.id], comps.get(im.id))
    return prompts, lacking


def uses_scenes(prompt: str) -> bool:
    return prompt in ("scene", "both")


@dataclass(frozen=True)
class TrainCaptionerParams:
    dataset: str | None = None
    """Captioning dataset (its train split is learned, its val split validates); with init=RUN, default that run's."""
    composition: str | None = None
    """Compose run giving the prompts (needed unless prompt=scene); with init=RUN, default that run's."""
    prompt: Literal["composition", "scene", "both"] | None = None
    """What the model sees: the composition text, the scene label, or both (default composition, or init's)."""
    scenes: str = ORACLE
    """Scenes of the training prompts: oracle (the dataset's labels; clean supervision) or a classify run."""
    base: str = "tiny"
    """tiny / small (Llama built from a config, trained from scratch), or a Hugging Face causal LM id or folder (LoRA), e.g. meta-llama/Llama-2-7b-hf, or config:NAME (LoRA on a Llama of that shape with random weights, no download: config:llama-2-7b, config:llama-2-13b, config:llama-tiny)."""
    name: str | None = None
    """Run name (default captioner-<time>); the name of an unfinished run resumes it, a finished one gets a new version."""
    epochs: int = 8
    """Passes over all (prompt, reference) pairs."""
    batch_size: int = 16
    """Pairs per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    lr: float = 0.0
    """Peak learning rate (0: 1e-3 for tiny/small, 2e-4 for LoRA)."""
    warmup_steps: int = 20
    """Linear warmup steps before the cosine decay."""
    max_length: int = 256
    """Tokens per example (a longer prompt loses its last composition lines, in generation too)."""
    patience: int = 2
    """Early stopping: epochs without a better validation loss."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: no cap)."""
    length_grouped: bool = True
    """Batch pairs of similar length (less padding)."""
    lora_r: int = 16
    """LoRA rank (pretrained bases)."""
    lora_alpha: int = 32
    """LoRA scaling alpha."""
    lora_dropout: float = 0.05
    """LoRA dropout."""
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Modules that get adapters."""
    load_in_4bit: bool = False
    """QLoRA: load the base in 4 bits (needs a CUDA GPU)."""
    merge: bool = False
    """Merge the LoRA adapter into the base after training (a plain model for inference)."""
    trust_remote_code: bool = False
    """Allow a base model's own code to run (off unless you trust it)."""
    seed: int = 0
    """Seed for initialisation and batch order."""
    device: str = ""
    """cpu, cuda, ... (default: cuda when available)."""
    processes: int = 1
    """Data-parallel processes (one per GPU on a GPU machine, CPU processes elsewhere); batch_size stays the global batch."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (much less memory, about a third slower; large bases need it)."""
    objective: Literal["cross-entropy", "scst"] = "cross-entropy"
    """cross-entropy: learn the references; scst: fine-tune init=RUN for the metric (self-critical sequence training)."""
    init: str | None = None
    """SCST: the trained captioner run to start from (its base, prompts and dataset are kept)."""
    scst_samples: int = 5
    """SCST: captions sampled per image each step."""
    scst_baseline: Literal["greedy", "samples"] = "greedy"
    """SCST: what a sample's reward is compared with: the greedy caption's (Rennie et al.) or the mean of the image's other samples."""
    reward: Literal["cider", "bleu4", "cider+bleu4"] = "cider"
    """SCST: the reward, CIDEr-D against each image's references (document frequencies of the train references), BLEU-4, or their mean."""
    max_new_tokens: int = 40
    """SCST: longest sampled caption in tokens."""

    def __post_init__(self) -> None:
        check_run_name(self.name)
        if self.objective == "scst":
            if self.init is None:
                raise ValueError("init: objective=scst fine-tunes a trained captioner: give init=RUN (a train-captioner run)")
            if self.scst_samples < 1 or self.max_new_tokens < 1:
                raise ValueError("scst_samples and max_new_tokens: must be at least 1")
            if self.scst_baseline == "samples" and self.scst_samples < 2:
                raise ValueError("scst_baseline=samples: needs scst_samples of 2 or more (the other samples are the baseline)")
            return
        if self.init is not None:
            raise ValueError("init: only with objective=scst (cross-entropy training starts from base=...)")
        if self.dataset is None:
            raise ValueError("dataset: which captioning dataset to learn (dataset=NAME)")
        if self.processes < 1 or self.batch_size < self.processes:
            raise ValueError(f"processes={self.processes}: must be at least 1 and at most batch_size ({self.batch_size})")
        for f in ("epochs", "batch_size", "grad_accum", "patience"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f}: must be at least 1")
        if self.max_length < 32:
            raise ValueError("max_length: must be at least 32")
        if self.lr < 0 or self.max_steps < 0:
            raise ValueError("lr and max_steps: must be 0 or more")
        if self.prompt in (None, "composition", "both") and self.composition is None:
            raise ValueError(f"composition: prompt={self.prompt or 'composition'} needs composition=RUN (or use prompt=scene)")
        if self.load_in_4bit and self.base in ("tiny", "small"):
            raise ValueError("load_in_4bit: only for LoRA bases, pretrained or config:NAME (tiny/small are trained in full)")


SCST_ONLY = ("objective", "init", "scst_samples", "scst_baseline", "reward", "max_new_tokens")
"""Params that only SCST reads (not stored with a cross-entropy run)."""


def _split_examples(ctx: JobContext, ds: Dataset, split: str, source: str, composition: Run | None,
                    image_ids: set[int] | None = None, scenes: str = ORACLE) -> tuple[list[Example], list[Image]]:
    images = [im for im in list_images(ctx.db, ds.id, split=split) if image_ids is None or im.id in image_ids]
    prompts, lacking = prompts_for(ctx, images, source, composition, scenes)
    refs = captions_for(ctx.db, list(prompts))
    return make_examples((prompts[i], [c.text for c in refs[i]]) for i in prompts), lacking


HOLD_OUT = 0.05
"""Share of the train images held out for validation when a dataset has no val split."""


def held_out(ids: set[int], seed: int) -> set[int]:
    """The train images held out for validation when a dataset has no val split (5%, at least one)."""
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    return set(order[: max(1, round(len(order) * HOLD_OUT))])


def claim_captioner(ctx: JobContext, family: str, stored: dict[str, Any]) -> tuple[str, Path, int | None]:
    """Name, folder and id of the captioner run to train into: the family's unfinished run to
    resume (same params), else its next version (no id yet). Decided by rank 0 for every process."""
    def name_it() -> tuple[str, str, int | None]:
        run = resumable(ctx, family, "captioner", stored, CaptioningError)
        name = run.name if run is not None else next_run_name(ctx.db, family)
        out = Path(run.artifact_dir) if run is not None and run.artifact_dir else ctx.workspace.model_dir(name)
        return name, str(out), run.id if run is not None else None

    name, folder, existing = on_main(ctx, name_it, CaptioningError)  # every process trains into the same folder
    return name, Path(folder), existing


def open_captioner(ctx: JobContext, existing: int | None, *, name: str, family: str, stored: dict[str, Any],
                   parent_run_id: int | None, dataset_id: int, out_dir: Path) -> int:
    """The run claimed by :func:`claim_captioner`, created or set running again; its id."""
    def open_run() -> int:
        if existing is None:
            return create_run(ctx.db, kind="captioner", name=name, family=family, version=_version_of(ctx, family, name),
                              params=stored, parent_run_id=parent_run_id, dataset_id=dataset_id, artifact_dir=str(out_dir)).id
        set_run_params(ctx.db, existing, stored)
        set_run_status(ctx.db, existing, "running")
        return existing

    return on_main(ctx, open_run, CaptioningError)


def _train_val(ctx: JobContext, ds: Dataset, source: str, composition: Run | None, seed: int,
               scenes: str = ORACLE) -> tuple[list[Example], list[Example], list[Image], str]:
    """Training and validation pairs: the train and val splits, or, without a val split, the train
    split with 5% of its *images* held out (every reference of a held-out image with it)."""
    train, lacking = _split_examples(ctx, ds, "train", source, composition, scenes=scenes)
    val, _ = _split_examples(ctx, ds, "val", source, composition, scenes=scenes)
    if val or not train:
        return train, val, lacking, "val split"
    ids = {im.id for im in list_images(ctx.db, ds.id, split="train")}
    held = held_out(ids, seed)
    train, _ = _split_examples(ctx, ds, "train", source, composition, ids - held, scenes)
    val, _ = _split_examples(ctx, ds, "train", source, composition, held, scenes)
    return train, val, lacking, f"{len(held)} train images held out"


def train_captioner_job(params: TrainCaptionerParams, ctx: JobContext) -> JobResult:
    from engine import distributed
    from engine.captioning.data import prompt_budget
    from engine.captioning.model import (
        PRESETS, LoraSettings, add_lora, build_from_config, build_preset, config_tokenizer, is_config_base, load_pretrained,
        quiet_transformers, train_tokenizer, vocab_texts,
    )
    from engine.captioning.train import TrainConfig, train_captioner
    from engine.training import device_for

    if params.objective == "scst":
        from engine.jobs.kinds.scst import train_scst_job

        return train_scst_job(params, ctx)
    quiet_transformers()
    dist = distributed.from_env()
    params = replace(params, prompt=params.prompt or "composition")
    ds = dataset_of_kind(ctx, str(params.dataset), "captioning", "ingest one with `workbench ingest captions PATH`")
    composition = _composition_run(ctx, params.composition, ds, params.prompt)  # type: ignore[arg-type]
    train, val, lacking, validation = _train_val(ctx, ds, params.prompt, composition, params.seed, params.scenes)  # type: ignore[arg-type]
    if not train:
        why = f" ({len(lacking)} train images have no composition in {params.composition!r}; run compose on them)" if lacking else ""
        raise CaptioningError(f"no training pairs: dataset {ds.name!r} has no train images with references{why}")
    device = dist.device(device_for(params.device or None))
    family = params.name or f"captioner-{_stamp()}"
    stored = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(params).items() if k not in SCST_ONLY} | {"name": family}
    if composition is not None:
        stored["composition"] = composition.name  # the version it trained on, not the family's newest later

    name, out_dir, existing = claim_captioner(ctx, family, stored)
    if params.base in PRESETS or is_config_base(params.base):
        from transformers import AutoTokenizer

        tok_dir = out_dir / "tokenizer"

        def tokenizer_files() -> None:
            if not tok_dir.is_dir():
                texts = vocab_texts([e.prompt for e in train], [e.caption for e in train])
                made = config_tokenizer(texts, params.base) if is_config_base(params.base) else train_tokenizer(texts, PRESETS[params.base]["vocab"])
                made.save_pretrained(tok_dir)

        on_main(ctx, tokenizer_files, CaptioningError)
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    if params.base in PRESETS:
        model = build_preset(params.base, tokenizer, params.max_length, params.seed)
        if params.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lr = params.lr or 1e-3
    else:
        if is_config_base(params.base):
            model, tokenizer = build_from_config(params.base, tokenizer=tokenizer, device=device, load_in_4bit=params.load_in_4bit)
        else:
            model, tokenizer = load_pretrained(params.base, load_in_4bit=params.load_in_4bit, trust_remote_code=params.trust_remote_code, device=device)
        model = add_lora(model, LoraSettings(params.lora_r, params.lora_alpha, params.lora_dropout, params.lora_targets),
                         quantized=params.load_in_4bit, gradient_checkpointing=params.gradient_checkpointing)
        lr = params.lr or 2e-4

    run_id = open_captioner(ctx, existing, name=name, family=family, stored=stored,
                            parent_run_id=composition.id if composition else None, dataset_id=ds.id, out_dir=out_dir)
    ctx.attach_run(run_id)
    budget = prompt_budget([e.caption for e in train], tokenizer, params.max_length)
    train_enc, val_enc = encode(train, tokenizer, params.max_length, budget), encode(val, tokenizer, params.max_length, budget)
    ctx.log.info("training %s on %d pairs (%d validation: %s), base %s, device %s%s, prompt budget %d tokens",
                 name, len(train), len(val), validation, params.base, device,
                 f", {dist.world} data-parallel processes" if dist.parallel else "", budget)
    config = TrainConfig(epochs=params.epochs, batch_size=params.batch_size, grad_accum=params.grad_accum, lr=lr,
                         warmup_steps=params.warmup_steps, patience=params.patience, seed=params.seed,
                         max_steps=params.max_steps, length_grouped=params.length_grouped)
    try:
        result = train_captioner(model, tokenizer, train_enc, val_enc, out_dir, config, progress=ctx.progress,
                                 should_stop=ctx.should_stop, device=device, merge_lora=params.merge, dist=dist,
                                 save_extra={"prompt": params.prompt, "composition": stored.get("composition"), "prompt_budget": budget})
    except BaseException:
        if ctx.main:
            set_run_status(ctx.db, run_id, "failed")
        raise
    metrics = {"val_loss": result.best_val_loss, "train_pairs": len(train), "val_pairs": len(val), "validation": validation,
               "epochs": result.epochs_done, "steps": result.steps, "history": result.history, "prompt_budget": budget,
               "processes": dist.world, "parameters": int(sum(p.numel() for p in model.parameters())),
               "trainable_parameters": int(sum(p.numel() for p in model.parameters() if p.requires_grad))}
    if result.stopped:
        if ctx.main:
            set_run_status(ctx.db, run_id, "failed", metrics)
        raise JobStopped()
    if ctx.main:
        set_run_status(ctx.db, run_id, "complete", metrics)
    return JobResult(f"{name}: {_trained(result, params)}, best validation loss {result.best_val_loss:.3f} on {len(val)} pairs; "
                     f"model in {out_dir / 'model'}",
                     run_id=run_id, data={"val_loss": result.best_val_loss, "history": result.history, "name": name})


def _version_of(ctx: JobContext, family: str, name: str) -> int:
    return 1 if name == family else int(name.rsplit(".", 1)[1])


def _trained(result: Any, params: TrainCaptionerParams) -> str:
    """How far training went, in words: "8 epochs (early stop), resumed at epoch 2", "stopped at step 40 (max_steps)"."""
    if params.max_steps and result.steps >= params.max_steps:
        done = f"stopped at step {result.steps} (max_steps) in epoch {max(1, result.epochs_done)}"
    else:
        done = f"{result.epochs_done} epoch{'s' if result.epochs_done != 1 else ''}" + (" (early stop)" if result.early_stopped else "")
    return done + (f", resumed at step {result.resumed_step}" if result.resumed_step else "")


@dataclass(frozen=True)
class GenerateParams:
    captioner: str
    """A complete train-captioner run."""
    split: Split = "test"
    """Images to caption."""
    dataset: str | None = None
    """Dataset (default: the captioner's)."""
    composition: str | None = None
    """Compose run for the prompts (default: the captioner's)."""
    name: str | None = None
    """Run name (default gen.<captioner>.<split>); re-running it makes a new version (gen.cap.test.2, ...)."""
    replace: bool = False
    """Replace the newest run of that name once this one has succeeded (a run holding ratings is kept, superseded)."""
    batch_size: int = 32
    """Prompts per generate call."""
    num_beams: int = 1
    """1: greedy; more: beam search."""
    max_new_tokens: int = 40
    """Longest caption in tokens."""
    repetition_penalty: float = 1.0
    """Above 1 discourages repeated tokens."""
    no_repeat_ngram_size: int = 0
    """Forbid repeating n-grams of this size (0: off)."""
    scenes: str | None = None
    """Scenes of the prompts: oracle (the dataset's labels, marked as such) or a classify run (default: as the captioner trained)."""
    mbr_candidates: int = 0
    """Minimum-Bayes-risk decoding: make this many candidates and keep the one most in agreement (CIDEr-D) with the others (0: off)."""
    mbr_sample: bool = False
    """MBR candidates by seeded sampling (top-p 0.95) instead of the best beams."""
    seed: int = 0
    """Seed of the sampled candidates."""
    device: str = ""
    """cpu, cuda, ... (default: cuda when available)."""

    def __post_init__(self) -> None:
        check_run_name(self.name)
        if self.batch_size < 1 or self.num_beams < 1 or self.max_new_tokens < 1:
            raise ValueError("batch_size, num_beams and max_new_tokens: must be at least 1")
        if self.mbr_candidates < 0 or self.mbr_candidates == 1:
            raise ValueError("mbr_candidates: 0 (off) or 2 and more")
        if self.repetition_penalty <= 0 or self.no_repeat_ngram_size < 0:
            raise ValueError("repetition_penalty must be positive and no_repeat_ngram_size 0 or more")


def generate_job(params: GenerateParams, ctx: JobContext) -> JobResult:
    from engine.captioning.generate import GenerationSettings, generate_candidates
    from engine.captioning.model import load_captioner
    from engine.training import device_for

    cap = finished_run(ctx, "captioner", params.captioner, ("captioner",), "train-captioner", CaptioningError,
                       unfinished="finish (resume) its training first")
    ds = dataset_of_kind(ctx, params.dataset or str(_dataset_name(ctx, cap)), "captioning", "ingest one first")
    source = cap.params["prompt"]
    scenes = params.scenes or cap.params.get("scenes", ORACLE)
    composition = _composition_run(ctx, params.composition or cap.params.get("composition"), ds, source)
    images = list_images(ctx.db, ds.id, split=None if params.split == "all" else params.split)
    prompts, lacking = prompts_for(ctx, images, source, composition, scenes)
    if lacking:
        raise CaptioningError(f"{len(lacking)} {params.split} images have no composition in {composition.name!r} (first: {lacking[0].filename}); run compose on them")  # type: ignore[union-attr]
    if not prompts:
        raise CaptioningError(f"dataset {ds.name!r} has no {params.split} images to caption")
    device = device_for(params.device or None)
    family = params.name or f"gen.{cap.name}.{params.split}"
    taken_by_other_kind(ctx, family, "generation")
    model, tokenizer = load_captioner(Path(cap.artifact_dir or ctx.workspace.model_dir(cap.name)), device,
                                      load_in_4bit=bool(cap.params.get("load_in_4bit")), trust_remote_code=bool(cap.params.get("trust_remote_code")))
    ids = list(prompts)
    k = params.mbr_candidates or 1
    settings = GenerationSettings(params.max_new_tokens, max(params.num_beams, 1), params.repetition_penalty, params.no_repeat_ngram_size,
                                  candidates=k, sample=params.mbr_sample, seed=params.seed)
    out = generate_candidates(model, tokenizer, [prompts[i] for i in ids], settings, batch_size=params.batch_size, device=device,
                              progress=lambda i, n: ctx.progress(i, n, "generating"), should_stop=ctx.should_stop,
                              prompt_budget=cap.metrics.get("prompt_budget"))
    if out is None:
        raise JobStopped()
    candidates, tokens = out
    chosen: list[list[tuple[str, float]]] = []
    if params.mbr_candidates:
        ctx.progress(0, len(ids), "choosing among candidates (MBR)")
        captions, chosen = mbr_choose(ctx, ds, candidates)
    else:
        captions = [c[0] for c in candidates]
    oracle = uses_scenes(source) and scenes == ORACLE
    stored = {**asdict(params), "name": family, "captioner": cap.name, "composition": composition.name if composition else None,
              "scenes": scenes if uses_scenes(source) else None}
    metrics: dict[str, Any] = {"images": len(ids), "tokens": tokens}
    if uses_scenes(source):
        metrics["scenes"] = scenes_label(scenes, ctx)
    if params.mbr_candidates:
        metrics["mbr"] = {"candidates": k, "how": "sample" if params.mbr_sample else "beam"}
    with staged_run(ctx, kind="generation", family=family, replace=params.replace, params=stored, parent_run_id=cap.id,
                    dataset_id=ds.id) as stage:
        add_generations(ctx.db, stage.run.id, zip(ids, captions, strict=True))
        if chosen:
            add_candidates(ctx.db, stage.run.id, zip(ids, chosen, strict=True))
        stage.publish(metrics)
    sample = captions[0] if captions else ""
    how = f", chosen by MBR among {k} {'samples' if params.mbr_sample else 'beams'}" if params.mbr_candidates else ""
    return JobResult(f"{stage.message()}: {len(ids)} captions ({tokens} tokens{how}){' with ORACLE scenes' if oracle else ''}, "
                     f"e.g. {sample!r}", run_id=stage.run.id,
                     data={"images": len(ids), "tokens": tokens, "name": stage.published.run.name})  # type: ignore[union-attr]


def mbr_choose(ctx: JobContext, ds: Dataset, candidates: list[list[str]]) -> tuple[list[str], list[list[tuple[str, float]]]]:
    """Minimum-Bayes-risk selection: per image, the candidate with the highest mean CIDEr-D against
    the others, document frequencies from the dataset's train references. Returns the chosen
    captions and every image's candidates with their scores."""
    from engine.evaluation.cider import CiderD
    from engine.evaluation.tokenize import ptb_tokenize

    train = list_images(ctx.db, ds.id, split="train")
    refs = captions_for(ctx.db, [im.id for im in train])
    scorer = CiderD([[ptb_tokenize(c.text) for c in refs[im.id]] for im in train if refs[im.id]])
    chosen, scored = [], []
    for options in candidates:
        best, scores = scorer.consensus([ptb_tokenize(c) for c in options])
        chosen.append(options[best])
        scored.append([(c, round(float(v), 4)) for c, v in zip(options, scores, strict=True)])
    return chosen, scored


def _dataset_name(ctx: JobContext, run: Run) -> str:
    ds = get_dataset_by_id(ctx.db, run.dataset_id) if run.dataset_id else None
    if ds is None:
        raise CaptioningError(f"run {run.name!r} has no dataset any more; give dataset=NAME")
    return ds.name


@dataclass(frozen=True)
class BaselineParams:
    dataset: str
    """Captioning dataset."""
    composition: str
    """Compose run whose feature vectors are compared."""
    split: Split = "test"
    """Images to caption (neighbours come from the train split)."""
    k: int = 5
    """Neighbours whose references are candidates."""
    name: str | None = None
    """Run name (default knn.<composition>.<split>); re-running it makes a new version."""
    replace: bool = False
    """Replace the newest run of that name once this one has succeeded (a run holding ratings is kept, superseded)."""

    def __post_init__(self) -> None:
        check_run_name(self.name)
        if self.k < 1:
            raise ValueError("k: must be at least 1")


def baseline_knn(params: BaselineParams, ctx: JobContext) -> JobResult:
    from engine.captioning.baseline import consensus, nearest
    from engine.composition import Composition, feature_vector

    ds = dataset_of_kind(ctx, params.dataset, "captioning", "ingest one first")
    composition = _composition_run(ctx, params.composition, ds, "composition")
    assert composition is not None
    rows = {r.image_id: r for r in compositions_of(ctx.db, composition.id)}
    n_classes = len(composition.params.get("classes") or ctx.config().groups)
    train = [im for im in list_images(ctx.db, ds.id, split="train") if im.id in rows]
    queries = [im for im in list_images(ctx.db, ds.id, split=None if params.split == "all" else params.split) if im.id in rows]
    if not train:
        raise CaptioningError(f"no train images of {ds.name!r} have compositions in {composition.name!r}; nothing to retrieve from")
    if not queries:
        raise CaptioningError(f"no {params.split} images of {ds.name!r} have compositions in {composition.name!r}")
    vec = {i: feature_vector(Composition.from_dict(rows[i].data), n_classes) for i in rows}
    train_refs = captions_for(ctx.db, [im.id for im in train])
    position = {im.id: j for j, im in enumerate(train)}
    # One neighbour more than k: a query that is itself a training image (split=train or all)
    # finds itself first, and must never be given its own references.
    neighbours = nearest(np.stack([vec[im.id] for im in train]), np.stack([vec[im.id] for im in queries]), params.k + 1)
    chosen = []
    for qi, im in enumerate(queries):
        own = position.get(im.id)
        picked = [j for j in neighbours[qi] if j != own][: params.k]
        candidates = [c.text for j in picked for c in train_refs[train[j].id]]
        chosen.append((im.id, consensus(candidates) if candidates else ""))
        if qi % 256 == 0:
            ctx.progress(qi, len(queries), "retrieving")
    family = params.name or f"knn.{composition.name}.{params.split}"
    with staged_run(ctx, kind="baseline", family=family, replace=params.replace, params={**asdict(params), "name": family},
                    parent_run_id=composition.id, dataset_id=ds.id) as stage:
        add_generations(ctx.db, stage.run.id, chosen)
        stage.publish({"images": len(chosen), "k": params.k})
    return JobResult(f"{stage.message()}: {len(chosen)} captions retrieved from {len(train)} training images (k={params.k}), "
                     f"e.g. {chosen[0][1]!r}", run_id=stage.run.id, data={"images": len(chosen), "name": stage.published.run.name})  # type: ignore[union-attr]


TRAIN_CAPTIONER = JobKind("train-captioner", TrainCaptionerParams, train_captioner_job,
                          "Train a captioner: tiny/small Llama from scratch, or LoRA/QLoRA on a Hugging Face causal LM", uses_gpu=True)
GENERATE = JobKind("generate", GenerateParams, generate_job, "Caption a split with a trained captioner (batched, greedy or beam)", uses_gpu=True)
BASELINE_KNN = JobKind("baseline-knn", BaselineParams, baseline_knn, "Caption by retrieval: nearest training compositions, consensus reference")
