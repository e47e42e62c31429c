"""Self-critical training: the in-process reward equals the toolkit's, the policy gradient moves
toward better captions, and SCST runs, resumes and feeds generation like any captioner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.captioning.reward import Reward
from engine.evaluation.tokenize import ptb_tokenize
from engine.jobs import JobStopped
from engine.jobs.foreground import run_foreground
from engine.store.results import generations_of
from engine.store.runs import get_run
from tests.conftest import fails_unchanged

SCST = {"objective": "scst", "init": "cap", "batch_size": "32", "scst_samples": "3", "max_new_tokens": "16", "lr": "2e-4",
        "patience": "5"}


def _raw_val_references(shared_data: Path) -> dict[int, list[str]]:
    data = json.loads((shared_data / "rsicd-val-refs" / "captions_rsicd_val_coco.json").read_text())
    refs: dict[int, list[str]] = {}
    for a in data["annotations"]:
        refs.setdefault(a["image_id"], []).append(a["caption"])
    return refs


def test_the_reward_equals_the_toolkits_cider_d_and_bleu_4_on_the_rsicd_val_references(shared_data: Path) -> None:
    """Each image's first reference scored against the other four: the reward (document
    frequencies of those references, computed once) equals pycocoevalcap's Cider and Bleu."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    raw = _raw_val_references(shared_data)
    hyp = {k: v[0] for k, v in raw.items()}
    others = {k: v[1:] for k, v in raw.items()}
    keys = list(raw)
    gts = {k: [ptb_tokenize(r) for r in others[k]] for k in keys}
    res = {k: [ptb_tokenize(hyp[k])] for k in keys}
    _, cider = Cider().compute_score(gts, res)
    _, bleu = Bleu(4).compute_score(gts, res, verbose=0)
    for metric, toolkit in (("cider", list(cider)), ("bleu4", bleu[3]), ("cider+bleu4", [(a + b) / 2 for a, b in zip(cider, bleu[3], strict=True)])):
        reward = Reward(others, metric=metric)
        ours = [reward(k, [hyp[k]])[0] for k in keys]
        assert len(ours) == 1094
        assert max(abs(a - b) for a, b in zip(ours, toolkit, strict=True)) <= 1e-9, metric
        at_once = reward.batch([*keys, *keys[:50]], [hyp[k] for k in keys] + [others[k][0] for k in keys[:50]])  # one batch, many images
        assert max(abs(a - b) for a, b in zip(at_once, toolkit, strict=False)) <= 1e-9, metric
        assert at_once[1094:] == pytest.approx([reward.score_tokenized(k, ptb_tokenize(others[k][0])) for k in keys[:50]], abs=1e-9)
    with pytest.raises(ValueError, match="reward='meteor': choose from cider, bleu4, cider"):
        Reward(others, metric="meteor")


def test_the_policy_gradient_makes_better_captions_likelier(world: dict[str, Any]) -> None:
    """One SCST update raises the log-probability of the samples that beat the greedy caption and
    lowers that of the worse ones (the sign and the masking of the loss)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.captioning.data import IGNORE_INDEX, Encoded
    from engine.captioning.generate import generate_ids
    from engine.captioning.scst import _log_probs

    folder = world["ws"].model_dir("cap") / "model"
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    prompt = [tok.bos_token_id, *tok("Scene: pond\nCaption:", add_special_tokens=False).input_ids]
    torch.manual_seed(0)
    drawn = generate_ids(model, tok, [prompt], 8, max_new_tokens=12, device="cpu", keep_eos=True, do_sample=True, top_k=0)
    sequences = [Encoded([*prompt, *t], [IGNORE_INDEX] * len(prompt) + t) for t in drawn]
    advantage = torch.tensor([1.0, -1.0] * 4)
    before = _log_probs(model, sequences, tok.pad_token_id, "cpu")
    (-(advantage * before).mean()).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 1e-3 * p.grad
        after = _log_probs(model, sequences, tok.pad_token_id, "cpu")
    moved = after - before.detach()
    assert float((advantage * moved).sum()) > 0
    assert float(moved[advantage > 0].mean()) > float(moved[advantage < 0].mean())


def test_scst_trains_resumes_where_it_stopped_and_generation_reads_it(world: dict[str, Any]) -> None:
    ws = world["ws"]
    straight: list[Any] = []
    done = run_foreground(ws, "train-captioner", {**SCST, "name": "scst-a", "epochs": "2"}, on_progress=straight.append)
    db = ws.open_db()
    run, cap = get_run(db, "scst-a"), get_run(db, "cap")
    assert run is not None and cap is not None and run.kind == "captioner" and run.parent_run_id == cap.id
    assert run.params["prompt"] == "composition" and run.params["composition"] == "gt" and run.params["init"] == "cap"
    history = done.data["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2]  # the curve starts at init's validation reward
    assert all(h["val_reward"] > 0 and h["val_length"] > 0 for h in history)
    assert all(h["sample_length"] > 0 and "reward" in h and "baseline" in h for h in history[1:])
    assert run.metrics["val_reward"] == max(h["val_reward"] for h in history)
    assert any("reward" in e.metrics and "baseline" in e.metrics for e in straight)
    assert "validation cider" in done.message

    seen: list[Any] = []
    with pytest.raises(JobStopped):
        run_foreground(ws, "train-captioner", {**SCST, "name": "scst-b", "epochs": "2"}, on_progress=seen.append,
                       stop_requested=lambda: any(e.message.startswith("epoch 2/") for e in seen))
    assert get_run(ws.open_db(), "scst-b").status == "failed"  # type: ignore[union-attr]
    events: list[Any] = []
    resumed = run_foreground(ws, "train-captioner", {**SCST, "name": "scst-b", "epochs": "2"}, on_progress=events.append)
    assert [h["epoch"] for h in resumed.data["history"]] == [0, 1, 2]
    first = next(e for e in events if "reward" in e.metrics)
    same = next(e for e in straight if "reward" in e.metrics and e.step == first.step)
    assert first.step > 1 and first.metrics["reward"] == pytest.approx(same.metrics["reward"], rel=1e-6)  # same weights and draws

    gen = run_foreground(ws, "generate", {"captioner": "scst-a", "split": "test", "max_new_tokens": "16"})
    assert gen.data["images"] == 16
    assert all(g.text for g in generations_of(ws.open_db(), get_run(ws.open_db(), gen.data["name"]).id))  # type: ignore[union-attr]


def test_scst_needs_a_finished_captioner_and_keeps_its_prompts(world: dict[str, Any]) -> None:
    ws = world["ws"]
    fails_unchanged(ws, "train-captioner", {"objective": "scst"}, "init: objective=scst fine-tunes a trained captioner")
    fails_unchanged(ws, "train-captioner", {"objective": "scst", "init": "nosuch"}, "init='nosuch': no train-captioner run of that name")
    fails_unchanged(ws, "train-captioner", {**SCST, "prompt": "scene"}, "prompt=scene: init run 'cap' learnt prompt=composition")
    fails_unchanged(ws, "train-captioner", {"dataset": "syn", "composition": "gt", "init": "cap"}, "init: only with objective=scst")
    fails_unchanged(ws, "train-captioner", {**SCST, "reward": "meteor"}, "reward")
