from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from engine.store import apply_migrations, connect, migration_files, pending_migrations
from engine.store.connection import JournalModeWarning

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "schema.sql"


def test_migrations_apply_and_reapplying_is_a_no_op() -> None:
    db = connect(":memory:", migrate=False)
    applied = apply_migrations(db)
    assert applied == [f.stem for f in migration_files()]
    schema = db.schema
    assert apply_migrations(db) == []
    assert db.schema == schema
    assert pending_migrations(db) == []


def test_schema_matches_golden_file() -> None:
    """Regenerate on purpose with UPDATE_GOLDEN=1 when a new migration changes the schema."""
    db = connect(":memory:")
    schema = db.schema.strip() + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(schema, encoding="utf-8")
    assert schema == GOLDEN.read_text(encoding="utf-8")


def test_stop_before_leaves_later_migrations_pending(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_create_a.sql").write_text("CREATE TABLE a (x INTEGER);")
    (folder / "0002_create_b.sql").write_text("CREATE TABLE b (y INTEGER);")
    db = connect(":memory:", migrate=False)
    assert apply_migrations(db, folder=folder, stop_before="0002_create_b") == ["0001_create_a"]
    assert pending_migrations(db, folder=folder) == ["0002_create_b"]
    assert apply_migrations(db, folder=folder) == ["0002_create_b"]


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_create_a.sql").write_text("CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1); CREATE TABLE a (y);")
    db = connect(":memory:", migrate=False)
    with pytest.raises(sqlite3.OperationalError):
        apply_migrations(db, folder=folder)
    assert not db["a"].exists()
    assert pending_migrations(db, folder=folder) == ["0001_create_a"]


def test_badly_named_migration_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "create_a.sql").write_text("CREATE TABLE a (x);")
    with pytest.raises(ValueError, match="0001_verb_noun"):
        migration_files(tmp_path)


def test_file_database_uses_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    db = connect(tmp_path / "w.db")
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_falls_back_to_delete_mode_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.store import connection

    # A file system without shared memory answers the WAL request with another mode.
    monkeypatch.setattr(connection, "_request_wal", lambda conn: "memory")
    with pytest.warns(JournalModeWarning, match="WAL journal mode is not supported"):
        db = connect(tmp_path / "nfs.db")
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    from engine.store import StoreError

    bad = tmp_path / "workbench.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        connect(bad)


def test_caption_search_uses_fts(fresh_db) -> None:  # type: ignore[no-untyped-def]
    from engine.store.catalog import insert_dataset, search_captions
    from engine.store.models import NewCaption, NewImage

    ds = insert_dataset(
        fresh_db, name="d", kind="captioning", source_format="karpathy", root="/x", annotations=None, meta={},
        images=[
            NewImage("a.jpg", "a.jpg", "ok", captions=[NewCaption("a pond near trees", "a pond near trees")]),
            NewImage("b.jpg", "b.jpg", "ok", captions=[NewCaption("many buildings", "many buildings")]),
        ],
    )
    hits = search_captions(fresh_db, ds.id, "pond")
    assert [h.text for h in hits] == ["a pond near trees"]
    fresh_db.execute("DELETE FROM datasets")
    assert search_captions(fresh_db, ds.id, "pond") == []
