"""`?`: what the current screen is for and every key it and the app answer to."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


class HelpModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, screen: Screen[object]) -> None:
        super().__init__()
        self.about = Text(" ".join((screen.__doc__ or "").split()))  # one paragraph, never read as markup
        table = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
        table.add_column(style="bold")
        table.add_column()
        seen = set()
        rows: list[tuple[bool, str, str]] = []
        for key, active in screen.active_bindings.items():
            if active.binding.description and (active.binding.description, key) not in seen:
                seen.add((active.binding.description, key))
                rows.append((not active.binding.id, self.app.get_key_display(active.binding), active.binding.description))
        for _, key, description in sorted(rows, key=lambda r: r[0]):  # the workbench's keys first, then scrolling
            table.add_row(key, description)
        table.add_row("ctrl+p", "Command palette: every action by name")
        self.keys = table

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog -wide"):
            yield Static("Help", classes="dialog-title")
            yield Static(self.about, id="help-about")
            yield Static(self.keys, id="help-keys")
            yield Static(Text("Keys can be changed in config.toml, [keys] (see README). escape closes."), classes="hint")
