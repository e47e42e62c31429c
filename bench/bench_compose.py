"""Composition throughput: masks per second on one core, 224x224, 10 class groups.

Two mask sets: the synthetic world's drone-style scenes mapped to the 10 groups (about four to
five groups present per mask, as in real imagery), and the same scenes with every group present
(small patches of each missing group added), the stricter case the target applies to. OpenCV is
held to one thread and the time is this process's CPU time, so the figure is per core and other
load on the machine does not count against it.
"""

from __future__ import annotations

import time

import numpy as np

from bench.common import Row

TARGET = 1_000


def _masks(n: int, all_groups: bool) -> list[np.ndarray]:
    from engine.config import DEFAULT_CONFIG, parse_config
    from engine.datasets.synthetic import CLASS_NAMES, render_scene

    cfg = parse_config(DEFAULT_CONFIG)
    lut = np.array(cfg.class_to_group(list(CLASS_NAMES)), np.uint8)
    masks = []
    rng = np.random.default_rng(0)
    for i in range(n):
        mask = lut[render_scene(i, 224, drone=True)[1]]
        if all_groups:
            for g in range(1, len(cfg.groups)):
                if not (mask == g).any():
                    y, x = rng.integers(0, 214, 2)
                    mask[y : y + 10, x : x + 10] = g
        masks.append(mask)
    return masks


def run(quick: bool = False) -> list[Row]:
    import cv2

    from engine.composition import compose
    from engine.config import DEFAULT_CONFIG, parse_config

    cv2.setNumThreads(1)
    names = parse_config(DEFAULT_CONFIG).group_names
    n = 100 if quick else 400
    rows = []
    for label, all_groups in (("synthetic scenes", False), ("all 10 groups present", True)):
        masks = _masks(n, all_groups)
        present = np.mean([len(np.unique(m)) for m in masks])
        for m in masks[:20]:
            compose(m, names, ignore=[0])  # warm-up
        best = float("inf")
        for _ in range(5):
            start = time.process_time()
            for m in masks:
                compose(m, names, ignore=[0])
            best = min(best, time.process_time() - start)
        rate = n / best
        strict = all_groups
        rows.append(Row(
            f"compose 224x224, {label} ({present:.1f} groups/mask)", f"{rate:,.0f} masks/s", "1 core", None,
            f">= {TARGET:,}" if strict else "-", rate >= TARGET if strict else None,
        ))
    return rows
