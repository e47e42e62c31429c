"""Read models for the front ends: the Browse list, one image with everything known about it,
the review queue of a generation run, a run's loss curve.

Each query answers one screen in one round trip, so the TUI stays responsive at RSICD size
(10,921 images, 54,605 references) and never assembles results from many small queries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlite_utils

from engine.store.catalog import captions_for
from engine.store.connection import natural_key
from engine.store.models import Caption, Image
from engine.store.reference_flags import ReferenceFlag, image_flags
from engine.store.runs import Run

SORT_COLUMNS = ("filename", "split", "scene", "status", "rated", "score")
"""Browse columns a list can be sorted by."""


class BrowseRow(NamedTuple):
    id: int
    filename: str
    split: str | None
    scene: str | None
    status: str
    rated: int
    score: float | None
    predicted: str | None = None
    """The scene the newest scene classification of the dataset predicts."""


@dataclass(frozen=True)
class BrowseQuery:
    """What the Browse list shows: filters, the run whose ratings and scores fill the last two
    columns, and the order."""

    dataset_id: int
    split: str | None = None
    scene: str | None = None
    status: str | None = None
    rated: bool | None = None
    reviewer: str = ""
    generation_run_id: int | None = None
    evaluation_run_id: int | None = None
    metric: str = "CIDEr"
    classification_run_id: int | None = None
    """Whose predicted scenes the list shows beside the labels."""
    search: str = ""
    sort: str = "filename"
    descending: bool = False


def fts_query(text: str) -> str:
    """A user's search words as an FTS5 query: each word must occur (prefix match on the last
    one, so results follow typing); FTS syntax characters are quoted away."""
    words = [w.replace('"', '""') for w in text.split()]
    if not words:
        return ""
    return " ".join(f'"{w}"' for w in words[:-1]) + (" " if len(words) > 1 else "") + f'"{words[-1]}"*'


def browse_rows(db: sqlite_utils.Database, q: BrowseQuery) -> list[BrowseRow]:
    """Every image of a dataset that passes the filters, in the asked order (unscored last)."""
    if q.sort not in SORT_COLUMNS:
        raise ValueError(f"sort: {q.sort!r} is not one of {', '.join(SORT_COLUMNS)}")
    where = ["i.dataset_id = ?"]
    args: list[Any] = []
    # Rated: the reviewer's current rating (the newest row) of a caption of the image has a score.
    current = ("EXISTS (SELECT 1 FROM generations g JOIN ratings r ON r.generation_id = g.id"
               " WHERE g.image_id = i.id{run} AND r.reviewer = ? AND r.score IS NOT NULL"
               " AND r.id = (SELECT MAX(id) FROM ratings r2 WHERE r2.generation_id = g.id AND r2.reviewer = r.reviewer))")
    if q.generation_run_id is not None:
        rated = current.format(run=" AND g.run_id = ?")
        args += [q.generation_run_id, q.reviewer]
    else:
        rated = current.format(run="")
        args.append(q.reviewer)
    if q.evaluation_run_id is not None:
        score = "(SELECT value FROM scores s WHERE s.run_id = ? AND s.image_id = i.id AND s.metric = ?)"
        args += [q.evaluation_run_id, q.metric]
    else:
        score = "NULL"
    if q.classification_run_id is not None:
        predicted = "(SELECT scene FROM predictions p WHERE p.run_id = ? AND p.image_id = i.id)"
        args.append(q.classification_run_id)
    else:
        predicted = "NULL"
    args.append(q.dataset_id)
    for column, value in (("split", q.split), ("scene", q.scene), ("status", q.status)):
        if value is not None:
            where.append(f"i.{column} = ?")
            args.append(value)
    match = fts_query(q.search)
    if match:
        where.append("i.id IN (SELECT c.image_id FROM captions_fts f JOIN captions c ON c.id = f.rowid WHERE captions_fts MATCH ?)")
        args.append(match)
    sql = (f"SELECT i.id, i.filename, i.split, i.scene, i.status, {rated} AS rated, {score} AS score, {predicted} AS predicted"
           f" FROM images i WHERE {' AND '.join(where)}")
    if q.rated is not None:
        sql = f"SELECT * FROM ({sql}) WHERE rated = ?"
        args.append(int(q.rated))
    rows = [BrowseRow(*row) for row in db.conn.execute(sql, args)]
    # Sorted here, not in SQL: natural order (bareland_2 before bareland_10) with one key per row
    # is some ten times faster than a collation called per comparison. Unscored rows stay last.
    text = q.sort in ("filename", "split", "scene", "status")
    def key(r: BrowseRow) -> tuple[Any, ...]:
        value = getattr(r, q.sort)
        return (natural_key(value) if text else value, natural_key(r.filename))
    present = sorted((r for r in rows if getattr(r, q.sort) is not None), key=key, reverse=q.descending)
    return present + sorted((r for r in rows if getattr(r, q.sort) is None), key=lambda r: natural_key(r.filename), reverse=q.descending)


def newest_classification(db: sqlite_utils.Database, dataset_id: int) -> tuple[int, str] | None:
    """(id, name) of the dataset's newest complete scene classification run."""
    row = db.conn.execute("SELECT id, name FROM runs WHERE kind = 'classification' AND dataset_id = ? AND status = 'complete'"
                          " ORDER BY id DESC LIMIT 1", [dataset_id]).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def scenes_of(db: sqlite_utils.Database, dataset_id: int) -> list[str]:
    return [r[0] for r in db.conn.execute(
        "SELECT DISTINCT scene FROM images WHERE dataset_id = ? AND scene IS NOT NULL ORDER BY scene COLLATE natsort", [dataset_id])]


