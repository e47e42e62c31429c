"""Apply ``migrations/NNNN_verb_noun.sql`` in order through sqlite-utils' ``Migrations``.

Each file runs inside one transaction together with its record in ``_sqlite_migrations``, so a
failing migration leaves the database as it was and stays pending. The files ship inside the
installed package (``engine/migrations``); in a source checkout they are read from the
repository's top-level ``migrations/``.

Table rebuilds (the only way SQLite changes a CHECK constraint or a foreign key) follow SQLite's
documented procedure (https://www.sqlite.org/lang_altertable.html#otheralter): foreign keys are
switched off *outside* the transaction (``PRAGMA foreign_keys`` is a no-op inside one, so a line
in the .sql file could not do it), the migrations run, ``PRAGMA foreign_key_check`` must come back
empty before the commit, and foreign keys are switched on again. Without that, dropping the old
``runs`` table of a rebuild cascades to every generation and rating.

A database that holds ratings, comparisons or reference flags (what nobody can recompute) is copied to
``workbench.db.backup-<UTC time>`` before any migration touches it.
"""

from __future__ import annotations

import re
import sqlite3
import warnings
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from engine.errors import WorkbenchError

MIGRATION_SET = "workbench"
_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")


class MigrationError(WorkbenchError):
    "A migration would leave the database inconsistent; nothing was changed."


class MigrationBackup(UserWarning):
    "The database was copied before migrations were applied to it."


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


def _database_file(db: sqlite_utils.Database) -> Path | None:
    """The main database's file, or None for an in-memory database."""
    for _, name, file in db.conn.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return Path(file) if file else None
    return None


PEOPLES_TABLES = ("ratings", "comparisons", "reference_flags")
"""What reviewers made: rows nobody can recompute."""


def _judgment_rows(db: sqlite_utils.Database) -> int:
    """Rows of reviewers' judgments (ratings, comparisons, reference flags) the database holds."""
    present = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return sum(int(db.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in PEOPLES_TABLES if t in present)


def backup_database(db: sqlite_utils.Database, reason: str) -> Path | None:
    """Copy the database (a consistent snapshot, through SQLite's backup API) beside itself.

    :returns: the copy's path, or None for an in-memory database
    """
    source = _database_file(db)
    if source is None:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    target = source.with_name(f"{source.name}.backup-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = source.with_name(f"{source.name}.backup-{stamp}-{n}")
    copy = sqlite3.connect(target)
    try:
        db.conn.backup(copy)
    finally:
        copy.close()
    warnings.warn(f"{source}: {reason}; copied it to {target} first", MigrationBackup, stacklevel=3)
    return target


def apply_migrations(db: sqlite_utils.Database, *, stop_before: str | None = None, folder: Path | None = None) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when up to date).

    :raises MigrationError: if the migrated database would break a foreign key (nothing changes)
    """
    migrations = _build(folder)
    pending = [m.name for m in migrations.pending(db)]
    if stop_before in pending:
        pending = pending[: pending.index(stop_before)]
    if not pending:
        return []
    rated = _judgment_rows(db)
    if rated:
        backup_database(db, f"holds {rated} rating{'s' if rated != 1 else ''} or other judgments of reviewers and migrations "
                            f"{', '.join(pending)} are about to be applied")
    db.conn.execute("PRAGMA foreign_keys = OFF")  # outside the transaction, where it takes effect
    try:
        # Several processes may open a fresh workspace at once (a job runner and the TUI): the
        # write lock taken up front makes the second wait and then find nothing pending, instead
        # of both creating the same tables. Each file still commits or rolls back with its record.
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            before = {m.name for m in migrations.applied(db)}
            migrations.apply(db, stop_before=stop_before)
            applied = [m.name for m in migrations.applied(db) if m.name not in before]
            broken = db.conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                table, rowid, parent, _ = broken[0]
                raise MigrationError(
                    f"migrations {', '.join(applied)} would leave {len(broken)} rows pointing at missing rows "
                    f"(first: {table} row {rowid} -> {parent}); nothing was changed"
                )
        except BaseException:
            db.conn.execute("ROLLBACK")
            raise
        db.conn.execute("COMMIT")
    finally:
        db.conn.execute("PRAGMA foreign_keys = ON")
    return applied


def pending_migrations(db: sqlite_utils.Database, folder: Path | None = None) -> list[str]:
    """Names of migrations not yet applied (read-only)."""
    return [m.name for m in _build(folder).pending(db)]
