"""Queries over datasets, images and reference captions.

Inserts of a whole dataset happen in one ``BEGIN IMMEDIATE`` transaction: an interrupted ingest
leaves nothing behind, and a dataset is never visible half-written.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from engine.errors import WorkbenchError
from engine.store.models import Caption, Dataset, DatasetStats, Image, NewCaption, NewImage


def now() -> str:
    """The store's timestamp format: ISO-8601 UTC with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _dataset(row: dict[str, Any]) -> Dataset:
    return Dataset(**{**row, "meta": json.loads(row["meta"] or "{}")})


def get_dataset(db: sqlite_utils.Database, name: str) -> Dataset | None:
    rows = list(db.query("SELECT * FROM datasets WHERE name = ?", [name]))
    return _dataset(rows[0]) if rows else None


def get_dataset_by_id(db: sqlite_utils.Database, dataset_id: int) -> Dataset | None:
    rows = list(db.query("SELECT * FROM datasets WHERE id = ?", [dataset_id]))
    return _dataset(rows[0]) if rows else None


def list_datasets(db: sqlite_utils.Database, *, superseded: bool = False) -> list[Dataset]:
    """Datasets, oldest first; replaced ones kept for their ratings only with ``superseded``."""
    where = "" if superseded else " WHERE superseded_at IS NULL"
    return [_dataset(r) for r in db.query(f"SELECT * FROM datasets{where} ORDER BY id")]


ROW_KINDS = ("segmentation", "composition", "generation", "baseline", "evaluation", "classification")
"""Run kinds whose results are rows about a dataset's images (trained models are files, and stay)."""


def delete_dataset_and_its_rows(db: sqlite_utils.Database, dataset_id: int) -> list[tuple[str, str | None]]:
    """Delete an unrated dataset and the runs made on it that hold only its rows (they would stay
    as empty shells); trained models stay. Inside the caller's transaction.

    :returns: (name, artifact folder) of each run deleted, so the caller can remove the folders
    """
    marks = ",".join("?" * len(ROW_KINDS))
    runs = db.conn.execute(f"SELECT id, name, artifact_dir FROM runs WHERE dataset_id = ? AND kind IN ({marks})",
                           [dataset_id, *ROW_KINDS]).fetchall()
    db.conn.execute("DELETE FROM datasets WHERE id = ?", [dataset_id])
    db.conn.executemany("DELETE FROM runs WHERE id = ?", [(r[0],) for r in runs])
    return [(name, folder) for _, name, folder in runs]


def dataset_ratings(db: sqlite_utils.Database, dataset_id: int) -> tuple[int, int]:
    """(rating rows, pairwise comparison rows) on captions generated for the dataset's images."""
    row = db.conn.execute(
        "SELECT (SELECT COUNT(*) FROM ratings r JOIN generations g ON g.id = r.generation_id JOIN images i ON i.id = g.image_id"
        " WHERE i.dataset_id = ?), (SELECT COUNT(*) FROM comparisons c JOIN generations g ON g.id = c.left_generation_id"
        " JOIN images i ON i.id = g.image_id WHERE i.dataset_id = ?)", [dataset_id, dataset_id]).fetchone()
    return int(row[0]), int(row[1])


def held_phrase(ratings: int, comparisons: int) -> str:
    """"2 ratings and 1 comparison": what people made that a replace keeps."""
    return " and ".join(f"{n} {word}{'s' if n != 1 else ''}" for n, word in ((ratings, "rating"), (comparisons, "comparison")) if n)


