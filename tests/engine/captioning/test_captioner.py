"""Captioner training, generation and the retrieval baseline on the synthetic world, on the CPU.

The known answer: each synthetic image's captions are written from its scene, so a working
captioner names the scene's main subject (parking lot, pond, river, forest, farmland, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.captioning.errors import CaptioningError
from engine.datasets.synthetic import write_captioning_dataset
from engine.jobs import JobStopped
from engine.jobs.foreground import run_foreground
from engine.store.catalog import captions_for, get_dataset, list_images
from engine.store.results import generations_of
from engine.store.runs import get_run
from engine.workspace import Workspace
from tests.conftest import fails_unchanged

KEYWORDS = {
    "residential": ("house", "building", "residential"), "parking": ("parking", "cars"), "river": ("river",),
    "pond": ("pond",), "forest": ("forest", "trees"), "farmland": ("farmland", "fields"),
    "bareland": ("bare", "land"), "industrial": ("industrial", "factor", "warehouse", "building"),
}
VAL_LOSS_CEILING = 1.5
"""Measured 0.975 with these settings (per caption token); an untrained model sits near ln(vocab) ~ 7."""
NAMING_FLOOR = 0.6
"""Share of test images whose caption names the scene's subject; measured 15 of 16 (0.94)."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cap")
    ws = Workspace(root / "ws")
    ws.init()
    data = write_captioning_dataset(root / "syn", 160, size=64, seed=7)
    run_foreground(ws, "ingest-captions", {"path": str(data.root), "name": "syn"})
    run_foreground(ws, "compose", {"dataset": "syn", "masks": str(data.root / "masks"), "name": "gt"})
    events: list[Any] = []
    trained = run_foreground(ws, "train-captioner", {"dataset": "syn", "composition": "gt", "name": "cap", "epochs": "8", "batch_size": "16"},
                             on_progress=events.append)
    return {"ws": ws, "root": root, "trained": trained, "events": events}


def test_tiny_captioner_learns_and_names_the_scene(world: dict[str, Any]) -> None:
    ws = world["ws"]
    assert world["trained"].data["val_loss"] < VAL_LOSS_CEILING
    assert any("loss" in e.metrics for e in world["events"]) and any("val_loss" in e.metrics for e in world["events"])
    model_dir = ws.model_dir("cap") / "model"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert AutoModelForCausalLM.from_pretrained(model_dir).config.model_type == "llama"
    assert AutoTokenizer.from_pretrained(model_dir).eos_token == "</s>"
    result = run_foreground(ws, "generate", {"captioner": "cap", "split": "test", "batch_size": "8"})
    db = ws.open_db()
    run = get_run(db, "gen.cap.test")
    assert run is not None and run.parent_run_id == get_run(db, "cap").id  # type: ignore[union-attr]
    gens = generations_of(db, run.id)
    assert len(gens) == result.data["images"] == 16
    names = {im.id: im.filename for im in list_images(db, get_dataset(db, "syn").id)}  # type: ignore[union-attr]
    hits = sum(any(w in g.text for w in KEYWORDS[names[g.image_id].split("_")[0]]) for g in gens)
    assert hits / len(gens) >= NAMING_FLOOR, [g.text for g in gens]


def test_batched_greedy_equals_one_by_one(world: dict[str, Any]) -> None:
    from engine.captioning.generate import GenerationSettings, generate_captions
    from engine.captioning.model import load_captioner
    from engine.jobs.kinds.captioning import prompts_for

    ws = world["ws"]
    model, tok = load_captioner(ws.model_dir("cap"), "cpu")
    db = ws.open_db()
    from engine.jobs.base import JobContext

    ctx = JobContext(workspace=ws, db=db, log=__import__("logging").getLogger("t"))
    images = list_images(db, get_dataset(db, "syn").id, split="val")  # type: ignore[union-attr]
    prompts, _ = prompts_for(ctx, images, "composition", get_run(db, "gt"))
    texts = list(prompts.values())
    settings = GenerationSettings(max_new_tokens=20)
    batched = generate_captions(model, tok, texts, settings, batch_size=16)
    single = generate_captions(model, tok, texts, settings, batch_size=1)
    assert batched is not None and single is not None
    assert batched[0] == single[0]
    beams = generate_captions(model, tok, texts[:4], GenerationSettings(max_new_tokens=20, num_beams=3, no_repeat_ngram_size=3), batch_size=4)
    assert beams is not None and all(beams[0])


