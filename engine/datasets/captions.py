"""Caption annotation files: Karpathy JSON (RSICD, UCM-captions, Sydney-captions) and COCO
caption JSON, detected from their content.

Karpathy: ``{"images": [{"filename", "split", "sentences": [{"raw", "tokens"}]}]}``.
COCO:     ``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``; it carries
no split, so the caller gives one (``split``) or a Karpathy file to take the splits from.

Reference order is kept as the file gives it; references that repeat inside one image are flagged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from engine.datasets.errors import DatasetError
from engine.datasets.text import duplicate_key, simple_tokens

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"restval": "train", "valid": "val", "validation": "val"}
"""Karpathy's COCO file uses 'restval' for the part of val folded into training."""


@dataclass(frozen=True)
class CaptionEntry:
    """One image of an annotation file with its references."""

    filename: str
    split: str | None
    captions: tuple[str, ...]
    tokens: tuple[str, ...]
    """Space-separated tokens per caption: the source's own when it has them, else :func:`simple_tokens`."""
    duplicates: tuple[bool, ...]
    """True where a caption repeats an earlier one of the same image."""
    source_id: str | None
    empty: int = 0
    """References left out because they held no text (``"raw": "   "``)."""


@dataclass(frozen=True)
class CaptionFile:
    """A parsed annotation file."""

    path: Path
    format: str
    """'karpathy' or 'coco'."""
    name: str | None
    """The dataset name the file gives (Karpathy ``"dataset"`` key), if any."""
    entries: tuple[CaptionEntry, ...]


def load_json(path: Path) -> Any:
    """Read a JSON file with messages that say what is wrong and where.

    :raises DatasetError: missing file, non-UTF-8 bytes, or invalid (e.g. truncated) JSON
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); re-save it as UTF-8"
        ) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "; the file looks truncated" if exc.pos >= len(text.rstrip()) - 1 else ""
        raise DatasetError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}){hint}") from exc


def detect_format(data: Any) -> str | None:
    """'karpathy', 'coco', or None when the content is neither."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        return None
    if isinstance(data.get("annotations"), list):
        return "coco"
    images = data["images"]
    if images and isinstance(images[0], dict) and "sentences" in images[0] and "filename" in images[0]:
        return "karpathy"
    if not images:
        return "karpathy"
    return None


class _Sentence(msgspec.Struct):
    raw: str | None = None
    tokens: list[str] | None = None


class _KarpathyImage(msgspec.Struct):
    filename: str
    sentences: list[_Sentence]
    split: str | None = None
    imgid: int | str | None = None


class _KarpathyFile(msgspec.Struct):
    images: list[_KarpathyImage]
    dataset: str | None = None


_KARPATHY = msgspec.json.Decoder(_KarpathyFile)


def read_caption_file(path: Path, *, split: str | None = None, split_from: Path | None = None) -> CaptionFile:
    """Load and parse an annotation file of either format (see :func:`parse_caption_data`).

    A well-formed Karpathy file is decoded straight into typed structs (msgspec: four times faster
    than ``json`` and no dicts to walk); anything else takes the general path, whose messages
    say exactly what is wrong.
    """
    if split is None and split_from is None:
        try:
            raw = path.read_bytes()
        except OSError:
            raw = b""
        try:
            decoded = _KARPATHY.decode(raw) if raw else None
        except (msgspec.MsgspecError, ValueError):  # the general path explains the problem
            decoded = None
        if decoded is not None and decoded.images:
            entries = _fast_karpathy(decoded)
            if entries is not None:
                _check_unique(path, [e.filename for e in entries], "filename")
                return CaptionFile(path=path, format="karpathy", name=decoded.dataset, entries=tuple(entries))
    return parse_caption_data(path, load_json(path), split=split, split_from=split_from)


