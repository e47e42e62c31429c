"""Pairwise blind comparisons: one reviewer's verdict on two runs' captions of the same image.

Each row names the generation shown on the left and the one on the right (the order drawn per
reviewer and image, so position bias can be checked afterwards) and the choice: left better,
right better, tie, both bad. Rows are never updated or deleted by anything but an explicit
`workbench runs delete --yes` (which writes them to a file first); the newest row of a reviewer
on an image of a pair of runs is their current verdict, an undo is a new row restoring the one
before, and a row whose choice is NULL withdraws a verdict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlite_utils

from engine.store.catalog import now

CHOICES = ("left", "right", "tie", "both_bad")


class PairItem(NamedTuple):
    """An image both runs captioned, with each run's caption (A is the run named first)."""

    image_id: int
    filename: str
    scene: str | None
    generation_a: int
    text_a: str
    generation_b: int
    text_b: str

    @property
    def identical(self) -> bool:
        return " ".join(self.text_a.lower().split()) == " ".join(self.text_b.lower().split())


@dataclass(frozen=True)
class Verdict:
    """A reviewer's current verdict on one image of a pair of runs, seen from the pair."""

    id: int
    image_id: int
    reviewer: str
    choice: str
    """left, right, tie or both_bad: as the reviewer saw it."""
    left_is_a: bool
    scene: str | None = None

    @property
    def winner(self) -> str:
        """a, b, tie or both_bad."""
        if self.choice in ("tie", "both_bad"):
            return self.choice
        return "a" if (self.choice == "left") == self.left_is_a else "b"


def left_is_a(reviewer: str, image_id: int, run_a: int, run_b: int) -> bool:
    """Whether run A's caption goes on the left for this reviewer and image: a coin drawn from
    (reviewer, image, the unordered pair of runs), the same every time they meet the item, and
    independent of which run the reviewer named first."""
    lo, hi = sorted((run_a, run_b))
    digest = hashlib.sha256(f"{reviewer}\0{image_id}\0{lo}\0{hi}".encode()).digest()
    first_is_left = bool(digest[0] & 1)
    return first_is_left == (run_a == lo)


def pair_items(db: sqlite_utils.Database, run_a: int, run_b: int) -> list[PairItem]:
    """Every image both runs captioned, in natural filename order."""
    rows = db.conn.execute(
        "SELECT i.id, i.filename, i.scene, ga.id, ga.text, gb.id, gb.text FROM generations ga"
        " JOIN generations gb ON gb.image_id = ga.image_id AND gb.run_id = ?"
        " JOIN images i ON i.id = ga.image_id WHERE ga.run_id = ? ORDER BY i.filename COLLATE natsort, i.id",
        [run_b, run_a])
    return [PairItem(*r) for r in rows]


def add_comparison(db: sqlite_utils.Database, left_generation: int, right_generation: int, reviewer: str,
                   choice: str | None) -> int:
    """Record a verdict at once (choice None withdraws one); earlier rows stay as history.

    :returns: the new row's id
    :raises ValueError: for an unknown choice, an empty reviewer, or captions of different images
    """
    if choice is not None and choice not in CHOICES:
        raise ValueError(f"choice {choice!r}: must be one of {', '.join(CHOICES)}")
    if not reviewer:
        raise ValueError("reviewer: must not be empty")
    with db.atomic():
        images = db.conn.execute("SELECT id, image_id, run_id FROM generations WHERE id IN (?, ?)",
                                 [left_generation, right_generation]).fetchall()
        if len(images) != 2 or images[0][1] != images[1][1] or images[0][2] == images[1][2]:
            raise ValueError(f"generations {left_generation} and {right_generation}: not two runs' captions of one image")
        cur = db.conn.execute(
            "INSERT INTO comparisons (left_generation_id, right_generation_id, reviewer, choice, created_at) VALUES (?, ?, ?, ?, ?)",
            [left_generation, right_generation, reviewer, choice, now()])
    return int(cur.lastrowid or 0)


