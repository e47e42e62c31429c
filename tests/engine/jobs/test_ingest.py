"""Ingest of captioning and drone datasets: real samples, the synthetic world, and bad input.

Every bad-input case asserts the message names the file or field, and that the database is
exactly as it was before.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.datasets.errors import DatasetError
from engine.datasets.synthetic import write_captioning_dataset, write_drone_dataset
from engine.jobs.foreground import run_foreground
from engine.store.catalog import captions_for, dataset_stats, get_dataset, list_images
from engine.workspace import Workspace
from tests.conftest import db_fingerprint, fails_unchanged


def ingest(ws: Workspace, **params: Any) -> Any:
    return run_foreground(ws, "ingest-captions", params)


def karpathy(folder: Path, entries: list[dict[str, Any]], *, name: str = "tiny") -> Path:
    """Write a Karpathy file and 32x32 JPEGs for its entries (unless an entry says image=False)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images = []
    for i, e in enumerate(entries):
        if e.pop("image", True):
            Image.fromarray(np.full((32, 32, 3), i * 20, np.uint8)).save(folder / "images" / e["filename"])
        sentences = e.pop("sentences", [f"caption {k} of image {i} ." for k in range(5)])
        images.append({"split": "train", "imgid": i, **e, "sentences": [{"raw": s, "tokens": s.rstrip(" .").split()} for s in sentences]})
    path = folder / "dataset.json"
    path.write_text(json.dumps({"dataset": name, "images": images}))
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return karpathy(tmp_path / "tiny", [{"filename": "a_1.jpg"}, {"filename": "b_2.jpg", "split": "val"}, {"filename": "c_3.jpg", "split": "test"}])


# ---------------------------------------------------------------------------------------------
# Real samples
# ---------------------------------------------------------------------------------------------

def test_rsicd_sample_ingests_17_images_and_85_captions(workspace: Workspace, shared_data: Path) -> None:
    result = ingest(workspace, path=str(shared_data / "rsicd-sample"))
    assert result.data["images"] == 17 and result.data["captions"] == 85
    assert "17 images" in result.message and "85 captions" in result.message
    db = workspace.open_db()
    ds = get_dataset(db, "rsicd")
    assert ds is not None and ds.source_format == "karpathy"
    images = list_images(db, ds.id)
    assert {i.status for i in images} == {"ok"}
    sizes = {(i.width, i.height) for i in images}
    assert sizes == {(224, 224), (384, 384)}
    first = next(i for i in images if i.filename == "00001.jpg")
    refs = captions_for(db, [first.id])[first.id]
    assert refs[0].text == "a football field with several buildiings surroudned ."
    assert [c.idx for c in refs] == [0, 1, 2, 3, 4]
    assert {i.scene for i in images if i.filename.startswith("square_")} == {"square"}
    assert next(i for i in images if i.filename == "00001.jpg").scene is None


def test_rsicd_scene_lists_give_scenes_to_numbered_files(workspace: Workspace, shared_data: Path) -> None:
    ingest(workspace, path=str(shared_data / "rsicd-sample"), scenes=str(shared_data / "rsicd-scenes"))
    db = workspace.open_db()
    ds = get_dataset(db, "rsicd")
    assert ds is not None
    scenes = {i.filename: i.scene for i in list_images(db, ds.id)}
    assert all(scenes.values())
    assert scenes["airport_17.jpg"] == "airport"


def test_ucm_sample_fails_with_missing_summary_then_succeeds_with_allow_missing(workspace: Workspace, shared_data: Path) -> None:
    before = db_fingerprint(workspace)
    with pytest.raises(DatasetError) as err:
        ingest(workspace, path=str(shared_data / "ucm-captions"))
    message = str(err.value)
    assert "2091 of 2100 images" in message and "2091 missing" in message and "10.tif" in message
    assert "--allow-missing" in message
    assert db_fingerprint(workspace) == before
    result = ingest(workspace, path=str(shared_data / "ucm-captions"), allow_missing=True)
    assert result.data == {"dataset": "UCM", "images": 2100, "captions": 10500, "ok": 9, "missing": 2091, "corrupt": 0}
    db = workspace.open_db()
    ds = get_dataset(db, "UCM")
    assert ds is not None
    stats = dataset_stats(db, ds)
    assert stats.by_split == {"test": 210, "train": 1680, "val": 210}
    ok = list_images(db, ds.id, status="ok")
    assert sorted(i.filename for i in ok) == [f"{k}.tif" for k in range(1, 10)]
    assert all((i.width, i.height) == (256, 256) for i in ok)


