"""The TUI driven headless through Pilot, on the small workspace of conftest.py."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from textual.screen import Screen
from textual.widgets import Input, OptionList, Select, Static

from engine.errors import WorkbenchError
from engine.store.catalog import captions_for
from engine.workspace import Workspace
from tests.workbench.conftest import rating_rows
from workbench.app import make_app
from workbench.screens.browse import BrowseScreen
from workbench.screens.compare import CompareModal
from workbench.screens.confirm import ConfirmModal
from workbench.screens.export import ExportModal
from workbench.screens.filters import FiltersModal
from workbench.screens.help import HelpModal
from workbench.screens.image import ImageScreen
from workbench.screens.jobs import JobsScreen
from workbench.screens.pairwise import CompareScreen
from workbench.screens.review import ReviewScreen
from workbench.screens.runs import RunsScreen
from workbench.screens.submit import SubmitModal, field_at_fault

SIZE = (120, 36)


def app_for(ws: Workspace, **kw: object):  # type: ignore[no-untyped-def]
    return make_app(ws, images="halfcell", reviewer=str(kw.pop("reviewer", "alice")), start_runner=False, **kw)  # type: ignore[arg-type]


def text_of(screen: object, selector: str) -> str:
    """The plain text of what a Static shows (strings and Rich renderables alike)."""
    content = screen.query_one(selector, Static).content  # type: ignore[attr-defined]
    if isinstance(content, str):
        return content
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(content)
    return console.export_text()


async def test_browse_filter_search_sort(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    app = app_for(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, BrowseScreen)
        rows = screen.image_list.rows
        assert len(rows) == 30 and [r.filename for r in rows] == sorted(r.filename for r in rows)
        assert "30 images · syn" in text_of(screen, "#browse-bar") and "run constant" in text_of(screen, "#browse-bar")

        await pilot.press("f")
        assert isinstance(app.screen, FiltersModal)
        app.screen.query_one("#filter-split", Select).value = "test"
        app.screen.query_one("#filter-run", Select).value = next(r.id for r in screen.choices.runs if r.name == "first")  # type: ignore[union-attr]
        await pilot.press("ctrl+s")
        await settle(pilot)
        rows = screen.image_list.rows
        assert rows and all(r.split == "test" for r in rows) and len(rows) < 30
        assert all(r.score is not None for r in rows)

        for _ in range(5):  # filename -> split -> scene -> status -> rated -> score
            await pilot.press("s")
        await settle(pilot)
        scores = [r.score for r in screen.image_list.rows]
        assert screen.query_state.sort == "score" and scores == sorted(scores)  # type: ignore[union-attr]
        await pilot.press("o")
        await settle(pilot)
        assert [r.score for r in screen.image_list.rows] == sorted(scores, reverse=True)

        await pilot.press("slash")
        await pilot.press(*"farm")
        await settle(pilot)
        found = screen.image_list.rows
        assert found and all(r.split == "test" for r in found)
        db = tui_ws.open_db()
        refs = captions_for(db, [r.id for r in found])
        db.close()
        assert all(any(w.startswith("farm") for c in refs[r.id] for w in c.text.split()) for r in found)
        await pilot.press("escape")
        assert screen.image_list.has_focus


async def test_cursor_move_repaints_the_two_rows_it_touches_after_scrolling(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    app = app_for(tui_ws)
    async with app.run_test(size=(120, 16)) as pilot:
        await settle(pilot)
        image_list = app.screen.image_list  # type: ignore[attr-defined]
        await pilot.press("pagedown", "pagedown")
        await settle(pilot)
        top = round(image_list.scroll_offset.y)
        assert top > 0
        regions = []
        original = image_list.refresh
        image_list.refresh = lambda *r, **kw: (regions.extend(r), original(*r, **kw))[1]
        cursor = image_list.cursor
        await pilot.press("up")
        assert image_list.cursor == cursor - 1 and round(image_list.scroll_offset.y) == top
        assert sorted(r.y for r in regions) == [cursor - 1 - top, cursor - top]  # widget lines, not list rows


async def test_image_screen_next_previous_mask(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    app = app_for(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        first = app.screen.image_list.rows[0].filename  # type: ignore[attr-defined]
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ImageScreen)
        assert first in text_of(screen, "#image-title") and "m: mask overlay" in text_of(screen, "#image-title")
        assert "Composition (compose.gt)" in text_of(screen, "#image-composition")
        refs = text_of(screen, "#image-references")
        assert refs.count("\n") >= 5
        await pilot.press("m")
        await settle(pilot)
        assert "mask gt-masks" in text_of(screen, "#image-title") and "Vegetation" in text_of(screen, "#image-legend")
        await pilot.press("n")
        await settle(pilot)
        assert screen.index == 1 and "2/30" in text_of(screen, "#image-title")
        await pilot.press("p", "p")
        await settle(pilot)
        assert screen.index == 0
        await pilot.press("escape")
        assert isinstance(app.screen, BrowseScreen)


async def test_review_rate_advance_undo_flags_note_blind(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    app = app_for(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ReviewScreen) and screen.run_name == "constant" and len(screen.items) == 30
        first, second = screen.items[0], screen.items[1]
        await pilot.press("4")
        assert screen.index == 1 and "rated 1/30" in text_of(screen, "#review-bar")
        rows = rating_rows(tui_ws)
        assert [(r["generation_id"], r["reviewer"], r["score"]) for r in rows] == [(first.generation_id, "alice", 4)]

        await pilot.press("h", "c")
        await pilot.press("n")
        await pilot.press(*"too vague", "enter")
        await settle(pilot)
        last = rating_rows(tui_ws)[-1]
        assert last["generation_id"] == second.generation_id and last["score"] is None
        assert json.loads(last["flags"]) == ["hallucinated object", "wrong count"] and last["note"] == "too vague"
        await pilot.press("2")
        last = rating_rows(tui_ws)[-1]
        assert (last["score"], last["note"]) == (2, "too vague") and screen.index == 2

        written = rating_rows(tui_ws)
        await pilot.press("z")  # back to the second caption, its score gone, flags and note kept
        assert screen.index == 1 and screen.items[1].score is None and screen.items[1].note == "too vague"
        for _ in range(3):  # the note, then each flag
            await pilot.press("z")
        item = screen.items[1]
        assert screen.index == 1 and (item.score, item.flags, item.note) == (None, [], "") and screen.items[0].score == 4
        await pilot.press("z")
        assert screen.index == 0 and screen.items[0].score is None
        # Undo never deletes: each undo is a row that withdraws one and restores what came before.
        rows = rating_rows(tui_ws)
        assert rows[: len(written)] == written and len(rows) == 2 * len(written)
        assert [r["undoes"] for r in rows[len(written):]] == [r["id"] for r in reversed(written)]
        assert (rows[-1]["score"], rows[-1]["flags"], rows[-1]["note"]) == (None, "[]", "")

        assert "constant" in text_of(screen, "#review-bar") and "CIDEr" in text_of(screen, "#review-scores")
        await pilot.press("B")
        assert "constant" not in text_of(screen, "#review-bar") and "hidden" in text_of(screen, "#review-bar")
        assert text_of(screen, "#review-scores") == ""


async def test_review_queue_puts_my_unrated_first_and_can_switch_runs(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    app = app_for(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("5", "5")
    app = app_for(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await settle(pilot)
        screen = app.screen
        assert screen.items[0].rating_id is None and screen.items[-1].score == 5  # type: ignore[attr-defined]
        assert "rated 2/30" in text_of(screen, "#review-bar")
        await pilot.press("o")
        await pilot.press("home", "enter")  # runs are listed oldest first: "first"
        await settle(pilot)
        assert screen.run_name == "first"  # type: ignore[attr-defined]


async def test_two_reviewers_rating_at_once_lose_nothing(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    async def rate(reviewer: str, keys: str) -> None:
        app = app_for(tui_ws, reviewer=reviewer)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("r")
            await settle(pilot)
            for key in keys:
                await pilot.press(key)

    await asyncio.gather(rate("alice", "12345" * 4), rate("bob", "54321" * 4))
    rows = rating_rows(tui_ws)
    assert len(rows) == 40
    for reviewer, pattern in (("alice", "12345"), ("bob", "54321")):
        mine = [r for r in rows if r["reviewer"] == reviewer]
        assert [r["score"] for r in mine] == [int(k) for k in pattern * 4]
        assert len({r["generation_id"] for r in mine}) == 20


async def test_jobs_list_submit_with_bad_field_then_cancel(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    app = make_app(tui_ws, images="off", start="jobs", start_runner=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        assert [j.status for j in screen.jobs] == ["queued", "succeeded"]
        assert "0 running · 1 queued" in text_of(screen, "#jobs-bar")
        await pilot.press("down")
        await settle(pilot)
        assert "loss 2.2" in text_of(screen, "#job-detail")
        assert "epoch 1 loss 2.5" in "\n".join(screen.query_one("#job-log").lines)  # type: ignore[attr-defined]

        await pilot.press("n")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, SubmitModal) and modal.kind == "evaluate"
        modal.query_one("#param-generation", Input).value = "first"
        modal.query_one("#param-resamples", Input).value = "many"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, SubmitModal)
        assert "must be a whole number" in text_of(modal, "#error-resamples")
        modal.query_one("#param-resamples", Input).value = "100"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, JobsScreen)
        assert [j.status for j in screen.jobs] == ["queued", "queued", "succeeded"]
        assert screen.jobs[0].params["resamples"] == 100

        new = screen.jobs[0].id
        assert screen.selected is not None and screen.selected.id == new  # the cursor follows the new job
        await pilot.press("c")
        await settle(pilot)
        assert [j.status for j in screen.jobs][:2] == ["cancelled", "queued"]
        await pilot.press("t")
        await settle(pilot)
        assert screen.jobs[0].status == "queued" and screen.jobs[0].retry_of == new and screen.selected.id == screen.jobs[0].id
        await pilot.press("down", "down", "down", "c")  # a finished job cannot be cancelled: said, nothing changes
        await settle(pilot)
        assert screen.jobs[-1].status == "succeeded" and any("already succeeded" in n.message for n in app._notifications)  # type: ignore[attr-defined]


def test_field_at_fault_reads_the_param_name() -> None:
    names = ["generation", "resamples", "split"]
    assert field_at_fault("evaluate: resamples='x': must be a whole number", names) == "resamples"
    assert field_at_fault("evaluate: missing parameter generation (give it as --param generation=...)", names) == "generation"
    assert field_at_fault("something else", names) is None


async def test_runs_metrics_confusion_curve_and_compare(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    app = make_app(tui_ws, images="off", start="runs", start_runner=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        names = [r.name for r in screen.runs]
        evaluation = names.index("eval.first")
        await pilot.press(*["down"] * evaluation)
        await settle(pilot)
        metrics = text_of(screen, "#run-metrics")
        assert "CIDEr" in metrics and "95% interval" in metrics and "per scene" in metrics
        await pilot.press("space")
        await pilot.press(*["down"] * (names.index("eval.constant") - evaluation), "c")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, CompareModal)
        compare = text_of(modal, "#compare-result")
        assert "A = eval.first" in compare and "B = eval.constant" in compare and "P(B ≤ A)" in compare
        assert re.search(r"CIDEr\s+[\d.]+\s+[\d.]+\s+-[\d.]+\s+\[-[\d.]+, [-+][\d.]+\]", compare), compare
        await pilot.press("escape")
        await pilot.press(*["down"] * (names.index("seg") - names.index("eval.constant")))
        await settle(pilot)
        assert "confusion" in text_of(screen, "#run-metrics")
        assert "loss: 3 → 2.2 over 5 points" in text_of(screen, "#run-curve-label")
        assert list(screen.query_one("#run-curve").data) == pytest.approx([3.0, 2.8, 2.6, 2.4, 2.2])  # type: ignore[attr-defined]


async def test_export_asks_before_overwriting(tui_ws: Workspace, tmp_path: Path, settle) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out.jsonl"
    out.write_text("old")
    app = app_for(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("e")
        modal = app.screen
        assert isinstance(modal, ExportModal)
        assert modal.query_one("#export-run", Select).value == "constant"
        modal.query_one("#export-path", Input).value = str(out)
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        assert out.read_text() == "old" and isinstance(app.screen, ExportModal)
        await pilot.press("ctrl+s")
        await pilot.press("y")
        await settle(pilot)
        assert not isinstance(app.screen, ExportModal)
        lines = out.read_text().splitlines()
        assert len(lines) == 30 and json.loads(lines[0])["caption"] == "a piece of green land"


async def test_help_palette_and_empty_workspace(workspace: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    app = make_app(workspace, images="off", start_runner=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "No captioning dataset" in text_of(app.screen, "#browse-empty")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpModal)
        assert "Filter" in text_of(app.screen, "#help-keys")
        await pilot.press("escape")
        await settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Filter", "Sort", "Review", "Jobs", "Export"} <= set(titles)
        for key, screen in (("r", "#review-empty"), ("j", "#jobs-empty"), ("u", "#runs-empty")):
            await pilot.press(key)
            await settle(pilot)
            assert "yet" in text_of(app.screen, screen)


async def test_keys_are_remapped_from_config(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    config = tui_ws.config_path
    config.write_text(config.read_text().replace("# review = \"r\"", "review = \"f5\""))
    app = app_for(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f5")
        assert isinstance(app.screen, ReviewScreen)
    text = config.read_text().replace("[keys]", "[keys]\nfly = \"x\"")
    config.write_text(text)
    with pytest.raises(WorkbenchError, match=r"\[keys\] 'fly' is not an action"):
        app_for(tui_ws)


def test_bad_options_are_one_line_errors(tui_ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="--images 'kitty'"):
        make_app(tui_ws, images="kitty")
    with pytest.raises(WorkbenchError, match="--screen .home."):
        make_app(tui_ws, start="home")
    with pytest.raises(WorkbenchError, match="workbench init"):
        make_app(tmp_path / "nowhere")


def test_the_tui_never_imports_torch(tui_ws: Workspace) -> None:
    script = f"""
