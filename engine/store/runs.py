"""Runs and what they produced: masks, compositions.

A run is created ``running`` and becomes ``complete`` only when its job has written everything;
readers of results use complete runs (or say that a run is still running), so a failed job never
leaves rows that look finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from engine.store.catalog import now

RUN_KINDS = ("segmenter", "segmentation", "composition", "captioner", "generation", "evaluation", "baseline")


@dataclass(frozen=True)
class Run:
    id: int
    kind: str
    name: str
    parent_run_id: int | None
    dataset_id: int | None
    params: dict[str, Any]
    metrics: dict[str, Any]
    artifact_dir: str | None
    status: str
    created_at: str
    finished_at: str | None


def _run(row: dict[str, Any]) -> Run:
    return Run(**{**row, "params": json.loads(row["params"]), "metrics": json.loads(row["metrics"])})


def get_run(db: sqlite_utils.Database, name: str) -> Run | None:
    rows = list(db.query("SELECT * FROM runs WHERE name = ?", [name]))
    return _run(rows[0]) if rows else None


def get_run_by_id(db: sqlite_utils.Database, run_id: int) -> Run | None:
    rows = list(db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
    return _run(rows[0]) if rows else None


def list_runs(db: sqlite_utils.Database, kind: str | None = None) -> list[Run]:
    if kind is None:
        return [_run(r) for r in db.query("SELECT * FROM runs ORDER BY id")]
    return [_run(r) for r in db.query("SELECT * FROM runs WHERE kind = ? ORDER BY id", [kind])]


def create_run(
    db: sqlite_utils.Database,
    *,
    kind: str,
    name: str,
    params: dict[str, Any],
    parent_run_id: int | None = None,
    dataset_id: int | None = None,
    artifact_dir: str | None = None,
) -> Run:
    """Insert a ``running`` run.

    :raises ValueError: for an unknown kind or a name in use
    """
    if kind not in RUN_KINDS:
        raise ValueError(f"run kind {kind!r}: must be one of {', '.join(RUN_KINDS)}")
    with db.atomic():
        if db.execute("SELECT 1 FROM runs WHERE name = ?", [name]).fetchone():
            raise ValueError(f"run name {name!r} is in use")
        cur = db.execute(
            "INSERT INTO runs (kind, name, parent_run_id, dataset_id, params, artifact_dir, status, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
            [kind, name, parent_run_id, dataset_id, json.dumps(params), artifact_dir, now()],
        )
    run = get_run_by_id(db, int(cur.lastrowid or 0))
    assert run is not None
    return run


def delete_run(db: sqlite_utils.Database, run_id: int) -> None:
    """Remove a run and everything it produced (masks, compositions, captions, scores: cascades)."""
    with db.atomic():
        db.execute("DELETE FROM runs WHERE id = ?", [run_id])


def set_run_status(db: sqlite_utils.Database, run_id: int, status: str, metrics: dict[str, Any] | None = None) -> None:
    """Mark a run ``running``, ``complete`` or ``failed`` (and replace its metrics when given)."""
    with db.atomic():
        if metrics is not None:
            db.execute("UPDATE runs SET metrics = ? WHERE id = ?", [json.dumps(metrics), run_id])
        db.execute(
            "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
            [status, None if status == "running" else now(), run_id],
        )


@dataclass(frozen=True)
class MaskRow:
    image_id: int
    path: str
    class_hist: list[int]


def add_masks(db: sqlite_utils.Database, run_id: int, rows: Iterable[MaskRow]) -> None:
    """Insert (or replace) masks of a run in one transaction."""
    with db.atomic():
        db.conn.executemany(
            "INSERT OR REPLACE INTO masks (run_id, image_id, path, class_hist) VALUES (?, ?, ?, ?)",
            [(run_id, r.image_id, r.path, json.dumps(r.class_hist)) for r in rows],
        )


def masked_image_ids(db: sqlite_utils.Database, run_id: int) -> set[int]:
    return {r[0] for r in db.conn.execute("SELECT image_id FROM masks WHERE run_id = ?", [run_id])}


def masks_of(db: sqlite_utils.Database, run_id: int) -> list[MaskRow]:
    return [
        MaskRow(r["image_id"], r["path"], json.loads(r["class_hist"]))
        for r in db.query("SELECT image_id, path, class_hist FROM masks WHERE run_id = ? ORDER BY image_id", [run_id])
    ]


@dataclass(frozen=True)
class CompositionRow:
    image_id: int
    data: dict[str, Any]
    prompt: str


def add_compositions(db: sqlite_utils.Database, run_id: int, rows: Sequence[CompositionRow]) -> None:
    with db.atomic():
        db.conn.executemany(
            "INSERT OR REPLACE INTO compositions (run_id, image_id, data, prompt) VALUES (?, ?, ?, ?)",
            [(run_id, r.image_id, json.dumps(r.data, separators=(",", ":")), r.prompt) for r in rows],
        )


def compositions_of(db: sqlite_utils.Database, run_id: int, image_ids: Sequence[int] | None = None) -> list[CompositionRow]:
    """Compositions of a run, by image id (all, or the given images)."""
    rows = db.query("SELECT image_id, data, prompt FROM compositions WHERE run_id = ? ORDER BY image_id", [run_id])
    out = [CompositionRow(r["image_id"], json.loads(r["data"]), r["prompt"]) for r in rows]
    if image_ids is not None:
        wanted = set(image_ids)
        out = [r for r in out if r.image_id in wanted]
    return out
