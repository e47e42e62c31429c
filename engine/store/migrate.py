"""Apply ``migrations/NNNN_verb_noun.sql`` in order through sqlite-utils' ``Migrations``.

Each file runs inside one transaction together with its record in ``_sqlite_migrations``, so a
failing migration leaves the database as it was and stays pending. The files ship inside the
installed package (``engine/migrations``); in a source checkout they are read from the
repository's top-level ``migrations/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

MIGRATION_SET = "workbench"
_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")


def migrations_dir() -> Path:
    """The folder holding the schema files (installed package first, then the source tree)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "migrations", here.parent / "migrations"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the workbench's migrations folder is missing from this installation")


def migration_files(folder: Path | None = None) -> list[Path]:
    """The schema files in the order they apply."""
    folder = folder or migrations_dir()
    files = sorted(p for p in folder.iterdir() if p.suffix == ".sql")
    bad = [p.name for p in files if not _NAME.match(p.name)]
    if bad:
        raise ValueError(f"migration file names must look like 0001_verb_noun.sql: {', '.join(bad)}")
    return files


def _build(folder: Path | None = None) -> Migrations:
    migrations = Migrations(MIGRATION_SET)
    for file in migration_files(folder):
        sql = file.read_text(encoding="utf-8")

        def apply(db: sqlite_utils.Database, sql: str = sql) -> None:
            db.executescript(sql)

        migrations(name=file.stem)(apply)
    return migrations


def apply_migrations(db: sqlite_utils.Database, *, stop_before: str | None = None, folder: Path | None = None) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when up to date)."""
    migrations = _build(folder)
    if not migrations.pending(db):
        return []
    # Several processes may open a fresh workspace at once (a job runner and the TUI): the write
    # lock taken up front makes the second wait and then find nothing pending, instead of both
    # creating the same tables. Each file still commits or rolls back with its record (savepoint).
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        before = {m.name for m in migrations.applied(db)}
        migrations.apply(db, stop_before=stop_before)
        applied = [m.name for m in migrations.applied(db) if m.name not in before]
    except BaseException:
        db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")
    return applied


def pending_migrations(db: sqlite_utils.Database, folder: Path | None = None) -> list[str]:
    """Names of migrations not yet applied (read-only)."""
    return [m.name for m in _build(folder).pending(db)]
