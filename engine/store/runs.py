"""Runs and what they produced: masks, compositions.

Names. A run belongs to a *family* (the name a user types, e.g. ``gen.cap.test``) and has a
*version* in it: the first version is called like its family, later ones ``family.2``,
``family.3`` ... A bare name means the family's newest complete version (:func:`get_run`);
``family@K`` names version K. No run ever takes another's name: a re-run gets the next version,
and replacing is explicit (``replace=true``), done only once the new run has succeeded
(:func:`publish_run`). A replaced run that anything depends on (ratings, or runs made from it) is
kept with status ``superseded`` under the name ``<name>~<id>``; only a leaf is deleted.

A run is created ``running`` and becomes ``complete`` only when its job has written everything;
readers of results use complete runs, so a failed job never leaves rows that look finished.
Staged runs (:func:`stage_run`) are invisible until published: they carry a reserved name.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from engine.store.catalog import held_phrase, now
from engine.store.comparisons import held_comparisons

RUN_KINDS = ("segmenter", "segmentation", "composition", "captioner", "generation", "evaluation", "baseline",
             "classifier", "classification")
RESERVED = "~@"
"""Characters user-given run names may not hold: ``~`` marks superseded and staged runs, ``@`` a version."""
STAGED = "~staged-"


@dataclass(frozen=True)
class Run:
    id: int
    kind: str
    name: str
    family: str
    version: int
    parent_run_id: int | None
    dataset_id: int | None
    params: dict[str, Any]
    metrics: dict[str, Any]
    artifact_dir: str | None
    status: str
    superseded_by: int | None
    created_at: str
    finished_at: str | None

    @property
    def label(self) -> str:
        """The name with its version, for listings: ``gen.cap.test (v2)`` when there is more than one."""
        return self.name if self.version == 1 else f"{self.name} (v{self.version})"


def _run(row: dict[str, Any]) -> Run:
    return Run(**{**row, "params": json.loads(row["params"]), "metrics": json.loads(row["metrics"])})


def get_run_exact(db: sqlite_utils.Database, name: str) -> Run | None:
    rows = list(db.query("SELECT * FROM runs WHERE name = ?", [name]))
    return _run(rows[0]) if rows else None


def family_runs(db: sqlite_utils.Database, family: str) -> list[Run]:
    """The family's runs that are not superseded, oldest version first."""
    return [_run(r) for r in db.query(
        "SELECT * FROM runs WHERE family = ? AND status != 'superseded' ORDER BY version, id", [family])]


def get_run(db: sqlite_utils.Database, name: str) -> Run | None:
    """The run a user means by ``name``.

    ``family@K`` is version K of the family; a family's name is its newest complete version (its
    newest version when none is complete); any other name is looked up as it is (``gen.cap.test.2``,
    a superseded ``gen.cap.test~12``).
    """
    family, at, version = name.rpartition("@")
    if at and version.isdigit():
        rows = list(db.query("SELECT * FROM runs WHERE family = ? AND version = ? ORDER BY status = 'superseded', id DESC",
                             [family, int(version)]))
        return _run(rows[0]) if rows else None
    members = family_runs(db, name)
    if members:
        complete = [r for r in members if r.status == "complete"]
        return (complete or members)[-1]
    return get_run_exact(db, name)


