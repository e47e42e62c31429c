"""Flags on reference captions: newest row per reviewer counts, NULL clears, keyed by dataset
name + filename + text so they outlive the rows they were made on."""

from __future__ import annotations

import pytest
import sqlite_utils

from engine.store.catalog import dataset_stats, get_dataset, insert_dataset
from engine.store.models import Dataset, NewCaption, NewImage
from engine.store.reference_flags import (
    current_flags, flag_counts, flag_reference, flagged_references, flags_by_reference, image_flags,
)


def _refs(*texts: str) -> list[NewCaption]:
    return [NewCaption(t, t) for t in texts]


def _dataset(db: sqlite_utils.Database, name: str = "d", replace: bool = False) -> Dataset:
    return insert_dataset(
        db, name=name, kind="captioning", source_format="karpathy", root="/x", annotations=None, meta={}, replace=replace,
        images=[
            NewImage("a.jpg", "a.jpg", "ok", captions=_refs("a pond near trees", "a pnod near trees", "many cars", "many cars")),
            NewImage("b.jpg", "b.jpg", "ok", captions=_refs("many buildings", "a river")),
        ],
    )


def test_the_newest_row_of_each_reviewer_counts_and_none_clears(fresh_db: sqlite_utils.Database) -> None:
    ds = _dataset(fresh_db)
    flag_reference(fresh_db, "d", "a.jpg", "a pnod near trees", "alice", "duplicated")
    row = flag_reference(fresh_db, "d", "a.jpg", "a pnod near trees", "alice", "misspelt", "  pnod  ")
    assert (row.flag, row.note, row.dataset) == ("misspelt", "pnod", "d")
    flag_reference(fresh_db, "d", "a.jpg", "a pnod near trees", "bob", "misspelt")
    flag_reference(fresh_db, "d", "b.jpg", "a river", "bob", "not this image")
    flag_reference(fresh_db, "d", "b.jpg", "a river", "bob", None)  # cleared
    assert [(f.filename, f.reviewer, f.flag) for f in current_flags(fresh_db, "d")] == [
        ("a.jpg", "alice", "misspelt"), ("a.jpg", "bob", "misspelt")]
    assert current_flags(fresh_db, "d", ["b.jpg"]) == []
    assert set(flags_by_reference(fresh_db, "d")) == {("a.jpg", "a pnod near trees")}
    assert flagged_references(fresh_db, ds.id) == flagged_references(fresh_db, "d") == {("a.jpg", "a pnod near trees"): {"misspelt"}}
    image = fresh_db.execute("SELECT id FROM images WHERE filename = 'a.jpg'").fetchone()[0]
    assert [f.reviewer for f in image_flags(fresh_db, image)["a pnod near trees"]] == ["alice", "bob"]
    assert fresh_db.execute("SELECT COUNT(*) FROM reference_flags").fetchone()[0] == 5  # history: nothing replaced
    stats = dataset_stats(fresh_db, ds)
    assert (stats.flagged_references, stats.flags_by_reason, stats.unmatched_flags) == (1, {"misspelt": 1}, 0)


def test_bad_input_is_one_clear_error_and_writes_nothing(fresh_db: sqlite_utils.Database) -> None:
    _dataset(fresh_db)
    with pytest.raises(ValueError, match="reason 'typo': must be one of misspelt, duplicated, not this image"):
        flag_reference(fresh_db, "d", "a.jpg", "many cars", "alice", "typo")
    with pytest.raises(ValueError, match="dataset 'd' has no image 'a.jpg' with the reference 'a river'"):
        flag_reference(fresh_db, "d", "a.jpg", "a river", "alice", "misspelt")
    with pytest.raises(ValueError, match="reviewer: must not be empty"):
        flag_reference(fresh_db, "d", "a.jpg", "many cars", "", "misspelt")
    assert fresh_db.execute("SELECT COUNT(*) FROM reference_flags").fetchone()[0] == 0


def test_flags_follow_the_dataset_name_and_count_each_copy(fresh_db: sqlite_utils.Database) -> None:
    _dataset(fresh_db)
    flag_reference(fresh_db, "d", "a.jpg", "many cars", "alice", "duplicated")
    flag_reference(fresh_db, "d", "a.jpg", "many cars", "bob", "misspelt")
    flag_reference(fresh_db, "d", "b.jpg", "a river", "alice", "not this image")
    new = _dataset(fresh_db, replace=True)  # new rows, same name: the flags apply
    assert flag_counts(fresh_db, new.id).references == 3  # both copies of "many cars", and "a river"
    assert flag_counts(fresh_db, new.id).by_reason == {"misspelt": 2, "duplicated": 2, "not this image": 1}
    # A dataset kept as NAME~ID after a replace shares NAME's flags; a changed text no longer matches.
    fresh_db.execute("UPDATE datasets SET name = 'd~1', superseded_at = 'then' WHERE id = ?", [new.id])
    fresh_db.execute("UPDATE captions SET text = 'a river bend' WHERE text = 'a river'")
    newest = insert_dataset(fresh_db, name="d", kind="captioning", source_format="karpathy", root="/x", annotations=None, meta={},
                            images=[NewImage("a.jpg", "a.jpg", "ok", captions=_refs("many cars"))])
    kept = get_dataset(fresh_db, "d~1")
    assert kept is not None and flag_counts(fresh_db, kept.id).references == 2 and flag_counts(fresh_db, kept.id).unmatched == 1
    flag_reference(fresh_db, "d~1", "a.jpg", "a pond near trees", "carol", "misspelt")  # stored under the name d
    assert ("a.jpg", "a pond near trees") in flagged_references(fresh_db, "d")
    assert flag_counts(fresh_db, newest.id).references == 1
