"""import-generations and export: ids that cannot be confused, files any evaluator loads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.jobs.foreground import run_foreground
from engine.jobs.kinds.exchange import typed_id
from engine.store.catalog import get_dataset, list_images
from engine.store.results import generations_of
from engine.store.runs import get_run
from engine.workspace import Workspace
from tests.conftest import fails_unchanged

COCO_REFS = "rsicd-val-refs/captions_rsicd_val_coco.json"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path / "ws")
    w.init()
    return w


def test_typed_ids() -> None:
    assert typed_id("9828") == 9828 and typed_id("0") == 0 and typed_id("-3") == -3
    assert typed_id("00123") == "00123" and typed_id("abc") == "abc" and typed_id(None) is None


def test_a_coco_export_loads_in_pycocotools_and_scores_as_the_toolkit_does(ws: Workspace, tmp_path: Path, shared_data: Path) -> None:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocotools.coco import COCO

    from engine.evaluation.tokenize import ptb_tokenize

    refs = shared_data / COCO_REFS
    run_foreground(ws, "ingest-captions", {"path": str(refs), "name": "val", "split": "val", "allow_missing": True})
    coco_refs = json.loads(refs.read_text())
    first: dict[int, str] = {}
    for a in coco_refs["annotations"]:
        first.setdefault(a["image_id"], a["caption"])
    results = [{"image_id": i, "caption": c} for i, c in list(first.items())[:300]]  # integer ids, as a COCO evaluator writes them
    (tmp_path / "mine.json").write_text(json.dumps(results))
    imported = run_foreground(ws, "import-generations", {"results": str(tmp_path / "mine.json"), "dataset": "val"})
    assert "matched by the image ids of val's coco file" in imported.message
    evaluated = run_foreground(ws, "evaluate", {"generation": "mine", "tokenizer": "python", "resamples": 0,
                                                "metrics": "Bleu_1,Bleu_2,Bleu_3,Bleu_4,CIDEr"})
    out = tmp_path / "export.json"
    run_foreground(ws, "export", {"run": "mine", "format": "coco", "output": str(out)})
    exported = json.loads(out.read_text())
    assert all(isinstance(r["image_id"], int) for r in exported)

    coco = COCO(str(refs))
    res = coco.loadRes(str(out))  # raises "Results do not correspond to current coco set" for string ids
    ids = res.getImgIds()
    assert sorted(ids) == sorted(r["image_id"] for r in results)
    gts = {i: [ptb_tokenize(a["caption"]) for a in coco.imgToAnns[i]] for i in ids}
    hyp = {i: [ptb_tokenize(a["caption"]) for a in res.imgToAnns[i]] for i in ids}
    bleu, _ = Bleu(4).compute_score(gts, hyp)
    cider, _ = Cider().compute_score(gts, hyp)
    corpus = evaluated.data["corpus"]
    assert [corpus[f"Bleu_{n}"] for n in range(1, 5)] == pytest.approx(bleu, abs=1e-9)
    assert corpus["CIDEr"] == pytest.approx(cider, abs=1e-9)


def _karpathy(tmp_path: Path, name: str, files: list[str]) -> Path:
    """A Karpathy file whose imgid is each image's position, as RSICD's are."""
    images = [{"filename": f, "imgid": k, "split": "test", "sentences": [{"raw": f"a caption of {f}", "tokens": []}]} for k, f in enumerate(files)]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"images": images}))
    return path


def test_numbers_are_refused_for_a_karpathy_dataset_unless_asked(ws: Workspace, tmp_path: Path) -> None:
    run_foreground(ws, "ingest-captions", {"path": str(_karpathy(tmp_path, "one", ["bridge_78.jpg", "square_7.jpg"])), "name": "one",
                                           "allow_missing": True})
    (tmp_path / "numbers.json").write_text(json.dumps([{"image_id": 1, "caption": "a square"}]))
    message = fails_unchanged(ws, "import-generations", {"results": str(tmp_path / "numbers.json"), "dataset": "one"},
                              "image ids are numbers, and dataset 'one' came from a karpathy file")
    assert "match=id" in message and "--id filename" in message
    asked = run_foreground(ws, "import-generations", {"results": str(tmp_path / "numbers.json"), "dataset": "one", "match": "id"})
    db = ws.open_db()
    assert "matched by the image ids of one's karpathy file" in asked.message
    assert [g.text for g in generations_of(db, get_run(db, "numbers").id)] == ["a square"]  # type: ignore[union-attr]

    (tmp_path / "names.json").write_text(json.dumps([{"image_id": "bridge_78.jpg", "caption": "a bridge"}]))
    named = run_foreground(ws, "import-generations", {"results": str(tmp_path / "names.json"), "dataset": "one"})
    assert "matched by filename" in named.message
    (tmp_path / "mixed.json").write_text(json.dumps([{"image_id": "bridge_78.jpg", "caption": "x"}, {"image_id": 5, "caption": "y"}]))
    fails_unchanged(ws, "import-generations", {"results": str(tmp_path / "mixed.json"), "dataset": "one"},
                    "1 of 2 filenames are not in dataset 'one' (first: 5)")


def test_export_by_filename_imports_back_into_another_dataset_by_filename(ws: Workspace, tmp_path: Path) -> None:
    run_foreground(ws, "ingest-captions", {"path": str(_karpathy(tmp_path, "a", ["x.jpg", "y.jpg"])), "name": "a", "allow_missing": True})
    run_foreground(ws, "ingest-captions", {"path": str(_karpathy(tmp_path, "b", ["y.jpg", "x.jpg"])), "name": "b", "allow_missing": True})
    (tmp_path / "g.json").write_text(json.dumps([{"image_id": "x.jpg", "caption": "about x"}, {"image_id": "y.jpg", "caption": "about y"}]))
    run_foreground(ws, "import-generations", {"results": str(tmp_path / "g.json"), "dataset": "a"})
    by_name = tmp_path / "by-name.json"
    run_foreground(ws, "export", {"run": "g", "format": "coco", "output": str(by_name), "id": "filename"})
    assert json.loads(by_name.read_text()) == [{"image_id": "x.jpg", "caption": "about x"}, {"image_id": "y.jpg", "caption": "about y"}]
    run_foreground(ws, "import-generations", {"results": str(by_name), "dataset": "b", "name": "moved"})
    db = ws.open_db()
    rows = run_foreground(ws, "export", {"run": "moved", "format": "jsonl", "output": str(tmp_path / "m.jsonl")})
    assert rows.data["rows"] == 2
    exported = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert {(r["filename"], r["caption"], r["image_id"]) for r in exported} == {("x.jpg", "about x", 1), ("y.jpg", "about y", 0)}
    b_ids = {im.filename: im.id for im in list_images(db, get_dataset(db, "b").id)}  # type: ignore[union-attr]
    assert {r["filename"]: r["store_image_id"] for r in exported} == b_ids  # attached to b's images, not a's


def test_export_errors_are_one_line(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_foreground(ws, "ingest-captions", {"path": str(_karpathy(tmp_path, "a", ["x.jpg"])), "name": "a", "allow_missing": True})
    (tmp_path / "g.json").write_text(json.dumps([{"image_id": "x.jpg", "caption": "about x"}]))
    run_foreground(ws, "import-generations", {"results": str(tmp_path / "g.json"), "dataset": "a"})
    folder = tmp_path / "folder"
    folder.mkdir()
    fails_unchanged(ws, "export", {"run": "g", "output": str(folder), "force": True}, "is a folder; give a file name")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: refuse the way the kernel would
            import tempfile

            def denied(*args: object, **kwargs: object) -> None:
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr(tempfile, "mkstemp", denied)
        fails_unchanged(ws, "export", {"run": "g", "output": str(locked / "x.jsonl")}, f"{locked}: cannot write here (Permission denied)")
    finally:
        locked.chmod(0o700)
    assert not list(locked.iterdir())