def test_resume_continues_the_loss_curve(world: dict[str, Any]) -> None:
    ws = world["ws"]
    params = {"dataset": "syn", "composition": "gt", "name": "res", "epochs": "2", "batch_size": "32", "patience": "5"}
    seen: list[Any] = []

    def in_second_epoch() -> bool:
        return any(e.message.startswith("epoch 2/") for e in seen)

    with pytest.raises(JobStopped):
        run_foreground(ws, "train-captioner", params, on_progress=seen.append, stop_requested=in_second_epoch)
    first = get_run(ws.open_db(), "res")
    assert first is not None and first.status == "failed"
    events: list[Any] = []
    result = run_foreground(ws, "train-captioner", params, on_progress=events.append)
    assert "resumed at epoch 1" in result.message
    steps = [e.step for e in events if "loss" in e.metrics]
    history = result.data["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert steps[0] == history[0]["step"] + 1  # the curve continues where epoch 1 ended


def test_lora_on_a_tiny_llama_trains_saves_reloads_and_merges(world: dict[str, Any], tmp_path: Path) -> None:
    from engine.captioning.model import build_preset, train_tokenizer

    tok = train_tokenizer(["a pond is in the upper left", "many cars are parked", "Vegetation 62.1% 1 region, dominant"] * 20, 400)
    base = build_preset("tiny", tok, 256, seed=1)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    ws = world["ws"]
    result = run_foreground(ws, "train-captioner", {
        "dataset": "syn", "composition": "gt", "name": "lora", "base": str(tmp_path / "base"), "epochs": "1",
        "max_steps": "4", "lora_r": "4", "lora_alpha": "8", "lora_targets": "q_proj,v_proj",
    })
    run = get_run(ws.open_db(), "lora")
    assert run is not None and run.status == "complete"
    assert 0 < run.metrics["trainable_parameters"] < run.metrics["parameters"]
    adapter = ws.model_dir("lora") / "model"
    assert (adapter / "adapter_config.json").is_file()
    gen = run_foreground(ws, "generate", {"captioner": "lora", "split": "val", "max_new_tokens": "5"})
    assert gen.data["images"] == 16
    from engine.captioning.train import merge_saved_adapter

    assert merge_saved_adapter(adapter) is True
    assert not (adapter / "adapter_config.json").exists() and (adapter / "config.json").is_file()
    run_foreground(ws, "generate", {"captioner": "lora", "split": "val", "max_new_tokens": "5", "name": "merged"})
    assert "merged" in result.message or result.data["val_loss"] > 0


def test_4bit_on_a_cpu_is_a_clear_message(world: dict[str, Any], tmp_path: Path) -> None:
    from engine.captioning.model import load_pretrained

    with pytest.raises(CaptioningError, match="4-bit QLoRA needs a CUDA GPU"):
        load_pretrained(str(tmp_path), load_in_4bit=True, trust_remote_code=False, device="cpu")


def test_baseline_returns_a_reference_of_a_neighbour(world: dict[str, Any]) -> None:
    ws = world["ws"]
    result = run_foreground(ws, "baseline-knn", {"dataset": "syn", "composition": "gt", "k": "3"})
    db = ws.open_db()
    run = get_run(db, "knn.gt.test")
    assert run is not None and run.kind == "baseline" and result.data["images"] == 16
    ds = get_dataset(db, "syn")
    train_ids = [im.id for im in list_images(db, ds.id, split="train")]  # type: ignore[union-attr]
    train_refs = {c.text for refs in captions_for(db, train_ids).values() for c in refs}
    assert all(g.text in train_refs for g in generations_of(db, run.id))


_fails = fails_unchanged


def test_bad_inputs(world: dict[str, Any], tmp_path: Path) -> None:
    ws = world["ws"]
    _fails(ws, "train-captioner", {"dataset": "syn", "composition": "gt", "base": str(tmp_path / "no-such-model"), "name": "b1"},
           "cannot load it as a causal LM: no such folder")
    _fails(ws, "train-captioner", {"dataset": "syn", "composition": "nope", "name": "b2"}, "composition='nope': no compose run")
    _fails(ws, "train-captioner", {"dataset": "syn", "name": "b3"}, "prompt=composition needs composition=RUN")
    data = write_captioning_dataset(tmp_path / "other", 20, size=32, seed=1)
    run_foreground(ws, "ingest-captions", {"path": str(data.root), "name": "other"})
    _fails(ws, "train-captioner", {"dataset": "other", "composition": "gt", "name": "b4"}, "describes another dataset")
    run_foreground(ws, "compose", {"dataset": "other", "masks": str(data.root / "masks"), "split": "test", "name": "other-test"})
    _fails(ws, "train-captioner", {"dataset": "other", "composition": "other-test", "name": "b5"},
           "no training pairs: dataset 'other' has no train images with references (15 train images have no composition")
    _fails(ws, "generate", {"captioner": "cap", "dataset": "other", "composition": "other-test", "split": "train"}, "15 train images have no composition")
    _fails(ws, "generate", {"captioner": "nope"}, "captioner='nope': no train-captioner run")


def test_scene_prompts_train_on_a_captions_only_dataset(world: dict[str, Any], shared_data: Path) -> None:
    """The RSICD val references with scene lists and no images: train, generate, evaluate."""
    ws = world["ws"]
    run_foreground(ws, "ingest-captions", {"path": str(shared_data / "rsicd-val-refs"), "split": "train", "allow_missing": "true",
                                           "scenes": str(shared_data / "rsicd-scenes"), "name": "refs"})
    trained = run_foreground(ws, "train-captioner", {"dataset": "refs", "prompt": "scene", "name": "scene-cap", "epochs": "1", "max_steps": "30"})
    assert trained.data["val_loss"] < 6
    gen = run_foreground(ws, "generate", {"captioner": "scene-cap", "split": "train", "max_new_tokens": "12", "batch_size": "64"})
    assert gen.data["images"] == 1094
    evaluated = run_foreground(ws, "evaluate", {"generation": "gen.scene-cap.train", "tokenizer": "python", "resamples": "50",
                                                "metrics": "Bleu_4,CIDEr"})
    assert evaluated.data["corpus"]["Bleu_4"] >= 0
