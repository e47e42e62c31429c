"""The in-process CIDEr-D equals the toolkit's, on the real RSICD val references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.evaluation.cider import CiderD
from engine.evaluation.metrics import leave_one_out
from engine.evaluation.tokenize import ptb_tokenize


def test_equal_to_pycocoevalcap_cider_d_on_the_rsicd_val_references(shared_data: Path) -> None:
    from pycocoevalcap.cider.cider import Cider

    data = json.loads((shared_data / "rsicd-val-refs" / "captions_rsicd_val_coco.json").read_text())
    refs: dict[int, list[str]] = {}
    for a in data["annotations"]:
        refs.setdefault(a["image_id"], []).append(ptb_tokenize(a["caption"]))
    gts, res = leave_one_out(refs)
    keys = list(gts)
    toolkit_mean, toolkit = Cider().compute_score({i: gts[k] for i, k in enumerate(keys)}, {i: [res[k]] for i, k in enumerate(keys)})
    ours = CiderD(gts[k] for k in keys)
    mine = [ours.score(res[k], gts[k]) for k in keys]
    assert len(mine) == 5469
    assert max(abs(a - b) for a, b in zip(mine, toolkit, strict=True)) <= 1e-9
    assert abs(sum(mine) / len(mine) - toolkit_mean) <= 1e-9


def test_consensus_picks_the_caption_most_like_the_others() -> None:
    scorer = CiderD([["a red car on a road", "a car on the road"], ["many trees near a river", "a river with trees"]])
    best, scores = scorer.consensus(["a red car on the road", "a car on a road", "many trees", "a car on the road near trees"])
    assert best in (0, 1, 3) and scores[2] == min(scores)
    with pytest.raises(ValueError, match="at least one reference set"):
        CiderD([])


def test_the_sparse_consensus_equals_the_pairwise_one() -> None:
    import random

    import numpy as np

    words = "a the many green trees building buildings near river pond cars parked road some two large".split()
    rng = random.Random(0)
    captions = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(90)]
    captions += captions[:10]  # repeats count with their multiplicity
    scorer = CiderD([[c] for c in captions])
    best, scores = scorer.consensus(captions)  # > 64: the sparse path
    pair_best, pair_scores = scorer.consensus_of([scorer.vector(c) for c in captions])
    assert best == pair_best and np.allclose(scores, pair_scores, atol=1e-12)
