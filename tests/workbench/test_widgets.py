"""Widget helpers that need no running app."""

from __future__ import annotations

import numpy as np
from rich.color import EIGHT_BIT_PALETTE, Color, ColorSystem

from workbench.widgets.halfblocks import xterm256
from workbench.widgets.image_list import column_widths, header_text


def _error(index: int, rgb: np.ndarray) -> int:
    return int(((np.array(EIGHT_BIT_PALETTE[index]) - rgb) ** 2).sum())


def test_palette_mapping_is_never_further_than_rich_own_downgrade() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (2000, 3))
    ours = xterm256(rgb)
    for index, pixel in zip(ours, rgb, strict=True):
        theirs = Color.from_rgb(*map(int, pixel)).downgrade(ColorSystem.EIGHT_BIT).number
        assert theirs is not None
        assert _error(int(index), pixel) <= _error(theirs, pixel)
    assert xterm256(np.array([[0, 0, 0], [255, 255, 255], [128, 128, 128]])).tolist() == [16, 231, 244]


def test_columns_fill_the_width_and_the_header_names_the_sort() -> None:
    for width in (78, 118):
        assert sum(column_widths(width)) + len(column_widths(width)) - 1 == width
    header = header_text(118, "score", True, "CIDEr")
    assert len(header) == 118 and "CIDEr ▼" in header and "filename" in header