def test_coco_val_references_with_split_and_scenes(workspace: Workspace, shared_data: Path) -> None:
    folder = shared_data / "rsicd-val-refs"
    before = db_fingerprint(workspace)
    with pytest.raises(DatasetError, match="carry no split; pass --split"):
        ingest(workspace, path=str(folder), allow_missing=True)
    assert db_fingerprint(workspace) == before
    result = ingest(workspace, path=str(folder), split="val", allow_missing=True, name="rsicd-val",
                    scenes=str(shared_data / "rsicd-scenes"))
    assert result.data["images"] == 1094 and result.data["captions"] == 5469
    db = workspace.open_db()
    ds = get_dataset(db, "rsicd-val")
    assert ds is not None and ds.source_format == "coco"
    stats = dataset_stats(db, ds)
    assert stats.by_split == {"val": 1094}
    assert "(none)" not in stats.scenes


def test_coco_split_from_karpathy(tmp_path: Path, workspace: Workspace, tiny: Path) -> None:
    coco = {
        "images": [{"id": 7, "file_name": "a_1.jpg"}, {"id": 8, "file_name": "b_2.jpg"}],
        "annotations": [{"image_id": 7, "caption": "A pond."}, {"image_id": 8, "caption": "Two roads"}, {"image_id": 7, "caption": "a pond"}],
    }
    path = tiny.parent / "coco.json"
    path.write_text(json.dumps(coco))
    ingest(workspace, path=str(path), split_from=str(tiny), name="coco")
    db = workspace.open_db()
    ds = get_dataset(db, "coco")
    assert ds is not None
    images = {i.filename: i for i in list_images(db, ds.id)}
    assert images["a_1.jpg"].split == "train" and images["b_2.jpg"].split == "val"
    refs = captions_for(db, [images["a_1.jpg"].id])[images["a_1.jpg"].id]
    assert [(c.text, c.tokens, c.is_duplicate) for c in refs] == [("A pond.", "a pond", False), ("a pond", "a pond", True)]


# ---------------------------------------------------------------------------------------------
# Synthetic world through the real path
# ---------------------------------------------------------------------------------------------

def test_synthetic_world_ingests_through_the_real_path(tmp_path: Path, workspace: Workspace) -> None:
    written = write_captioning_dataset(tmp_path / "syn", 20, size=64, seed=3)
    result = ingest(workspace, path=str(written.root), name="syn")
    assert result.data["images"] == 20 and result.data["captions"] == 100
    db = workspace.open_db()
    ds = get_dataset(db, "syn")
    assert ds is not None
    stats = dataset_stats(db, ds)
    assert stats.by_split == {"test": 2, "train": 15, "val": 3}
    assert set(stats.scenes) == {"residential", "parking", "river", "pond", "forest", "farmland", "bareland", "industrial"}
    drone = write_drone_dataset(tmp_path / "drone", 6, size=64, seed=3)
    result = run_foreground(workspace, "ingest-drone", {"path": str(drone.root), "name": "d"})
    assert result.data == {"dataset": "d", "images": 6, "classes": 24}
    ds = get_dataset(db, "d")
    assert ds is not None and ds.kind == "segmentation"
    assert all(i.label_path and i.label_path.startswith("label_images_semantic/") for i in list_images(db, ds.id))


def test_replace_swaps_the_dataset_in_one_go(workspace: Workspace, tiny: Path) -> None:
    ingest(workspace, path=str(tiny))
    result = ingest(workspace, path=str(tiny), replace=True)
    assert result.data["images"] == 3
    db = workspace.open_db()
    assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 3
    assert db.execute("SELECT COUNT(*) FROM captions").fetchone()[0] == 15


