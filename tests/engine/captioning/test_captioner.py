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


def test_rerunning_generate_keeps_the_rated_captions(world: dict[str, Any]) -> None:
    """The confirmed bug: rating a caption of gen.cap.val, then generating again under the default
    name, deleted the run and its ratings. Now the re-run is gen.cap.val.2 and the ratings stay."""
    from engine.store.results import add_rating

    ws = world["ws"]
    run_foreground(ws, "generate", {"captioner": "cap", "split": "val", "max_new_tokens": "8"})
    db = ws.open_db()
    first = get_run(db, "gen.cap.val")
    gen = generations_of(db, first.id)[0]  # type: ignore[union-attr]
    add_rating(db, gen.id, "ann", 3, ["wrong count"], "two ponds, not one")
    rows = list(db.query("SELECT * FROM ratings"))
    again = run_foreground(ws, "generate", {"captioner": "cap", "split": "val", "max_new_tokens": "8", "num_beams": "3"})
    assert again.message.startswith("gen.cap.val.2 (version 2 of gen.cap.val")
    assert list(db.query("SELECT * FROM ratings")) == rows
    assert get_run(db, "gen.cap.val@1") == first and get_run(db, "gen.cap.val").name == "gen.cap.val.2"  # type: ignore[union-attr]


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


def test_resume_gives_the_same_next_step_loss_and_refuses_other_params(world: dict[str, Any]) -> None:
    ws = world["ws"]
    params = {"dataset": "syn", "composition": "gt", "epochs": "2", "batch_size": "32", "patience": "5"}
    straight: list[Any] = []
    run_foreground(ws, "train-captioner", {**params, "name": "straight"}, on_progress=straight.append)
    seen: list[Any] = []

    def in_second_epoch() -> bool:
        return any(e.message.startswith("epoch 2/") for e in seen)

    with pytest.raises(JobStopped):
        run_foreground(ws, "train-captioner", {**params, "name": "res"}, on_progress=seen.append, stop_requested=in_second_epoch)
    first = get_run(ws.open_db(), "res")
    assert first is not None and first.status == "failed"
    _fails(ws, "train-captioner", {**params, "name": "res", "epochs": "3"}, "run 'res' is unfinished and was started with other params (epochs: 2 -> 3)")
    _fails(ws, "train-captioner", {**params, "name": "res", "lr": "0.01"}, "(lr: 0.0 -> 0.01)")
    events: list[Any] = []
    result = run_foreground(ws, "train-captioner", {**params, "name": "res", "device": "cpu"}, on_progress=events.append)
    import re

    at = re.search(r"2 epochs, resumed at step (\d+)", result.message)
    assert at is not None, result.message
    history = result.data["history"]
    assert [h["epoch"] for h in history] == [1, 2] and int(at.group(1)) > history[0]["step"]  # kept the steps of epoch 2 too
    resumed = next(e for e in events if "loss" in e.metrics)
    same = next(e for e in straight if "loss" in e.metrics and e.step == resumed.step)
    assert resumed.step == int(at.group(1)) + 1  # the curve continues where the stop left it, mid-epoch
    assert resumed.metrics["loss"] == pytest.approx(same.metrics["loss"], rel=1e-4)  # the same weights and optimizer state
    assert get_run(ws.open_db(), "res").params["device"] == "cpu"  # type: ignore[union-attr]


def test_long_prompts_lose_their_last_composition_lines_alike_in_training_and_generation() -> None:
    from engine.captioning.data import Example, encode, fit_prompt, prompt_length
    from engine.captioning.model import train_tokenizer

    lines = [f"Class{i} {50 - i}.0% 1 region, below Class0, circle 0.50 0.50 r0.20" for i in range(12)]
    prompt = "Scene: parking\nComposition:\n" + "\n".join(lines) + "\nCaption:"
    tok = train_tokenizer([prompt, " many cars are parked in rows"] * 5, 300)
    length = prompt_length(tok)
    fitted = fit_prompt(prompt, length, 60)
    assert length(fitted) <= 60 and fitted.startswith("Scene: parking\nComposition:\nClass0 ") and fitted.endswith("\nCaption:")
    assert fitted.splitlines()[2:-1] == lines[: len(fitted.splitlines()) - 3]  # the first (largest) classes stay, in order
    [enc] = encode([Example(prompt, "many cars are parked in rows")], tok, 64, budget=60)
    assert enc.input_ids[0] == tok.bos_token_id and enc.input_ids[-1] == tok.eos_token_id and len(enc.input_ids) <= 64
    prompt_ids = [t for t, label in zip(enc.input_ids, enc.labels, strict=True) if label == -100]
    assert prompt_ids == [tok.bos_token_id, *tok(fitted, add_special_tokens=False).input_ids]  # what generation feeds too
    assert fit_prompt(prompt, length, 10).splitlines() == ["Scene: parking", "Composition:", lines[0], "Caption:"]


