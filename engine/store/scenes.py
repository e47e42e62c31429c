"""Scene predictions of classification runs, and the candidates of minimum-Bayes-risk captions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlite_utils


@dataclass(frozen=True)
class Prediction:
    image_id: int
    scene: str
    probability: float
    top: list[tuple[str, float]]


def add_predictions(db: sqlite_utils.Database, run_id: int, rows: Iterable[Prediction]) -> None:
    with db.atomic():
        db.conn.executemany(
            "INSERT OR REPLACE INTO predictions (run_id, image_id, scene, probability, top) VALUES (?, ?, ?, ?, ?)",
            [(run_id, p.image_id, p.scene, p.probability, json.dumps(p.top)) for p in rows])


def predictions_of(db: sqlite_utils.Database, run_id: int) -> dict[int, Prediction]:
    """image id -> prediction."""
    return {r[0]: Prediction(r[0], r[1], r[2], [tuple(t) for t in json.loads(r[3])])  # type: ignore[misc]
            for r in db.conn.execute("SELECT image_id, scene, probability, top FROM predictions WHERE run_id = ?", [run_id])}


def add_candidates(db: sqlite_utils.Database, run_id: int, rows: Iterable[tuple[int, Sequence[tuple[str, float]]]]) -> None:
    """``(image_id, [(text, score), ...])`` for the run's captions (written after its generations)."""
    with db.atomic():
        ids = {iid: gid for gid, iid in db.conn.execute("SELECT id, image_id FROM generations WHERE run_id = ?", [run_id])}
        db.conn.executemany("INSERT OR REPLACE INTO candidates (generation_id, idx, text, score) VALUES (?, ?, ?, ?)",
                            [(ids[image_id], k, text, score) for image_id, cands in rows for k, (text, score) in enumerate(cands)])


def candidates_of(db: sqlite_utils.Database, generation_id: int) -> list[tuple[str, float]]:
    return [(t, s) for t, s in db.conn.execute("SELECT text, score FROM candidates WHERE generation_id = ? ORDER BY idx", [generation_id])]