import asyncio, sys
from workbench.app import make_app
async def main():
    app = make_app({str(tui_ws.root)!r}, images="halfcell", start_runner=False)
    async with app.run_test(size=(120, 36)) as pilot:
        for key in ("enter", "m", "n", "escape", "r", "3", "j", "u", "e", "escape"):
            await pilot.press(key)
            await app.workers.wait_for_complete()
asyncio.run(main())
heavy = [m for m in ("torch", "transformers", "peft", "segmentation_models_pytorch", "pycocoevalcap") if m in sys.modules]
print("heavy:", heavy)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "heavy: []" in out.stdout


def test_readme_lists_every_remappable_action() -> None:
    from workbench.app import known_actions

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [a for a in sorted(known_actions()) if f"`{a}`" not in readme]
    assert not missing, f"README.md does not list the key actions {missing}"


def test_cli_tui_bad_input_is_one_line_and_creates_nothing(tmp_path: Path, tui_ws: Workspace) -> None:
    from typer.testing import CliRunner

    from workbench.cli import app

    runner = CliRunner()
    missing = tmp_path / "typo"
    result = runner.invoke(app, ["--workspace", str(missing), "tui"])
    assert result.exit_code == 1 and "no workspace here" in result.output and not missing.exists()
    for args, message in ((["--images", "kitty"], "--images 'kitty'"), (["--screen", "home"], "--screen 'home'")):
        result = runner.invoke(app, ["--workspace", str(tui_ws.root), "tui", *args])
        assert result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output, result.output


