"""One place that opens the workbench database with the settings every process needs.

WAL lets the TUI read while a job writes; ``busy_timeout`` makes concurrent writers wait instead
of failing; foreign keys keep cascades honest. Network file systems often cannot do WAL (it needs
shared memory), so we fall back to DELETE journal mode there and say so once.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from engine.errors import WorkbenchError

BUSY_TIMEOUT_MS = 30_000
"""How long a writer waits for another writer's lock before giving up (WORKBENCH_BUSY_TIMEOUT_MS
changes it, for tests)."""


_DIGITS = re.compile(r"\d+")


def _number(m: re.Match[str]) -> str:
    digits = m.group().lstrip("0") or "0"
    return chr(0x30 + len(digits)) + digits  # a longer number sorts after a shorter one


@functools.lru_cache(maxsize=1 << 16)
def natural_key(text: str) -> str:
    """Sort key that reads digit runs as numbers (``bareland_2`` before ``bareland_10``) and
    letters case-insensitively: each number becomes its length, then its digits."""
    return _DIGITS.sub(_number, text.casefold())


def _natural(a: str, b: str) -> int:
    ka, kb = natural_key(a), natural_key(b)
    return (ka > kb) - (ka < kb) or (a > b) - (a < b)


def busy_timeout_ms() -> int:
    return int(os.environ.get("WORKBENCH_BUSY_TIMEOUT_MS", BUSY_TIMEOUT_MS))


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


LOCKED_RETRY_S = float(os.environ.get("WORKBENCH_LOCKED_RETRY_S", "900"))
"""How long the queue's own writes (claims, progress, heartbeats, endings) keep retrying a
database another writer holds locked past busy_timeout."""


def is_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked" / "database table is locked" / busy."""
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


F = TypeVar("F", bound=Callable[..., Any])


def retry_locked(fn: F) -> F:
    """Retry a one-transaction store operation while the database is locked, with backoff.

    An ingest or a long write can hold the lock past ``busy_timeout``; the runner and a job's
    progress, heartbeat and ending must outlast that rather than exit (and take running jobs down)
    or lose a result. Each retried call is one transaction, rolled back when it failed, so a retry
    never applies anything twice.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        delay, deadline = 0.05, time.monotonic() + LOCKED_RETRY_S
        while True:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if not is_locked(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    return wrapper  # type: ignore[return-value]


class StoreError(WorkbenchError):
    "The database cannot be opened or is not a workbench database."


class JournalModeWarning(UserWarning):
    "WAL is unavailable on this file system; DELETE journal mode is used instead."


class ReadOnlyWarning(UserWarning):
    "The workspace database is read-only for this user: reading works, writing does not."


def is_read_only(path: str | Path) -> bool:
    """The database file (or its folder, where SQLite writes its journal) cannot be written by
    this process."""
    p = Path(path)
    return p.exists() and not (os.access(p, os.W_OK) and os.access(p.parent, os.W_OK))


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection; ``immutable`` where the WAL index cannot be created beside it
    (nobody can be writing a file no one may write)."""
    from urllib.parse import quote

    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    for extra in ("", "&immutable=1"):
        conn = sqlite3.connect(uri + extra, uri=True, timeout=busy_timeout_ms() / 1000, check_same_thread=False)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if extra:
                raise
    raise AssertionError("unreachable")


def connect(path: str | Path, *, migrate: bool = True, journal: str = "wal") -> sqlite_utils.Database:
    """Open (creating if needed) the database at ``path`` with the workbench's settings.

    A database this user may not write is opened read-only (with a :class:`ReadOnlyWarning`):
    reads work (stats, runs, Browse, export elsewhere), writes fail with "attempt to write a
    readonly database", which the CLI and TUI report as one line.

    :param path: the database file, or ``":memory:"``
    :param migrate: apply pending migrations
    :param journal: ``wal`` (readers never wait; every writer on one host) or ``delete`` (writers
        on several hosts of a shared file system, e.g. Slurm nodes; see config.toml ``[store]``)
    :raises StoreError: if the file is not an SQLite database, or is read-only and needs migrating
    """
    memory = str(path) == ":memory:"
    read_only = not memory and is_read_only(path)
    try:
        if read_only:
            conn = _open_read_only(Path(path))
        else:
            conn = sqlite3.connect(str(path), timeout=busy_timeout_ms() / 1000, check_same_thread=False)
        conn.create_collation("natsort", _natural)  # ORDER BY filename COLLATE natsort
        db = Database(conn)
        db.execute(f"PRAGMA busy_timeout = {busy_timeout_ms()}")
        db.execute("PRAGMA foreign_keys = ON")
        if read_only:
            from engine.store.migrate import pending_migrations

            pending = pending_migrations(db)
            if pending:
                raise StoreError(f"{path}: read-only for you, and it needs migrating ({len(pending)} migrations, first {pending[0]}) "
                                 "by a newer workbench; ask its owner to run any workbench command on it, or copy the workspace")
            warnings.warn(f"{path}: read-only for you; reading only (stats, runs, Browse, export elsewhere work), writes are off",
                          ReadOnlyWarning, stacklevel=1)
            return db
        db.execute("PRAGMA synchronous = NORMAL")
        if not memory:
            _set_journal_mode(db, Path(path), journal)
        if migrate:
            from engine.store.migrate import apply_migrations

            apply_migrations(db)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a usable SQLite database ({exc}); move it away or choose another workspace") from exc
    return db


def is_read_only_error(exc: BaseException) -> bool:
    """SQLite refusing a write to a database opened read-only (or on a read-only file system)."""
    return isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc)


def journal_mode(db: sqlite_utils.Database) -> str:
    return str(db.conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()


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


def _set_journal_mode(db: sqlite_utils.Database, path: Path, journal: str) -> None:
    if journal == "delete":
        current = str(db.conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if current != "delete" and str(db.conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]).lower() != "delete":
            raise StoreError(f"{path}: cannot leave {current} journal mode while other workbench processes have it open "
                             "(the TUI, a runner); close them once, then retry")
        return
    if _request_wal(db.conn) != "wal":
        db.conn.execute("PRAGMA journal_mode = DELETE")
        warnings.warn(
            f"{path}: WAL journal mode is not supported here (network file system?); using DELETE mode, "
            "so readers may wait while a job writes",
            JournalModeWarning,
            stacklevel=3,
        )
