"""A picture in coloured half blocks: each cell shows two pixels (▀, foreground above, background
below), for terminals without a graphics protocol (tmux, most SSH sessions).

textual-image draws half blocks too, but builds a Rich style per cell on every render and leaves
each colour to be matched to the terminal's palette one by one, about 60 ms for a 46x23 picture on
a 256-colour terminal. Here the picture is reduced once per size with PIL, mapped to the palette
with numpy, and kept as strips with one shared style per colour pair, so a repaint costs a copy.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image as PILImage

_CUBE = (0, 95, 135, 175, 215, 255)


def xterm256(rgb: np.ndarray) -> np.ndarray:
    """Nearest xterm-256 colour index (the 6x6x6 cube or the grey ramp) of each RGB pixel."""
    import numpy as np

    levels = np.array(_CUBE, dtype=np.int32)
    px = rgb.astype(np.int32)
    idx = np.abs(px[..., None] - levels).argmin(axis=-1)
    cube = levels[idx]
    cube_index = 16 + 36 * idx[..., 0] + 6 * idx[..., 1] + idx[..., 2]
    grey_level = np.clip(np.round((px.mean(axis=-1) - 8) / 10), 0, 23).astype(np.int32)
    grey = 8 + 10 * grey_level
    cube_err = ((px - cube) ** 2).sum(axis=-1)
    grey_err = ((px - grey[..., None]) ** 2).sum(axis=-1)
    nearest: np.ndarray = np.where(grey_err < cube_err, 232 + grey_level, cube_index)
    return nearest


class HalfBlocks(Widget):
    """Draws a PIL image in half blocks, as wide as the widget and as tall as its aspect needs."""

    DEFAULT_CSS = "HalfBlocks { width: 100%; height: auto; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._image: PILImage | None = None
        self._strips: list[Strip] = []
        self._for_width = -1

    @property
    def image(self) -> PILImage | None:
        return self._image

    @image.setter
    def image(self, value: PILImage | None) -> None:
        same_shape = value is not None and self._image is not None and value.size == self._image.size
        self._image = value
        self._for_width = -1
        self.refresh(layout=not same_shape)  # the same aspect keeps the height: no new layout

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if self._image is None or not width:
            return 0
        w, h = self._image.size
        return max(1, math.ceil(width * h / w / 2))

    def _build(self, width: int) -> None:
        import numpy as np
        from PIL import Image

        assert self._image is not None
        height = self.get_content_height(Size(width, 0), Size(width, 0), width)
        pixels = np.asarray(self._image.convert("RGB").resize((width, height * 2), Image.Resampling.BILINEAR))
        palette = self.app.console.color_system in ("256", "standard", "windows")
        if palette:
            colours = xterm256(pixels)
            keys = colours[0::2] * 256 + colours[1::2]  # (height, width): one int per cell
        else:
            packed = (pixels[..., 0].astype(np.int64) << 16) | (pixels[..., 1].astype(np.int64) << 8) | pixels[..., 2]
            keys = packed[0::2] << 24 | packed[1::2]
        styles: dict[int, Style] = {}

        def style_of(key: int) -> Style:
            style = styles.get(key)
            if style is None:
                if palette:
                    top, bottom = Color.from_ansi(key >> 8), Color.from_ansi(key & 255)
                else:
                    a, b = key >> 24, key & 0xFFFFFF
                    top, bottom = Color.from_rgb(a >> 16, (a >> 8) & 255, a & 255), Color.from_rgb(b >> 16, (b >> 8) & 255, b & 255)
                style = styles[key] = Style(color=top, bgcolor=bottom)
            return style

        strips = []
        for row in keys[:height]:
            # One segment per run of equal cells (found with numpy), not one per cell.
            starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
            lengths = np.diff(np.r_[starts, width])
            segments = [Segment("▀" * int(n), style_of(int(row[i]))) for i, n in zip(starts, lengths, strict=True)]
            strips.append(Strip(segments, width))
        self._strips, self._for_width = strips, width

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self._image is None or not width:
            return Strip.blank(width)
        if self._for_width != width:
            self._build(width)
        return self._strips[y] if y < len(self._strips) else Strip.blank(width)