def test_without_a_val_split_whole_images_are_held_out(world: dict[str, Any], tmp_path: Path) -> None:
    import json

    from engine.jobs.base import JobContext
    from engine.jobs.kinds.captioning import _train_val

    ws = world["ws"]
    data = write_captioning_dataset(tmp_path / "alltrain", 40, size=32, seed=3)
    ann = json.loads(data.annotations.read_text())  # type: ignore[union-attr]
    for entry in ann["images"]:
        entry["split"] = "train"
    data.annotations.write_text(json.dumps(ann))  # type: ignore[union-attr]
    run_foreground(ws, "ingest-captions", {"path": str(data.root), "name": "alltrain"})
    run_foreground(ws, "compose", {"dataset": "alltrain", "masks": str(data.root / "masks"), "name": "alltrain-gt"})
    db = ws.open_db()
    ctx = JobContext(workspace=ws, db=db, log=__import__("logging").getLogger("t"))
    train, val, _, how = _train_val(ctx, get_dataset(db, "alltrain"), "composition", get_run(db, "alltrain-gt"), 0)  # type: ignore[arg-type]
    assert how == "2 train images held out"
    held = {e.prompt for e in val}
    assert len(held) == 2 and not held & {e.prompt for e in train}  # no reference of a held-out image is trained on
    assert len(val) > len(held)  # each held-out image brings all its references


