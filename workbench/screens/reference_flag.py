"""Flag one of an image's reference captions (misspelt, duplicated, not this image), from the
Image and Review screens (`f`), and how both screens show the flags on their references.

The flag is written the moment the modal closes with enter (a new row; history is kept), under
the dataset's name, the image's filename and the reference's text, so it outlives a re-ingest.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from engine.store.catalog import get_dataset_by_id
from engine.store.connection import is_locked, is_read_only_error
from engine.store.models import Caption
from engine.store.reference_flags import REASONS, ReferenceFlag, flag_reference, image_flags
from engine.store.views import ImageDetail

CLEAR = "clear"
"""The reason option that clears the reviewer's own flag."""


@dataclass(frozen=True)
class FlagChoice:
    index: int
    """The reference's position among the image's references (0-based)."""
    flag: str | None
    """One of REASONS; None clears the reviewer's flag."""
    note: str


def flag_marks(flags: Sequence[ReferenceFlag]) -> str:
    """`⚑ misspelt (alice)  ⚑ duplicated (bob: "same as 1")`: every reviewer's flag on a reference."""
    return "  ".join(f"⚑ {f.flag} ({f.reviewer}" + (f': "{f.note}"' if f.note else "") + ")" for f in flags)


def references_text(references: Sequence[Caption], flags: dict[str, list[ReferenceFlag]], *, repeated: bool = False) -> Text:
    """The numbered references, each followed by its flags; ``repeated`` marks the ones ingest
    found repeating an earlier reference."""
    text = Text("References\n", style="bold")
    for c in references:
        text.append(f"{c.idx + 1}. {c.text}" + ("  (repeated)" if repeated and c.is_duplicate else ""), style="")
        if flags.get(c.text):
            text.append("  " + flag_marks(flags[c.text]), style="bold")
        text.append("\n")
    return text


class ReferenceFlagModal(ModalScreen[FlagChoice | None]):
    """Which reference (its number), why, and an optional note; None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, filename: str, references: Sequence[Caption], flags: dict[str, list[ReferenceFlag]]) -> None:
        super().__init__()
        self.filename = filename
        self.references = list(references)
        self.flags = flags

    def compose(self) -> ComposeResult:
        n = len(self.references)
        with VerticalScroll(classes="dialog -wide"):  # scrolls on a short terminal (80x24)
            yield Static(f"Flag a reference of {self.filename}", classes="dialog-title")
            yield Static(references_text(self.references, self.flags), id="flag-references")
            with Horizontal(classes="form-row"):
                yield Static("reference", classes="form-label")
                yield Input("1" if n == 1 else "", placeholder=f"its number, 1 to {n}", compact=True, id="flag-number")
            yield Static("", id="flag-error", classes="error")
            yield OptionList(*[Option(r, id=r) for r in REASONS], Option("clear my flag", id=CLEAR), id="flag-reason")
            with Horizontal(classes="form-row"):
                yield Static("note", classes="form-label")
                yield Input(placeholder="optional", compact=True, id="flag-note")
            yield Static("tab moves · ↑ ↓ choose the reason · enter saves · escape cancels", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#flag-reason", OptionList).highlighted = 0
        self.query_one("#flag-number", Input).focus()

    def problem(self) -> str | None:
        """What is wrong with the number typed, in one line (None: nothing)."""
        n = len(self.references)
        typed = self.query_one("#flag-number", Input).value.strip()
        if not typed:
            return f"which reference? type its number, 1 to {n}"
        if not typed.isdigit():
            return f"reference {typed!r}: type a number, 1 to {n}"
        if not 1 <= int(typed) <= n:
            return f"reference {int(typed)}: this image has {n} reference{'s' if n != 1 else ''}; type 1 to {n}"
        return None

    @on(Input.Changed, "#flag-number")
    def typed(self) -> None:
        if self.problem() is None:
            self.query_one("#flag-error", Static).update("")

    @on(Input.Submitted)
    @on(OptionList.OptionSelected)
    def submit(self) -> None:
        problem = self.problem()
        if problem is not None:
            self.query_one("#flag-error", Static).update(problem)
            self.query_one("#flag-number", Input).focus()
            return
        reasons = self.query_one("#flag-reason", OptionList)
        option = reasons.get_option_at_index(reasons.highlighted or 0)
        index = int(self.query_one("#flag-number", Input).value.strip()) - 1
        self.dismiss(FlagChoice(index, None if option.id == CLEAR else option.id, self.query_one("#flag-note", Input).value.strip()))

    def action_cancel(self) -> None:
        self.dismiss(None)


def ask_and_flag(screen: Screen[None], detail: ImageDetail, flags: dict[str, list[ReferenceFlag]],
                 saved: Callable[[dict[str, list[ReferenceFlag]]], None]) -> None:
    """Open the modal for ``detail``'s image and write the flag chosen; ``saved`` gets the image's
    flags as they are now. A read-only or busy database is one error line; nothing is written."""
    if not detail.references:
        screen.notify("this image has no references to flag", timeout=2)
        return
    session = screen.app.session  # type: ignore[attr-defined]

    def done(choice: FlagChoice | None) -> None:
        if choice is None:
            return
        ref = detail.references[choice.index]
        mine = [f for f in flags.get(ref.text, []) if f.reviewer == session.reviewer]
        if choice.flag is None and not mine:
            screen.notify(f"you have no flag on reference {choice.index + 1}; nothing to clear", timeout=2)
            return
        dataset = get_dataset_by_id(session.db, detail.image.dataset_id)
        try:
            if dataset is None:
                raise ValueError("the image's dataset is no longer in the store")
            flag_reference(session.db, dataset.name, detail.image.filename, ref.text, session.reviewer, choice.flag, choice.note)
        except sqlite3.OperationalError as exc:
            if is_read_only_error(exc):
                screen.app.show_error(f"reference flag not saved: {session.workspace.db_path} is read-only for you "  # type: ignore[attr-defined]
                                      "(Browse and Export work; flags need a workspace you can write)")
                return
            if is_locked(exc):
                screen.app.show_error("reference flag not saved: the database is busy (another writer holds it); "  # type: ignore[attr-defined]
                                      "press f again in a moment")
                return
            raise
        except (ValueError, OSError) as exc:
            screen.app.show_error(f"reference flag not saved: {exc}")  # type: ignore[attr-defined]
            return
        what = f"flagged reference {choice.index + 1} {choice.flag}" if choice.flag else f"cleared your flag on reference {choice.index + 1}"
        screen.notify(f"{what} ({detail.image.filename})", timeout=2)
        saved(image_flags(session.db, detail.image.id))

    screen.app.push_screen(ReferenceFlagModal(detail.image.filename, detail.references, flags), done)
