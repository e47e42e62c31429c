"""One place that opens the workbench database with the settings every process needs.

WAL lets the TUI read while a job writes; ``busy_timeout`` makes concurrent writers wait instead
of failing; foreign keys keep cascades honest. Network file systems often cannot do WAL (it needs
shared memory), so we fall back to DELETE journal mode there and say so once.
"""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from engine.errors import WorkbenchError

BUSY_TIMEOUT_MS = 30_000
"""How long a writer waits for another writer's lock before giving up."""


class Database(sqlite_utils.Database):
    """sqlite_utils' Database whose ``atomic()`` takes the write lock when it begins.

    sqlite_utils begins with a plain (deferred) ``BEGIN``. A transaction that reads and then
    writes (``create_run`` checks the name, then inserts) holds a read snapshot; if another
    process commits in between, SQLite cannot upgrade that snapshot and fails at once with
    "database is locked", without waiting for ``busy_timeout``. That failed a demo's evaluate
    job while the runner wrote heartbeats. ``BEGIN IMMEDIATE`` waits for the lock instead.
    """

    @contextmanager
    def atomic(self) -> Iterator[Database]:
        if self.conn.in_transaction:  # nested: sqlite_utils' savepoint
            with super().atomic():
                yield self
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                self.rollback()
                raise


class StoreError(WorkbenchError):
    "The database cannot be opened or is not a workbench database."


class JournalModeWarning(UserWarning):
    "WAL is unavailable on this file system; DELETE journal mode is used instead."


def connect(path: str | Path, *, migrate: bool = True) -> sqlite_utils.Database:
    """Open (creating if needed) the database at ``path`` with the workbench's settings.

    :param path: the database file, or ``":memory:"``
    :param migrate: apply pending migrations
    :raises StoreError: if the file is not an SQLite database
    """
    memory = str(path) == ":memory:"
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        db = Database(conn)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA synchronous = NORMAL")
        if not memory:
            _set_journal_mode(db, Path(path))
        if migrate:
            from engine.store.migrate import apply_migrations

            apply_migrations(db)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a usable SQLite database ({exc}); move it away or choose another workspace") from exc
    return db


def open_store(path: str | Path) -> sqlite_utils.Database:
    """Open an existing workspace database; unlike :func:`connect` it never creates one.

    :raises StoreError: if the file does not exist
    """
    if not Path(path).is_file():
        raise StoreError(f"{path}: no workbench database here; run `workbench init` first")
    return connect(path)


def _request_wal(conn: sqlite3.Connection) -> str:
    """Ask for WAL; SQLite answers with the journal mode it actually uses."""
    return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()


def _set_journal_mode(db: sqlite_utils.Database, path: Path) -> None:
    if _request_wal(db.conn) != "wal":
        db.conn.execute("PRAGMA journal_mode = DELETE")
        warnings.warn(
            f"{path}: WAL journal mode is not supported here (network file system?); using DELETE mode, "
            "so readers may wait while a job writes",
            JournalModeWarning,
            stacklevel=3,
        )