def test_lora_on_a_tiny_llama_trains_saves_reloads_and_merges(world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import torch

    import engine.captioning.model as model_module
    from engine.captioning.model import build_preset, load_captioner, train_tokenizer

    tok = train_tokenizer(["a pond is in the upper left", "many cars are parked", "Vegetation 62.1% 1 region, dominant"] * 20, 400)
    base = build_preset("tiny", tok, 256, seed=1)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    ws = world["ws"]
    trained = run_foreground(ws, "train-captioner", {
        "dataset": "syn", "composition": "gt", "name": "lora", "base": str(tmp_path / "base"), "epochs": "1",
        "max_steps": "4", "lora_r": "4", "lora_alpha": "8", "lora_targets": "q_proj,v_proj", "lr": "0.01",
    })
    assert trained.message.startswith("lora: stopped at step 4 (max_steps) in epoch 1, best validation loss")
    run = get_run(ws.open_db(), "lora")
    assert run is not None and run.status == "complete"
    assert 0 < run.metrics["trainable_parameters"] < run.metrics["parameters"]
    adapter = ws.model_dir("lora") / "model"
    assert (adapter / "adapter_config.json").is_file()
    # Generation loads the base as training did: the run's trust_remote_code and quantisation, local files only.
    calls: list[dict[str, Any]] = []
    real = model_module.load_pretrained
    monkeypatch.setattr(model_module, "load_pretrained", lambda base, **kw: (calls.append({"base": base, **kw}), real(base, **kw))[1])
    gen = run_foreground(ws, "generate", {"captioner": "lora", "split": "val", "max_new_tokens": "5"})
    assert gen.data["images"] == 16
    assert calls == [{"base": str(tmp_path / "base"), "load_in_4bit": False, "trust_remote_code": False, "device": "cpu"}]
    ids = torch.tensor([tok("Vegetation 62.1% 1 region, dominant Caption: a pond").input_ids])
    with torch.no_grad():
        adapted = load_captioner(ws.model_dir("lora"), "cpu")[0](ids).logits
        plain = base(ids).logits
    assert (adapted - plain).abs().max() > 1e-2  # the adapter changed the model
    from engine.captioning.train import merge_saved_adapter

    assert merge_saved_adapter(adapter) is True
    assert not (adapter / "adapter_config.json").exists() and (adapter / "config.json").is_file()
    shutil.rmtree(tmp_path / "base")  # the merged model stands alone
    with torch.no_grad():
        merged = load_captioner(ws.model_dir("lora"), "cpu")[0](ids).logits
    assert torch.allclose(merged, adapted, atol=1e-4)
    run_foreground(ws, "generate", {"captioner": "lora", "split": "val", "max_new_tokens": "5", "name": "merged"})


def test_lora_generation_without_its_base_is_a_clear_message(world: dict[str, Any], tmp_path: Path) -> None:
    from engine.captioning.model import build_preset, train_tokenizer

    tok = train_tokenizer(["a pond is in the upper left"] * 20, 300)
    build_preset("tiny", tok, 256, seed=1).save_pretrained(tmp_path / "gone")
    tok.save_pretrained(tmp_path / "gone")
    ws = world["ws"]
    run_foreground(ws, "train-captioner", {"dataset": "syn", "composition": "gt", "name": "lora-gone", "base": str(tmp_path / "gone"),
                                          "epochs": "1", "max_steps": "2", "lora_r": "2", "lora_targets": "q_proj"})
    import shutil

    shutil.rmtree(tmp_path / "gone")
    _fails(ws, "generate", {"captioner": "lora-gone", "split": "val"}, "cannot load it as a causal LM: no such folder, and not in the local Hugging Face cache")


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


def test_baseline_on_training_images_never_returns_their_own_references(world: dict[str, Any], tmp_path: Path) -> None:
    import json

    ws = world["ws"]
    data = write_captioning_dataset(tmp_path / "own", 30, size=32, seed=5)
    ann = json.loads(data.annotations.read_text())  # type: ignore[union-attr]
    for entry in ann["images"]:  # references that say whose they are
        for k, sentence in enumerate(entry["sentences"]):
            sentence["raw"] = f"reference {k} of {entry['filename']}"
            sentence["tokens"] = sentence["raw"].split()
    data.annotations.write_text(json.dumps(ann))  # type: ignore[union-attr]
    run_foreground(ws, "ingest-captions", {"path": str(data.root), "name": "own"})
    run_foreground(ws, "compose", {"dataset": "own", "masks": str(data.root / "masks"), "name": "own-gt"})
    run_foreground(ws, "baseline-knn", {"dataset": "own", "composition": "own-gt", "k": "1", "split": "train", "name": "knn-self"})
    db = ws.open_db()
    names = {im.id: im.filename for im in list_images(db, get_dataset(db, "own").id)}  # type: ignore[union-attr]
    gens = generations_of(db, get_run(db, "knn-self").id)  # type: ignore[union-attr]
    assert len(gens) == sum(1 for e in ann["images"] if e["split"] == "train")
    assert all(g.text.startswith("reference ") and not g.text.endswith(f" of {names[g.image_id]}") for g in gens)


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


SCENE_STEPS = 1000
CONSTANT = "many green trees and some buildings are in a dense residential area"
"""A constant caption in RSICD's own words: every image gets it."""
SCENE_MARGIN = 0.3
"""Measured with these settings (about 20 s): scene prompts CIDEr 1.03 with 31 distinct captions, the
constant 0.41. After 120 steps (what this test trained before) the model wrote 5 captions for 30
scenes, below the constant: the old test's `Bleu_4 >= 0` could not tell."""


def test_scene_prompts_train_on_a_captions_only_dataset(world: dict[str, Any], shared_data: Path, tmp_path: Path) -> None:
    """The RSICD val references with scene lists and no images: train, generate, evaluate."""
    ws = world["ws"]
    run_foreground(ws, "ingest-captions", {"path": str(shared_data / "rsicd-val-refs"), "split": "train", "allow_missing": "true",
                                           "scenes": str(shared_data / "rsicd-scenes"), "name": "refs"})
    trained = run_foreground(ws, "train-captioner", {"dataset": "refs", "prompt": "scene", "name": "scene-cap", "epochs": "6",
                                                     "patience": "6", "batch_size": "32", "max_steps": str(SCENE_STEPS)})
    assert trained.data["val_loss"] < 6
    gen = run_foreground(ws, "generate", {"captioner": "scene-cap", "split": "train", "max_new_tokens": "16", "batch_size": "64"})
    assert gen.data["images"] == 1094
    db = ws.open_db()
    captions = {g.text for g in generations_of(db, get_run(db, "gen.scene-cap.train").id)}  # type: ignore[union-attr]
    assert len(captions) >= 20, captions  # the scene line steers it: a caption per scene, not one for all
    evaluated = run_foreground(ws, "evaluate", {"generation": "gen.scene-cap.train", "tokenizer": "python", "resamples": "0",
                                                "metrics": "Bleu_4,CIDEr"})
    constant = tmp_path / "constant.json"
    import json

    refs = list_images(db, get_dataset(db, "refs").id)  # type: ignore[union-attr]
    constant.write_text(json.dumps([{"image_id": im.filename, "caption": CONSTANT} for im in refs]))
    run_foreground(ws, "import-generations", {"results": str(constant), "dataset": "refs"})
    baseline = run_foreground(ws, "evaluate", {"generation": "constant", "tokenizer": "python", "resamples": "0", "metrics": "Bleu_4,CIDEr"})
    assert evaluated.data["corpus"]["CIDEr"] > baseline.data["corpus"]["CIDEr"] + SCENE_MARGIN, (evaluated.data, baseline.data)
