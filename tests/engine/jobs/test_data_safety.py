"""Nothing a person made is lost: re-runs get new versions, replacing is explicit and happens only
once the new run succeeded, a replaced run that holds ratings is kept, and no job, replace or
dataset re-ingest deletes a rating. Ratings are counted and compared row by row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.datasets.synthetic import write_captioning_dataset
from engine.jobs import JobStopped
from engine.jobs.foreground import run_foreground
from engine.store.catalog import get_dataset, list_datasets
from engine.store.results import add_rating, generations_of, scores_of
from engine.store.runs import get_run, list_runs
from engine.workspace import Workspace
from tests.conftest import db_fingerprint

PY = {"tokenizer": "python", "resamples": "100"}


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path / "ws")
    w.init()
    data = write_captioning_dataset(tmp_path / "syn", 12, size=32, seed=4)
    run_foreground(w, "ingest-captions", {"path": str(data.root), "name": "syn"})
    ann = json.loads(data.annotations.read_text())  # type: ignore[union-attr]
    for name, caption in (("first", None), ("other", "a piece of green land")):
        rows = [{"image_id": e["filename"], "caption": caption or e["sentences"][0]["raw"]} for e in ann["images"]]
        (tmp_path / f"{name}.json").write_text(json.dumps(rows))
    run_foreground(w, "import-generations", {"results": str(tmp_path / "first.json"), "dataset": "syn", "name": "gen"})
    (w.root / "data").symlink_to(data.root)
    return w


def rows(w: Workspace, table: str) -> list[dict[str, Any]]:
    db = w.open_db()
    try:
        return list(db.query(f"SELECT * FROM {table} ORDER BY id"))
    finally:
        db.close()


def ratings(w: Workspace) -> list[dict[str, Any]]:
    return rows(w, "ratings")


def rate_two(w: Workspace, run: str) -> list[dict[str, Any]]:
    db = w.open_db()
    gens = generations_of(db, get_run(db, run).id)  # type: ignore[union-attr]
    add_rating(db, gens[0].id, "ann", 4, ["grammar"], "almost")
    add_rating(db, gens[1].id, "bob", 2, [], "wrong scene really")
    db.close()
    return ratings(w)


def test_a_rerun_under_the_same_name_is_a_new_version_and_keeps_the_ratings(ws: Workspace, tmp_path: Path) -> None:
    rated = rate_two(ws, "gen")
    result = run_foreground(ws, "import-generations", {"results": str(tmp_path / "other.json"), "dataset": "syn", "name": "gen"})
    assert result.message.startswith("gen.2 (version 2 of gen; earlier versions are kept)")
    assert ratings(ws) == rated
    db = ws.open_db()
    assert get_run(db, "gen").name == "gen.2"  # type: ignore[union-attr]  # a bare name: the newest version
    assert get_run(db, "gen@1").name == "gen" and get_run(db, "gen@1").version == 1  # type: ignore[union-attr]
    assert {g.text for g in generations_of(db, get_run(db, "gen@1").id)} != {"a piece of green land"}  # type: ignore[union-attr]


def test_replace_keeps_a_rated_run_as_superseded_and_deletes_an_unrated_leaf(ws: Workspace, tmp_path: Path) -> None:
    rated = rate_two(ws, "gen")
    old = get_run(ws.open_db(), "gen")
    result = run_foreground(ws, "import-generations", {"results": str(tmp_path / "other.json"), "dataset": "syn", "name": "gen",
                                                       "replace": "true"})
    assert f"holds 2 ratings and is kept as gen~{old.id} (superseded)" in result.message  # type: ignore[union-attr]
    db = ws.open_db()
    kept = get_run(db, f"gen~{old.id}")  # type: ignore[union-attr]
    assert kept is not None and kept.status == "superseded" and kept.superseded_by == get_run(db, "gen").id  # type: ignore[union-attr]
    assert ratings(ws) == rated and {r["generation_id"] for r in rated} <= {g.id for g in generations_of(db, kept.id)}
    assert get_run(db, "gen").name == "gen" and get_run(db, "gen").status == "complete"  # type: ignore[union-attr]
    # An unrated run that nothing depends on is simply replaced.
    run_foreground(ws, "import-generations", {"results": str(tmp_path / "first.json"), "dataset": "syn", "name": "leaf"})
    run_foreground(ws, "import-generations", {"results": str(tmp_path / "other.json"), "dataset": "syn", "name": "leaf", "replace": "true"})
    names = [r.name for r in list_runs(db) if r.family == "leaf"]
    assert names == ["leaf"] and generations_of(db, get_run(db, "leaf").id)[0].text == "a piece of green land"  # type: ignore[union-attr]


def test_a_failed_replacement_leaves_the_old_evaluation_as_it_was(ws: Workspace) -> None:
    run_foreground(ws, "evaluate", {"generation": "gen", **PY})
    db = ws.open_db()
    old = get_run(db, "eval.gen")
    old_scores = scores_of(db, old.id)  # type: ignore[union-attr]
    before = db_fingerprint(ws)
    with pytest.raises(JobStopped):
        run_foreground(ws, "evaluate", {"generation": "gen", "replace": "true", "tokenizer": "python", "resamples": "0"},
                       stop_requested=lambda: True)
    assert db_fingerprint(ws) == before
    same = get_run(db, "eval.gen")
    assert same == old and scores_of(db, same.id) == old_scores and same.metrics["ci95"]  # type: ignore[union-attr]
    # Re-running without intervals is a new version; the stored intervals stay with the first.
    run_foreground(ws, "evaluate", {"generation": "gen", "tokenizer": "python", "resamples": "0"})
    assert get_run(db, "eval.gen").name == "eval.gen.2" and get_run(db, "eval.gen@1").metrics["ci95"] == old.metrics["ci95"]  # type: ignore[union-attr]


def test_reingesting_a_rated_dataset_keeps_the_old_one_and_its_ratings(ws: Workspace) -> None:
    rated = rate_two(ws, "gen")
    db = ws.open_db()
    old = get_dataset(db, "syn")
    result = run_foreground(ws, "ingest-captions", {"path": str(ws.root / "data"), "name": "syn", "replace": "true"})
    assert f"holds 2 ratings and is kept as syn~{old.id}" in result.message  # type: ignore[union-attr]
    assert ratings(ws) == rated
    assert [d.name for d in list_datasets(db)] == ["syn"] and [d.name for d in list_datasets(db, superseded=True)] == [f"syn~{old.id}", "syn"]  # type: ignore[union-attr]
    assert get_run(db, "gen").dataset_id == old.id  # type: ignore[union-attr]  # the rated run stays with its images


def test_reingesting_an_unrated_dataset_leaves_no_empty_runs(ws: Workspace) -> None:
    run_foreground(ws, "evaluate", {"generation": "gen", **PY})
    run_foreground(ws, "ingest-captions", {"path": str(ws.root / "data"), "name": "syn", "replace": "true"})
    db = ws.open_db()
    assert list_runs(db) == [] and not ws.model_dir("eval.gen").exists()


def test_runs_delete_lists_needs_yes_and_saves_the_ratings_first(ws: Workspace) -> None:
    from workbench.cli import app

    run_foreground(ws, "evaluate", {"generation": "gen", **PY})
    rated = rate_two(ws, "gen")
    cli = CliRunner()
    before = db_fingerprint(ws)
    listing = cli.invoke(app, ["-w", str(ws.root), "runs", "delete", "gen"])
    assert listing.exit_code == 1, listing.output
    assert "generation  gen: 12 captions, 2 ratings" in listing.output and "evaluation  eval.gen: 72 scores" in listing.output
    assert "nothing deleted; run again with --yes" in listing.output and db_fingerprint(ws) == before
    done = cli.invoke(app, ["-w", str(ws.root), "runs", "delete", "gen", "--yes"])
    assert done.exit_code == 0, done.output
    saved = next(ws.exports_dir.glob("ratings-of-gen-*.jsonl"))
    assert f"its 2 ratings are saved in {saved}" in done.output
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [(r["reviewer"], r["score"], r["flags"], r["note"]) for r in rows] == [
        (r["reviewer"], r["score"], json.loads(r["flags"]), r["note"]) for r in rated]
    assert all(r["filename"] and r["caption"] for r in rows)
    db = ws.open_db()
    assert get_run(db, "gen") is None and get_run(db, "eval.gen") is None and ratings(ws) == []


def compare_two(w: Workspace) -> list[dict[str, Any]]:
    """Two blind verdicts on runs gen and other (imported here), one of them undone."""
    from engine.store.comparisons import add_comparison, withdraw_comparison

    run_foreground(w, "import-generations", {"results": str(w.root.parent / "other.json"), "dataset": "syn", "name": "other"})
    db = w.open_db()
    a, b = generations_of(db, get_run(db, "gen").id), generations_of(db, get_run(db, "other").id)  # type: ignore[union-attr]
    add_comparison(db, a[0].id, b[0].id, "ann", "left")
    wrong = add_comparison(db, b[1].id, a[1].id, "ann", "tie")
    withdraw_comparison(db, wrong, "ann")
    db.close()
    return comparisons(w)


def comparisons(w: Workspace) -> list[dict[str, Any]]:
    return rows(w, "comparisons")


def test_comparisons_keep_a_replaced_run_and_a_reingested_dataset(ws: Workspace, tmp_path: Path) -> None:
    compared = compare_two(ws)
    assert len(compared) == 3 and compared[2]["undoes"] == compared[1]["id"] and compared[2]["choice"] is None
    old = get_run(ws.open_db(), "gen")
    result = run_foreground(ws, "import-generations", {"results": str(tmp_path / "other.json"), "dataset": "syn", "name": "gen",
                                                       "replace": "true"})
    assert f"holds 3 comparisons and is kept as gen~{old.id} (superseded)" in result.message  # type: ignore[union-attr]
    dataset = get_dataset(ws.open_db(), "syn")
    result = run_foreground(ws, "ingest-captions", {"path": str(ws.root / "data"), "name": "syn", "replace": "true"})
    assert f"holds 3 comparisons and is kept as syn~{dataset.id}" in result.message  # type: ignore[union-attr]
    assert comparisons(ws) == compared


def test_runs_delete_writes_the_comparisons_to_a_file_first(ws: Workspace) -> None:
    from workbench.cli import app

    compared = compare_two(ws)
    cli = CliRunner()
    listing = cli.invoke(app, ["-w", str(ws.root), "runs", "delete", "other"])
    assert listing.exit_code == 1 and "generation  other: 12 captions, 3 comparisons" in listing.output, listing.output
    assert "(3 comparisons are written to exports/ first)" in listing.output
    done = cli.invoke(app, ["-w", str(ws.root), "runs", "delete", "other", "--yes"])
    assert done.exit_code == 0, done.output
    saved = next(ws.exports_dir.glob("comparisons-of-other-*.jsonl"))
    assert f"its 3 comparisons are saved in {saved}" in done.output
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [(r["reviewer"], r["choice"], r["undoes"]) for r in rows] == [(c["reviewer"], c["choice"], c["undoes"]) for c in compared]
    assert all(r["left_caption"] is not None and r["right_run"] for r in rows)
    assert comparisons(ws) == [] and get_run(ws.open_db(), "gen") is not None


def test_runs_delete_in_a_copied_workspace_leaves_the_originals_folders(ws: Workspace, tmp_path: Path) -> None:
    import shutil

    from workbench.cli import app

    run_foreground(ws, "evaluate", {"generation": "gen", **PY})
    assert ws.model_dir("eval.gen").is_dir()
    copy = Workspace(tmp_path / "copy")
    shutil.copytree(ws.root, copy.root, symlinks=True)
    done = CliRunner().invoke(app, ["-w", str(copy.root), "runs", "delete", "gen", "--yes"])
    assert done.exit_code == 0, done.output
    assert ws.model_dir("eval.gen").is_dir() and get_run(ws.open_db(), "gen") is not None  # the original is untouched
    assert not copy.model_dir("eval.gen").exists()  # the copy's own folder went with its run
    assert f"kept        {ws.model_dir('eval.gen')}: outside this workspace" in done.output