def test_allow_missing_stores_status_and_reason(workspace: Workspace, tiny: Path) -> None:
    (tiny.parent / "images" / "b_2.jpg").unlink()
    (tiny.parent / "images" / "c_3.jpg").write_bytes(b"")
    result = ingest(workspace, path=str(tiny), allow_missing=True)
    assert (result.data["ok"], result.data["missing"], result.data["corrupt"]) == (1, 1, 1)
    db = workspace.open_db()
    rows = {r["filename"]: (r["status"], r["status_detail"]) for r in db.query("SELECT filename, status, status_detail FROM images")}
    assert rows["b_2.jpg"] == ("missing", "file not found")
    assert rows["c_3.jpg"] == ("corrupt", "empty file (0 bytes)")


# ---------------------------------------------------------------------------------------------
# Bad input: one clear message naming the file or field, and an unchanged database
# ---------------------------------------------------------------------------------------------

def _fails(ws: Workspace, match: str, kind: str = "ingest-captions", **params: Any) -> str:
    return fails_unchanged(ws, kind, params, match)


def test_truncated_json(workspace: Workspace, tiny: Path) -> None:
    tiny.write_text(tiny.read_text()[:-40])
    msg = _fails(workspace, "not valid JSON", path=str(tiny))
    assert str(tiny) in msg and "truncated" in msg


def test_unknown_format(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"rows": [1, 2]}))
    _fails(workspace, "unknown caption format", path=str(path))


def test_non_utf8_caption_file(workspace: Workspace, tiny: Path) -> None:
    tiny.write_bytes(tiny.read_bytes().replace(b"caption 0", b"caption \xe9"))
    msg = _fails(workspace, "not UTF-8 text", path=str(tiny))
    assert str(tiny) in msg


def test_missing_image(workspace: Workspace, tiny: Path) -> None:
    (tiny.parent / "images" / "b_2.jpg").unlink()
    msg = _fails(workspace, "1 of 3 images", path=str(tiny))
    assert "1 missing (b_2.jpg)" in msg and "--allow-missing" in msg


def test_zero_byte_image(workspace: Workspace, tiny: Path) -> None:
    (tiny.parent / "images" / "a_1.jpg").write_bytes(b"")
    _fails(workspace, "a_1.jpg: empty file (0 bytes)", path=str(tiny))


def test_corrupt_jpeg_garbage(workspace: Workspace, tiny: Path) -> None:
    (tiny.parent / "images" / "a_1.jpg").write_bytes(b"\x00garbage" * 100)
    _fails(workspace, "a_1.jpg: not a JPEG, PNG or TIFF image", path=str(tiny))


