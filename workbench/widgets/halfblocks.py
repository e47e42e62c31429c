"""A picture in coloured half blocks: each cell shows two pixels (▀, foreground above, background
below), for terminals without a graphics protocol (tmux, most SSH sessions).

textual-image draws half blocks too, but builds a Rich style per cell on every render and leaves
each colour to be matched to the terminal's palette one by one, about 60 ms for a 46x23 picture on
a 256-colour terminal. Here the picture is reduced once per size with PIL, mapped to the palette
with numpy, and kept as strips with one shared style per colour pair, so a repaint costs a copy.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

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
        self._image = value
        self._for_width = -1
        self.refresh(layout=True)

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
        colours: Any = xterm256(pixels) if palette else pixels
        styles: dict[tuple[Any, Any], Style] = {}

        def colour(value: Any) -> Color:
            return Color.from_ansi(int(value)) if palette else Color.from_rgb(*map(int, value))

        strips = []
        for y in range(height):
            top, bottom = colours[2 * y], colours[2 * y + 1]
            segments = []
            for x in range(width):
                key = (top[x].item(), bottom[x].item()) if palette else (tuple(top[x]), tuple(bottom[x]))
                style = styles.get(key)
                if style is None:
                    style = styles[key] = Style(color=colour(top[x]), bgcolor=colour(bottom[x]))
                segments.append(Segment("▀", style))
            strips.append(Strip(Segment.simplify(segments), width))
        self._strips, self._for_width = strips, width

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self._image is None or not width:
            return Strip.blank(width)
        if self._for_width != width:
            self._build(width)
        return self._strips[y] if y < len(self._strips) else Strip.blank(width)
