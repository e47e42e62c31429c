"""A modal that shows one error message until dismissed (worker and job errors land here)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ErrorModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter", "dismiss", "Close")]

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -error"):
            yield Static("Error", classes="dialog-title")
            yield Static(self.message, id="error-message")
            yield Button("Close", id="close", variant="error", compact=True, action="screen.dismiss")
