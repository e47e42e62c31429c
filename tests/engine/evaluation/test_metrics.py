"""Caption metrics: hand-checked values, equality with the toolkit, tokenization, intervals,
paired comparison, and review agreement against published worked examples."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from engine.evaluation.metrics import (
    METRICS, EvaluationError, MeteorSession, bootstrap, check_metrics, corpus_from_weights, group_scores, leave_one_out,
    paired_bootstrap, score_captions,
)
from engine.evaluation.review import krippendorff_alpha, rating_metric_correlations
from engine.evaluation.tokenize import ptb_tokenize, tokenize_all

NO_METEOR = [m for m in METRICS if m != "METEOR"]


def test_hand_checked_bleu_and_rouge() -> None:
    s = score_captions({1: ["a red car on the road"]}, {1: "a red car"}, metrics=NO_METEOR, use_java=False)
    brevity = math.exp(1 - 6 / 3)  # hypothesis 3 words, closest reference 6
    assert s.corpus["Bleu_1"] == pytest.approx(brevity, abs=1e-6)
    assert s.corpus["Bleu_2"] == pytest.approx(brevity, abs=1e-6)
    # ROUGE-L: LCS 3, precision 3/3, recall 3/6, beta 1.2
    p, r, b2 = 1.0, 0.5, 1.2**2
    assert s.corpus["ROUGE_L"] == pytest.approx((1 + b2) * p * r / (r + b2 * p), abs=1e-9)
    perfect = score_captions({1: ["two cars on a road"]}, {1: "two cars on a road"}, metrics=["Bleu_4"], use_java=False)
    assert perfect.corpus["Bleu_4"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "text,tokens",
    [
        ("A man's car isn't there -- it's 3.5 km (far)!", "a man 's car is n't there it 's 3.5 km -lrb- far -rrb-"),
        ('Tree-lined road, 1,000 cars; "quoted" and  double  spaces...', "tree-lined road 1,000 cars quoted and double spaces"),
        ("U.S. Dr. Smith's co-op can't won't I'm $5 50% 'single'", "u.s. dr. smith 's co-op ca n't wo n't i 'm $ 5 50 % single"),
        ("There is a pond. Many trees are around it.", "there is a pond many trees are around it"),
        ("the cars' roofs are red", "the cars roofs are red"),
        ("a river , with two bridges ; and a road : near", "a river with two bridges and a road near"),
        ("[a] {b} no.1 building", "-lsb- a -rsb- -lcb- b -rcb- no. 1 building"),
        ("MANY Buildings", "many buildings"),
    ],
)
def test_java_free_tokenizer_on_tricky_text(text: str, tokens: str) -> None:
    """Expected values are the Java PTBTokenizer's output (taken from the toolkit)."""
    assert ptb_tokenize(text) == tokens


TRICKY = Path(__file__).resolve().parents[2] / "data" / "tricky_captions.txt"
"""Strings that exercise the tokenizer's rules (one a line), from PTB's documentation, the issue
that found the differences, and a fuzzer run against the Java tokenizer."""
FOUND_IN_REVIEW = ["I cannot see it", "we are gonna go", "it costs 1,000.5 dollars", "don't-stop the music", "cats &amp; dogs"]


def _shared_references(shared_data: Path) -> list[str]:
    texts = []
    for name in ("ucm-captions/dataset.json", "rsicd-sample/dataset_rsicd.json"):
        texts += [s["raw"] for im in json.loads((shared_data / name).read_text())["images"] for s in im["sentences"]]
    for path in sorted((shared_data / "rsicd-val-refs").glob("*.json")):
        texts += [a["caption"] for a in json.loads(path.read_text())["annotations"]]
    return texts


@pytest.mark.java
def test_java_free_tokenizer_equals_java_on_every_shared_reference_and_where_it_claims_to(shared_data: Path) -> None:
    """Property: wherever the Java-free tokenizer says it is exact (every real reference here, and
    most tricky strings), it gives the Java tokenizer's tokens; elsewhere its scores say approximate."""
    from engine.evaluation.tokenize import clean, exact_for, java_ptb_lines, ptb_tokens

    references = _shared_references(shared_data)
    tricky = TRICKY.read_text(encoding="utf-8").splitlines()
    assert len(references) == 16054 and len(tricky) > 250
    texts = references + tricky + FOUND_IN_REVIEW
    java = java_ptb_lines(texts)
    exact = [exact_for(clean(t)) for t in texts]
    assert all(exact[: len(references)]) and all(exact[-len(FOUND_IN_REVIEW):])
    wrong = [(t, j, " ".join(ptb_tokens(t))) for t, j, e in zip(texts, java, exact, strict=True) if e and " ".join(ptb_tokens(t)) != j.strip()]
    assert wrong == []
    # The tricky strings are adversarial (a fuzzer's): measured 254 of 364 exact, the rest labelled approximate.
    assert sum(exact[len(references) :]) >= 0.65 * (len(tricky) + len(FOUND_IN_REVIEW))