class DatasetWriter:
    """Writes one dataset in a single ``BEGIN IMMEDIATE`` transaction.

    References may be added before their images (foreign keys are checked at commit), so an
    ingest can store captions while its image probes still run. Leaving the ``with`` block by an
    exception rolls everything back; a clean exit commits.

    Image ``k`` (0-based, in the order given to :meth:`add_images`) gets id ``first_image_id + k``.
    """

    def __init__(
        self,
        db: sqlite_utils.Database,
        *,
        name: str,
        kind: str,
        source_format: str,
        root: str,
        annotations: str | None,
        meta: dict[str, Any],
        replace: bool = False,
    ):
        self.db = db
        self._dataset = dict(name=name, kind=kind, source_format=source_format, root=root, annotations=annotations, meta=meta)
        self.replace = replace
        self.superseded: tuple[str, tuple[int, int]] | None = None
        """(new name, ratings) of a replaced dataset that was kept because its captions were rated."""
        self.emptied: list[tuple[str, str | None]] = []
        """(name, folder) of runs deleted with a replaced dataset: they held only its rows."""
        self.dataset_id = 0
        self.first_image_id = 0
        self._images = 0
        self._next_caption = 0

    def __enter__(self) -> DatasetWriter:
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("PRAGMA defer_foreign_keys = ON")
            d = self._dataset
            old = conn.execute("SELECT id FROM datasets WHERE name = ?", [d["name"]]).fetchone()
            if old is not None:
                if not self.replace:  # another ingest of this name finished first
                    raise WorkbenchError(f"dataset {d['name']!r} was just created by another ingest; pass --replace to replace it, "
                                       "or --name to ingest under another name")
                rated = dataset_ratings(self.db, old[0])
                if any(rated):  # ratings are never deleted: the old dataset stays, under another name
                    kept = f"{d['name']}~{old[0]}"
                    conn.execute("UPDATE datasets SET name = ?, superseded_at = ? WHERE id = ?", [kept, now(), old[0]])
                    self.superseded = (kept, rated)
                else:
                    self.emptied = delete_dataset_and_its_rows(self.db, old[0])
            cur = conn.execute(
                "INSERT INTO datasets (name, kind, source_format, root, annotations, meta, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [d["name"], d["kind"], d["source_format"], d["root"], d["annotations"], json.dumps(d["meta"]), now()],
            )
            self.dataset_id = int(cur.lastrowid or 0)
            # Ids are assigned here (the write lock is held), so rows go in as executemany batches.
            self.first_image_id = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM images").fetchone()[0]
            self._next_caption = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM captions").fetchone()[0]
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return self

    def add_captions(self, per_image: Sequence[Sequence[NewCaption]], *, first_image: int = 0) -> None:
        """References of images ``first_image, first_image + 1, ...`` (they may be added later)."""
        first = self._next_caption
        rows = []
        next_id = self._next_caption
        for offset, captions in enumerate(per_image):
            image_id = self.first_image_id + first_image + offset
            for idx, (text, tokens, is_duplicate) in enumerate(captions):
                rows.append((next_id, image_id, idx, text, tokens, is_duplicate))
                next_id += 1
        self._next_caption = next_id
        self.db.conn.executemany(
            "INSERT INTO captions (id, image_id, idx, text, tokens, is_duplicate) VALUES (?,?,?,?,?,?)", rows
        )
        # The full-text index has no insert trigger: one bulk insert is far faster (see 0001).
        self.db.conn.execute(
            "INSERT INTO captions_fts (rowid, text) SELECT id, text FROM captions WHERE id >= ? AND id < ?",
            [first, self._next_caption],
        )

    def add_images(self, images: Sequence[NewImage]) -> None:
        """Image rows, in order; their ``captions`` (if any) are added too."""
        start = self.first_image_id + self._images
        rows = [
            (start + k, self.dataset_id, im.filename, im.path, im.label_path, im.split, im.scene, im.width,
             im.height, im.file_size, im.sha256, im.status, im.status_detail, im.source_id)
            for k, im in enumerate(images)
        ]
        self.db.conn.executemany(
            "INSERT INTO images (id, dataset_id, filename, path, label_path, split, scene, width, height,"
            " file_size, sha256, status, status_detail, source_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        if any(im.captions for im in images):
            self.add_captions([im.captions for im in images], first_image=self._images)
        self._images += len(images)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is not None:
            self.db.conn.execute("ROLLBACK")
            return
        try:
            self.db.conn.execute("COMMIT")
        except BaseException:
            self.db.conn.execute("ROLLBACK")
            raise

    @property
    def dataset(self) -> Dataset:
        found = get_dataset_by_id(self.db, self.dataset_id)
        if found is None:
            raise LookupError(f"dataset {self.dataset_id} is not in the store")
        return found


def insert_dataset(
    db: sqlite_utils.Database,
    *,
    name: str,
    kind: str,
    source_format: str,
    root: str,
    annotations: str | None,
    meta: dict[str, Any],
    images: Sequence[NewImage],
    replace: bool = False,
) -> Dataset:
    """Insert a dataset with its images and references in one transaction.

    :param replace: replace an existing dataset of the same name (same transaction): it is deleted,
        or kept as ``name~id`` when captions of its images were rated
    :raises ValueError: if the name exists and ``replace`` is false
    """
    with DatasetWriter(
        db, name=name, kind=kind, source_format=source_format, root=root, annotations=annotations,
        meta=meta, replace=replace,
    ) as writer:
        writer.add_images(images)
    return writer.dataset


def _image(row: dict[str, Any]) -> Image:
    return Image(**row)


def list_images(
    db: sqlite_utils.Database,
    dataset_id: int,
    *,
    split: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Image]:
    """Images of a dataset in insertion order, optionally filtered."""
    where = ["dataset_id = ?"]
    args: list[Any] = [dataset_id]
    if split is not None:
        where.append("split = ?")
        args.append(split)
    if status is not None:
        where.append("status = ?")
        args.append(status)
    sql = f"SELECT * FROM images WHERE {' AND '.join(where)} ORDER BY id"
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        args += [limit, offset]
    return [_image(r) for r in db.query(sql, args)]


def get_image(db: sqlite_utils.Database, image_id: int) -> Image | None:
    rows = list(db.query("SELECT * FROM images WHERE id = ?", [image_id]))
    return _image(rows[0]) if rows else None


def captions_for(db: sqlite_utils.Database, image_ids: Iterable[int]) -> dict[int, list[Caption]]:
    """References of the given images, in their original order."""
    ids = list(image_ids)
    out: dict[int, list[Caption]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in db.query(f"SELECT * FROM captions WHERE image_id IN ({marks}) ORDER BY image_id, idx", chunk):
            out[row["image_id"]].append(Caption(**{**row, "is_duplicate": bool(row["is_duplicate"])}))
    return out


def search_captions(db: sqlite_utils.Database, dataset_id: int, query: str, limit: int = 100) -> list[Caption]:
    """Full-text search over one dataset's references (FTS5 query syntax)."""
    rows = db.query(
        "SELECT c.* FROM captions_fts f JOIN captions c ON c.id = f.rowid JOIN images i ON i.id = c.image_id"
        " WHERE captions_fts MATCH ? AND i.dataset_id = ? ORDER BY rank LIMIT ?",
        [query, dataset_id, limit],
    )
    return [Caption(**{**r, "is_duplicate": bool(r["is_duplicate"])}) for r in rows]


def dataset_stats(db: sqlite_utils.Database, dataset: Dataset) -> DatasetStats:
    """Counts for one dataset; vocabulary is the number of distinct lower-cased tokens."""
    by_split_status: dict[str, dict[str, int]] = {}
    for row in db.query(
        "SELECT COALESCE(split, 'none') AS split, status, COUNT(*) AS n FROM images WHERE dataset_id = ?"
        " GROUP BY 1, 2",
        [dataset.id],
    ):
        by_split_status.setdefault(row["split"], {})[row["status"]] = row["n"]
    by_split = {s: sum(v.values()) for s, v in by_split_status.items()}
    by_status: Counter[str] = Counter()
    for counts in by_split_status.values():
        by_status.update(counts)
    scenes = {
        r["scene"]: r["n"]
        for r in db.query(
            "SELECT COALESCE(scene, '(none)') AS scene, COUNT(*) AS n FROM images WHERE dataset_id = ?"
            " GROUP BY 1 ORDER BY n DESC, scene",
            [dataset.id],
        )
    }
    cap = next(
        db.query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(c.is_duplicate), 0) AS dup,"
            " COUNT(DISTINCT CASE WHEN c.is_duplicate THEN c.image_id END) AS dup_images"
            " FROM captions c JOIN images i ON i.id = c.image_id WHERE i.dataset_id = ?",
            [dataset.id],
        )
    )
    vocab: set[str] = set()
    for (tokens,) in db.conn.execute(
        "SELECT c.tokens FROM captions c JOIN images i ON i.id = c.image_id WHERE i.dataset_id = ?", [dataset.id]
    ):
        vocab.update(tokens.lower().split())
    from engine.store.reference_flags import flag_counts  # it imports this module (now())

    flags = flag_counts(db, dataset.id)
    return DatasetStats(
        dataset=dataset,
        images=sum(by_split.values()),
        captions=cap["n"],
        duplicate_captions=cap["dup"],
        images_with_duplicates=cap["dup_images"],
        vocabulary=len(vocab),
        by_split=dict(sorted(by_split.items())),
        by_status=dict(sorted(by_status.items())),
        by_split_status=by_split_status,
        scenes=scenes,
        flagged_references=flags.references,
        flags_by_reason=flags.by_reason,
        unmatched_flags=flags.unmatched,
    )
