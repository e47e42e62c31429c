"""Generated captions, per-image scores and ratings.

A generation run holds one caption per image; an evaluation run holds per-image scores under
the toolkit's metric names and points at the generation run it scored. Ratings keep their
history: the current rating of a (generation, reviewer) is the latest row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from engine.store.catalog import now
from engine.store.comparisons import comparison_history, held_comparisons

FLAGS = ("hallucinated object", "wrong count", "wrong position", "wrong scene", "grammar")
"""The review flags a rating may carry."""


@dataclass(frozen=True)
class Generation:
    id: int
    run_id: int
    image_id: int
    text: str
    created_at: str


def add_generations(db: sqlite_utils.Database, run_id: int, rows: Iterable[tuple[int, str]]) -> int:
    """Insert (or replace) ``(image_id, text)`` captions of a run in one transaction."""
    stamp = now()
    with db.atomic():
        cur = db.conn.executemany(
            "INSERT INTO generations (run_id, image_id, text, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (run_id, image_id) DO UPDATE SET text = excluded.text, created_at = excluded.created_at",
            [(run_id, image_id, text, stamp) for image_id, text in rows],
        )
    return int(cur.rowcount)


def generation_images(db: sqlite_utils.Database, run_id: int) -> dict[int, int]:
    """Generation id -> image id, for a run."""
    return {gid: iid for gid, iid in db.conn.execute("SELECT id, image_id FROM generations WHERE run_id = ?", [run_id])}


def generations_of(db: sqlite_utils.Database, run_id: int) -> list[Generation]:
    return [Generation(**r) for r in db.query("SELECT * FROM generations WHERE run_id = ? ORDER BY image_id", [run_id])]


def add_scores(db: sqlite_utils.Database, run_id: int, rows: Iterable[tuple[int, str, float]]) -> None:
    """Insert ``(image_id, metric, value)`` per-image scores of an evaluation run."""
    with db.atomic():
        db.conn.executemany(
            "INSERT OR REPLACE INTO scores (run_id, image_id, metric, value) VALUES (?, ?, ?, ?)",
            [(run_id, i, m, v) for i, m, v in rows],
        )


def scores_of(db: sqlite_utils.Database, run_id: int) -> dict[int, dict[str, float]]:
    """image id -> metric -> value."""
    out: dict[int, dict[str, float]] = {}
    for image_id, metric, value in db.conn.execute("SELECT image_id, metric, value FROM scores WHERE run_id = ?", [run_id]):
        out.setdefault(image_id, {})[metric] = value
    return out


def latest_evaluation(db: sqlite_utils.Database, generation_run_id: int) -> int | None:
    """The newest complete evaluation run of a generation run over all its images (else the newest
    over a subset), if any."""
    row = db.conn.execute(
        "SELECT id FROM runs WHERE kind = 'evaluation' AND parent_run_id = ? AND status = 'complete'"
        " ORDER BY json_extract(params, '$.subset') IS NOT NULL, id DESC LIMIT 1",  # a full evaluation before a subset's
        [generation_run_id],
    ).fetchone()
    return int(row[0]) if row else None


@dataclass(frozen=True)
class Rating:
    id: int
    generation_id: int
    reviewer: str
    score: int | None
    flags: list[str]
    note: str
    created_at: str
    undoes: int | None = None
    """Set on a row that withdraws the rating row ``undoes`` (it restores what was current before)."""

    @property
    def empty(self) -> bool:
        """No score, flag or note: a withdrawn first rating."""
        return self.score is None and not self.flags and not self.note


def _rating(row: dict[str, Any]) -> Rating:
    return Rating(**{**row, "flags": json.loads(row["flags"])})


@dataclass(frozen=True)
class CaptionRef:
    """A generated caption as a reviewer names it: its id, run and image."""

    generation_id: int
    run: str
    filename: str
    text: str


def find_caption(db: sqlite_utils.Database, generation_id: int | None = None, *, run_id: int | None = None,
                 image: str | None = None) -> CaptionRef | None:
    """A caption by its id, or by its run and image (filename, the source's image id, or a
    filename without its extension when only one file of the run has that stem)."""
    sql = ("SELECT g.id, r.name, i.filename, g.text FROM generations g JOIN runs r ON r.id = g.run_id"
           " JOIN images i ON i.id = g.image_id WHERE ")
    if generation_id is not None:
        row = db.conn.execute(sql + "g.id = ?", [generation_id]).fetchone()
    else:
        row = db.conn.execute(sql + "g.run_id = ? AND (i.filename = ? OR i.source_id = ?) ORDER BY i.filename = ? DESC LIMIT 1",
                              [run_id, image, image, image]).fetchone()
        if row is None and image:
            stems = db.conn.execute(sql + "g.run_id = ? AND substr(i.filename, 1, ?) = ? AND instr(substr(i.filename, ?), '.') = 0 LIMIT 2",
                                    [run_id, len(image) + 1, image + ".", len(image) + 2]).fetchall()
            row = stems[0] if len(stems) == 1 else None
    return CaptionRef(*row) if row else None


def add_rating(
    db: sqlite_utils.Database,
    generation_id: int,
    reviewer: str,
    score: int | None,
    flags: Sequence[str] = (),
    note: str = "",
) -> Rating:
    """Record a rating (committed at once; earlier ratings stay as history).

    :raises ValueError: for a score outside 1..5, an unknown flag, or an unknown generation
    """
    if score is not None and not 1 <= score <= 5:
        raise ValueError(f"score {score}: must be 1 to 5")
    unknown = [f for f in flags if f not in FLAGS]
    if unknown:
        raise ValueError(f"unknown flag {unknown[0]!r}; valid: {', '.join(FLAGS)}")
    if not reviewer:
        raise ValueError("reviewer: must not be empty")
    with db.atomic():
        if db.conn.execute("SELECT 1 FROM generations WHERE id = ?", [generation_id]).fetchone() is None:
            raise ValueError(f"no generated caption with id {generation_id}")
        cur = db.conn.execute(
            "INSERT INTO ratings (generation_id, reviewer, score, flags, note, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [generation_id, reviewer, score, json.dumps(sorted(set(flags))), note, now()],
        )
    row = next(db.query("SELECT * FROM ratings WHERE id = ?", [cur.lastrowid]))
    return _rating(row)


def withdraw_rating(db: sqlite_utils.Database, rating_id: int, reviewer: str) -> Rating | None:
    """Undo one of a reviewer's rating rows: a new row restores what was current before it (or
    nothing), and records which row it withdraws. No row is deleted: history stays whole.

    :returns: the new current rating, or None if ``rating_id`` is not this reviewer's
    """
    with db.atomic():
        row = db.conn.execute("SELECT generation_id FROM ratings WHERE id = ? AND reviewer = ?", [rating_id, reviewer]).fetchone()
        if row is None:
            return None
        before = db.conn.execute(
            "SELECT score, flags, note FROM ratings WHERE generation_id = ? AND reviewer = ? AND id < ? ORDER BY id DESC LIMIT 1",
            [row[0], reviewer, rating_id]).fetchone()
        score, flags, note = before if before else (None, "[]", "")
        cur = db.conn.execute(
            "INSERT INTO ratings (generation_id, reviewer, score, flags, note, created_at, undoes) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [row[0], reviewer, score, flags, note, now(), rating_id])
    return _rating(next(db.query("SELECT * FROM ratings WHERE id = ?", [cur.lastrowid])))


def current_ratings(db: sqlite_utils.Database, run_id: int) -> list[Rating]:
    """The latest rating of every (generation, reviewer) of a generation run (a rating withdrawn to
    nothing is left out)."""
    rows = db.query(
        "SELECT r.* FROM ratings r JOIN generations g ON g.id = r.generation_id"
        " WHERE g.run_id = ? AND r.id = (SELECT MAX(id) FROM ratings r2"
        "   WHERE r2.generation_id = r.generation_id AND r2.reviewer = r.reviewer)"
        " ORDER BY r.generation_id, r.reviewer",
        [run_id],
    )
    return [rating for rating in map(_rating, rows) if not rating.empty]


def export_rows(db: sqlite_utils.Database, run_id: int, split: str | None = None) -> list[dict[str, Any]]:
    """One row per generated caption: its id, the image (the store's id, the source's id as
    text, filename, split, scene), references, caption, per-image scores of the newest
    evaluation, and every reviewer's current rating."""
    evaluation = latest_evaluation(db, run_id)
    scores = scores_of(db, evaluation) if evaluation is not None else {}
    ratings: dict[int, list[dict[str, Any]]] = {}
    for r in current_ratings(db, run_id):
        ratings.setdefault(r.generation_id, []).append({"reviewer": r.reviewer, "score": r.score, "flags": r.flags, "note": r.note})
    where = "g.run_id = ?"
    args: list[Any] = [run_id]
    if split is not None:
        where += " AND i.split = ?"
        args.append(split)
    out = []
    gens = list(db.query(
        f"SELECT g.id, g.image_id, g.text, i.filename, i.split, i.scene, i.source_id FROM generations g"
        f" JOIN images i ON i.id = g.image_id WHERE {where} ORDER BY i.filename COLLATE natsort, g.image_id",
        args,
    ))
    refs: dict[int, list[str]] = {}
    ids = [g["image_id"] for g in gens]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for image_id, text in db.conn.execute(
            f"SELECT image_id, text FROM captions WHERE image_id IN ({','.join('?' * len(chunk))}) ORDER BY image_id, idx", chunk
        ):
            refs.setdefault(image_id, []).append(text)
    for g in gens:
        out.append({
            "generation_id": g["id"], "store_image_id": g["image_id"], "source_id": g["source_id"], "filename": g["filename"], "split": g["split"],
            "scene": g["scene"], "references": refs.get(g["image_id"], []), "caption": g["text"],
            "scores": scores.get(g["image_id"], {}), "ratings": ratings.get(g["id"], []),
        })
    return out