@pytest.mark.parametrize("text", ["a café by the river", "C++ code", "a man...walks", "hello!world", "o'clock"])
def test_text_the_tokenizer_is_not_checked_on_is_labelled_approximate(text: str) -> None:
    from engine.evaluation.tokenize import PYTHON_APPROXIMATE, PYTHON_EXACT

    assert tokenize_all({1: ["a river near trees"]}, use_java=False)[1] == PYTHON_EXACT
    assert tokenize_all({1: ["a river near trees", text]}, use_java=False)[1] == PYTHON_APPROXIMATE
    s = score_captions({1: ["a river near trees"]}, {1: text}, metrics=["CIDEr"], use_java=False)
    assert s.tokenizer == PYTHON_APPROXIMATE


@pytest.mark.parametrize("use_java", [pytest.param(True, marks=pytest.mark.java), False])
@pytest.mark.parametrize("brk", ["\r", "\n", "\r\n", "\u2028", "\u2029", "\x0b", "\x85", "\x00"])
def test_a_line_break_inside_a_caption_changes_no_score(use_java: bool, brk: str) -> None:
    """A \\r in one caption used to shift every later caption against its references under Java
    (CIDEr of this set fell from 3.694 to 0.305, without an error)."""
    refs = {1: ["a plane is parked at the airport", "an airplane at an airport"], 2: ["many green trees in a park", "a park with trees"],
            3: ["a river runs through the farmland", "a river beside farmland"]}
    hyps = {1: "a plane parked at the airport", 2: "a park with many green trees", 3: "a river beside the farmland"}
    clean = score_captions(refs, hyps, metrics=["CIDEr", "Bleu_4"], use_java=use_java)
    broken = score_captions({**refs, 2: ["many green trees" + brk + "in a park", "a park with trees"]},
                            {**hyps, 1: "a plane parked" + brk + "at the airport"}, metrics=["CIDEr", "Bleu_4"], use_java=use_java)
    assert broken.corpus == pytest.approx(clean.corpus, abs=1e-12) and clean.corpus["CIDEr"] == pytest.approx(3.694, abs=1e-3)


def _val_refs(shared_data: Path) -> dict[int, list[str]]:
    data = json.loads((shared_data / "rsicd-val-refs" / "captions_rsicd_val_coco.json").read_text())
    refs: dict[int, list[str]] = {}
    for a in data["annotations"]:
        refs.setdefault(a["image_id"], []).append(a["caption"])
    return refs


def test_equal_to_the_toolkit_on_leave_one_out_references_without_java(shared_data: Path) -> None:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts, res = leave_one_out(_val_refs(shared_data))
    ours = score_captions(gts, res, metrics=NO_METEOR, use_java=False)
    ids = {k: i for i, k in enumerate(gts)}
    g = {ids[k]: [ptb_tokenize(c) for c in v] for k, v in gts.items()}
    r = {ids[k]: [ptb_tokenize(res[k])] for k in gts}
    bleu, _ = Bleu(4).compute_score(g, r, verbose=0)
    toolkit = {f"Bleu_{n + 1}": bleu[n] for n in range(4)}
    toolkit["ROUGE_L"] = Rouge().compute_score(g, r)[0]
    toolkit["CIDEr"] = Cider().compute_score(g, r)[0]
    for metric, value in toolkit.items():
        assert abs(ours.corpus[metric] - value) <= 1e-9, metric
    # Corpus values recomputed from the cached per-image statistics are the same numbers.
    again = corpus_from_weights(ours, np.ones((1, len(ours.keys))))
    for metric, value in toolkit.items():
        assert abs(again[metric][0] - value) <= 1e-9, metric


