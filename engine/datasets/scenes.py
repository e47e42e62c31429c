"""Scene labels: from the filename prefix (``airport_12.jpg`` -> ``airport``) or from per-scene
lists (a folder of ``Scene.txt`` files, one filename a line, as RSICD publishes them)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from engine.datasets.errors import DatasetError

_PREFIX = re.compile(r"^([A-Za-z][A-Za-z_-]*?)[_-]?\d+$")


def scene_from_filename(filename: str) -> str | None:
    """The scene a filename's prefix names, lower-cased; None for bare numbers (``00001.jpg``)."""
    match = _PREFIX.match(os.path.splitext(os.path.basename(filename))[0])
    return match.group(1).lower() if match else None


def read_scene_lists(folder: Path) -> dict[str, str]:
    """Map filename -> scene from every ``*.txt`` in ``folder`` (scene = file stem, lower-cased).

    :raises DatasetError: if the folder has no lists, a list is not UTF-8, or a filename is in two
        lists
    """
    if not folder.is_dir():
        raise DatasetError(f"{folder}: scene lists folder not found")
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise DatasetError(f"{folder}: no scene lists (*.txt, one filename a line) in this folder")
    scenes: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for file in files:
        scene = file.stem.lower()
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{file}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from exc
        for line in lines:
            name = line.strip()
            if not name:
                continue
            if name in scenes and scenes[name] != scene:
                raise DatasetError(f"{file}: {name} is also listed in {origin[name].name}; a file has one scene")
            scenes[name] = scene
            origin[name] = file
    return scenes
