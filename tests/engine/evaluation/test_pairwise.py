"""Pairwise analytics: the win-rate interval against a hand-computed case, position bias on a
seeded fake reviewer, agreement on shared images, and the overlap order of a reviewer's queue."""

from __future__ import annotations

import math
import random
import pytest

from engine.evaluation.pairwise import overlap_order, ratio_interval, summarise
from engine.store.comparisons import Verdict


def V(image_id: int, reviewer: str, choice: str, left_is_a: bool, scene: str | None = None) -> Verdict:  # noqa: N802
    return Verdict(0, image_id, reviewer, choice, left_is_a, scene)


def test_the_win_rate_interval_matches_the_normal_approximation_of_a_hand_computed_case() -> None:
    """400 images, B won 240: p = 0.6, standard error sqrt(0.6 * 0.4 / 400) = 0.02449, so the
    95% interval is 0.6 -+ 1.96 * 0.02449 = [0.552, 0.648]; the bootstrap lands within 0.01."""
    values = [1.0] * 240 + [0.0] * 160
    rate = ratio_interval(values, [1.0] * 400, resamples=4000, seed=1)
    se = math.sqrt(0.6 * 0.4 / 400)
    assert rate.value == pytest.approx(0.6) and rate.n == 400
    assert rate.low == pytest.approx(0.6 - 1.96 * se, abs=0.01) and rate.high == pytest.approx(0.6 + 1.96 * se, abs=0.01)


def test_a_tie_counts_half_and_an_image_weighs_the_same_however_many_judged_it() -> None:
    verdicts = [V(1, "alice", "left", True), V(1, "bob", "right", True),  # image 1: A then B: 0.5
                V(2, "alice", "tie", False),                               # image 2: 0.5
                V(3, "alice", "right", True)]                              # image 3: B: 1
    s = summarise(verdicts, "a", "b", images=3, identical=0, resamples=200)
    assert s.win_rate.value == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert s.counts == {"a": 1, "b": 2, "tie": 1, "both_bad": 0} and s.tie_rate == pytest.approx(0.25)
    assert s.shared_images == 1 and s.agreement == 0.0


def test_a_reviewer_who_always_picks_left_is_caught_and_scores_b_at_chance() -> None:
    rng = random.Random(7)
    lefty = [V(i, "lefty", "left", rng.random() < 0.5) for i in range(200)]
    s = summarise(lefty, "a", "b", images=200, identical=0)
    assert s.left_rate.value == 1.0 and s.position_bias
    assert s.win_rate.low < 0.5 < s.win_rate.high  # left is A or B at random: B wins at chance
    fair = [V(i, "fair", "right" if (rng.random() < 0.7) == left_a else "left", left_a)
            for i, left_a in ((i, rng.random() < 0.5) for i in range(200))]
    f = summarise(fair, "a", "b", images=200, identical=0)
    assert not f.position_bias and f.win_rate.low > 0.6  # prefers B 70% of the time, whatever the side


def test_agreement_and_alpha_on_images_two_reviewers_share() -> None:
    same = [V(i, r, "left", True) for i in range(10) for r in ("alice", "bob")]
    same += [V(i, r, "right", True) for i in range(10, 20) for r in ("alice", "bob")]
    s = summarise(same, "a", "b", images=20, identical=0, resamples=100)
    assert s.shared_images == 20 and s.agreement == 1.0 and s.alpha == pytest.approx(1.0)
    assert s.reviewers == {"alice": 20, "bob": 20}


def test_per_scene_rates() -> None:
    verdicts = [V(i, "alice", "right", True, "farm") for i in range(4)] + [V(9, "alice", "left", True, "pond")]
    s = summarise(verdicts, "a", "b", images=5, identical=0, resamples=100)
    assert [(k, r.value, r.n) for k, r in s.per_scene] == [("farm", 1.0, 4), ("pond", 0.0, 1)]


def test_without_overlap_the_unjudged_come_first_in_the_given_order() -> None:
    order, done, shared = overlap_order(range(6), {1, 3}, {0, 3}, 0.0, "alice")
    assert order == [0, 2, 4, 5, 1, 3] and (done, shared) == (2, 1)


def test_with_overlap_a_second_reviewer_starts_on_shared_items_and_keeps_that_share() -> None:
    others = set(range(0, 100, 2))  # someone judged every other item
    order, done, shared = overlap_order(range(100), set(), others, 0.2, "bob")
    assert order[0] in others and sorted(order) == list(range(100)) and (done, shared) == (0, 0)
    for n in (5, 10, 40):  # after any stretch of n items, at least a fifth of them are shared
        assert sum(1 for k in order[:n] if k in others) >= 0.2 * n
    assert sum(1 for k in order[:50] if k in others) <= 0.2 * 50 + 1  # and not many more: the rest is new work
    assert order == overlap_order(range(100), set(), others, 0.2, "bob")[0]  # seeded: the same order each time
    assert order != overlap_order(range(100), set(), others, 0.2, "carol")[0]


def test_overlap_counts_what_the_reviewer_already_shares() -> None:
    others = {0, 1, 2, 3}
    order, done, shared = overlap_order(range(10), {0, 1, 5}, others, 0.5, "bob")
    assert (done, shared) == (3, 2) and order[-3:] == [0, 1, 5]
    assert order[0] not in others  # 2 of 4 would be shared after a new item: a half, as asked
    order, _, _ = overlap_order(range(10), {0, 1, 5}, others, 0.6, "bob")
    assert order[0] in others  # 2 of 4 is under 0.6: the next one is shared


def test_judging_one_item_never_reorders_the_rest() -> None:
    others = set(range(0, 60, 3))
    before, _, _ = overlap_order(range(60), set(), others, 0.2, "bob")
    after, _, _ = overlap_order(range(60), {before[0]}, others, 0.2, "bob")
    assert after[-1] == before[0]  # judged: last
    for kind in (lambda k: k in others, lambda k: k not in others):  # each kind keeps its relative order
        assert [k for k in after[:-1] if kind(k)] == [k for k in before[1:] if kind(k)]


def test_a_handful_of_verdicts_claims_no_position_bias() -> None:
    few = summarise([V(i, "lefty", "left", i % 2 == 0) for i in range(6)], "a", "b", images=6, identical=0, resamples=200)
    assert few.left_rate.value == 1.0 and not few.bias_checkable and not few.position_bias
