"""An image drawn in the terminal (textual-image), optionally with a class mask blended over it.

Files are read and blended in a thread worker; the widget only swaps in the finished picture, so
moving through images never waits on the disk. A screen that knows what comes next (Review)
preloads it, and a preloaded picture is drawn at once. ``--images off`` shows a one-line
description.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Container
from textual.message import Message
from textual.widgets import Static

from workbench.widgets.halfblocks import HalfBlocks

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from workbench.session import ImagesMode

GROUP_COLOURS: tuple[tuple[int, int, int], ...] = (
    (40, 40, 40),     # Unlabeled
    (150, 150, 150),  # Artificial Surface
    (160, 110, 60),   # Natural Surface
    (30, 110, 230),   # Water
    (40, 170, 60),    # Vegetation
    (210, 50, 50),    # Building
    (240, 220, 40),   # Fences & Poles
    (220, 60, 220),   # People & Animals
    (40, 220, 220),   # Vehicles
    (250, 140, 20),   # Markers & Obstacles
)
"""Data colours of the class groups (the mask's own palette, not UI styling), in config order."""

THUMBNAIL = 512
"""Longest side an image is reduced to before drawing: terminals show far fewer pixels."""


def group_colour(index: int) -> tuple[int, int, int]:
    return GROUP_COLOURS[index % len(GROUP_COLOURS)]


def widget_class(mode: ImagesMode) -> Any:
    """The widget that draws pictures in a mode (None for ``off``): textual-image's for the
    graphics protocols, our cached half blocks where the terminal has none."""
    if mode == "off":
        return None
    if mode == "halfcell":
        return HalfBlocks
    from textual_image import widget as tiw

    chosen = {"auto": tiw.Image, "tgp": tiw.TGPImage, "sixel": tiw.SixelImage}[mode]
    return HalfBlocks if chosen in (tiw.HalfcellImage, tiw.UnicodeImage) else chosen


def load_picture(path: Path, mask: Path | None, alpha: float = 0.5) -> PILImage:
    """The image reduced for the terminal, with the mask's group colours blended in.

    :raises OSError: if a file cannot be read
    """
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        picture = im.convert("RGB")
    picture.thumbnail((THUMBNAIL, THUMBNAIL))
    if mask is None:
        return picture
    with Image.open(mask) as m:
        labels = np.asarray(m.resize(picture.size, Image.Resampling.NEAREST))
    palette = np.array([group_colour(i) for i in range(256)], dtype=np.float32)
    rgb = np.asarray(picture, dtype=np.float32)
    blended = (1 - alpha) * rgb + alpha * palette[labels.astype(np.intp)]
    return Image.fromarray(blended.clip(0, 255).astype(np.uint8))


class Picture(Container):
    """Draws one image file, or says why it cannot."""

    @dataclass
    class Loaded(Message):
        """A picture is ready to draw (or ``error`` says why not)."""

        token: int
        image: Any
        error: str = ""

    def __init__(self, mode: ImagesMode, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.mode = mode
        self._token = 0
        self.drawn = -1
        """Token of the picture on screen: equal to ``_token`` once the newest request is drawn."""
        self._widget_class = widget_class(mode)
        self._cache: OrderedDict[tuple[str, str | None], Any] = OrderedDict()
        self._lock = threading.Lock()

    CACHE = 12
    """Pictures kept ready (the current ones and what was preloaded)."""

    def _cached(self, key: tuple[str, str | None]) -> Any:
        with self._lock:
            image = self._cache.get(key)
            if image is not None:
                self._cache.move_to_end(key)
            return image

    def _keep(self, key: tuple[str, str | None], image: Any) -> None:
        with self._lock:
            self._cache[key] = image
            while len(self._cache) > self.CACHE:
                self._cache.popitem(last=False)

    def preload(self, path: Path, mask: Path | None = None) -> None:
        """Read ``path`` now (call it from a worker thread), so showing it later draws at once."""
        if self._widget_class is None or self._cached((str(path), str(mask) if mask else None)) is not None:
            return
        try:
            self._keep((str(path), str(mask) if mask else None), load_picture(path, mask))
        except OSError:
            pass  # show() reports it when the picture is asked for

    def compose(self) -> ComposeResult:
        yield Static("", id="picture-text", classes="picture-text")
        if self._widget_class is not None:
            yield self._widget_class(id="picture-image")

    def show(self, path: Path | None, mask: Path | None = None, description: str = "") -> None:
        """Draw ``path`` (blended with ``mask``); ``description`` stands in when images are off."""
        self._token += 1
        text = self.query_one("#picture-text", Static)
        if path is None or self._widget_class is None:
            text.update(description or "no image")
            self.set_class(True, "-text-only")
            self.drawn = self._token
            return
        ready = self._cached((str(path), str(mask) if mask else None))
        if ready is not None:
            self.on_picture_loaded(self.Loaded(self._token, ready))
            return
        self._load(self._token, path, mask)

    @work(thread=True, exit_on_error=False, exclusive=True, group="picture")
    def _load(self, token: int, path: Path, mask: Path | None) -> None:
        try:
            image = load_picture(path, mask)
            self._keep((str(path), str(mask) if mask else None), image)
            self.post_message(self.Loaded(token, image))
        except OSError as exc:
            self.post_message(self.Loaded(token, None, f"{path}: cannot be drawn ({exc})"))

    def on_picture_loaded(self, message: Loaded) -> None:
        message.stop()
        if message.token != self._token:
            return
        self.query_one("#picture-text", Static).update(message.error)
        self.set_class(bool(message.error), "-text-only")
        self.query_one("#picture-image").image = message.image  # type: ignore[attr-defined]
        self.drawn = message.token
