"""The paired comparison of two evaluated runs, in a modal wide enough for every interval."""

from __future__ import annotations

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class CompareModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,c", "dismiss", "Close")]

    def __init__(self, result: RenderableType) -> None:
        super().__init__()
        self.result = result

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog -wide"):
            yield Static("Paired comparison", classes="dialog-title")
            yield Static(self.result, id="compare-result")
            yield Static("B − A per metric over the same images; the interval is the 95% paired bootstrap interval; "
                         "P(B ≤ A) is the share of resamples where B did not beat A. escape closes.", classes="hint")
