"""evaluate / import-generations / export job kinds, ratings and analytics, on a small workspace."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from engine.datasets.synthetic import write_captioning_dataset
from engine.jobs import ParamsError
from engine.errors import WorkbenchError
from engine.jobs.compare import compare_runs
from engine.jobs.foreground import run_foreground
from engine.jobs.review import review_summary
from engine.store.catalog import captions_for, get_dataset, list_images
from engine.store.reference_flags import flag_reference, image_flags
from engine.store.results import add_rating, generations_of, scores_of
from engine.store.runs import get_run, get_run_by_id
from engine.workspace import Workspace
from tests.conftest import fails_unchanged

PY = {"tokenizer": "python", "resamples": "200"}


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path / "ws")
    w.init()
    data = write_captioning_dataset(tmp_path / "syn", 30, size=48, seed=4)
    run_foreground(w, "ingest-captions", {"path": str(data.root), "name": "syn"})
    ann = json.loads(data.annotations.read_text())  # type: ignore[union-attr]
    first = [{"image_id": e["filename"], "caption": e["sentences"][0]["raw"]} for e in ann["images"]]
    second = [{"image_id": e["filename"], "caption": "a piece of green land"} for e in ann["images"]]
    (tmp_path / "first.json").write_text(json.dumps(first))
    (tmp_path / "constant.json").write_text(json.dumps(second))
    run_foreground(w, "import-generations", {"results": str(tmp_path / "first.json"), "dataset": "syn"})
    run_foreground(w, "import-generations", {"results": str(tmp_path / "constant.json"), "dataset": "syn"})
    return w


def test_evaluate_stores_corpus_intervals_scene_table_and_per_image_scores(ws: Workspace) -> None:
    result = run_foreground(ws, "evaluate", {"generation": "first", **PY})
    db = ws.open_db()
    run = get_run(db, "eval.first")
    assert run is not None and run.status == "complete" and run.parent_run_id == get_run(db, "first").id  # type: ignore[union-attr]
    m = run.metrics
    for metric in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"):
        lo, hi = m["ci95"][metric]
        assert lo <= m[metric] <= hi
    assert m["unavailable"]["METEOR"].startswith("METEOR runs on Java") and "SPICE" not in m
    assert set(m["per_scene"]) == {"residential", "parking", "river", "pond", "forest", "farmland", "bareland", "industrial"}
    assert m["images"] == 30 and m["tokenizer"] == "ptb-python"
    per_image = scores_of(db, run.id)
    assert len(per_image) == 30 and set(next(iter(per_image.values()))) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"}
    assert result.data["corpus"]["Bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert (ws.model_dir("eval.first") / "stats.npz").is_file()


def test_a_generation_scored_on_the_human_distinct_subset_pairs_with_it(ws: Workspace) -> None:
    """`evaluate human=... distinct=true` keeps only images with a distinct reference; subset=
    scores a generation on exactly those, so the two compare image by image."""
    db = ws.open_db()
    ds = get_run(db, "first").dataset_id  # type: ignore[union-attr]
    image = db.execute("SELECT id FROM images WHERE dataset_id = ? ORDER BY id LIMIT 1", [ds]).fetchone()[0]
    db.execute("UPDATE captions SET text = 'the same words', tokens = 'the same words' WHERE image_id = ?", [image])  # no distinct reference
    human = run_foreground(ws, "evaluate", {"human": "syn", "distinct": "true", **PY})
    human_run = get_run(db, human.data["name"])
    assert human_run.metrics["images"] == 29  # type: ignore[union-attr]
    _fails(ws, "evaluate", {"generation": "first", "subset": "nope", **PY}, "subset='nope': no evaluate run of that name")
    sub = run_foreground(ws, "evaluate", {"generation": "first", "subset": human_run.name, **PY})  # type: ignore[union-attr]
    sub_run = get_run(db, sub.data["name"])
    assert sub_run.metrics["images"] == 29 and sub_run.metrics["subset"] == human_run.name  # type: ignore[union-attr]
    assert set(scores_of(db, sub_run.id)) == set(scores_of(db, human_run.id))  # type: ignore[union-attr]
    comparison = compare_runs(ws, human_run.name, sub_run.name, resamples=200)  # type: ignore[union-attr]
    assert comparison.images == 29 and comparison.rows["CIDEr"]["low"] <= comparison.rows["CIDEr"]["difference"]
    full = run_foreground(ws, "evaluate", {"generation": "first", **PY})
    with pytest.raises(Exception, match="paired comparison needs the same images; 1 of 30 differ"):
        compare_runs(ws, human_run.name, full.data["name"], resamples=50)  # type: ignore[union-attr]
    # The full evaluation stays the one the screens and exports show.
    from engine.store.results import latest_evaluation

    assert latest_evaluation(db, get_run(db, "first").id) == get_run(db, full.data["name"]).id  # type: ignore[union-attr]


def test_human_intervals_resample_images_and_scene_tables_count_images(ws: Workspace) -> None:
    human = run_foreground(ws, "evaluate", {"human": "syn", **PY})
    m = get_run(ws.open_db(), human.data["name"]).metrics  # type: ignore[union-attr]
    assert sum(row["images"] for row in m["per_scene"].values()) == 30
    assert sum(row["captions"] for row in m["per_scene"].values()) == m["captions"] > 30


def test_human_reference_point_and_paired_comparison(ws: Workspace) -> None:
    human = run_foreground(ws, "evaluate", {"human": "syn", **PY})
    assert "leave-one-out" in human.message
    run_foreground(ws, "evaluate", {"generation": "first", **PY})
    run_foreground(ws, "evaluate", {"generation": "constant", **PY})
    comparison = compare_runs(ws, "constant", "first", resamples=200)
    assert comparison.images == 30
    assert comparison.rows["CIDEr"]["difference"] > 0 and comparison.rows["CIDEr"]["low"] > 0
    with pytest.raises(WorkbenchError, match="'first' and 'eval.first' are the same evaluation"):  # a run and its evaluation
        compare_runs(ws, "first", "eval.first", resamples=100)


def test_export_round_trip_in_three_formats(ws: Workspace, tmp_path: Path) -> None:
    run_foreground(ws, "evaluate", {"generation": "first", **PY})
    db = ws.open_db()
    gens = generations_of(db, get_run(db, "first").id)  # type: ignore[union-attr]
    add_rating(db, gens[0].id, "ann", 4, ["grammar"], "fine, one typo")
    add_rating(db, gens[0].id, "bob", 2)
    add_rating(db, gens[0].id, "bob", 3, note="second look")
    out = tmp_path / "out"
    out.mkdir()
    result = run_foreground(ws, "export", {"run": "first", "format": "jsonl", "output": str(out / "x.jsonl")})
    rows = [json.loads(line) for line in (out / "x.jsonl").read_text().splitlines()]
    assert result.data["rows"] == len(rows) == 30
    stored = scores_of(db, get_run(db, "eval.first").id)  # type: ignore[union-attr]
    first = next(r for r in rows if r["store_image_id"] == gens[0].image_id)
    assert first["generation_id"] == gens[0].id and first["run"] == "first" and isinstance(first["image_id"], int)  # a Karpathy imgid
    assert first["caption"] == gens[0].text and len(first["references"]) == 5
    assert first["scores"] == stored[gens[0].image_id]
    assert sorted((r["reviewer"], r["score"], r["note"]) for r in first["ratings"]) == [("ann", 4, "fine, one typo"), ("bob", 3, "second look")]

    run_foreground(ws, "export", {"run": "first", "format": "csv", "output": str(out / "x.csv")})
    with (out / "x.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    row = next(r for r in table if int(r["store_image_id"]) == gens[0].image_id)
    assert float(row["CIDEr"]) == stored[gens[0].image_id]["CIDEr"]
    assert json.loads(row["references"]) == first["references"] and json.loads(row["ratings"]) == first["ratings"]

    run_foreground(ws, "export", {"run": "eval.first", "format": "coco", "output": str(out / "r.json"), "split": "test"})
    results = json.loads((out / "r.json").read_text())
    assert len(results) == 4 and set(results[0]) == {"image_id", "caption"}
    metrics = json.loads((out / "r.metrics.json").read_text())
    assert metrics["corpus"]["CIDEr"] == get_run(db, "eval.first").metrics["CIDEr"]  # type: ignore[union-attr]

    before = (out / "x.jsonl").read_text()
    with pytest.raises(Exception, match="exists; pass --force"):
        run_foreground(ws, "export", {"run": "first", "format": "jsonl", "output": str(out / "x.jsonl")})
    assert (out / "x.jsonl").read_text() == before
    run_foreground(ws, "export", {"run": "first", "format": "jsonl", "output": str(out / "x.jsonl"), "force": "true"})


def test_review_summary_agreement_and_correlation(ws: Workspace) -> None:
    run_foreground(ws, "evaluate", {"generation": "constant", **PY})
    db = ws.open_db()
    gens = generations_of(db, get_run(db, "constant").id)  # type: ignore[union-attr]
    for k, g in enumerate(gens[:6]):
        add_rating(db, g.id, "ann", 1 + k % 5)
        add_rating(db, g.id, "bob", 1 + k % 5)
    s = review_summary(db, "constant")
    assert s.reviewers == {"ann": 6, "bob": 6} and s.rated_images == 6 and s.pairable_images == 6
    assert s.alpha_ordinal == pytest.approx(1.0)
    assert {c.metric for c in s.correlations} >= {"CIDEr", "Bleu_1"} and all(c.n == 6 for c in s.correlations)
    with pytest.raises(ValueError, match="unknown flag 'typo'"):
        add_rating(db, gens[0].id, "ann", 3, ["typo"])
    with pytest.raises(ValueError, match="must be 1 to 5"):
        add_rating(db, gens[0].id, "ann", 6)


_fails = fails_unchanged


def test_bad_inputs(ws: Workspace, tmp_path: Path) -> None:
    _fails(ws, "evaluate", {"generation": "nope"}, "generation='nope': no generation or baseline run")
    _fails(ws, "evaluate", {"generation": "first", "metrics": "Bleu_4,BLEU"}, "unknown metric 'BLEU'")
    _fails(ws, "evaluate", {"generation": "first", "human": "syn"}, "give exactly one of generation=RUN or human=DATASET")
    _fails(ws, "export", {"run": "first", "output": str(tmp_path / "missing" / "x.jsonl")}, "folder not found")
    _fails(ws, "export", {"run": "syn"}, "run='syn': no generation")
    (tmp_path / "bad.json").write_text(json.dumps([{"image_id": "nope.jpg", "caption": "x"}]))
    _fails(ws, "import-generations", {"results": str(tmp_path / "bad.json"), "dataset": "syn"}, "1 of 1 filenames are not in dataset 'syn' (first: nope.jpg)")
    (tmp_path / "empty.json").write_text("[]")
    _fails(ws, "import-generations", {"results": str(tmp_path / "empty.json"), "dataset": "syn"}, "empty.json: holds no captions")


def test_references_missing_for_an_image(ws: Workspace, tmp_path: Path) -> None:
    coco = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
            "annotations": [{"image_id": 1, "caption": "a pond"}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    run_foreground(ws, "ingest-captions", {"path": str(tmp_path / "c.json"), "split": "test", "allow_missing": "true", "name": "c"})
    (tmp_path / "g.json").write_text(json.dumps([{"image_id": 1, "caption": "a pond"}, {"image_id": 2, "caption": "a road"}]))
    run_foreground(ws, "import-generations", {"results": str(tmp_path / "g.json"), "dataset": "c", "name": "g"})
    _fails(ws, "evaluate", {"generation": "g", **PY}, "references missing for 1 images (first: b.jpg)")


def test_unknown_metric_is_a_params_error() -> None:
    from engine.jobs import get_kind

    with pytest.raises(ParamsError, match="metrics: unknown metric 'Cider'"):
        get_kind("evaluate").parse({"generation": "x", "metrics": "Cider"})


# ------------------------------------------------------------------------------------------------
# Flagged references: evaluate skip_flagged_refs=true, export, stats, re-ingest
# ------------------------------------------------------------------------------------------------

def _references(ws: Workspace) -> tuple[list[Any], dict[int, list[str]]]:
    db = ws.open_db()
    try:
        ds = get_dataset(db, "syn")
        images = list_images(db, ds.id)  # type: ignore[union-attr]
        return images, {i: [c.text for c in cs] for i, cs in captions_for(db, [im.id for im in images]).items()}
    finally:
        db.close()


def test_leave_out_flagged_keeps_one_copy_of_a_repeat_flagged_duplicated() -> None:
    from engine.jobs.kinds.evaluation import leave_out_flagged

    refs: dict[int, list[str]] = {1: ["a", "b", "b", "c", "d", "d"], 2: ["x", "y"], 3: ["z"]}
    flagged = {("f1", "b"): {"duplicated"}, ("f1", "c"): {"duplicated"}, ("f1", "d"): {"duplicated", "misspelt"},
               ("f2", "x"): {"misspelt"}, ("f2", "y"): {"not this image"}}
    out, counts = leave_out_flagged(refs, {1: "f1", 2: "f2", 3: "f3"}, flagged)
    assert out == {1: ["a", "b"], 2: ["x", "y"], 3: ["z"]}  # every copy of d goes: misspelt as well
    assert counts == (4, 2, 1)


def test_skip_flagged_refs_leaves_them_out_says_how_many_and_the_default_is_unchanged(ws: Workspace) -> None:
    base = run_foreground(ws, "evaluate", {"generation": "first", **PY})
    images, refs = _references(ws)
    db = ws.open_db()
    a, b, c = images[0], images[1], images[2]
    flag_reference(db, "syn", a.filename, refs[a.id][0], "ann", "misspelt")  # the caption "first" copies
    for text in refs[b.id]:  # every reference of b: kept, and counted
        flag_reference(db, "syn", b.filename, text, "bob", "not this image")
    flag_reference(db, "syn", c.filename, refs[c.id][1], "ann", "misspelt")
    flag_reference(db, "syn", c.filename, refs[c.id][1], "ann", None)  # cleared: counts no more
    again = run_foreground(ws, "evaluate", {"generation": "first", **PY})
    assert again.data["corpus"] == base.data["corpus"] and "flagged" not in again.message
    assert "skipped_flagged_refs" not in get_run_by_id(db, again.run_id).metrics  # type: ignore[arg-type,union-attr]

    result = run_foreground(ws, "evaluate", {"generation": "first", "skip_flagged_refs": "true", **PY})
    run = get_run_by_id(db, result.run_id)  # type: ignore[arg-type]
    assert run is not None and run.params["skip_flagged_refs"] is True
    left_out = refs[a.id].count(refs[a.id][0])
    assert (run.metrics["skipped_flagged_refs"], run.metrics["kept_flagged_refs"], run.metrics["images_all_refs_flagged"]) == (
        left_out, len(refs[b.id]), 1)
    assert (f"left out {left_out} flagged reference{'s' if left_out != 1 else ''} (kept {len(refs[b.id])} more, of 1 image "
            "whose every reference is flagged") in result.message
    before, after = scores_of(db, base.run_id), scores_of(db, run.id)  # type: ignore[arg-type]
    assert after[a.id]["Bleu_4"] < before[a.id]["Bleu_4"] == pytest.approx(1.0)  # its copy of the caption is gone
    assert after[b.id]["Bleu_4"] == before[b.id]["Bleu_4"] and after[c.id]["Bleu_4"] == before[c.id]["Bleu_4"]

    human = run_foreground(ws, "evaluate", {"human": "syn", "skip_flagged_refs": "true", **PY})
    assert get_run_by_id(db, human.run_id).metrics["skipped_flagged_refs"] == left_out  # type: ignore[arg-type,union-attr]


def test_export_carries_each_references_current_flags(ws: Workspace, tmp_path: Path) -> None:
    images, refs = _references(ws)
    db = ws.open_db()
    a = images[0]
    flag_reference(db, "syn", a.filename, refs[a.id][2], "ann", "misspelt", "parkinglot")
    flag_reference(db, "syn", a.filename, refs[a.id][2], "bob", "duplicated")
    run_foreground(ws, "export", {"run": "first", "format": "jsonl", "output": str(tmp_path / "x.jsonl")})
    rows = {r["filename"]: r for r in map(json.loads, (tmp_path / "x.jsonl").read_text().splitlines())}
    row = rows[a.filename]
    assert len(row["reference_flags"]) == len(row["references"])
    flagged = [k for k, text in enumerate(row["references"]) if text == refs[a.id][2]]
    assert row["reference_flags"][flagged[0]] == [{"flag": "misspelt", "reviewer": "ann", "note": "parkinglot"},
                                                   {"flag": "duplicated", "reviewer": "bob", "note": ""}]
    assert all(row["reference_flags"][k] == [] for k in range(len(row["references"])) if k not in flagged)
    assert all(r["reference_flags"] == [[]] * len(r["references"]) for name, r in rows.items() if name != a.filename)
    run_foreground(ws, "export", {"run": "first", "format": "csv", "output": str(tmp_path / "x.csv")})
    with (tmp_path / "x.csv").open(newline="") as fh:
        table = {r["filename"]: r for r in csv.DictReader(fh)}
    assert json.loads(table[a.filename]["reference_flags"]) == row["reference_flags"]


def test_a_flag_survives_reingest_with_replace_and_counts_in_stats_and_evaluate(ws: Workspace, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from workbench.cli import app

    images, refs = _references(ws)
    db = ws.open_db()
    annotations = get_dataset(db, "syn").annotations  # type: ignore[union-attr]
    a, b = images[0], images[1]
    flag_reference(db, "syn", a.filename, refs[a.id][0], "ann", "misspelt")
    flag_reference(db, "syn", b.filename, refs[b.id][3], "bob", "not this image")
    add_rating(db, generations_of(db, get_run(db, "first").id)[0].id, "ann", 4)  # type: ignore[union-attr]
    db.close()  # a rated dataset is kept as syn~ID, so the new one gets new row ids
    runner = CliRunner()
    result = runner.invoke(app, ["--workspace", str(ws.root), "ingest", "captions", str(annotations), "--name", "syn", "--replace"])
    assert result.exit_code == 0, result.output
    db = ws.open_db()
    new = list_images(db, get_dataset(db, "syn").id)  # type: ignore[union-attr]
    new_a = next(im for im in new if im.filename == a.filename)
    assert new_a.id != a.id and get_dataset(db, f"syn~{a.dataset_id}") is not None  # new rows; the flag applies by filename and text
    assert [f.flag for f in image_flags(db, new_a.id)[refs[a.id][0]]] == ["misspelt"]
    stats = runner.invoke(app, ["--workspace", str(ws.root), "stats", "syn"])
    flagged = refs[a.id].count(refs[a.id][0]) + refs[b.id].count(refs[b.id][3])
    assert stats.exit_code == 0 and (f"flagged     {flagged:>7}   references flagged by reviewers (misspelt "
                                     f"{refs[a.id].count(refs[a.id][0])}, not this image {refs[b.id].count(refs[b.id][3])})") in stats.output
    run_foreground(ws, "import-generations", {"results": str(tmp_path / "first.json"), "dataset": "syn", "name": "again"})
    scored = run_foreground(ws, "evaluate", {"generation": "again", "skip_flagged_refs": "true", **PY})
    assert get_run_by_id(db, scored.run_id).metrics["skipped_flagged_refs"] == flagged  # type: ignore[arg-type,union-attr]
