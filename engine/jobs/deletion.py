"""Deleting a run when a user means it (``workbench runs delete NAME --yes``).

The one path that may remove ratings and comparisons: it says first what goes (captions, scores,
ratings, comparisons, files, and the evaluations of a generation run), and before anything is
deleted it writes every rating and comparison row it would remove, history included, to files in
``exports/``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import WorkbenchError
from engine.jobs.kinds.exchange import shareable_mode
from engine.store.results import (
    RunContents,
    delete_runs_and_ratings,
    run_contents,
)
from engine.store.runs import Run, dependants, get_run, list_runs
from engine.workspace import Workspace


@dataclass(frozen=True)
class Deletion:
    """What deleting a run takes with it."""

    runs: list[tuple[Run, RunContents]]
    """The run, then its evaluations (for a generation run), with what each holds."""
    folders: list[Path]
    orphans: list[Run]
    """Other runs made from it: they stay, and lose their link to it."""
    outside: list[Path] = field(default_factory=list)
    """Folders the runs name outside this workspace (a copied workspace names the original's):
    never deleted from here."""

    @property
    def ratings(self) -> int:
        return sum(c.ratings for _, c in self.runs)

    @property
    def comparisons(self) -> int:
        return sum(c.comparisons for _, c in self.runs)


def plan_deletion(ws: Workspace, name: str) -> Deletion:
    """:raises WorkbenchError: if there is no such run"""
    db = ws.open_db()
    try:
        run = get_run(db, name)
        if run is None:
            known = ", ".join(r.name for r in list_runs(db)) or "none yet"
            raise WorkbenchError(f"no run named {name!r} (runs: {known})")
        children = dependants(db, run.id)
        doomed = [run, *(c for c in children if c.kind == "evaluation")]
        folders, outside = run_folders(ws, doomed)
        return Deletion([(r, run_contents(db, r.id)) for r in doomed], folders, [c for c in children if c.kind != "evaluation"],
                        outside)
    finally:
        db.close()


def run_folders(ws: Workspace, runs: list[Run]) -> tuple[list[Path], list[Path]]:
    """(folders to delete, folders left alone): a run's folder is deleted only inside this
    workspace: its ``models/NAME``, and its recorded folder when that lies in the workspace."""
    root = ws.root.resolve()
    mine: list[Path] = []
    outside: list[Path] = []
    for run in runs:
        for folder in ([Path(run.artifact_dir)] if run.artifact_dir else []) + [ws.model_dir(run.name)]:
            if not folder.exists() or folder.resolve() in mine or folder in outside:
                continue
            if folder.resolve().is_relative_to(root) and folder.resolve() != root:
                mine.append(folder.resolve())
            else:
                outside.append(folder)
    return mine, outside


def delete(ws: Workspace, plan: Deletion) -> list[Path]:
    """Write the ratings and comparisons to ``exports/``, then delete the runs and their folders.

    :returns: the files written (none when nobody rated or compared the runs' captions)
    """
    db = ws.open_db()
    try:
        ids = [r.id for r, _ in plan.runs]
        saved: list[Path] = []
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")

        def save(ratings: list[dict[str, Any]], comparisons: list[dict[str, Any]]) -> None:
            for what, rows in (("ratings", ratings), ("comparisons", comparisons)):
                if rows:
                    path = ws.exports_dir / f"{what}-of-{plan.runs[0][0].name}-{stamp}.jsonl"
                    _write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
                    saved.append(path)

        delete_runs_and_ratings(db, ids, save)
    finally:
        db.close()
    for folder in plan.folders:
        shutil.rmtree(folder, ignore_errors=True)
    return saved


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, shareable_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
