"""Caption files, images, scene lists and the drone class table, read directly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.datasets.captions import detect_format, read_caption_file
from engine.datasets.drone import read_class_table, split_of
from engine.datasets.errors import DatasetError
from engine.datasets.images import probe_image, resolve_inside
from engine.datasets.scenes import read_scene_lists, scene_from_filename
from engine.datasets.text import duplicate_key, simple_tokens


def test_scene_from_filename() -> None:
    assert scene_from_filename("airport_12.jpg") == "airport"
    assert scene_from_filename("sparseresidential_268.jpg") == "sparseresidential"
    assert scene_from_filename("00001.jpg") is None
    assert scene_from_filename("7.tif") is None


def test_scene_lists_conflict_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "Pond.txt").write_text("1.jpg\n2.jpg\n")
    (tmp_path / "River.txt").write_text("2.jpg\n")
    with pytest.raises(DatasetError, match="2.jpg is also listed in Pond.txt"):
        read_scene_lists(tmp_path)
    (tmp_path / "River.txt").write_text("3.jpg\n\n")
    assert read_scene_lists(tmp_path) == {"1.jpg": "pond", "2.jpg": "pond", "3.jpg": "river"}


def test_duplicate_key_ignores_case_and_punctuation() -> None:
    assert duplicate_key("A pond .") == duplicate_key("a  pond")
    assert duplicate_key("a pond") != duplicate_key("a ponds")
    assert simple_tokens("Two cars, parked near a tree-lined road.") == ["two", "cars", "parked", "near", "a", "tree-lined", "road"]


def test_detect_format() -> None:
    assert detect_format({"images": [{"filename": "a", "sentences": []}]}) == "karpathy"
    assert detect_format({"images": [], "annotations": []}) == "coco"
    assert detect_format({"images": [{"file": 1}]}) is None
    assert detect_format([1, 2]) is None


def test_restval_counts_as_train(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"images": [{"filename": "a.jpg", "split": "restval", "sentences": [{"raw": "x ."}]}]}))
    assert read_caption_file(path).entries[0].split == "train"


def test_coco_annotation_for_unknown_image(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 2, "caption": "x"}]}))
    with pytest.raises(DatasetError, match=r"annotations\[0\] refers to image_id 2"):
        read_caption_file(path, split="val")


def test_resolve_inside(tmp_path: Path) -> None:
    assert resolve_inside(tmp_path, "sub/a.jpg") == tmp_path / "sub" / "a.jpg"
    for bad in ("../a.jpg", "sub/../../a.jpg", "/abs.jpg", ""):
        with pytest.raises(DatasetError):
            resolve_inside(tmp_path, bad)


@pytest.mark.parametrize("fmt,suffix", [("JPEG", "jpg"), ("PNG", "png"), ("TIFF", "tif")])
def test_probe_reads_size_and_hash_of_each_format(tmp_path: Path, fmt: str, suffix: str) -> None:
    import hashlib

    path = tmp_path / f"x.{suffix}"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path, format=fmt)
    probe = probe_image(path)
    assert (probe.status, probe.width, probe.height, probe.format) == ("ok", 30, 20, fmt)
    assert probe.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert probe.file_size == path.stat().st_size


def test_probe_flags_truncated_png_and_unsupported_format(tmp_path: Path) -> None:
    png = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(png)
    png.write_bytes(png.read_bytes()[:-400])
    assert probe_image(png).status == "corrupt"
    gif = tmp_path / "x.gif"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gif)
    probe = probe_image(gif)
    assert probe.status == "corrupt" and "GIF images are not supported" in (probe.detail or "")
    assert probe_image(tmp_path / "nope.jpg").status == "missing"


def test_class_table_real_header_with_spaces(tmp_path: Path) -> None:
    path = tmp_path / "class_dict_seg.csv"
    path.write_text("name, r, g, b\nunlabeled,0,0,0\npaved-area,128,64,128\n")
    classes = read_class_table(path)
    assert [(c.index, c.name, c.rgb) for c in classes] == [(0, "unlabeled", (0, 0, 0)), (1, "paved-area", (128, 64, 128))]
    path.write_text("name, r, g, b\nroof,70,x,70\n")
    with pytest.raises(DatasetError, match="line 2"):
        read_class_table(path)


def test_drone_split_is_stable_and_roughly_80_10_10() -> None:
    splits = [split_of(f"{i:03d}") for i in range(1000)]
    assert split_of("042") == split_of("042")
    assert 700 < splits.count("train") < 900 and 50 < splits.count("val") < 150
