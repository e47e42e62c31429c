"""The Browse list: every image of a dataset in a virtualised table.

Only the visible lines are ever rendered (``render_line``), so 10,921 rows cost what 30 do; the
rows themselves are plain tuples from one store query.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.store.views import BrowseRow

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("filename", "filename", 0),
    ("split", "split", 6),
    ("scene", "scene", 18),
    ("status", "status", 8),
    ("rated", "rated", 6),
    ("score", "score", 8),
)
"""(sort key, title, width); width 0 takes what is left."""


def _fit(text: str, width: int, right: bool = False) -> str:
    if len(text) > width:
        text = text[: max(width - 1, 0)] + "…"
    return text.rjust(width) if right else text.ljust(width)


def column_widths(total: int) -> list[int]:
    fixed = sum(w + 1 for _, _, w in COLUMNS if w)
    scene = 18 if total >= 90 else 12
    widths = [w if key != "scene" else scene for key, _, w in COLUMNS]
    widths[0] = max(total - fixed - (scene - 18), 12)
    return widths


def header_text(total: int, sort: str, descending: bool, metric: str) -> str:
    cells = []
    for (key, title, _), width in zip(COLUMNS, column_widths(total), strict=True):
        if key == "score":
            title = metric[:6]
        arrow = (" ▼" if descending else " ▲") if key == sort else ""
        cells.append(_fit(title + arrow, width, right=key == "score"))
    return " ".join(cells)


class ImageList(ScrollView, can_focus=True):
    """Rows of images with a cursor; posts ``Highlighted`` as the cursor moves and ``Selected``
    on enter."""

    COMPONENT_CLASSES = {"image-list--cursor", "image-list--dim"}
    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Open", id="browse.open"),
    ]

    cursor: reactive[int] = reactive(0, always_update=True, repaint=False)

    @dataclass
    class Highlighted(Message):
        """The cursor is on another row."""

        row: BrowseRow | None

    @dataclass
    class Selected(Message):
        """Enter on a row."""

        row: BrowseRow

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[BrowseRow] = []

    def set_rows(self, rows: list[BrowseRow], keep_id: int | None = None) -> None:
        """Show new rows; the cursor stays on ``keep_id`` when it is still listed."""
        self.rows = rows
        self.virtual_size = Size(self.size.width, len(rows))
        position = next((i for i, r in enumerate(rows) if r.id == keep_id), 0) if keep_id is not None else 0
        self.cursor = min(position, max(len(rows) - 1, 0))
        self.refresh()

    @property
    def current(self) -> BrowseRow | None:
        return self.rows[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self.rows) - 1)) if self.rows else 0

    def watch_cursor(self, old: int, new: int) -> None:
        top = round(self.scroll_offset.y)
        height = self.scrollable_content_region.height or 1
        if new < top:
            self.scroll_to(y=new, animate=False, immediate=True)
        elif new >= top + height:
            self.scroll_to(y=new - height + 1, animate=False, immediate=True)
        self.refresh_lines(old)  # list coordinates: ScrollView subtracts the scroll offset
        self.refresh_lines(new)
        self.post_message(self.Highlighted(self.current))


    def action_move(self, delta: int) -> None:
        self.cursor += delta

    def action_page(self, direction: int) -> None:
        self.cursor += direction * max(self.scrollable_content_region.height - 1, 1)

    def action_jump(self, index: int) -> None:
        self.cursor = index if index >= 0 else len(self.rows) - 1

    def action_select(self) -> None:
        if self.current is not None:
            self.post_message(self.Selected(self.current))

    def on_click(self, event: object) -> None:
        y = getattr(event, "y", None)
        if y is not None:
            self.cursor = round(self.scroll_offset.y) + int(y)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.rows))

    def render_line(self, y: int) -> Strip:
        index = round(self.scroll_offset.y) + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if index >= len(self.rows):
            return Strip.blank(width, base)
        row = self.rows[index]
        widths = column_widths(width)
        score = "" if row.score is None else f"{row.score:.3f}"
        scene = row.scene or ""
        if row.predicted and row.predicted != row.scene:  # the classifier's guess beside the label, where they differ
            scene = f"{scene}≠{row.predicted}" if scene else f"{row.predicted}?"
        values = (row.filename, row.split or "", scene, row.status, "yes" if row.rated else "", score)
        text = " ".join(_fit(v, w, right=i == 5) for i, (v, w) in enumerate(zip(values, widths, strict=True)))
        style: Style = base
        if row.status != "ok":
            style = style + self.get_component_rich_style("image-list--dim")
        if index == self.cursor:
            style = style + self.get_component_rich_style("image-list--cursor")
        return Strip([Segment(_fit(text, width), style)], width)
