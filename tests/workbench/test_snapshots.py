"""SVG snapshots of the main screens with half-block images (update with --snapshot-update)."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from engine.workspace import Workspace
from workbench.app import make_app


async def _settle(pilot: Pilot[Any]) -> None:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


class TestScreens:
    def test_browse(self, tui_ws: Workspace, snap_compare) -> None:  # type: ignore[no-untyped-def]
        """The image list sorted by score, worst first, after paging down and one line up (the
        cursor row, and only it, is highlighted)."""

        async def run_before(pilot: Pilot[Any]) -> None:
            await _settle(pilot)
            await pilot.press(*"sssss")
            await _settle(pilot)
            await pilot.press("pagedown", "up")
            await _settle(pilot)

        app = make_app(tui_ws, images="halfcell", reviewer="alice", start_runner=False)
        assert snap_compare(app, terminal_size=(120, 20), run_before=run_before)

    def test_image_with_mask(self, tui_ws: Workspace, snap_compare) -> None:  # type: ignore[no-untyped-def]
        """One image at 80x24 with its mask blended in and the legend."""

        async def run_before(pilot: Pilot[Any]) -> None:
            await _settle(pilot)
            await pilot.press("enter")
            await _settle(pilot)
            await pilot.press("m")
            await _settle(pilot)

        app = make_app(tui_ws, images="halfcell", reviewer="alice", start_runner=False)
        assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)

    def test_review(self, tui_ws: Workspace, snap_compare) -> None:  # type: ignore[no-untyped-def]
        """The review queue after one rating and a flag."""

        async def run_before(pilot: Pilot[Any]) -> None:
            await pilot.press("r")
            await _settle(pilot)
            await pilot.press("4", "g")
            await _settle(pilot)

        app = make_app(tui_ws, images="halfcell", reviewer="alice", start_runner=False)
        assert snap_compare(app, terminal_size=(120, 36), run_before=run_before)

    def test_image_captions_at_120x36(self, tui_ws: Workspace, snap_compare) -> None:  # type: ignore[no-untyped-def]
        """The generated captions in full, with readable score names, visible without scrolling."""

        async def run_before(pilot: Pilot[Any]) -> None:
            await _settle(pilot)
            await pilot.press("down", "enter")
            await _settle(pilot)

        app = make_app(tui_ws, images="halfcell", reviewer="alice", start_runner=False)
        assert snap_compare(app, terminal_size=(120, 36), run_before=run_before)

    def test_image_captions_at_80x24(self, tui_ws: Workspace, snap_compare) -> None:  # type: ignore[no-untyped-def]
        """At 80x24 one key (g) scrolls the generated captions into view, whole."""

        async def run_before(pilot: Pilot[Any]) -> None:
            await _settle(pilot)
            await pilot.press("down", "enter")
            await _settle(pilot)
            await pilot.press("g")
            await _settle(pilot)

        app = make_app(tui_ws, images="halfcell", reviewer="alice", start_runner=False)
        assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)

    def test_compare(self, tui_ws: Workspace, snap_compare) -> None:  # type: ignore[no-untyped-def]
        """Blind comparison after one verdict: two captions, no run names or scores."""

        async def run_before(pilot: Pilot[Any]) -> None:
            await pilot.press("v")
            await _settle(pilot)
            await pilot.press("1")
            await _settle(pilot)

        app = make_app(tui_ws, images="halfcell", reviewer="alice", start_runner=False)
        assert snap_compare(app, terminal_size=(120, 36), run_before=run_before)
