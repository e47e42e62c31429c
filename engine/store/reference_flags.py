"""Reviewers' flags on reference captions: misspelt, duplicated, not this image.

A flag names its reference by the dataset's name, the image's filename and the reference's text,
not by row ids: `ingest captions --replace` makes new image and caption rows, and a flag still
applies to the references of the same dataset name whose filename and text match. A dataset kept
as ``NAME~ID`` after a replace shares the flags of ``NAME``. Rows are only ever added: the newest
row of a reviewer on a reference is that reviewer's current flag, and a row whose flag is NULL
clears it, so the history stays whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlite_utils

from engine.store.catalog import now

REASONS = ("misspelt", "duplicated", "not this image")
"""Why a reference is flagged (NULL in the table clears a flag)."""

_CHUNK = 500
"""Filenames per IN (...) list, under SQLite's parameter limit."""


@dataclass(frozen=True)
class ReferenceFlag:
    id: int
    dataset: str
    filename: str
    text: str
    reviewer: str
    flag: str | None
    """One of REASONS; None: the reviewer cleared their flag."""
    note: str
    created_at: str


@dataclass(frozen=True)
class FlagCounts:
    """A dataset's references that carry a current flag (for `workbench stats`)."""

    references: int = 0
    """Reference rows flagged by at least one reviewer (a repeated text counts once per copy)."""
    by_reason: dict[str, int] = field(default_factory=dict)
    """Reference rows per reason, in the order of REASONS (one row may count under two)."""
    unmatched: int = 0
    """Flagged (filename, text) pairs that no reference of the dataset reads now (its text changed
    in a re-ingest, or the image left it)."""


def flag_key(dataset_name: str) -> str:
    """The name a dataset's flags are kept under: ``NAME~ID`` (kept after a replace) shares NAME's.
    Dataset names cannot hold ``~``, so the first one starts the suffix."""
    return dataset_name.split("~", 1)[0]


def _has_reference(db: sqlite_utils.Database, key: str, filename: str, text: str) -> bool:
    return db.conn.execute(
        "SELECT 1 FROM captions c JOIN images i ON i.id = c.image_id JOIN datasets d ON d.id = i.dataset_id"
        " WHERE (d.name = ? OR substr(d.name, 1, ?) = ?) AND i.filename = ? AND c.text = ? LIMIT 1",
        [key, len(key) + 1, key + "~", filename, text]).fetchone() is not None


def flag_reference(
    db: sqlite_utils.Database,
    dataset_name: str,
    filename: str,
    text: str,
    reviewer: str,
    flag: str | None,
    note: str = "",
) -> ReferenceFlag:
    """Record a reviewer's flag on a reference (committed at once; earlier rows stay as history).
    ``flag`` None clears the reviewer's flag.

    :raises ValueError: for an unknown reason, an empty reviewer, or a reference the dataset
        does not have
    """
    if flag is not None and flag not in REASONS:
        raise ValueError(f"reason {flag!r}: must be one of {', '.join(REASONS)} (or none, to clear a flag)")
    if not reviewer:
        raise ValueError("reviewer: must not be empty")
    key = flag_key(dataset_name)
    with db.atomic():
        if not _has_reference(db, key, filename, text):
            raise ValueError(f"dataset {dataset_name!r} has no image {filename!r} with the reference {text!r}")
        cur = db.conn.execute(
            "INSERT INTO reference_flags (dataset, filename, text, reviewer, flag, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [key, filename, text, reviewer, flag, note.strip(), now()])
    return ReferenceFlag(**next(db.query("SELECT * FROM reference_flags WHERE id = ?", [cur.lastrowid])))


_CURRENT = (
    "SELECT f.* FROM reference_flags f WHERE f.dataset = ?{where} AND f.id = (SELECT MAX(f2.id) FROM reference_flags f2"
    " WHERE f2.dataset = f.dataset AND f2.filename = f.filename AND f2.text = f.text AND f2.reviewer = f.reviewer)"
    " AND f.flag IS NOT NULL ORDER BY f.filename, f.text, f.id"
)


def current_flags(db: sqlite_utils.Database, dataset_name: str, filenames: Iterable[str] | None = None) -> list[ReferenceFlag]:
    """Every reviewer's current flag on the dataset's references (cleared ones left out), of the
    given images only when ``filenames`` is given; by filename, text, then oldest first."""
    key = flag_key(dataset_name)
    if filenames is None:
        return [ReferenceFlag(**r) for r in db.query(_CURRENT.format(where=""), [key])]
    names = sorted(set(filenames))
    out: list[ReferenceFlag] = []
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        sql = _CURRENT.format(where=f" AND f.filename IN ({','.join('?' * len(chunk))})")
        out += [ReferenceFlag(**r) for r in db.query(sql, [key, *chunk])]
    return out


def flags_by_reference(db: sqlite_utils.Database, dataset_name: str,
                       filenames: Iterable[str] | None = None) -> dict[tuple[str, str], list[ReferenceFlag]]:
    """:func:`current_flags` grouped by (filename, text)."""
    out: dict[tuple[str, str], list[ReferenceFlag]] = {}
    for f in current_flags(db, dataset_name, filenames):
        out.setdefault((f.filename, f.text), []).append(f)
    return out


def image_flags(db: sqlite_utils.Database, image_id: int) -> dict[str, list[ReferenceFlag]]:
    """Reference text -> the current flags on it, for one image (the Image and Review screens)."""
    row = db.conn.execute("SELECT d.name, i.filename FROM images i JOIN datasets d ON d.id = i.dataset_id WHERE i.id = ?",
                          [image_id]).fetchone()
    if row is None:
        return {}
    return {text: flags for (_, text), flags in flags_by_reference(db, row[0], [row[1]]).items()}


def _dataset_name(db: sqlite_utils.Database, dataset: int | str) -> str | None:
    if isinstance(dataset, str):
        return dataset
    row = db.conn.execute("SELECT name FROM datasets WHERE id = ?", [dataset]).fetchone()
    return str(row[0]) if row else None


def flagged_references(db: sqlite_utils.Database, dataset: int | str) -> dict[tuple[str, str], set[str]]:
    """(filename, text) -> the reasons given, for each reference that at least one reviewer flags
    now (a dataset by its id or name)."""
    name = _dataset_name(db, dataset)
    out: dict[tuple[str, str], set[str]] = {}
    for f in current_flags(db, name) if name is not None else []:
        out.setdefault((f.filename, f.text), set()).add(f.flag or "")
    return out


def flag_counts(db: sqlite_utils.Database, dataset_id: int) -> FlagCounts:
    """How many of the dataset's reference rows carry a current flag, in all and per reason."""
    flagged = flagged_references(db, dataset_id)
    if not flagged:
        return FlagCounts()
    names = sorted({filename for filename, _ in flagged})
    matched: set[tuple[str, str]] = set()
    rows = 0
    by_reason = dict.fromkeys(REASONS, 0)
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        for filename, text in db.conn.execute(
            f"SELECT i.filename, c.text FROM captions c JOIN images i ON i.id = c.image_id"
            f" WHERE i.dataset_id = ? AND i.filename IN ({','.join('?' * len(chunk))})", [dataset_id, *chunk]
        ):
            reasons = flagged.get((filename, text))
            if reasons:
                matched.add((filename, text))
                rows += 1
                for reason in reasons:
                    by_reason[reason] += 1
    return FlagCounts(rows, {r: n for r, n in by_reason.items() if n}, len(set(flagged) - matched))

