"""The synthetic world: deterministic aerial-like scenes with exact label masks and captions.

It exists so the whole pipeline runs anywhere with a known answer: every scene is drawn from a
seed onto a class-index label map (the 24 Semantic Drone Dataset class names), textured into an
RGB picture, and described by five captions written from what was drawn (counts and positions
are true by construction). It is written to disk in the real layouts (a Karpathy JSON + images,
and a drone-style folder) so it goes through the real ingest path. It is never real data.

Coordinates follow image conventions: x grows to the right, y grows downward.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CLASS_NAMES = (
    "unlabeled", "paved-area", "dirt", "grass", "gravel", "water", "rocks", "pool", "vegetation",
    "roof", "wall", "window", "door", "fence", "fence-pole", "person", "dog", "car", "bicycle",
    "tree", "bald-tree", "ar-marker", "obstacle", "conflicting",
)
"""The Semantic Drone Dataset's classes in label-index order."""
C = {name: i for i, name in enumerate(CLASS_NAMES)}

# Mean aerial colour of each class (RGB) and its texture strength; cars and roofs vary per object.
_COLOUR = np.array([
    (90, 90, 90), (128, 127, 122), (150, 114, 78), (98, 142, 62), (164, 154, 138), (38, 68, 112),
    (112, 106, 98), (70, 175, 205), (72, 112, 46), (160, 80, 64), (205, 198, 186), (60, 80, 104),
    (100, 62, 42), (182, 170, 150), (88, 88, 88), (225, 70, 90), (120, 82, 44), (200, 40, 40),
    (30, 30, 30), (42, 92, 38), (140, 122, 92), (240, 240, 240), (210, 126, 30), (255, 0, 255),
], dtype=np.float32)
_ROOF_COLOURS = np.array([(160, 80, 64), (120, 120, 132), (188, 170, 150), (90, 60, 50)], np.float32)
_CAR_COLOURS = np.array([(200, 40, 40), (230, 230, 230), (30, 30, 40), (40, 70, 160), (170, 170, 175)], np.float32)
_GRAIN = np.array([8, 6, 12, 10, 14, 4, 16, 3, 12, 5, 4, 3, 3, 5, 3, 6, 6, 4, 3, 14, 10, 2, 6, 0], dtype=np.float32)
# Label-table colours of the synthetic drone set (our own; they only need to be distinct).
_LABEL_RGB = [(int(c * 37) % 256, int(c * 91 + 40) % 256, int(c * 53 + 90) % 256) for c in range(len(CLASS_NAMES))]

SCENES = ("residential", "parking", "river", "pond", "forest", "farmland", "bareland", "industrial")
_SPLIT_OF = {8: "val", 9: "test"}