@pytest.mark.java
@pytest.mark.slow
def test_equal_to_the_toolkit_with_java_including_meteor(shared_data: Path) -> None:
    """The toolkit's own flow (PTBTokenizer, then each scorer) on the 5,469 leave-one-out pairs."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts, res = leave_one_out(_val_refs(shared_data))
    session = MeteorSession()
    ours = score_captions(gts, res, meteor=session)
    ids = {k: i for i, k in enumerate(gts)}
    g = PTBTokenizer().tokenize({ids[k]: [{"caption": c} for c in v] for k, v in gts.items()})
    r = PTBTokenizer().tokenize({ids[k]: [{"caption": res[k]}] for k in gts})
    bleu, _ = Bleu(4).compute_score(g, r, verbose=0)
    toolkit = {f"Bleu_{n + 1}": bleu[n] for n in range(4)}
    toolkit["METEOR"] = Meteor().compute_score(g, r)[0]
    toolkit["ROUGE_L"] = Rouge().compute_score(g, r)[0]
    toolkit["CIDEr"] = Cider().compute_score(g, r)[0]
    assert ours.tokenizer == "ptb-java"
    for metric, value in toolkit.items():
        assert abs(ours.corpus[metric] - value) <= 1e-9, metric
    # METEOR from the cached statistics, summed and scored by Meteor, is the corpus METEOR.
    again = corpus_from_weights(ours, np.ones((1, len(ours.keys))), session)
    assert abs(again["METEOR"][0] - toolkit["METEOR"]) <= 1e-9
    intervals = bootstrap(ours, resamples=200, meteor=session)
    assert intervals["METEOR"][0] <= ours.corpus["METEOR"] <= intervals["METEOR"][1]
    session.close()


def _synthetic_scores(n: int, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    words = "a the red green car cars road roads tree trees river pond house houses near many two some".split()
    refs = {i: [" ".join(rng.choice(words, 8)) for _ in range(5)] for i in range(n)}
    hyps = {i: " ".join(rng.choice(words, 7)) for i in range(n)}
    return score_captions(refs, hyps, metrics=NO_METEOR, use_java=False)


def test_intervals_contain_the_estimate_and_shrink_with_more_images() -> None:
    small, large = _synthetic_scores(40), _synthetic_scores(400)
    ci_small, ci_large = bootstrap(small, resamples=400), bootstrap(large, resamples=400)
    for metric in NO_METEOR:
        for scores, ci in ((small, ci_small), (large, ci_large)):
            assert ci[metric][0] <= scores.corpus[metric] <= ci[metric][1], metric
        assert ci_large[metric][1] - ci_large[metric][0] < ci_small[metric][1] - ci_small[metric][0], metric


def test_paired_difference_of_a_run_with_itself_is_zero() -> None:
    s = _synthetic_scores(60)
    diff = paired_bootstrap(s, s, resamples=200)
    for metric in NO_METEOR:
        assert diff[metric]["difference"] == 0 and diff[metric]["low"] == 0 and diff[metric]["high"] == 0


def test_per_scene_table_sums_to_its_groups() -> None:
    s = _synthetic_scores(30)
    table = group_scores(s, ["a" if i < 10 else "b" for i in range(30)])
    assert table["a"]["images"] == 10 and table["b"]["images"] == 20
    cider = s.per_image["CIDEr"]
    assert table["a"]["CIDEr"] == pytest.approx(cider[:10].mean())


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(EvaluationError, match="unknown metric 'BLEU'; valid: Bleu_1"):
        check_metrics(["BLEU"])
    with pytest.raises(EvaluationError, match="1 images have no references"):
        score_captions({1: ["x"]}, {1: "x", 2: "y"}, metrics=["CIDEr"], use_java=False)
    with pytest.raises(EvaluationError, match="nothing to score"):
        score_captions({}, {}, use_java=False)


def test_meteor_and_spice_are_reported_unavailable_not_as_numbers() -> None:
    s = score_captions({1: ["a road"]}, {1: "a road"}, metrics=["METEOR", "SPICE", "CIDEr"], use_java=False)
    assert "METEOR" not in s.corpus and "SPICE" not in s.corpus
    assert "Java" in s.unavailable["METEOR"] and "SPICE" in s.unavailable["SPICE"]


def test_krippendorff_alpha_matches_published_worked_examples() -> None:
    nan = float("nan")
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers, 12 units.
    k = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
         [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan], [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]
    units = [[row[u] for row in k if not math.isnan(row[u])] for u in range(12)]
    assert round(krippendorff_alpha(units, "nominal"), 3) == 0.743
    assert round(krippendorff_alpha(units, "ordinal"), 3) == 0.815
    assert round(krippendorff_alpha(units, "interval"), 3) == 0.849
    # Wikipedia's computational example: 3 coders, 15 units.
    w = [[nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3], [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
         [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4]]
    units = [[row[u] for row in w if not math.isnan(row[u])] for u in range(15)]
    assert round(krippendorff_alpha(units, "nominal"), 6) == 0.691358
    assert round(krippendorff_alpha(units, "interval"), 6) == 0.810845
    assert krippendorff_alpha([[1, 1], [3, 3]], "ordinal") == 1.0


def test_rating_metric_correlations_count_images() -> None:
    ratings = {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.5}
    scores = {1: {"CIDEr": 0.1}, 2: {"CIDEr": 0.4}, 3: {"CIDEr": 0.5}, 4: {"CIDEr": 0.9}, 5: {"CIDEr": 1.0}}
    [c] = rating_metric_correlations(ratings, scores, ["CIDEr"])
    assert c.n == 4 and c.spearman == pytest.approx(1.0) and c.kendall == pytest.approx(1.0)


def test_leave_one_out_can_skip_repeated_references() -> None:
    refs = {1: ["a pond .", "A pond", "two roads"], 2: ["x", "x"]}
    gts, res = leave_one_out(refs)
    assert gts[(1, 0)] == ["A pond", "two roads"] and len(res) == 5
    gts, res = leave_one_out(refs, distinct=True)
    assert gts[(1, 0)] == ["two roads"] and gts[(1, 2)] == ["a pond .", "A pond"]
    assert (2, 0) not in res and len(res) == 3
