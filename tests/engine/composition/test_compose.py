"""Compositions of hand-made masks: exact areas, circles, counts and position words.

Image axes: x grows to the right, y grows downward. The original project swapped left and
right; these tests pin the words.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.composition import compose, feature_vector, position_word, render_prompt
from engine.composition.compose import Composition

NAMES = ["Unlabeled", "Ground", "Water", "Trees", "Cars"]


def part(comp: Composition, name: str):  # type: ignore[no-untyped-def]
    return next(p for p in comp.parts if p.name == name)


def test_left_half_water_is_left_of_the_ground() -> None:
    mask = np.full((100, 200), 1, np.uint8)
    mask[:, :40] = 2  # a band on the left fifth
    comp = compose(mask, NAMES)
    assert comp.dominant is not None and comp.dominant.name == "Ground"
    water = part(comp, "Water")
    assert water.area == 20.0
    assert water.regions == 1
    assert water.position == "left of"
    assert water.centre == (0.1, 0.5)
    assert part(comp, "Ground").centre == (0.6, 0.5)


@pytest.mark.parametrize(
    "rows,cols,word",
    [
        ((0, 20), (80, 100), "upper-right of"),
        ((0, 20), (0, 20), "upper-left of"),
        ((80, 100), (0, 20), "lower-left of"),
        ((80, 100), (80, 100), "lower-right of"),
        ((0, 20), (40, 60), "above"),
        ((80, 100), (40, 60), "below"),
        ((40, 60), (80, 100), "right of"),
        ((40, 60), (0, 20), "left of"),
        ((45, 55), (45, 55), "at the centre of"),
    ],
)
def test_position_words_follow_image_axes(rows: tuple[int, int], cols: tuple[int, int], word: str) -> None:
    mask = np.full((100, 100), 1, np.uint8)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = 3
    assert part(compose(mask, NAMES), "Trees").position == word


def test_dead_zone_keeps_near_level_offsets_from_flipping() -> None:
    assert position_word(0.05, -0.3) == "above"
    assert position_word(-0.05, -0.3) == "above"
    assert position_word(0.15, -0.3) == "upper-right of"
    assert position_word(0.15, -0.3, dead_zone=0.2) == "above"


def test_regions_ignore_specks_and_circle_spans_kept_regions() -> None:
    mask = np.full((100, 100), 1, np.uint8)
    mask[10:20, 10:20] = 4  # car 1: 100 px
    mask[10:20, 70:80] = 4  # car 2: 100 px
    mask[90, 50] = 4  # a 1-pixel speck (below 0.1% of 10,000 px = 10 px)
    cars = part(compose(mask, NAMES), "Cars")
    assert cars.regions == 2
    assert cars.area == 2.01
    # Centre of the two kept squares only; the speck does not pull it down.
    assert cars.centre == (0.45, 0.15)
    x, y, r = cars.circle
    assert (x, y) == (0.45, 0.15)
    # Farthest corner pixels of the kept squares: (10,10) and (79,19) around centre (44.5, 14.5).
    assert r == pytest.approx(np.hypot(34.5, 4.5) / 100, abs=0.006)


def test_ignored_and_tiny_classes_are_left_out_and_areas_are_exact() -> None:
    mask = np.full((50, 40), 1, np.uint8)
    mask[:10, :10] = 0  # unlabelled
    mask[49, 39] = 3  # 1 px = 0.05% -> kept at min_area 0.05, dropped at 0.1
    comp = compose(mask, NAMES, ignore=[0])
    assert [p.name for p in comp.parts] == ["Ground", "Trees"]
    assert part(comp, "Ground").area == 94.95  # 2000 px - 100 unlabelled - 1 tree
    assert [p.name for p in compose(mask, NAMES, ignore=[0], min_area=0.1).parts] == ["Ground"]


def test_prompt_is_deterministic_and_versioned_layout() -> None:
    mask = np.full((100, 100), 1, np.uint8)
    mask[:, :30] = 2
    mask[80:90, 80:90] = 4
    text = render_prompt(compose(mask, NAMES))
    assert text.splitlines() == [
        "Ground 69.0% 1 region, dominant, circle 0.65 0.50 r0.60",  # corners (30,0)-(99,99)
        "Water 30.0% 1 region, left of Ground, circle 0.15 0.50 r0.52",
        "Cars 1.0% 1 region, lower-right of Ground, circle 0.85 0.85 r0.06",
    ]
    assert render_prompt(compose(mask, NAMES)) == text
    comp = compose(mask, NAMES)
    assert Composition.from_dict(comp.to_dict()) == comp
    assert feature_vector(comp, len(NAMES)).shape == (25,)


def test_empty_mask_renders_nothing_recognised() -> None:
    assert render_prompt(compose(np.zeros((8, 8), np.uint8), NAMES, ignore=[0])) == "(nothing recognised)"


def test_compose_has_no_per_pixel_python() -> None:
    """A 224x224 mask with many classes composes in well under a few milliseconds (not a
    benchmark: a guard against per-pixel loops, which take a second)."""
    rng = np.random.default_rng(0)
    mask = rng.integers(1, 5, (224, 224)).astype(np.uint8)
    start = time.perf_counter()
    compose(mask, NAMES)
    assert time.perf_counter() - start < 0.5


def test_regions_inside_holes_are_counted_on_every_path() -> None:
    """An island (class 0) inside a lake (class 1) inside land (class 0): land is two regions, the
    lake one. RETR_EXTERNAL counted land as one (its island has no outer contour at the top)."""
    mask = np.zeros((60, 60), np.uint8)
    mask[10:50, 10:50] = 1  # the lake
    mask[25:35, 25:35] = 0  # the island inside it
    comp = compose(mask, ["Land", "Water"])
    regions = {p.name: p.regions for p in comp.parts}
    assert regions == {"Land": 2, "Water": 1}
    # The same with specks to drop (the labelling path) and two islands.
    mask[15:19, 15:19] = 0
    mask[0, 59] = 1  # a one-pixel speck of water
    comp = compose(mask, ["Land", "Water"], speck=0.001)
    assert {p.name: p.regions for p in comp.parts} == {"Land": 3, "Water": 1}
    # A ring of water splits land in two as well: both counted, from any class's side.
    ring = np.zeros((40, 40), np.uint8)
    ring[5:35, 5:35] = 1
    ring[10:30, 10:30] = 2
    ring[15:25, 15:25] = 1
    comp = compose(ring, ["Land", "Water", "Sand"])
    assert {p.name: p.regions for p in comp.parts} == {"Land": 1, "Water": 2, "Sand": 1}