def _fast_karpathy(decoded: _KarpathyFile) -> list[CaptionEntry] | None:
    """Entries of a typed Karpathy file; None if anything needs the general path's messages."""
    entries = []
    for img in decoded.images:
        split = _SPLIT_ALIASES.get(img.split or "", img.split)
        if split not in SPLITS or not img.filename.strip():
            return None
        pairs = []
        for sent in img.sentences:
            toks = " ".join(sent.tokens) if sent.tokens else ""
            text = sent.raw
            if text is None:
                if not toks:
                    return None
                text = toks
            elif not toks:
                toks = " ".join(simple_tokens(text))
            pairs.append((text.strip() or toks, toks))
        entries.append(_entry(img.filename, split, pairs, img.imgid))
    return entries


def parse_caption_data(path: Path, data: Any, *, split: str | None = None, split_from: Path | None = None) -> CaptionFile:
    """Parse loaded annotation data of either format.

    :param path: the file it came from, for messages
    :param split: the split of every image (COCO files only)
    :param split_from: a Karpathy file whose splits a COCO file's images take, matched by filename
    :raises DatasetError: naming the file and entry at fault
    """
    fmt = detect_format(data)
    if fmt is None:
        raise DatasetError(
            f"{path}: unknown caption format; expected Karpathy JSON "
            '({"images": [{"filename", "split", "sentences"}]}) or COCO captions ({"images", "annotations"})'
        )
    if split is not None and split not in SPLITS:
        raise DatasetError(f"--split {split!r}: must be one of {', '.join(SPLITS)}")
    if fmt == "karpathy":
        if split is not None or split_from is not None:
            raise DatasetError(f"{path}: a Karpathy file carries its own splits; drop --split/--split-from")
        entries = _read_karpathy(path, data)
        name = data.get("dataset") if isinstance(data.get("dataset"), str) else None
    else:
        if split is None and split_from is None:
            raise DatasetError(
                f"{path}: COCO captions carry no split; pass --split train|val|test or --split-from KARPATHY.json"
            )
        if split is not None and split_from is not None:
            raise DatasetError("--split and --split-from exclude each other; give one")
        splits = _splits_of(split_from) if split_from is not None else None
        entries = _read_coco(path, data, split, splits, split_from)
        name = None
    if not entries:
        raise DatasetError(f"{path}: lists no images")
    return CaptionFile(path=path, format=fmt, name=name, entries=tuple(entries))


def normalise_filename(filename: str) -> str:
    """One spelling per file: ``./00001.jpg`` and ``a//b.jpg`` name what ``00001.jpg`` and
    ``a/b.jpg`` name (``..`` is kept, for the images folder check to refuse)."""
    if "/" not in filename and "\\" not in filename:
        return filename.strip()
    parts = [p for p in filename.strip().replace("\\", "/").split("/") if p not in ("", ".")]
    return ("/" if filename.strip().startswith("/") else "") + "/".join(parts)


def _entry(filename: str, split: str | None, pairs: list[tuple[str, str]], source_id: Any) -> CaptionEntry:
    kept = [(text, toks) for text, toks in pairs if text.strip() or toks.strip()]
    seen: set[str] = set()
    dups = []
    for _, toks in kept:
        key = duplicate_key(toks)
        dups.append(key in seen)
        seen.add(key)
    texts, tokens = zip(*kept, strict=True) if kept else ((), ())
    return CaptionEntry(
        filename=normalise_filename(filename),
        split=split,
        captions=texts,
        tokens=tokens,
        duplicates=tuple(dups),
        source_id=None if source_id is None else str(source_id),
        empty=len(pairs) - len(kept),
    )


def _split(value: Any, where: str) -> str:
    if isinstance(value, str):
        value = _SPLIT_ALIASES.get(value, value)
    if value not in SPLITS:
        raise DatasetError(f"{where}: split {value!r} is not one of {', '.join(SPLITS)} (or restval)")
    return str(value)


def _check_unique(path: Path, names: list[str], key: str) -> None:
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            raise DatasetError(
                f"{path}: {key} {name!r} appears twice (images[{first[name]}] and images[{i}]); "
                "each image must be listed once"
            )
        first[name] = i