def get_run_by_id(db: sqlite_utils.Database, run_id: int) -> Run | None:
    rows = list(db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
    return _run(rows[0]) if rows else None


def list_runs(db: sqlite_utils.Database, kind: str | None = None, *, superseded: bool = True) -> list[Run]:
    """Runs (staged ones never), oldest first; ``superseded=False`` leaves replaced runs out."""
    where = [f"name NOT LIKE '{STAGED}%'"]
    args: list[Any] = []
    if kind is not None:
        where.append("kind = ?")
        args.append(kind)
    if not superseded:
        where.append("status != 'superseded'")
    return [_run(r) for r in db.query(f"SELECT * FROM runs WHERE {' AND '.join(where)} ORDER BY id", args)]


def _versioned(family: str, version: int) -> str:
    return family if version == 1 else f"{family}.{version}"


def _next_version(db: sqlite_utils.Database, family: str) -> tuple[str, int]:
    """The next version of a family and its name (skipping a name another run happens to hold)."""
    top = db.conn.execute("SELECT COALESCE(MAX(version), 0) FROM runs WHERE family = ?", [family]).fetchone()[0]
    version = int(top) + 1
    while db.conn.execute("SELECT 1 FROM runs WHERE name = ?", [_versioned(family, version)]).fetchone():
        version += 1
    return _versioned(family, version), version


def next_run_name(db: sqlite_utils.Database, family: str) -> str:
    """The name the next version of ``family`` would get now."""
    return _next_version(db, family)[0]


def create_run(
    db: sqlite_utils.Database,
    *,
    kind: str,
    name: str,
    params: dict[str, Any],
    parent_run_id: int | None = None,
    dataset_id: int | None = None,
    artifact_dir: str | None = None,
    family: str | None = None,
    version: int = 1,
) -> Run:
    """Insert a ``running`` run called ``name``, version ``version`` of ``family`` (default: its own).

    :raises ValueError: for an unknown kind or a name in use
    """
    if kind not in RUN_KINDS:
        raise ValueError(f"run kind {kind!r}: must be one of {', '.join(RUN_KINDS)}")
    family = family or name
    with db.atomic():
        if db.execute("SELECT 1 FROM runs WHERE name = ?", [name]).fetchone():
            raise ValueError(f"run name {name!r} is in use")
        cur = db.execute(
            "INSERT INTO runs (kind, name, family, version, parent_run_id, dataset_id, params, artifact_dir, status, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)",
            [kind, name, family, version, parent_run_id, dataset_id, json.dumps(params), artifact_dir, now()],
        )
    run = get_run_by_id(db, int(cur.lastrowid or 0))
    assert run is not None
    return run


def create_version(db: sqlite_utils.Database, *, kind: str, family: str, params: dict[str, Any],
                   folder: Callable[[str], str] | None = None, **fields: Any) -> Run:
    """A new ``running`` version of ``family`` (named ``family`` when it is the first).

    :param folder: the artifact folder for the name it gets
    """
    with db.atomic():
        name, version = _next_version(db, family)
        if folder is not None:
            fields["artifact_dir"] = folder(name)
        return create_run(db, kind=kind, name=name, family=family, version=version, params=params, **fields)


def stage_run(db: sqlite_utils.Database, *, kind: str, params: dict[str, Any], **fields: Any) -> Run:
    """A run that stays invisible (a reserved name) until :func:`publish_run` names it."""
    name = f"{STAGED}{uuid.uuid4().hex[:12]}"
    return create_run(db, kind=kind, name=name, params=params, **fields)


def held_ratings(db: sqlite_utils.Database, run_id: int) -> int:
    """Rating rows on the run's captions: what nobody can recompute."""
    row = db.conn.execute(
        "SELECT COUNT(*) FROM ratings r JOIN generations g ON g.id = r.generation_id WHERE g.run_id = ?", [run_id]).fetchone()
    return int(row[0])


def dependants(db: sqlite_utils.Database, run_id: int) -> list[Run]:
    """Runs made from this one (its parent), evaluations included."""
    return [_run(r) for r in db.query("SELECT * FROM runs WHERE parent_run_id = ? ORDER BY id", [run_id])]


@dataclass(frozen=True)
class Published:
    """A run made visible, and what became of the run it replaced."""

    run: Run
    replaced: Run | None = None
    """The replaced run as it is now (superseded), or as it was (deleted)."""
    kept: bool = False
    """The replaced run was kept as superseded (it holds ratings, or runs depend on it)."""
    ratings: int = 0
    """Ratings the replaced run holds."""
    comparisons: int = 0
    """Pairwise comparison rows that show the replaced run's captions."""
    deleted: tuple[Run, ...] = ()
    """Runs removed from the store (a replaced leaf and its evaluations): their folders can go."""

    def describe(self) -> str:
        """One phrase for a job's message: what the name means now."""
        run = self.run
        if self.replaced is None:
            if run.version == 1:
                return ""
            return f"version {run.version} of {run.family}; earlier versions are kept"
        if self.kept:
            held = held_phrase(self.ratings, self.comparisons)
            why = f"holds {held}" if held else "other runs depend on it"
            return f"replaced the earlier {run.name}, which {why} and is kept as {self.replaced.name} (superseded)"
        return f"replaced the earlier {run.name}"


def publish_run(db: sqlite_utils.Database, run_id: int, family: str, *, replace: bool = False,
                metrics: dict[str, Any] | None = None) -> Published:
    """Give a staged run its name and mark it complete, in one transaction.

    Without ``replace`` it becomes the family's next version. With it, it takes the name of the
    family's newest version; that run is kept as superseded when ratings or runs depend on it, else
    deleted (with its evaluations, which hold nothing a person made).
    """
    replaced: Run | None = None
    kept, ratings, comparisons = False, 0, 0
    deleted: list[Run] = []
    with db.atomic():
        members = [r for r in family_runs(db, family) if r.id != run_id]
        if replace and members:
            old = members[-1]
            name, version = old.name, old.version
            ratings, comparisons = held_ratings(db, old.id), held_comparisons(db, [old.id])
            others = [d for d in dependants(db, old.id) if d.kind != "evaluation" or held_ratings(db, d.id)]
            kept = bool(ratings or comparisons or others)
            if kept:
                db.execute("UPDATE runs SET name = ?, status = 'superseded', superseded_by = ? WHERE id = ?",
                           [f"{old.name}~{old.id}", run_id, old.id])
                replaced = get_run_by_id(db, old.id)
            else:
                replaced = old
                deleted = [*dependants(db, old.id), old]
                for gone in deleted:
                    db.execute("DELETE FROM runs WHERE id = ?", [gone.id])
        else:
            name, version = _next_version(db, family)
        db.execute(
            "UPDATE runs SET name = ?, family = ?, version = ?, status = 'complete', finished_at = ?,"
            " metrics = COALESCE(?, metrics) WHERE id = ?",
            [name, family, version, now(), None if metrics is None else json.dumps(metrics), run_id],
        )
    run = get_run_by_id(db, run_id)
    assert run is not None
    return Published(run, replaced, kept, ratings, comparisons, tuple(deleted))


def discard_run(db: sqlite_utils.Database, run_id: int) -> None:
    """Remove a staged run that failed (it was never visible, so nobody rated it)."""
    with db.atomic():
        db.execute("DELETE FROM runs WHERE id = ? AND name LIKE ?", [run_id, f"{STAGED}%"])


def delete_run(db: sqlite_utils.Database, run_id: int) -> None:
    """Remove a run and everything it produced (masks, compositions, captions, scores: cascades).

    A run whose captions hold ratings cannot be deleted (the store refuses: ratings restrict);
    `workbench runs delete` exports and removes them first, when a user asks for it.
    """
    with db.atomic():
        db.execute("DELETE FROM runs WHERE id = ?", [run_id])


def set_run_status(db: sqlite_utils.Database, run_id: int, status: str, metrics: dict[str, Any] | None = None) -> None:
    """Mark a run ``running``, ``complete`` or ``failed`` (and replace its metrics when given)."""
    with db.atomic():
        if metrics is not None:
            db.execute("UPDATE runs SET metrics = ? WHERE id = ?", [json.dumps(metrics), run_id])
        db.execute(
            "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
            [status, None if status == "running" else now(), run_id],
        )


def set_run_params(db: sqlite_utils.Database, run_id: int, params: dict[str, Any]) -> None:
    with db.atomic():
        db.execute("UPDATE runs SET params = ? WHERE id = ?", [json.dumps(params), run_id])


@dataclass(frozen=True)
class MaskRow:
    image_id: int
    path: str
    class_hist: list[int]


def add_masks(db: sqlite_utils.Database, run_id: int, rows: Iterable[MaskRow]) -> None:
    """Insert (or replace) masks of a run in one transaction."""
    with db.atomic():
        db.conn.executemany(
            "INSERT OR REPLACE INTO masks (run_id, image_id, path, class_hist) VALUES (?, ?, ?, ?)",
            [(run_id, r.image_id, r.path, json.dumps(r.class_hist)) for r in rows],
        )


def masked_image_ids(db: sqlite_utils.Database, run_id: int) -> set[int]:
    return {r[0] for r in db.conn.execute("SELECT image_id FROM masks WHERE run_id = ?", [run_id])}


def masks_of(db: sqlite_utils.Database, run_id: int) -> list[MaskRow]:
    return [
        MaskRow(r["image_id"], r["path"], json.loads(r["class_hist"]))
        for r in db.query("SELECT image_id, path, class_hist FROM masks WHERE run_id = ? ORDER BY image_id", [run_id])
    ]


@dataclass(frozen=True)
class CompositionRow:
    image_id: int
    data: dict[str, Any]
    prompt: str


def add_compositions(db: sqlite_utils.Database, run_id: int, rows: Sequence[CompositionRow]) -> None:
    with db.atomic():
        db.conn.executemany(
            "INSERT OR REPLACE INTO compositions (run_id, image_id, data, prompt) VALUES (?, ?, ?, ?)",
            [(run_id, r.image_id, json.dumps(r.data, separators=(",", ":")), r.prompt) for r in rows],
        )


def compositions_of(db: sqlite_utils.Database, run_id: int, image_ids: Sequence[int] | None = None) -> list[CompositionRow]:
    """Compositions of a run, by image id (all, or the given images)."""
    rows = db.query("SELECT image_id, data, prompt FROM compositions WHERE run_id = ? ORDER BY image_id", [run_id])
    out = [CompositionRow(r["image_id"], json.loads(r["data"]), r["prompt"]) for r in rows]
    if image_ids is not None:
        wanted = set(image_ids)
        out = [r for r in out if r.image_id in wanted]
    return out