def rating_history(db: sqlite_utils.Database, run_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Every rating row (history included) of the runs' captions, with the caption and its image,
    for a file written before those ratings are deleted."""
    if not run_ids:
        return []
    marks = ",".join("?" * len(run_ids))
    return [{**r, "flags": json.loads(r["flags"])} for r in db.query(
        "SELECT r.id, r.generation_id, ru.name AS run, i.filename, i.source_id, g.text AS caption, r.reviewer, r.score,"
        " r.flags, r.note, r.created_at, r.undoes FROM ratings r JOIN generations g ON g.id = r.generation_id"
        f" JOIN runs ru ON ru.id = g.run_id JOIN images i ON i.id = g.image_id WHERE g.run_id IN ({marks}) ORDER BY r.id",
        list(run_ids))]


@dataclass(frozen=True)
class RunContents:
    """What deleting a run removes from the store."""

    captions: int
    scores: int
    masks: int
    compositions: int
    ratings: int
    comparisons: int = 0


def run_contents(db: sqlite_utils.Database, run_id: int) -> RunContents:
    def count(sql: str) -> int:
        return int(db.conn.execute(sql, [run_id]).fetchone()[0])

    return RunContents(
        captions=count("SELECT COUNT(*) FROM generations WHERE run_id = ?"),
        scores=count("SELECT COUNT(*) FROM scores WHERE run_id = ?"),
        masks=count("SELECT COUNT(*) FROM masks WHERE run_id = ?"),
        compositions=count("SELECT COUNT(*) FROM compositions WHERE run_id = ?"),
        ratings=count("SELECT COUNT(*) FROM ratings r JOIN generations g ON g.id = r.generation_id WHERE g.run_id = ?"),
        comparisons=held_comparisons(db, [run_id]),
    )


def delete_runs_and_ratings(db: sqlite_utils.Database, run_ids: Sequence[int], save: Callable[[list[dict[str, Any]], list[dict[str, Any]]], None]) -> None:
    """Delete runs and, first, the ratings and comparisons of their captions, in one write
    transaction. Only for a user's explicit `workbench runs delete --yes`: ``save`` gets every
    rating and comparison row that goes (history included) and must have written them to a file
    when it returns; only those rows are deleted, so a row another reviewer adds meanwhile makes
    the delete fail (RESTRICT) instead of vanishing unsaved."""
    marks = ",".join("?" * len(run_ids))
    with db.atomic():
        ratings, comparisons = rating_history(db, run_ids), comparison_history(db, run_ids)
        save(ratings, comparisons)
        for table, rows in (("comparisons", comparisons), ("ratings", ratings)):
            for start in range(0, len(rows), 500):
                chunk = [r["id"] for r in rows[start : start + 500]]
                db.execute(f"DELETE FROM {table} WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        db.execute(f"DELETE FROM runs WHERE id IN ({marks})", list(run_ids))