def _read_karpathy(path: Path, data: dict[str, Any]) -> list[CaptionEntry]:
    entries = []
    # Messages are built only on error: this loop runs 55k times for RSICD.
    for i, img in enumerate(data["images"]):
        filename = img.get("filename") if isinstance(img, dict) else None
        if not isinstance(filename, str) or not filename.strip():
            raise DatasetError(f"{path}: images[{i}] has no 'filename'")
        sentences = img.get("sentences")
        if not isinstance(sentences, list):
            raise DatasetError(f"{path}: images[{i}] ({filename}) has no 'sentences' list")
        pairs = []
        for j, sent in enumerate(sentences):
            if not isinstance(sent, dict):
                raise DatasetError(f"{path}: images[{i}].sentences[{j}] must be an object with 'raw' and 'tokens'")
            raw = sent.get("raw")
            tokens = sent.get("tokens")
            toks = ""
            if isinstance(tokens, list):
                try:
                    toks = " ".join(" ".join(tokens).split())
                except TypeError:
                    raise DatasetError(f"{path}: images[{i}].sentences[{j}].tokens must be a list of strings") from None
            if not isinstance(raw, str):
                if not toks:
                    raise DatasetError(f"{path}: images[{i}].sentences[{j}] has neither 'raw' text nor 'tokens'")
                raw = toks
            elif not toks:
                toks = " ".join(simple_tokens(raw))
            pairs.append((raw.strip() or toks, toks))
        split = img.get("split")
        if split not in SPLITS:
            split = _split(split, f"{path}: images[{i}]")
        entries.append(_entry(filename, split, pairs, img.get("imgid")))
    _check_unique(path, [e.filename for e in entries], "filename")
    return entries


def _splits_of(path: Path) -> dict[str, str]:
    data = load_json(path)
    if detect_format(data) != "karpathy":
        raise DatasetError(f"{path}: --split-from needs a Karpathy JSON file (images with filename and split)")
    out = {}
    for i, img in enumerate(data["images"]):
        if isinstance(img, dict) and isinstance(img.get("filename"), str):
            out[img["filename"]] = _split(img.get("split"), f"{path}: images[{i}]")
    return out


def _read_coco(
    path: Path,
    data: dict[str, Any],
    split: str | None,
    splits: dict[str, str] | None,
    split_from: Path | None,
) -> list[CaptionEntry]:
    by_id: dict[Any, int] = {}
    names: list[str] = []
    ids: list[Any] = []
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise DatasetError(f"{path}: images[{i}] needs 'id' and 'file_name'")
        if img["id"] in by_id:
            raise DatasetError(f"{path}: image id {img['id']!r} appears twice (images[{by_id[img['id']]}] and images[{i}])")
        by_id[img["id"]] = i
        names.append(normalise_filename(img["file_name"]))
        ids.append(img["id"])
    _check_unique(path, names, "file_name")
    captions: list[list[tuple[str, str]]] = [[] for _ in names]
    for j, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("caption"), str) or "image_id" not in ann:
            raise DatasetError(f"{path}: annotations[{j}] needs 'image_id' and 'caption'")
        if ann["image_id"] not in by_id:
            raise DatasetError(f"{path}: annotations[{j}] refers to image_id {ann['image_id']!r}, which is not in 'images'")
        text = ann["caption"].strip()
        captions[by_id[ann["image_id"]]].append((text, " ".join(simple_tokens(text))))
    if splits is not None:
        unknown = [n for n in names if n not in splits]
        if unknown:
            raise DatasetError(
                f"{split_from}: has no split for {len(unknown)} of {path.name}'s images "
                f"(first: {', '.join(unknown[:3])}); use a matching file or --split"
            )
    return [
        _entry(name, splits[name] if splits is not None else split, caps, image_id)
        for name, caps, image_id in zip(names, captions, ids, strict=True)
    ]