def test_truncated_jpeg(workspace: Workspace, tiny: Path) -> None:
    img = tiny.parent / "images" / "a_1.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(img)
    img.write_bytes(img.read_bytes()[: img.stat().st_size // 2])
    _fails(workspace, "a_1.jpg: cannot be decoded", path=str(tiny))


def test_path_escaping_the_images_folder(workspace: Workspace, tmp_path: Path) -> None:
    path = karpathy(tmp_path / "esc", [{"filename": "a_1.jpg"}, {"filename": "../../secret.jpg", "image": False}])
    _fails(workspace, "'../../secret.jpg' resolves outside the images folder", path=str(path), allow_missing=True)
    path = karpathy(tmp_path / "abs", [{"filename": "/etc/passwd", "image": False}])
    _fails(workspace, "must be relative to the images folder", path=str(path), allow_missing=True)


def test_duplicate_filenames(workspace: Workspace, tmp_path: Path) -> None:
    path = karpathy(tmp_path / "dup", [{"filename": "a_1.jpg"}, {"filename": "a_1.jpg"}])
    msg = _fails(workspace, "filename 'a_1.jpg' appears twice (images[0] and images[1])", path=str(path))
    assert str(path) in msg


def test_reingest_without_replace(workspace: Workspace, tiny: Path) -> None:
    ingest(workspace, path=str(tiny))
    _fails(workspace, "dataset 'tiny' already exists", path=str(tiny))


def test_unknown_split_value(workspace: Workspace, tmp_path: Path) -> None:
    path = karpathy(tmp_path / "s", [{"filename": "a_1.jpg", "split": "training"}])
    _fails(workspace, "images[0]: split 'training' is not one of train, val, test", path=str(path))


def test_bad_param_names_the_field(workspace: Workspace, tiny: Path) -> None:
    _fails(workspace, "unknown parameter 'imgs'", path=str(tiny), imgs="x")
    _fails(workspace, "name='bad name!'", path=str(tiny), name="bad name!")


# Drone dataset ---------------------------------------------------------------------------------

@pytest.fixture
def drone_dir(tmp_path: Path) -> Path:
    return write_drone_dataset(tmp_path / "drone", 4, size=48, seed=1).root


def test_drone_mask_with_value_30(workspace: Workspace, drone_dir: Path) -> None:
    label = drone_dir / "label_images_semantic" / "002.png"
    arr = np.asarray(Image.open(label)).copy()
    arr[5, 5] = 30
    Image.fromarray(arr).save(label)
    msg = _fails(workspace, "value 30 (1 pixels) is outside the class table (0..23)", kind="ingest-drone", path=str(drone_dir))
    assert "002.png" in msg


def test_drone_image_without_mask(workspace: Workspace, drone_dir: Path) -> None:
    (drone_dir / "label_images_semantic" / "001.png").unlink()
    _fails(workspace, "1 image without a partner", kind="ingest-drone", path=str(drone_dir))


def test_drone_rgb_mask_and_size_mismatch(workspace: Workspace, drone_dir: Path) -> None:
    label = drone_dir / "label_images_semantic" / "000.png"
    Image.open(label).convert("RGB").save(label)
    _fails(workspace, "mode RGB is not a class-index mask", kind="ingest-drone", path=str(drone_dir))
    Image.fromarray(np.zeros((20, 48), np.uint8)).save(label)
    _fails(workspace, "must be the same size", kind="ingest-drone", path=str(drone_dir))


def test_drone_wrong_layout(workspace: Workspace, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _fails(workspace, "not a Semantic Drone Dataset folder", kind="ingest-drone", path=str(tmp_path / "empty"))


def test_drone_nested_kaggle_layout_and_real_class_table(workspace: Workspace, drone_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    nested = tmp_path / "kaggle" / "dataset" / "semantic_drone_dataset"
    shutil.copytree(drone_dir, nested)
    shutil.copy(shared_data / "drone" / "class_dict_seg.csv", nested / "class_dict_seg.csv")
    result = run_foreground(workspace, "ingest-drone", {"path": str(tmp_path / "kaggle")})
    assert result.data == {"dataset": "drone", "images": 4, "classes": 24}
    ds = get_dataset(workspace.open_db(), "drone")
    assert ds is not None
    assert [c["name"] for c in ds.meta["classes"]][:3] == ["unlabeled", "paved-area", "dirt"]


# ---------------------------------------------------------------------------------------------
# Normalisation and what an ingest reports
# ---------------------------------------------------------------------------------------------

def test_one_file_under_two_spellings_is_one_image(workspace: Workspace, tmp_path: Path) -> None:
    path = karpathy(tmp_path / "dot", [{"filename": "a_1.jpg"}, {"filename": "./a_1.jpg", "image": False}])
    _fails(workspace, "filename 'a_1.jpg' appears twice (images[0] and images[1])", path=str(path))
    single = karpathy(tmp_path / "single", [{"filename": "./a_1.jpg"}])
    ingest(workspace, path=str(single))
    assert [im.filename for im in list_images(workspace.open_db(), get_dataset(workspace.open_db(), "tiny").id)] == ["a_1.jpg"]  # type: ignore[union-attr]


def test_empty_references_are_left_out_and_counted(workspace: Workspace, tmp_path: Path) -> None:
    path = karpathy(tmp_path / "empty", [{"filename": "a_1.jpg", "sentences": ["a road .", "   ", "a car ."]},
                                         {"filename": "b_2.jpg", "sentences": []}])
    data = json.loads(path.read_text())
    data["images"][0]["sentences"][1] = {"raw": "   ", "tokens": []}
    path.write_text(json.dumps(data))
    result = ingest(workspace, path=str(path))
    assert "1 empty references left out" in result.message and "1 images have no references (first: b_2.jpg)" in result.message
    db = workspace.open_db()
    images = {im.filename: im.id for im in list_images(db, get_dataset(db, "tiny").id)}  # type: ignore[union-attr]
    refs = captions_for(db, list(images.values()))
    assert [c.text for c in refs[images["a_1.jpg"]]] == ["a road .", "a car ."] and refs[images["b_2.jpg"]] == []


def test_a_symlink_leading_outside_the_images_folder_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    path = karpathy(tmp_path / "link", [{"filename": "a_1.jpg"}, {"filename": "b_2.jpg", "image": False}])
    secret = tmp_path / "secret.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(secret)
    (tmp_path / "link" / "images" / "b_2.jpg").symlink_to(secret)
    _fails(workspace, f"1 images in {(tmp_path / 'link' / 'images').resolve()} are symlinks to files outside it (first: b_2.jpg ->",
           path=str(path))
    (tmp_path / "link" / "images" / "b_2.jpg").unlink()  # a link within the folder is fine
    (tmp_path / "link" / "images" / "b_2.jpg").symlink_to(tmp_path / "link" / "images" / "a_1.jpg")
    assert ingest(workspace, path=str(path)).data["ok"] == 2


def test_scene_lists_match_by_base_name_and_images_without_a_scene_are_counted(workspace: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "sc"
    path = karpathy(folder, [{"filename": "00001.jpg"}, {"filename": "00002.jpg"}, {"filename": "00003.jpg"}])
    data = json.loads(path.read_text())
    for img in data["images"]:
        img["filename"] = f"images/{img['filename']}"  # the file names its images with their folder
    path.write_text(json.dumps(data))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "Airport.txt").write_text("00001.jpg\n")
    (lists / "Beach.txt").write_text("images/00002.jpg\n")
    result = ingest(workspace, path=str(path), images=str(folder), scenes=str(lists))
    assert f"1 images got no scene (first: images/00003.jpg; not in the lists of {lists})" in result.message
    db = workspace.open_db()
    scenes = {im.filename: im.scene for im in list_images(db, get_dataset(db, "tiny").id)}  # type: ignore[union-attr]
    assert scenes == {"images/00001.jpg": "airport", "images/00002.jpg": "beach", "images/00003.jpg": None}


def test_two_ingests_of_one_new_name_leave_one_dataset_and_one_clear_error(workspace: Workspace, tiny: Path) -> None:
    """The loser of the race finds the name taken when it writes: one line, nothing written."""
    from engine.store.catalog import DatasetWriter

    db = workspace.open_db()
    with DatasetWriter(db, name="tiny", kind="captioning", source_format="karpathy", root=str(tiny.parent), annotations=None,
                       meta={}, replace=False):
        pass  # another process created the dataset after this ingest checked the name
    import engine.jobs.kinds.ingest as kinds

    real = kinds.get_dataset
    kinds.get_dataset = lambda db, name: None  # type: ignore[assignment]  # the check ran before the other one finished
    try:
        _fails(workspace, "dataset 'tiny' was just created by another ingest; pass --replace", path=str(tiny))
    finally:
        kinds.get_dataset = real  # type: ignore[assignment]


def test_drone_kaggle_download_with_the_class_table_at_its_top(workspace: Workspace, drone_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    top = tmp_path / "kaggle"
    nested = top / "dataset" / "semantic_drone_dataset"
    shutil.copytree(drone_dir, nested)
    (nested / "class_dict_seg.csv").unlink(missing_ok=True)
    shutil.copy(shared_data / "drone" / "class_dict_seg.csv", top / "class_dict_seg.csv")
    result = run_foreground(workspace, "ingest-drone", {"path": str(top)})
    assert result.data == {"dataset": "drone", "images": 4, "classes": 24}
    (top / "class_dict_seg.csv").unlink()
    _fails(workspace, "has original_images/ but no class_dict_seg.csv", kind="ingest-drone", path=str(top), replace=True)
