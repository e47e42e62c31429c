from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

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


def _filled(path: Path, upto: str) -> sqlite3.Connection:
    """A database migrated up to (not including) ``upto``, holding a dataset, runs, captions,
    scores and a history of ratings with flags and notes."""
    db = connect(path, migrate=False)
    apply_migrations(db, stop_before=upto)
    c = db.conn
    c.execute("INSERT INTO datasets (name, kind, source_format, root, created_at) VALUES ('d', 'captioning', 'karpathy', '/x', 't')")
    for i in range(1, 4):
        c.execute("INSERT INTO images (dataset_id, filename, path, status) VALUES (1, ?, ?, 'ok')", [f"{i}.jpg", f"{i}.jpg"])
    family = any(col[1] == "family" for col in c.execute("PRAGMA table_info(runs)"))  # from 0004 on
    for name, kind, parent in (("gen", "generation", None), ("eval.gen", "evaluation", 1)):
        columns = "kind, name, parent_run_id, created_at, status" + (", family" if family else "")
        c.execute(f"INSERT INTO runs ({columns}) VALUES (?, ?, ?, 't', 'complete'{', ?' if family else ''})",
                  [kind, name, parent, *([name] if family else [])])
    for i in range(1, 4):
        c.execute("INSERT INTO generations (run_id, image_id, text, created_at) VALUES (1, ?, ?, 't')", [i, f"caption {i}"])
        c.execute("INSERT INTO scores (run_id, image_id, metric, value) VALUES (2, ?, 'CIDEr', ?)", [i, i / 10])
    ratings = [(1, "ann", 4, '["grammar"]', "fine"), (1, "ann", 2, '["wrong count", "grammar"]', "two, not three"),
               (2, "bob", 5, "[]", ""), (3, "bob", None, '["hallucinated object"]', "no boat here")]
    c.executemany("INSERT INTO ratings (generation_id, reviewer, score, flags, note, created_at) VALUES (?, ?, ?, ?, ?, 't')", ratings)
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "comparisons" in tables:  # from 0007 on; the next migrations must keep them too
        c.execute("INSERT INTO runs (kind, name, family, created_at, status) VALUES ('baseline', 'knn', 'knn', 't', 'complete')")
        c.execute("INSERT INTO generations (run_id, image_id, text, created_at) VALUES (3, 1, 'other caption', 't')")
        c.executemany("INSERT INTO comparisons (left_generation_id, right_generation_id, reviewer, choice, created_at, undoes)"
                      " VALUES (?, ?, ?, ?, 't', ?)", [(1, 4, "ann", "left", None), (4, 1, "bob", "both_bad", None),
                                                       (4, 1, "bob", None, 2)])
        c.executemany("INSERT INTO reference_flags (dataset, filename, text, reviewer, flag, note, created_at) VALUES (?, ?, ?, ?, ?, ?, 't')",
                      [("d", "1.jpg", "a pond", "ann", "misspelt", "pnod"), ("d", "1.jpg", "a pond", "ann", None, "")])
    c.commit()
    return c


def _peoples_rows(conn: sqlite3.Connection) -> dict[str, list[Any]]:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    queries = {"comparisons": "SELECT * FROM comparisons ORDER BY id", "reference_flags": "SELECT * FROM reference_flags ORDER BY id"}
    return {t: conn.execute(q).fetchall() for t, q in queries.items() if t in tables}


RATING_COLUMNS = "id, generation_id, reviewer, score, flags, note, created_at"


@pytest.mark.parametrize("upto", [f.stem for f in migration_files()[1:]])
def test_every_migration_keeps_ratings_flags_and_notes(tmp_path: Path, upto: str) -> None:
    """Each migration, applied to a database full of ratings, keeps every rating, flag, note, caption
    and score as it was (a table rebuild through a runner that leaves foreign keys on deletes them)."""
    conn = _filled(tmp_path / "w.db", upto)
    before = {t: conn.execute(q).fetchall() for t, q in {
        "ratings": f"SELECT {RATING_COLUMNS} FROM ratings ORDER BY id",
        "generations": "SELECT id, run_id, image_id, text FROM generations ORDER BY id",
        "scores": "SELECT run_id, image_id, metric, value FROM scores ORDER BY run_id, image_id",
        "runs": "SELECT id, kind, name, parent_run_id FROM runs ORDER BY id",
    }.items()}
    people = _peoples_rows(conn)
    db = sqlite_utils.Database(conn)
    with pytest.warns(UserWarning, match=f"holds {4 + sum(map(len, people.values()))} ratings or other judgments"):
        applied = apply_migrations(db)
    assert applied and applied[0] == upto
    after = {t: conn.execute(q).fetchall() for t, q in {
        "ratings": f"SELECT {RATING_COLUMNS} FROM ratings ORDER BY id",
        "generations": "SELECT id, run_id, image_id, text FROM generations ORDER BY id",
        "scores": "SELECT run_id, image_id, metric, value FROM scores ORDER BY run_id, image_id",
        "runs": "SELECT id, kind, name, parent_run_id FROM runs ORDER BY id",
    }.items()}
    assert after == before
    assert {t: rows for t, rows in _peoples_rows(conn).items() if t in people} == people
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    backups = list(tmp_path.glob("w.db.backup-*"))
    assert len(backups) == 1
    copy = sqlite3.connect(backups[0])
    assert copy.execute(f"SELECT {RATING_COLUMNS} FROM ratings ORDER BY id").fetchall() == before["ratings"]


def test_no_delete_of_a_run_or_dataset_reaches_ratings(fresh_db) -> None:  # type: ignore[no-untyped-def]
    c = fresh_db.conn
    c.execute("INSERT INTO datasets (name, kind, source_format, root, created_at) VALUES ('d', 'captioning', 'karpathy', '/x', 't')")
    c.execute("INSERT INTO images (dataset_id, filename, path, status) VALUES (1, 'a.jpg', 'a.jpg', 'ok')")
    c.execute("INSERT INTO runs (kind, name, family, created_at) VALUES ('generation', 'g', 'g', 't')")
    c.execute("INSERT INTO generations (run_id, image_id, text, created_at) VALUES (1, 1, 'x', 't')")
    c.execute("INSERT INTO ratings (generation_id, reviewer, score, created_at) VALUES (1, 'me', 3, 't')")
    for statement in ("DELETE FROM runs", "DELETE FROM datasets", "DELETE FROM images", "DELETE FROM generations"):
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            c.execute(statement)
    assert c.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 1


def test_a_migration_that_breaks_a_foreign_key_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_create_a.sql").write_text("CREATE TABLE a (id INTEGER PRIMARY KEY); CREATE TABLE b (a_id INTEGER REFERENCES a(id));"
                                              " INSERT INTO a VALUES (1); INSERT INTO b VALUES (1);")
    (folder / "0002_drop_a.sql").write_text("DROP TABLE a; CREATE TABLE a (id INTEGER PRIMARY KEY);")
    db = connect(":memory:", migrate=False)
    apply_migrations(db, folder=folder, stop_before="0002_drop_a")
    from engine.store.migrate import MigrationError

    with pytest.raises(MigrationError, match="1 rows pointing at missing rows .first: b row 1 -> a"):
        apply_migrations(db, folder=folder)
    assert db.conn.execute("SELECT COUNT(*) FROM a").fetchone()[0] == 1
    assert pending_migrations(db, folder=folder) == ["0002_drop_a"]
