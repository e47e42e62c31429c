"""Image files: where a filename lies inside its folder, and what the file is.

A probe reads each file once: the bytes feed sha256 and the header parser together. A file is
``ok`` when its header parses and its structure ends where it should (JPEG end-of-image marker,
PNG IEND chunk); only files that fail that quick check, TIFFs, or a ``verify`` run pay for a full
decode. This keeps ingest near the cost of reading the files.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from engine.datasets.errors import DatasetError
from engine.process import die_with_parent

SUPPORTED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "TIFF": "TIFF"}
_PNG_END = b"IEND\xaeB`\x82"


@dataclass(frozen=True)
class ImageProbe:
    """What one image file is."""

    status: str
    """'ok', 'missing' or 'corrupt'."""
    width: int | None = None
    height: int | None = None
    file_size: int | None = None
    sha256: str | None = None
    format: str | None = None
    detail: str | None = None
    """Why the file is missing or corrupt."""


def relative_inside(folder: Path | str, filename: str) -> str:
    """``filename`` normalised as a path relative to ``folder``.

    The check is lexical (``..`` and absolute names); symlinks that lead outside the folder are
    refused by :func:`outside_links`.

    :raises DatasetError: if the name escapes the folder
    """
    if "/" not in filename and "\\" not in filename and filename not in ("", ".", ".."):
        return filename  # the common case, checked cheaply
    if not filename or os.path.isabs(filename) or Path(filename).drive:
        raise DatasetError(f"{filename!r}: image filenames must be relative to the images folder {folder}")
    relative = os.path.normpath(filename.replace("\\", "/"))
    if relative == ".." or relative.startswith("../") or relative == ".":
        raise DatasetError(f"{filename!r} resolves outside the images folder {folder}; refusing to read it")
    return relative


def outside_links(folder: Path, relatives: list[str]) -> list[tuple[str, str]]:
    """(name, target) of each image that is, or lies under, a symlink leading outside
    ``folder`` (which may itself be a symlink): such a file is refused like ``../x``."""
    root = os.path.realpath(folder)
    base = os.path.join(root, "")
    out = []
    for rel in relatives:
        path = os.path.join(folder, rel)
        if "/" not in rel and not os.path.islink(path):
            continue  # the common case: a plain file right in the folder
        real = os.path.realpath(path)
        if not real.startswith(base):
            out.append((rel, real))
    return out


def resolve_inside(folder: Path, filename: str) -> Path:
    """The path of ``filename`` inside ``folder`` (see :func:`relative_inside`)."""
    return folder / relative_inside(folder, filename)


def probe_image(path: Path | str, *, verify: bool = False) -> ImageProbe:
    """Read ``path`` once: size, sha256, format, width and height, and a structural check.

    :param verify: decode every pixel (slow; catches damage inside the compressed data)
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return ImageProbe(status="missing", detail="file not found")
    except IsADirectoryError:
        return ImageProbe(status="corrupt", detail="is a folder, not an image")
    except OSError as exc:
        return ImageProbe(status="missing", detail=f"cannot be read ({exc.strerror})")
    size = len(data)
    digest = hashlib.sha256(data).hexdigest()
    if size == 0:
        return ImageProbe(status="corrupt", file_size=0, sha256=digest, detail="empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = SUPPORTED_FORMATS.get(img.format or "")
            width, height = img.size
            if fmt is None:
                return ImageProbe(
                    status="corrupt", file_size=size, sha256=digest, format=img.format,
                    detail=f"{img.format} images are not supported (JPEG, PNG or TIFF)",
                )
            if verify or fmt == "TIFF" or not _ends_well(fmt, data):
                img.load()
    except UnidentifiedImageError:
        return ImageProbe(status="corrupt", file_size=size, sha256=digest, detail="not a JPEG, PNG or TIFF image")
    except (OSError, SyntaxError, ValueError) as exc:
        return ImageProbe(status="corrupt", file_size=size, sha256=digest, detail=f"cannot be decoded ({exc})")
    return ImageProbe(status="ok", width=width, height=height, file_size=size, sha256=digest, format=fmt)


def _ends_well(fmt: str, data: bytes) -> bool:
    """True when the file ends with its format's end marker (a truncated file does not)."""
    if fmt == "JPEG":
        # Encoders may pad after the end-of-image marker; look at the tail only (no full copy).
        return data[-256:].rstrip(b"\x00\xff\r\n ").endswith(b"\xff\xd9")
    if fmt == "PNG":
        return data.endswith(_PNG_END)
    return False


def _probe_chunk(paths: Sequence[Path | str], verify: bool) -> list[ImageProbe]:
    return [probe_image(p, verify=verify) for p in paths]


PARALLEL_FROM = 1024
"""Below this many files a probe runs in the calling thread (process start-up would cost more)."""


class ProbeBatch:
    """Probes running in worker processes while the caller does other work.

    Header parsing holds the GIL, so threads do not help; processes do. The pool forks on Linux
    (cheap, and the children only read files); elsewhere it uses the platform default.
    """

    def __init__(self, paths: Sequence[Path | str], *, verify: bool = False, workers: int | None = None):
        self.paths = list(paths)
        self.verify = verify
        workers = workers or os.cpu_count() or 1
        self._futures: list[Future[list[ImageProbe]]] = []
        self._pool: ProcessPoolExecutor | None = None
        if len(self.paths) >= PARALLEL_FROM and workers > 1:
            context = multiprocessing.get_context("fork") if sys.platform == "linux" else None
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=die_with_parent)
            size = max(64, len(self.paths) // (workers * 8))
            self._futures = [
                self._pool.submit(_probe_chunk, self.paths[i : i + size], verify)
                for i in range(0, len(self.paths), size)
            ]

    def result(self, progress: Callable[[int, int], None] | None = None) -> list[ImageProbe]:
        """The probes, in the order of the paths."""
        total = len(self.paths)
        out: list[ImageProbe] = []
        try:
            if self._pool is None:
                for path in self.paths:
                    out.append(probe_image(path, verify=self.verify))
                    if progress is not None and (len(out) % 256 == 0 or len(out) == total):
                        progress(len(out), total)
            else:
                for future in self._futures:
                    out.extend(future.result())
                    if progress is not None:
                        progress(len(out), total)
        finally:
            self.close()
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


class FolderProbe:
    """Probes every image file directly inside ``folder``, started before the caller knows which
    files it needs (an ingest starts this, then parses the annotation file meanwhile).

    Listed names the folder scan did not cover (subfolders, missing files) are probed on demand.
    """

    def __init__(self, folder: Path, names: list[str], *, verify: bool = False):
        self.folder = folder
        self.verify = verify
        self._names = names
        self._batch = ProbeBatch([os.path.join(folder, n) for n in names], verify=verify)

    @classmethod
    def start(cls, folder: Path, *, verify: bool = False, at_most: int | None = None) -> FolderProbe | None:
        """Start on ``folder``; None when it is not worth it (too few files, or more than ``at_most``)."""
        try:
            names = sorted(e.name for e in os.scandir(folder) if e.name.lower().endswith(IMAGE_SUFFIXES))
        except OSError:
            return None
        if len(names) < PARALLEL_FROM or (at_most is not None and len(names) > at_most):
            return None
        return cls(folder, names, verify=verify)

    def result_for(self, relative: Sequence[str], progress: Callable[[int, int], None] | None = None) -> list[ImageProbe]:
        """Probes of ``relative`` (paths inside the folder), in that order."""
        found = dict(zip(self._names, self._batch.result(progress), strict=True))
        return [found.get(r) or probe_image(os.path.join(self.folder, r), verify=self.verify) for r in relative]

    def close(self) -> None:
        self._batch.close()


def probe_images(
    paths: Sequence[Path | str],
    *,
    verify: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[ImageProbe]:
    """Probe many files, in order (in parallel processes for large sets)."""
    return ProbeBatch(paths, verify=verify, workers=workers).result(progress)


def summarize_problems(names: Iterable[str], probes: Iterable[ImageProbe], shown: int = 3) -> str:
    """'2 missing (a.jpg, b.jpg), 1 corrupt (c.jpg: empty file (0 bytes))' for bad probes."""
    missing: list[str] = []
    corrupt: list[str] = []
    for name, probe in zip(names, probes, strict=True):
        if probe.status == "missing":
            missing.append(name)
        elif probe.status == "corrupt":
            corrupt.append(f"{name}: {probe.detail}")
    parts = []
    for label, items in (("missing", missing), ("corrupt", corrupt)):
        if items:
            more = f", and {len(items) - shown} more" if len(items) > shown else ""
            parts.append(f"{len(items)} {label} ({'; '.join(items[:shown])}{more})")
    return ", ".join(parts)