@dataclass(frozen=True)
class GenerationView:
    generation_id: int
    run: str
    run_kind: str
    text: str
    evaluation: str | None
    scores: dict[str, float]
    oracle: bool = False
    """The run's prompts read the dataset's true scene (an oracle no deployed model has)."""
    candidates: list[tuple[str, float]] = field(default_factory=list)
    """The candidates a minimum-Bayes-risk generation chose among, with their scores."""


@dataclass(frozen=True)
class ImageDetail:
    """One image with its references, masks, newest composition and every run's caption."""

    image: Image
    root: str
    references: list[Caption]
    masks: list[tuple[str, str]]
    """(segmentation run, mask path relative to the workspace), newest run first."""
    composition_run: str | None
    composition: dict[str, Any] | None
    prompt: str | None
    generations: list[GenerationView]
    prediction: tuple[str, str, float, list[tuple[str, float]]] | None = None
    """(classification run, predicted scene, its probability, the top three) of the newest one."""
    flags: dict[str, list[ReferenceFlag]] = field(default_factory=dict)
    """Reference text -> reviewers' current flags on it."""


def image_detail(db: sqlite_utils.Database, image_id: int) -> ImageDetail | None:
    rows = list(db.query("SELECT i.*, d.root AS _root FROM images i JOIN datasets d ON d.id = i.dataset_id WHERE i.id = ?", [image_id]))
    if not rows:
        return None
    row = rows[0]
    root = row.pop("_root")
    masks = [(name, path) for name, path in db.conn.execute(
        "SELECT r.name, m.path FROM masks m JOIN runs r ON r.id = m.run_id WHERE m.image_id = ? AND r.status = 'complete'"
        " ORDER BY r.id DESC", [image_id])]
    comp = db.conn.execute(
        "SELECT r.name, c.data, c.prompt FROM compositions c JOIN runs r ON r.id = c.run_id"
        " WHERE c.image_id = ? AND r.status = 'complete' ORDER BY r.id DESC LIMIT 1", [image_id]).fetchone()
    generations = []
    for gen_id, run_id, name, kind, text, scenes in db.conn.execute(
        "SELECT g.id, r.id, r.name, r.kind, g.text, json_extract(r.metrics, '$.scenes') FROM generations g JOIN runs r ON r.id = g.run_id"
        " WHERE g.image_id = ? AND r.status = 'complete' ORDER BY r.id", [image_id]
    ):
        ev = db.conn.execute(
            "SELECT id, name FROM runs WHERE kind = 'evaluation' AND parent_run_id = ? AND status = 'complete' ORDER BY id DESC LIMIT 1",
            [run_id]).fetchone()
        scores = dict(db.conn.execute("SELECT metric, value FROM scores WHERE run_id = ? AND image_id = ?", [ev[0], image_id])) if ev else {}
        candidates = [(t, v) for t, v in db.conn.execute("SELECT text, score FROM candidates WHERE generation_id = ? ORDER BY idx", [gen_id])]
        generations.append(GenerationView(gen_id, name, kind, text, ev[1] if ev else None, scores, scenes == "oracle", candidates))
    pred = db.conn.execute(
        "SELECT r.name, p.scene, p.probability, p.top FROM predictions p JOIN runs r ON r.id = p.run_id"
        " WHERE p.image_id = ? AND r.status = 'complete' ORDER BY r.id DESC LIMIT 1", [image_id]).fetchone()
    return ImageDetail(
        image=Image(**row), root=root, references=captions_for(db, [image_id])[image_id], masks=masks,
        composition_run=comp[0] if comp else None, composition=json.loads(comp[1]) if comp else None,
        prompt=comp[2] if comp else None, generations=generations,
        prediction=(pred[0], pred[1], pred[2], [tuple(t) for t in json.loads(pred[3])]) if pred else None,  # type: ignore[misc]
        flags=image_flags(db, image_id),
    )


