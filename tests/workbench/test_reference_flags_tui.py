"""`f` on the Image and Review screens: flag a reference caption, see everyone's flags."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from engine.store.catalog import captions_for, get_image
from engine.store.reference_flags import flag_reference
from engine.workspace import Workspace
from tests.workbench.test_tui import SIZE, app_for, text_of
from workbench.screens.error import ErrorModal
from workbench.screens.image import ImageScreen
from workbench.screens.reference_flag import ReferenceFlagModal
from workbench.screens.review import ReviewScreen


def flag_rows(ws: Workspace) -> list[dict[str, Any]]:
    db = ws.open_db()
    try:
        return list(db.query("SELECT dataset, filename, text, reviewer, flag, note FROM reference_flags ORDER BY id"))
    finally:
        db.close()


def references_of(ws: Workspace, image_id: int) -> tuple[str, list[str]]:
    db = ws.open_db()
    try:
        image = get_image(db, image_id)
        assert image is not None
        return image.filename, [c.text for c in captions_for(db, [image_id])[image_id]]
    finally:
        db.close()


def line_of(text: str, number: int) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"{number}. "))


async def test_f_on_the_image_screen_flags_a_reference_and_marks_it(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    app = app_for(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ImageScreen) and screen.detail is not None
        filename, refs = references_of(tui_ws, screen.detail.image.id)
        await pilot.press("f")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ReferenceFlagModal)
        await pilot.press("7", "enter")  # out of range: one line, the modal stays, nothing written
        assert text_of(modal, "#flag-error").strip() == f"reference 7: this image has {len(refs)} references; type 1 to {len(refs)}"
        assert app.screen is modal and flag_rows(tui_ws) == []
        await pilot.press("backspace", "2", "tab", "down", "tab", *"same as 4", "enter")  # duplicated, with a note
        await settle(pilot)
        assert app.screen is screen
        assert flag_rows(tui_ws) == [{"dataset": "syn", "filename": filename, "text": refs[1], "reviewer": "alice",
                                      "flag": "duplicated", "note": "same as 4"}]
        shown = text_of(screen, "#image-references")
        assert '⚑ duplicated (alice: "same as 4")' in line_of(shown, 2) and "⚑" not in line_of(shown, 1)
        await pilot.press("n", "p")  # the mark is read again with the image
        await settle(pilot)
        assert "⚑ duplicated (alice" in line_of(text_of(screen, "#image-references"), 2)


async def test_f_on_the_review_screen_shows_others_flags_clears_mine_and_reports_a_read_only_store(
        tui_ws: Workspace, settle, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    app = app_for(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ReviewScreen) and screen.item is not None
        filename, refs = references_of(tui_ws, screen.item.image_id)
        db = tui_ws.open_db()
        flag_reference(db, "syn", filename, refs[0], "bob", "not this image")
        db.close()
        await pilot.press("right", "left")  # another reviewer's flag shows when the item is read again
        await settle(pilot)
        assert "⚑ not this image (bob)" in line_of(text_of(screen, "#review-references"), 1)

        await pilot.press("f")
        await pilot.pause()
        await pilot.press("1", "tab", "down", "down", "down", "enter")  # clear my flag: I have none
        await settle(pilot)
        assert isinstance(app.screen, ReviewScreen) and len(flag_rows(tui_ws)) == 1
        assert any("nothing to clear" in str(n.message) for n in app._notifications)

        await pilot.press("f")
        await pilot.pause()
        await pilot.press("1", "enter")  # misspelt, the first reason
        await settle(pilot)
        assert [(r["reviewer"], r["flag"]) for r in flag_rows(tui_ws)] == [("bob", "not this image"), ("alice", "misspelt")]
        assert "⚑ not this image (bob)  ⚑ misspelt (alice)" in line_of(text_of(screen, "#review-references"), 1)
        assert screen.items[0].score is None and screen.index == 0  # a reference flag is not a rating

        def read_only(*args: object, **kw: object) -> None:
            raise sqlite3.OperationalError("attempt to write a readonly database")

        monkeypatch.setattr("workbench.screens.reference_flag.flag_reference", read_only)
        await pilot.press("f")
        await pilot.pause()
        await pilot.press("2", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ErrorModal) and "reference flag not saved" in app.screen.message
        assert "is read-only for you" in app.screen.message and len(flag_rows(tui_ws)) == 2