def withdraw_comparison(db: sqlite_utils.Database, comparison_id: int, reviewer: str) -> tuple[int, str | None] | None:
    """Undo one of a reviewer's rows: a new row restores the verdict before it on the same item
    (or none) and records which row it undoes.

    :returns: (the new row's id, the choice now current or None for no verdict), or None when
        the row is not theirs
    """
    with db.atomic():
        row = db.conn.execute("SELECT left_generation_id, right_generation_id FROM comparisons WHERE id = ? AND reviewer = ?",
                              [comparison_id, reviewer]).fetchone()
        if row is None:
            return None
        before = db.conn.execute(  # the row before, as it was shown: its choice means left or right of its own order
            "SELECT left_generation_id, right_generation_id, choice FROM comparisons WHERE reviewer = ? AND id < ?"
            " AND ((left_generation_id = ? AND right_generation_id = ?) OR (left_generation_id = ? AND right_generation_id = ?))"
            " ORDER BY id DESC LIMIT 1", [reviewer, comparison_id, row[0], row[1], row[1], row[0]]).fetchone()
        left, right, choice = before if before else (row[0], row[1], None)
        cur = db.conn.execute(
            "INSERT INTO comparisons (left_generation_id, right_generation_id, reviewer, choice, created_at, undoes)"
            " VALUES (?, ?, ?, ?, ?, ?)", [left, right, reviewer, choice, now(), comparison_id])
    return int(cur.lastrowid or 0), (str(choice) if choice else None)


def current_verdicts(db: sqlite_utils.Database, run_a: int, run_b: int) -> list[Verdict]:
    """Every reviewer's current verdict on each image of the pair (withdrawn ones left out)."""
    rows = db.conn.execute(
        "SELECT c.id, gl.image_id, c.reviewer, c.choice, gl.run_id, i.scene FROM comparisons c"
        " JOIN generations gl ON gl.id = c.left_generation_id JOIN generations gr ON gr.id = c.right_generation_id"
        " JOIN images i ON i.id = gl.image_id"
        " WHERE ((gl.run_id = ? AND gr.run_id = ?) OR (gl.run_id = ? AND gr.run_id = ?))"
        " ORDER BY c.id", [run_a, run_b, run_b, run_a])
    newest: dict[tuple[int, str], Verdict | None] = {}
    for cid, image_id, reviewer, choice, left_run, scene in rows:
        newest[(image_id, reviewer)] = Verdict(cid, image_id, reviewer, choice, left_run == run_a, scene) if choice else None
    return [v for v in newest.values() if v is not None]


def compared_pairs(db: sqlite_utils.Database, run_id: int) -> list[tuple[int, int]]:
    """The pairs of runs (this one first) that someone compared this run with."""
    rows = db.conn.execute(
        "SELECT DISTINCT gl.run_id, gr.run_id FROM comparisons c JOIN generations gl ON gl.id = c.left_generation_id"
        " JOIN generations gr ON gr.id = c.right_generation_id WHERE gl.run_id = ? OR gr.run_id = ?", [run_id, run_id])
    others = sorted({b if a == run_id else a for a, b in rows})
    return [(run_id, other) for other in others]


def held_comparisons(db: sqlite_utils.Database, run_ids: Sequence[int]) -> int:
    """Comparison rows (history included) that show a caption of these runs."""
    if not run_ids:
        return 0
    marks = ",".join("?" * len(run_ids))
    return int(db.conn.execute(
        f"SELECT COUNT(*) FROM comparisons c WHERE c.left_generation_id IN (SELECT id FROM generations WHERE run_id IN ({marks}))"
        f" OR c.right_generation_id IN (SELECT id FROM generations WHERE run_id IN ({marks}))", [*run_ids, *run_ids]).fetchone()[0])


def comparison_history(db: sqlite_utils.Database, run_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Every comparison row that shows a caption of these runs, with both captions, their runs
    and the image, for a file written before the rows are deleted."""
    if not run_ids:
        return []
    marks = ",".join("?" * len(run_ids))
    return list(db.query(
        "SELECT c.id, i.filename, i.source_id, rl.name AS left_run, gl.text AS left_caption, rr.name AS right_run,"
        " gr.text AS right_caption, c.reviewer, c.choice, c.created_at, c.undoes FROM comparisons c"
        " JOIN generations gl ON gl.id = c.left_generation_id JOIN generations gr ON gr.id = c.right_generation_id"
        " JOIN runs rl ON rl.id = gl.run_id JOIN runs rr ON rr.id = gr.run_id JOIN images i ON i.id = gl.image_id"
        f" WHERE gl.run_id IN ({marks}) OR gr.run_id IN ({marks}) ORDER BY c.id", [*run_ids, *run_ids]))

