from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.datasets.synthetic import (
    C, CLASS_NAMES, SCENES, caption_sentences, region_words, render_scene, write_captioning_dataset,
)


def test_same_seed_same_scene_and_captions() -> None:
    a = render_scene(42, 96)
    b = render_scene(42, 96)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert caption_sentences(a[2], 42) == caption_sentences(b[2], 42)
    assert not np.array_equal(render_scene(43, 96)[1], a[1])


@pytest.mark.parametrize("scene", SCENES)
def test_every_scene_draws_its_base_and_five_captions(scene: str) -> None:
    rgb, label, facts = render_scene(7, 128, scene)
    assert rgb.shape == (128, 128, 3) and rgb.dtype == np.uint8
    assert label.shape == (128, 128) and int(label.max()) < len(CLASS_NAMES)
    assert (label == C[facts.base]).any()
    captions = caption_sentences(facts, 7)
    assert len(captions) == 5 and all(c.endswith(" .") and c == c.lower() for c in captions)


def test_counts_in_facts_match_the_label_map() -> None:
    from scipy import ndimage

    _, label, facts = render_scene(11, 224, "parking")
    cars, n = ndimage.label(label == C["car"])
    assert n == facts.cars > 0
    _, label, facts = render_scene(5, 224, "residential")
    assert ndimage.label(label == C["roof"])[1] == facts.buildings


def test_pond_position_words_follow_image_axes() -> None:
    assert region_words(0.1, 0.1) == "upper left"
    assert region_words(0.9, 0.1) == "upper right"
    assert region_words(0.1, 0.9) == "lower left"
    assert region_words(0.5, 0.5) == "center"
    for seed in range(8):
        _, label, facts = render_scene(seed, 120, "pond")
        ys, xs = np.nonzero(label == C["water"])
        assert facts.pond == region_words(xs.mean() / 120, ys.mean() / 120)


def test_small_classes_are_rare_like_real_imagery() -> None:
    hist = np.zeros(len(CLASS_NAMES))
    for seed in range(16):
        hist += np.bincount(render_scene(seed, 128, drone=True)[1].ravel(), minlength=len(CLASS_NAMES))
    share = hist / hist.sum()
    assert share[C["person"]] < 0.005 and share[C["car"]] < 0.05
    assert share[C["grass"]] + share[C["paved-area"]] + share[C["vegetation"]] > 0.4


def test_karpathy_layout_on_disk(tmp_path: Path) -> None:
    out = write_captioning_dataset(tmp_path, 10, size=48, seed=1, workers=2)
    data = json.loads(out.annotations.read_text())  # type: ignore[union-attr]
    assert data["dataset"] == "synthetic" and len(data["images"]) == 10
    first = data["images"][0]
    assert (tmp_path / "images" / first["filename"]).is_file()
    assert (tmp_path / "masks" / first["filename"].replace(".jpg", ".png")).is_file()
    assert [s["raw"].rstrip(" .").split() for s in first["sentences"]] == [s["tokens"] for s in first["sentences"]]