class ReviewItem(NamedTuple):
    generation_id: int
    image_id: int
    text: str
    filename: str
    scene: str | None
    rating_id: int | None
    score: int | None
    flags: list[str]
    note: str


def review_queue(db: sqlite_utils.Database, run_id: int, reviewer: str) -> list[ReviewItem]:
    """A generation run's captions, the ones this reviewer has not scored first, each with the
    reviewer's current rating (flags or a note alone do not count as rated)."""
    rows = db.conn.execute(
        "SELECT g.id, g.image_id, g.text, i.filename, i.scene, r.id, r.score, r.flags, r.note"
        " FROM generations g JOIN images i ON i.id = g.image_id"
        " LEFT JOIN ratings r ON r.id = (SELECT MAX(id) FROM ratings r2 WHERE r2.generation_id = g.id AND r2.reviewer = ?)"
        " WHERE g.run_id = ? ORDER BY (r.score IS NOT NULL), i.filename COLLATE natsort, g.image_id",
        [reviewer, run_id],
    )
    return [ReviewItem(g, im, text, fn, scene, rid, score, json.loads(flags) if flags else [], note or "")
            for g, im, text, fn, scene, rid, score, flags, note in rows]


def pair_candidates(db: sqlite_utils.Database, runs: list[Run]) -> tuple[Run, Run] | None:
    """The pair Compare opens on: (A, B) with B the newest model generation (else the newest run)
    and A the newest other run that captioned some of the same images."""
    if len(runs) < 2:
        return None
    b = next((r for r in reversed(runs) if r.kind == "generation"), runs[-1])
    for a in reversed(runs):
        if a.id != b.id and db.conn.execute(
                "SELECT 1 FROM generations ga JOIN generations gb ON gb.image_id = ga.image_id AND gb.run_id = ?"
                " WHERE ga.run_id = ? LIMIT 1", [b.id, a.id]).fetchone():
            return a, b
    return None


def image_scenes(db: sqlite_utils.Database, run_id: int) -> dict[int, str | None]:
    """Image id -> scene label, for the images a run captioned."""
    return {i: scene for i, scene in db.conn.execute(
        "SELECT i.id, i.scene FROM generations g JOIN images i ON i.id = g.image_id WHERE g.run_id = ?", [run_id])}


def rated_by_others(db: sqlite_utils.Database, run_id: int, reviewer: str) -> set[int]:
    """Generations of a run whose current rating by some other reviewer has a score."""
    return {g for (g,) in db.conn.execute(
        "SELECT DISTINCT r.generation_id FROM ratings r JOIN generations g ON g.id = r.generation_id"
        " WHERE g.run_id = ? AND r.reviewer != ? AND r.score IS NOT NULL"
        " AND r.id = (SELECT MAX(id) FROM ratings r2 WHERE r2.generation_id = r.generation_id AND r2.reviewer = r.reviewer)",
        [run_id, reviewer])}


def run_curve(db: sqlite_utils.Database, run_id: int) -> list[dict[str, float]]:
    """The metrics a run's jobs reported while it trained: every attempt, the failed and
    interrupted ones too (a job names its run as soon as it starts working on it)."""
    return [json.loads(m) for (m,) in db.conn.execute(
        "SELECT e.metrics FROM job_events e JOIN jobs j ON j.id = e.job_id WHERE j.run_id = ? AND e.metrics != '{}'"
        " ORDER BY e.id", [run_id])]


def job_curve(db: sqlite_utils.Database, job_id: int) -> list[dict[str, float]]:
    return [json.loads(m) for (m,) in db.conn.execute(
        "SELECT metrics FROM job_events WHERE job_id = ? AND metrics != '{}' ORDER BY id", [job_id])]