async def test_jobs_cursor_follows_the_running_job_until_moved(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    from engine.store import jobs as q

    db = tui_ws.open_db()
    waiting = q.list_jobs(db, status="queued")[0].id
    q.start_unclaimed(db, waiting)  # the older job runs; a newer one waits above it in the list
    newest = q.submit_job(db, "evaluate", {"generation": "constant"})
    db.close()
    app = make_app(tui_ws, images="off", start="jobs", start_runner=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        assert screen.jobs[0].id == newest and screen.selected is not None and screen.selected.id == waiting
        await pilot.press("up")
        screen.poll()
        await settle(pilot)
        assert screen.selected is not None and screen.selected.id == newest  # the user's choice stays


async def test_a_rating_on_a_busy_database_says_so_and_lands_once_it_is_free(tui_ws: Workspace, settle, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    monkeypatch.setenv("WORKBENCH_BUSY_TIMEOUT_MS", "100")
    app = app_for(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await settle(pilot)
        screen = app.screen
        holder = sqlite3.connect(tui_ws.db_path, timeout=10)
        holder.execute("BEGIN IMMEDIATE")
        db = screen.session.db  # the screen's connection gives up after busy_timeout
        db.execute("PRAGMA busy_timeout = 100")
        await pilot.press("3")
        await pilot.pause()
        assert any("database is busy" in str(n.message) for n in app._notifications) and rating_rows(tui_ws) == []
        holder.rollback()
        holder.close()
        await pilot.pause(1.5)
        assert [r["score"] for r in rating_rows(tui_ws)] == [3]


def test_no_screen_binds_a_global_key() -> None:
    from textual.screen import ModalScreen

    import workbench.screens as screens_pkg
    from workbench.app import WorkbenchApp

    global_keys = {k for b in WorkbenchApp.BINDINGS for k in b.key.split(",")}  # type: ignore[union-attr]
    modules = [importlib.import_module(f"workbench.screens.{m.name}") for m in pkgutil.iter_modules(screens_pkg.__path__)]
    screens = {obj for mod in modules for obj in vars(mod).values()
               if isinstance(obj, type) and issubclass(obj, Screen) and not issubclass(obj, ModalScreen) and obj.__module__ == mod.__name__}
    assert {s.__name__ for s in screens} >= {"BrowseScreen", "ImageScreen", "ReviewScreen", "CompareScreen", "JobsScreen", "RunsScreen"}
    for screen in screens:
        keys = {k for b in screen.BINDINGS for k in b.key.split(",")}  # type: ignore[union-attr]
        assert not keys & global_keys, f"{screen.__name__} shadows {keys & global_keys}"


async def test_every_global_key_works_on_every_screen(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    app = app_for(tui_ws)
    targets = {"b": BrowseScreen, "r": ReviewScreen, "v": CompareScreen, "j": JobsScreen, "u": RunsScreen}
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for start in ("b", "image", "r", "v", "j", "u"):
            for key, screen in targets.items():
                if start == "image":
                    await pilot.press("b")
                    await settle(pilot)
                    await pilot.press("enter")
                    await settle(pilot)
                    assert isinstance(app.screen, ImageScreen)
                else:
                    await pilot.press(start)
                    await settle(pilot)
                await pilot.press(key)
                await settle(pilot)
                assert isinstance(app.screen, screen), f"{key!r} from {start}: {type(app.screen).__name__}"
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpModal)
            await pilot.press("escape")
            await pilot.press("e")
            await settle(pilot)
            assert isinstance(app.screen, ExportModal), f"e from {start}"
            await pilot.press("escape")
            await settle(pilot)


async def test_review_opens_on_the_newest_model_generation_then_on_the_run_chosen_last(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    from engine.jobs.foreground import run_foreground
    from workbench.screens.choose import ChooseModal

    run_foreground(tui_ws, "baseline-scene", {"dataset": "syn"})  # a baseline newer than every generation
    app = make_app(tui_ws, images="off", start="review", reviewer="bob", start_runner=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ReviewScreen) and screen.run_name == "constant"
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, ChooseModal)
        values = [v for v, _ in app.screen.options]
        app.screen.query_one("#choices", OptionList).highlighted = values.index("first")
        await pilot.press("enter")
        await settle(pilot)
        assert screen.run_name == "first"
    again = make_app(tui_ws, images="off", start="review", reviewer="bob", start_runner=False)
    async with again.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert again.screen.run_name == "first"  # type: ignore[attr-defined]
    other = make_app(tui_ws, images="off", start="review", reviewer="carol", start_runner=False)
    async with other.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert other.screen.run_name == "constant"  # type: ignore[attr-defined]


async def test_the_image_screen_shows_every_generated_caption_whole(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    from engine.store.catalog import get_dataset, list_images
    from engine.store.results import generations_of
    from engine.store.runs import get_run

    db = tui_ws.open_db()
    first = {g.image_id: g.text for g in generations_of(db, get_run(db, "first").id)}  # type: ignore[union-attr]
    image = sorted(list_images(db, get_dataset(db, "syn").id), key=lambda im: im.filename)[0]  # type: ignore[union-attr]
    for size in ((120, 36), (80, 24)):
        app = app_for(tui_ws)
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await pilot.press("enter")
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, ImageScreen)
            shown = " ".join(text_of(screen, "#image-generations").split())
            assert "Generated captions" in shown and " ".join(first[image.id].split()) in shown
            assert "BLEU-4" in shown and "CIDEr" in shown and "…" not in shown
            region = screen.query_one("#image-generations").region
            assert region.y < size[1] - 1  # on screen without scrolling (at 80x24, its start is)


async def test_browse_shows_a_rating_made_in_review_on_return(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    from workbench.screens.choose import ChooseModal

    app = app_for(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        browse = app.screen
        assert isinstance(browse, BrowseScreen) and browse.choices is not None and browse.query_state is not None
        shown = browse.choices.run_name(browse.query_state.generation_run_id)
        unrated = sum(not r.rated for r in browse.image_list.rows)
        await pilot.press("r")
        await settle(pilot)
        if app.screen.run_name != shown:  # type: ignore[attr-defined]
            await pilot.press("o")
            await settle(pilot)
            assert isinstance(app.screen, ChooseModal)
            values = [v for v, _ in app.screen.options]
            app.screen.query_one("#choices", OptionList).highlighted = values.index(shown)
            await pilot.press("enter")
            await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        assert app.screen is browse
        assert sum(not r.rated for r in browse.image_list.rows) == unrated - 1