def split_of_index(i: int) -> str:
    """80/10/10 train/val/test, spread so every scene type (image i has scene i % 8) reaches
    every split once there are 80 images or more."""
    return _SPLIT_OF.get((7 * i + i // len(SCENES)) % 10, "train")

_REGION = (("upper left", "top", "upper right"), ("left", "center", "right"), ("lower left", "bottom", "lower right"))


def region_words(cx: float, cy: float) -> str:
    """Where a normalised point lies, in a 3x3 grid: 'upper left' ... 'center' ... 'lower right'."""
    col = 0 if cx < 1 / 3 else 2 if cx > 2 / 3 else 1
    row = 0 if cy < 1 / 3 else 2 if cy > 2 / 3 else 1
    return _REGION[row][col]


@dataclass
class SceneFacts:
    """What was drawn, for captions and tests."""

    scene: str
    base: str
    buildings: int = 0
    large_buildings: int = 0
    cars: int = 0
    trees: int = 0
    people: int = 0
    road: str | None = None
    """'horizontal', 'vertical' or None."""
    river: str | None = None
    """'horizontal', 'vertical' or None."""
    pond: str | None = None
    """Region words of the pond's centre."""
    pools: int = 0
    fields: int = 0
    rocks: int = 0
    extras: list[str] = field(default_factory=list)


class _Canvas:
    """A label map with drawing primitives; all geometry in pixels."""

    def __init__(self, size: int, rng: np.random.Generator, base: int):
        self.size = size
        self.rng = rng
        self.label = np.full((size, size), base, dtype=np.uint8)
        self.yy, self.xx = np.mgrid[0:size, 0:size].astype(np.float32)
        self.tint: list[tuple[tuple[slice, slice], int, np.ndarray]] = []
        """Per-object colours (roofs, cars): (region, class, RGB)."""

    def free(self, y0: int, x0: int, y1: int, x1: int, allowed: tuple[int, ...]) -> bool:
        y0, x0 = max(y0, 0), max(x0, 0)
        patch = self.label[y0:y1, x0:x1]
        return patch.size > 0 and bool(np.isin(patch, allowed).all())

    def rect(self, y0: int, x0: int, y1: int, x1: int, cls: int) -> None:
        region = np.s_[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]
        self.label[region] = cls
        if cls == C["car"]:
            self.tint.append((region, cls, _CAR_COLOURS[int(self.rng.integers(len(_CAR_COLOURS)))]))

    def band(self, vertical: bool, centre: float, width: float, cls: int, wave: float = 0.0) -> None:
        along, across = (self.yy, self.xx) if vertical else (self.xx, self.yy)
        phase = self.rng.uniform(0, 2 * np.pi)
        path = centre + wave * np.sin(2 * np.pi * along / self.size * self.rng.uniform(0.7, 1.4) + phase)
        self.label[np.abs(across - path) < width / 2] = cls

    def blob(self, cy: float, cx: float, ry: float, rx: float, cls: int, rough: float = 0.15) -> None:
        angle = np.arctan2(self.yy - cy, self.xx - cx)
        k = self.rng.integers(2, 5)
        edge = 1 + rough * np.sin(k * angle + self.rng.uniform(0, 6.28))
        inside = ((self.yy - cy) / ry) ** 2 + ((self.xx - cx) / rx) ** 2 < edge**2
        self.label[inside] = cls

    def disc(self, cy: int, cx: int, r: int, cls: int) -> None:
        y0, y1, x0, x1 = max(cy - r, 0), min(cy + r + 1, self.size), max(cx - r, 0), min(cx + r + 1, self.size)
        sub = (self.yy[y0:y1, x0:x1] - cy) ** 2 + (self.xx[y0:y1, x0:x1] - cx) ** 2 <= r * r
        self.label[y0:y1, x0:x1][sub] = cls

    def building(self, y0: int, x0: int, h: int, w: int, detail: bool) -> None:
        """A roof seen from above with its sunlit wall strip below and right; windows/doors when large."""
        self.rect(y0, x0, y0 + h, x0 + w, C["roof"])
        self.rect(y0 + h, x0 + 1, y0 + h + 2, x0 + w + 2, C["wall"])
        self.rect(y0 + 1, x0 + w, y0 + h + 2, x0 + w + 2, C["wall"])
        if detail and w >= 10:
            for wx in range(x0 + 2, x0 + w - 1, 4):
                self.rect(y0 + h, wx, y0 + h + 1, wx + 1, C["window"])
            self.rect(y0 + h, x0 + w // 2, y0 + h + 2, x0 + w // 2 + 2, C["door"])
        colour = _ROOF_COLOURS[int(self.rng.integers(len(_ROOF_COLOURS)))]
        self.tint.append((np.s_[max(y0, 0):y0 + h, max(x0, 0):x0 + w], C["roof"], colour))


def _residential(cv: _Canvas, f: SceneFacts, s: int, busy: bool) -> None:
    rng = cv.rng
    vertical = bool(rng.integers(2))
    road_at = s * rng.uniform(0.4, 0.6)
    cv.band(vertical, road_at, s * 0.09, C["paved-area"])
    f.road = "vertical" if vertical else "horizontal"
    bw = max(8, s // 12)
    for lane in (road_at - s * 0.3, road_at + s * 0.13):
        for k in range(int(rng.integers(2, 5))):
            along = int(s * 0.08 + k * s * 0.23 + rng.integers(0, s // 20))
            depth = int(lane + rng.integers(0, s // 20))
            h, w = bw + int(rng.integers(0, bw // 2)), bw + int(rng.integers(0, bw // 2))
            y0, x0 = (along, depth) if vertical else (depth, along)
            if y0 + h + 2 < s and x0 + w + 2 < s and cv.free(y0, x0, y0 + h + 3, x0 + w + 3, (C["grass"],)):
                cv.building(y0, x0, h, w, busy)
                f.buildings += 1
                if rng.random() < 0.15 and cv.free(y0 + h + 4, x0, y0 + h + 10, x0 + 8, (C["grass"],)):
                    cv.rect(y0 + h + 4, x0, y0 + h + 9, x0 + 8, C["pool"])
                    f.pools += 1
    _trees(cv, f, int(rng.integers(4, 14)), (C["grass"],))
    _cars_on_road(cv, f, vertical, road_at, int(rng.integers(0, 5)))


def _trees(cv: _Canvas, f: SceneFacts, n: int, on: tuple[int, ...], radius: tuple[int, int] = (3, 6)) -> None:
    s = cv.size
    for _ in range(n * 3):
        if n == 0:
            break
        r = int(cv.rng.integers(*radius)) * s // 224 + 1
        cy, cx = (int(v) for v in cv.rng.integers(r, s - r, size=2))
        if cv.free(cy - r, cx - r, cy + r + 1, cx + r + 1, on):
            cls = C["bald-tree"] if cv.rng.random() < 0.08 else C["tree"]
            cv.disc(cy, cx, r, cls)
            f.trees += 1
            n -= 1


def _cars_on_road(cv: _Canvas, f: SceneFacts, vertical: bool, road_at: float, n: int) -> None:
    s = cv.size
    length, width = max(5, s // 32), max(3, s // 64)
    slots = cv.rng.permutation(np.arange(s // 10, s - s // 10, length * 2))[:n]
    for along in sorted(int(a) for a in slots):
        across = int(road_at + (-width - 1 if cv.rng.random() < 0.5 else 1))
        y0, x0, h, w = (along, across, length, width) if vertical else (across, along, width, length)
        if cv.free(y0, x0, y0 + h, x0 + w, (C["paved-area"],)):
            cv.rect(y0, x0, y0 + h, x0 + w, C["car"])
            f.cars += 1


def _parking(cv: _Canvas, f: SceneFacts, s: int, busy: bool) -> None:
    rng = cv.rng
    length, width = max(5, s // 28), max(3, s // 56)
    rows = range(int(s * 0.15), int(s * 0.85), length * 2)
    fill = rng.uniform(0.3, 0.9)
    for y in rows:
        for x in range(int(s * 0.1), int(s * 0.9), width * 2):
            if rng.random() < fill:
                cv.rect(y, x, y + length, x + width, C["car"])
                f.cars += 1
    if rng.random() < 0.5:
        cv.rect(0, 0, int(s * 0.1), s, C["grass"])
        _trees(cv, f, int(rng.integers(2, 6)), (C["grass"],), (2, 4))
    if busy:
        _people(cv, f, int(rng.integers(1, 4)), (C["paved-area"],))


def _river(cv: _Canvas, f: SceneFacts, s: int, busy: bool) -> None:
    rng = cv.rng
    vertical = bool(rng.integers(2))
    cv.band(vertical, s * rng.uniform(0.35, 0.65), s * rng.uniform(0.12, 0.22), C["water"], wave=s * rng.uniform(0.03, 0.1))
    f.river = "vertical" if vertical else "horizontal"
    _trees(cv, f, int(rng.integers(6, 20)), (C["grass"],))
    if rng.random() < 0.3:
        cv.band(not vertical, s * rng.uniform(0.2, 0.8), s * 0.06, C["paved-area"])
        f.road = "horizontal" if vertical else "vertical"
        f.extras.append("bridge")


def _pond(cv: _Canvas, f: SceneFacts, s: int, busy: bool) -> None:
    rng = cv.rng
    cy, cx = rng.uniform(0.22, 0.78, size=2) * s
    cv.blob(cy, cx, s * rng.uniform(0.1, 0.2), s * rng.uniform(0.1, 0.2), C["water"])
    f.pond = region_words(cx / s, cy / s)
    _trees(cv, f, int(rng.integers(5, 16)), (C["grass"],))


def _forest(cv: _Canvas, f: SceneFacts, s: int, busy: bool) -> None:
    _trees(cv, f, int(cv.rng.integers(40, 70)), (C["vegetation"],), (4, 9))
    if cv.rng.random() < 0.4:
        cv.band(bool(cv.rng.integers(2)), s * cv.rng.uniform(0.3, 0.7), s * 0.05, C["dirt"], wave=s * 0.05)
        f.extras.append("path")


def _farmland(cv: _Canvas, f: SceneFacts, s: int, busy: bool) -> None:
    rng = cv.rng
    n = int(rng.integers(3, 7))
    edges = np.sort(rng.uniform(0.1, 0.9, size=n - 1)) * s
    vertical = bool(rng.integers(2))
    crops = (C["grass"], C["dirt"], C["vegetation"])
    start = 0
    for k, end in enumerate([*edges.astype(int), s]):
        cls = crops[(k + int(rng.integers(0, 2))) % 3]
        if vertical:
            cv.rect(0, start, s, end, cls)
        else:
            cv.rect(start, 0, end, s, cls)
        start = end
    f.fields = n
    if rng.random() < 0.4:
        cv.band(not vertical, s * rng.uniform(0.2, 0.8), s * 0.04, C["paved-area"])
        f.road = "horizontal" if vertical else "vertical"


def _bareland(cv: _Canvas, f: SceneFacts, s: int, busy: bool) -> None:
    rng = cv.rng
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0.15, 0.85, size=2) * s
        cv.blob(cy, cx, s * rng.uniform(0.05, 0.15), s * rng.uniform(0.05, 0.15), C["gravel"], rough=0.3)
    for _ in range(int(rng.integers(0, 6))):
        cy, cx = rng.uniform(0.1, 0.9, size=2) * s
        cv.blob(cy, cx, s * 0.02, s * 0.03, C["rocks"], rough=0.4)
        f.rocks += 1


def _industrial(cv: _Canvas, f: SceneFacts, s: int, busy: bool) -> None:
    rng = cv.rng
    cols = int(rng.integers(1, 3))
    for row in range(2):
        for col in range(cols):
            if rng.random() < 0.8:
                y0 = int(s * (0.08 + row * 0.48))
                x0 = int(s * (0.08 + col * 0.9 / cols))
                cv.building(y0, x0, int(s * 0.3), int(s * (0.8 / cols - 0.1)), busy)
                f.buildings += 1
                f.large_buildings += 1
    if f.buildings == 0:
        cv.building(int(s * 0.3), int(s * 0.3), int(s * 0.35), int(s * 0.4), busy)
        f.buildings = f.large_buildings = 1
    spaces = [(int(s * 0.44), x) for x in range(int(s * 0.1), int(s * 0.9), max(4, s // 30))]
    for y, x in spaces:
        if rng.random() < 0.35 and cv.free(y, x, y + s // 28, x + s // 56, (C["paved-area"],)):
            cv.rect(y, x, y + s // 28, x + s // 56, C["car"])
            f.cars += 1


_BASE = {
    "residential": "grass", "parking": "paved-area", "river": "grass", "pond": "grass",
    "forest": "vegetation", "farmland": "grass", "bareland": "dirt", "industrial": "paved-area",
}
_DRAW: dict[str, Callable[[_Canvas, SceneFacts, int, bool], None]] = {
    "residential": _residential, "parking": _parking, "river": _river, "pond": _pond,
    "forest": _forest, "farmland": _farmland, "bareland": _bareland, "industrial": _industrial,
}


def _people(cv: _Canvas, f: SceneFacts, n: int, on: tuple[int, ...]) -> None:
    for _ in range(n):
        cy, cx = (int(v) for v in cv.rng.integers(2, cv.size - 2, size=2))
        if cv.free(cy, cx, cy + 2, cx + 2, on):
            cv.rect(cy, cx, cy + 2, cx + 2, C["person"] if cv.rng.random() < 0.85 else C["dog"])
            f.people += 1


def _drone_extras(cv: _Canvas, f: SceneFacts) -> None:
    """Small, rare classes the drone set has and captioning scenes rarely show."""
    s, rng = cv.size, cv.rng
    ground = (C["grass"], C["paved-area"], C["dirt"], C["vegetation"])
    _people(cv, f, int(rng.integers(1, 6)), ground)
    if rng.random() < 0.5:
        y0, x0 = (int(v) for v in rng.integers(s // 10, s // 2, size=2))
        h, w = int(rng.integers(s // 8, s // 3)), int(rng.integers(s // 8, s // 3))
        for y in (y0, y0 + h):
            cv.rect(y, x0, y + 1, x0 + w, C["fence"])
        for x in (x0, x0 + w):
            cv.rect(y0, x, y0 + h, x + 1, C["fence"])
        for y, x in ((y0, x0), (y0, x0 + w), (y0 + h, x0), (y0 + h, x0 + w)):
            cv.rect(y - 1, x - 1, y + 2, x + 2, C["fence-pole"])
        f.extras.append("fence")
    for cls in ("ar-marker", "obstacle", "bicycle"):
        if rng.random() < 0.3:
            y, x = (int(v) for v in rng.integers(4, s - 8, size=2))
            cv.rect(y, x, y + max(2, s // 64), x + max(2, s // 64), C[cls])


def render_scene(seed: int, size: int = 224, scene: str | None = None, *, drone: bool = False) -> tuple[np.ndarray, np.ndarray, SceneFacts]:
    """Draw one scene.

    :param seed: everything follows from it
    :param scene: one of :data:`SCENES`; by default chosen from the seed
    :param drone: add the small drone-set classes (people, fences, markers, obstacles)
    :returns: ``(rgb uint8 (H, W, 3), label uint8 (H, W) drone class indices, facts)``
    """
    rng = np.random.default_rng(seed)
    scene = scene or SCENES[int(rng.integers(len(SCENES)))]
    if scene not in _DRAW:
        raise ValueError(f"scene {scene!r}: must be one of {', '.join(SCENES)}")
    cv = _Canvas(size, rng, C[_BASE[scene]])
    facts = SceneFacts(scene=scene, base=_BASE[scene])
    _DRAW[scene](cv, facts, size, drone)
    if drone:
        _drone_extras(cv, facts)
    return _texture(cv), cv.label, facts


def _texture(cv: _Canvas) -> np.ndarray:
    s, rng = cv.size, cv.rng
    rgb = _COLOUR[cv.label]
    for region, cls, colour in cv.tint:
        rgb[region][cv.label[region] == cls] = colour
    rgb += rng.normal(0, 1, size=(s, s, 1)).astype(np.float32) * _GRAIN[cv.label][..., None]
    # Low-frequency light and soil variation, as in real aerial photos: a coarse random grid,
    # interpolated bilinearly to full size.
    coarse = rng.normal(0, 9, size=(6, 6)).astype(np.float32)
    weights = np.maximum(0, 1 - np.abs(np.linspace(0, 5, s)[:, None] - np.arange(6)[None, :])).astype(np.float32)
    rgb += (weights @ coarse @ weights.T)[..., None]
    return np.clip(rgb, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# Captions: five per scene, each from a random template and synonyms, true to the facts.
# ------------------------------------------------------------------------------------------------

def _amount(n: int, rng: np.random.Generator) -> str:
    if n <= 0:
        return "no"
    if n == 1:
        return "a"
    words = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
    if n in words and rng.random() < 0.6:
        return words[n]
    return str(rng.choice(["many", "lots of"])) if n > 8 else str(rng.choice(["several", "some"]))


def _plural(n: int, word: str) -> str:
    if n == 1:
        return word
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


def caption_sentences(facts: SceneFacts, seed: int, n: int = 5) -> list[str]:
    """``n`` captions of a scene, lower case with a final ' .' as RSICD writes them."""
    rng = np.random.default_rng(seed + 7919)
    out: list[str] = []
    tries = 0
    while len(out) < n and tries < 50:
        tries += 1
        sentence = _one_caption(facts, rng)
        if sentence not in out or tries > 40:
            out.append(sentence)
    return [s + " ." for s in out]


def _pick(rng: np.random.Generator, *options: str) -> str:
    return str(options[int(rng.integers(len(options)))])


def _one_caption(f: SceneFacts, rng: np.random.Generator) -> str:
    green = _pick(rng, "green ", "", "lush ")
    trees = f"{_amount(f.trees, rng)} {green}{_plural(f.trees, 'tree')}" if f.trees else ""
    if f.scene == "residential":
        b = f"{_amount(f.buildings, rng)} {_plural(f.buildings, _pick(rng, 'building', 'house'))}"
        options = [
            f"{b} are on both sides of a {f.road} road",
            f"{b} and {trees or 'some lawns'} are in a residential area",
            f"a {f.road} road goes through a residential area with {b}",
            f"{b} with {trees or 'grass'} around are near a road",
        ]
        if f.cars:
            options.append(f"{_amount(f.cars, rng)} {_plural(f.cars, 'car')} {'is' if f.cars == 1 else 'are'} on the road between {b}")
        if f.pools:
            options.append(f"{b} and {_amount(f.pools, rng)} {_plural(f.pools, 'swimming pool')} are in a residential area")
    elif f.scene == "parking":
        options = [
            f"{_amount(f.cars, rng)} cars are parked in a parking lot",
            f"a {_pick(rng, 'large ', 'big ', '')}parking lot with {_amount(f.cars, rng)} cars",
            f"{_amount(f.cars, rng)} cars are parked in rows on a paved area",
        ]
        if f.trees:
            options.append(f"a parking lot full of cars with {trees} beside it")
    elif f.scene == "river":
        options = [
            f"a river runs {'from top to bottom' if f.river == 'vertical' else 'from left to right'} through green land",
            f"a {_pick(rng, 'winding ', 'curved ', '')}river with {trees or 'grass'} on both sides",
            f"{trees or 'green meadows'} are on the banks of a river",
        ]
        if "bridge" in f.extras:
            options.append("a road crosses a river over a bridge")
    elif f.scene == "pond":
        options = [
            f"a pond is in the {f.pond} of a {_pick(rng, 'meadow', 'green field', 'lawn')}",
            f"there is a pond in the {f.pond} surrounded by {trees or 'grass'}",
            f"a {_pick(rng, 'small ', 'quiet ', '')}pond with {trees or 'grass'} around it",
        ]
    elif f.scene == "forest":
        options = [
            f"{_pick(rng, 'a dense forest', 'many green trees', 'a large piece of forest')}{' with a path through it' if 'path' in f.extras else ''}",
            f"{_amount(f.trees, rng)} trees {_pick(rng, 'grow', 'are')} densely in a forest",
            f"the forest is {_pick(rng, 'dense', 'thick', 'lush')} and green",
        ]
    elif f.scene == "farmland":
        options = [
            f"{_amount(f.fields, rng)} pieces of farmland are {_pick(rng, 'side by side', 'next to each other')}",
            f"the farmland is divided into {_amount(f.fields, rng)} strips",
            f"{_pick(rng, 'green and brown', 'several')} fields of farmland{' with a road' if f.road else ''}",
        ]
    elif f.scene == "bareland":
        options = [
            f"a piece of {_pick(rng, 'brown ', 'yellow ', '')}bare land",
            f"bare land with {_amount(f.rocks, rng)} {_plural(f.rocks, 'rock')}" if f.rocks else "bare land with some gravel",
            f"it is a piece of {_pick(rng, 'empty', 'barren')} land with gravel",
        ]
    else:  # industrial
        b = f"{_amount(f.large_buildings, rng)} large {_plural(f.large_buildings, _pick(rng, 'building', 'factory', 'warehouse'))}"
        options = [
            f"{b} are in an industrial area",
            f"{b} and a paved area with {_amount(f.cars, rng)} {_plural(f.cars, 'car')}",
            f"an industrial area with {b}",
        ]
    return " ".join(_pick(rng, *options).split())


# ------------------------------------------------------------------------------------------------
# Writing datasets to disk in the real layouts.
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WrittenDataset:
    root: Path
    annotations: Path | None
    images: int


def _write_captioning_one(args: tuple[int, int, int, str, str]) -> dict:
    from PIL import Image

    i, seed, size, images_dir, masks_dir = args
    scene = SCENES[i % len(SCENES)]
    rgb, label, facts = render_scene(seed * 1_000_003 + i, size, scene)
    name = f"{scene}_{i // len(SCENES) + 1}"
    Image.fromarray(rgb).save(os.path.join(images_dir, name + ".jpg"), quality=90)
    Image.fromarray(label).save(os.path.join(masks_dir, name + ".png"))
    sentences = caption_sentences(facts, seed * 1_000_003 + i)
    return {
        "filename": name + ".jpg",
        "imgid": i,
        "split": split_of_index(i),
        "sentids": list(range(5 * i, 5 * i + 5)),
        "sentences": [
            {"raw": s, "tokens": s.rstrip(" .").split(), "imgid": i, "sentid": 5 * i + k}
            for k, s in enumerate(sentences)
        ],
    }


def write_captioning_dataset(
    out: Path,
    n: int,
    *,
    size: int = 224,
    seed: int = 0,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> WrittenDataset:
    """Write ``n`` scenes as a Karpathy-layout captioning dataset.

    Layout: ``out/dataset_synthetic.json``, ``out/images/<scene>_<k>.jpg`` and the exact label maps
    ``out/masks/<scene>_<k>.png`` (drone class indices). Scenes cycle through :data:`SCENES`.
    """
    if n < 1 or size < 32:
        raise ValueError("synthetic world: need at least 1 image of at least 32x32 pixels")
    images_dir, masks_dir = out / "images", out / "masks"
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(i, seed, size, str(images_dir), str(masks_dir)) for i in range(n)]
    entries = _map(_write_captioning_one, jobs, workers, progress)
    annotations = out / "dataset_synthetic.json"
    annotations.write_text(json.dumps({"dataset": "synthetic", "images": entries}), encoding="utf-8")
    return WrittenDataset(out, annotations, n)


def _write_drone_one(args: tuple[int, int, int, str, str]) -> None:
    from PIL import Image

    i, seed, size, images_dir, labels_dir = args
    rgb, label, _ = render_scene(seed * 7_000_003 + i, size, SCENES[i % len(SCENES)], drone=True)
    Image.fromarray(rgb).save(os.path.join(images_dir, f"{i:03d}.jpg"), quality=92)
    Image.fromarray(label).save(os.path.join(labels_dir, f"{i:03d}.png"))


def write_drone_dataset(
    out: Path,
    n: int,
    *,
    size: int = 256,
    seed: int = 0,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> WrittenDataset:
    """Write ``n`` scenes in the Semantic Drone Dataset layout (images, index masks, class table)."""
    if n < 1 or size < 32:
        raise ValueError("synthetic world: need at least 1 image of at least 32x32 pixels")
    images_dir, labels_dir = out / "original_images", out / "label_images_semantic"
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    _map(_write_drone_one, [(i, seed, size, str(images_dir), str(labels_dir)) for i in range(n)], workers, progress)
    with (out / "class_dict_seg.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", " r", " g", " b"])
        for name, rgb in zip(CLASS_NAMES, _LABEL_RGB, strict=True):
            writer.writerow([name, *rgb])
    return WrittenDataset(out, None, n)


def _map(fn: Callable, jobs: list, workers: int, progress: Callable[[int, int], None] | None) -> list:
    results = []
    total = len(jobs)
    iterator: Iterator[Any]
    pool: ProcessPoolExecutor | None
    if workers <= 1:
        iterator = map(fn, jobs)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        iterator = pool.map(fn, jobs, chunksize=32)
    try:
        for k, result in enumerate(iterator, 1):
            results.append(result)
            if progress is not None and (k % 64 == 0 or k == total):
                progress(k, total)
    finally:
        if pool is not None:
            pool.shutdown()
    return results
