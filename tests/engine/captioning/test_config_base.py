"""``base=config:NAME``: a Llama of a named shape with random weights, no download, LoRA (and
QLoRA's 4-bit layers) on it, and generation rebuilding exactly the base that training used."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from engine.captioning.errors import CaptioningError
from engine.datasets.synthetic import write_captioning_dataset
from engine.jobs.foreground import run_foreground
from engine.workspace import Workspace
from tests.conftest import fails_unchanged

TEXTS = ["a parking lot with many cars near a road .", "a river runs through a green forest .", "Scene: pond\nCaption:"] * 10


def test_a_config_base_trains_with_lora_and_generation_rebuilds_the_same_base(tmp_path: Path) -> None:
    from engine.captioning.data import encode
    from engine.captioning.model import load_captioner
    from engine.captioning.train import validation_loss
    from engine.jobs.base import JobContext
    from engine.jobs.kinds.captioning import _train_val
    from engine.store.catalog import get_dataset, list_images
    from engine.store.runs import get_run

    ws = Workspace(tmp_path / "ws")
    ws.init()
    data = write_captioning_dataset(tmp_path / "syn", 40, size=32, seed=7)
    run_foreground(ws, "ingest-captions", {"path": str(data.root), "name": "syn"})
    trained = run_foreground(ws, "train-captioner", {"dataset": "syn", "prompt": "scene", "base": "config:llama-tiny", "name": "cfg",
                                                      "epochs": "1", "max_steps": "3", "batch_size": "8", "device": "cpu"})
    assert trained.message.startswith("cfg: stopped at step 3 (max_steps)")
    model_dir = ws.model_dir("cfg") / "model"
    assert json.loads((model_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == "config:llama-tiny"
    model, tokenizer = load_captioner(ws.model_dir("cfg"), "cpu")
    assert len(tokenizer) == 1024 and model.get_input_embeddings().weight.shape[0] == 1024
    # The rebuilt base is the one the adapter was trained on: the validation loss comes out the same.
    db = ws.open_db()
    ctx = JobContext(workspace=ws, db=db, log=logging.getLogger("t"))
    _, val, _, _ = _train_val(ctx, get_dataset(db, "syn"), "scene", None, 0)  # type: ignore[arg-type]
    run = get_run(db, "cfg")
    assert run is not None
    encoded = encode(val, tokenizer, 256, run.metrics["prompt_budget"])
    assert validation_loss(model, encoded, tokenizer.pad_token_id, "cpu") == pytest.approx(trained.data["val_loss"], rel=1e-4)
    generated = run_foreground(ws, "generate", {"captioner": "cfg", "split": "test", "max_new_tokens": "4"})
    tests = list_images(db, get_dataset(db, "syn").id, split="test")  # type: ignore[union-attr]
    assert generated.data["images"] == len(tests) > 0 and generated.data["tokens"] > 0


def test_an_unknown_config_is_one_line_naming_the_known_ones(workspace: Workspace, tmp_path: Path) -> None:
    data = write_captioning_dataset(tmp_path / "syn", 8, size=32, seed=1)
    run_foreground(workspace, "ingest-captions", {"path": str(data.root), "name": "syn"})
    fails_unchanged(workspace, "train-captioner", {"dataset": "syn", "prompt": "scene", "base": "config:llama-3-70b", "name": "x"},
                    "base='config:llama-3-70b': no such Llama config; known: config:llama-2-7b, config:llama-2-13b, config:llama-tiny")


def test_the_config_tokenizer_has_the_config_vocabulary_and_decodes_exactly() -> None:
    from engine.captioning.model import LLAMA_CONFIGS, config_tokenizer

    tok = config_tokenizer(TEXTS, "config:llama-2-7b")
    assert len(tok) == LLAMA_CONFIGS["llama-2-7b"]["vocab_size"] == 32000
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<pad>", "<s>", "</s>")
    text = "a parking lot, 3 cars and ünïcode"
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text
    reserved = tok.convert_tokens_to_ids("<reserved_0>")
    assert reserved > max(i for t in TEXTS for i in tok(t).input_ids)  # padding: never produced by tokenizing


def test_4bit_layers_take_lora_and_train(tmp_path: Path) -> None:
    """The QLoRA construction (bitsandbytes' CPU backend quantizes too); build_from_config itself
    asks for CUDA in 4 bits, as load_pretrained does."""
    import bitsandbytes as bnb
    import torch
    from peft.tuners.lora.bnb import Linear4bit as LoraLinear4bit

    from engine.captioning.model import LoraSettings, add_lora, build_from_config, config_tokenizer, quantize_4bit

    tok = config_tokenizer(TEXTS, "config:llama-tiny")
    with pytest.raises(CaptioningError, match="needs a CUDA GPU"):
        build_from_config("config:llama-tiny", tokenizer=tok, device="cpu", load_in_4bit=True)
    model, _ = build_from_config("config:llama-tiny", tokenizer=tok, device="cpu", dtype=torch.bfloat16)
    model = quantize_4bit(model, "cpu", torch.bfloat16)
    layers = model.model.layers[0]
    assert isinstance(layers.self_attn.q_proj, bnb.nn.Linear4bit) and isinstance(layers.mlp.down_proj, bnb.nn.Linear4bit)
    assert type(model.lm_head) is torch.nn.Linear and model.is_loaded_in_4bit
    model = add_lora(model, LoraSettings(r=4, alpha=8), quantized=True, gradient_checkpointing=True)
    assert isinstance(model.base_model.model.model.layers[0].self_attn.v_proj, LoraLinear4bit)
    model.train()
    ids = torch.randint(3, len(tok), (2, 12))
    model(input_ids=ids, labels=ids).loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)


def test_a_config_base_is_drawn_the_same_every_time() -> None:
    import torch

    from engine.captioning.model import build_from_config, config_tokenizer

    tok = config_tokenizer(TEXTS, "config:llama-tiny")
    torch.manual_seed(123)  # the caller's seed does not matter: the base has its own
    a, _ = build_from_config("config:llama-tiny", tokenizer=tok, device="cpu")
    b, _ = build_from_config("config:llama-tiny", tokenizer=tok, device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert a.config.num_key_value_heads == 2 and a.name_or_path == "config:llama-tiny"
