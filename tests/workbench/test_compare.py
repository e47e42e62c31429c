"""The Compare screen: blind pairwise verdicts through Pilot, two reviewers at once, the overlap
queue, and the Runs screen's review section; `workbench ratings compare` on the same rows."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from typer.testing import CliRunner

from engine.store.comparisons import current_verdicts, left_is_a
from engine.workspace import Workspace
from tests.workbench.conftest import run_id
from tests.workbench.test_tui import SIZE, app_for, text_of
from workbench.screens.pairwise import CompareScreen
from workbench.screens.runs import RunsScreen


def comparison_rows(ws: Workspace) -> list[dict[str, Any]]:
    db = ws.open_db()
    try:
        return list(db.query("SELECT c.*, g.image_id, g.run_id AS left_run FROM comparisons c"
                             " JOIN generations g ON g.id = c.left_generation_id ORDER BY c.id"))
    finally:
        db.close()


async def test_compare_is_blind_saves_each_key_and_undoes(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    app = app_for(tui_ws)
    first, constant = run_id(tui_ws, "first"), run_id(tui_ws, "constant")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen) and (screen.run_a.name, screen.run_b.name) == ("first", "constant")  # type: ignore[union-attr]
        shown = " ".join(text_of(screen, s) for s in ("#compare-bar", "#compare-left", "#compare-right", "#compare-verdict"))
        assert "first" not in shown and "constant" not in shown and "CIDEr" not in shown and "judged 0/30" in shown
        item = screen.item
        assert item is not None
        left_text = item.text_a if left_is_a("alice", item.image_id, first, constant) else item.text_b
        assert left_text in text_of(screen, "#compare-left")
        for key in "1234":
            await pilot.press(key)
        await settle(pilot)
        assert screen.index == 4 and "judged 4/30" in text_of(screen, "#compare-bar")
        await pilot.press("z")
        await settle(pilot)
        assert screen.index == 3 and "judged 3/30" in text_of(screen, "#compare-bar")
    rows = comparison_rows(tui_ws)
    assert [r["choice"] for r in rows] == ["left", "right", "tie", "both_bad", None] and rows[-1]["undoes"] == rows[3]["id"]
    for r in rows:  # the side recorded is the side the reviewer was shown
        assert (r["left_run"] == first) == left_is_a("alice", r["image_id"], first, constant)
    db = tui_ws.open_db()
    verdicts = current_verdicts(db, first, constant)
    assert len(verdicts) == 3 and verdicts[0].winner == ("a" if rows[0]["left_run"] == first else "b")


async def test_two_reviewers_comparing_at_once_lose_nothing(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    async def judge(reviewer: str, keys: str) -> None:
        app = app_for(tui_ws, reviewer=reviewer)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("v")
            await settle(pilot)
            for key in keys:
                await pilot.press(key)

    await asyncio.gather(judge("alice", "1234" * 5), judge("bob", "4321" * 5))
    rows = comparison_rows(tui_ws)
    assert len(rows) == 40
    for reviewer, pattern in (("alice", "1234"), ("bob", "4321")):
        mine = [r for r in rows if r["reviewer"] == reviewer]
        assert [r["choice"] for r in mine] == [{"1": "left", "2": "right", "3": "tie", "4": "both_bad"}[k] for k in pattern * 5]
        assert len({r["image_id"] for r in mine}) == 20


async def test_with_overlap_a_second_reviewer_starts_on_what_the_first_judged(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    tui_ws.config_path.write_text(tui_ws.config_path.read_text() + "\n[review]\noverlap = 0.3\n")
    async with app_for(tui_ws, reviewer="alice").run_test(size=SIZE) as pilot:
        await pilot.press("v")
        await settle(pilot)
        for key in "121":
            await pilot.press(key)
    alice = {r["image_id"] for r in comparison_rows(tui_ws)}
    async with app_for(tui_ws, reviewer="bob").run_test(size=SIZE) as pilot:
        await pilot.press("v")
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, CompareScreen)
        assert screen.items[0].image_id in alice and len(screen.items) == 30
        await pilot.press("2")
        await settle(pilot)
        assert "judged 1/30, 1 shared" in text_of(screen, "#compare-bar")
    done = CliRunner().invoke(__import__("workbench.cli", fromlist=["app"]).app,
                              ["-w", str(tui_ws.root), "ratings", "compare", "first", "constant"])
    assert done.exit_code == 0, done.output
    assert "4 verdicts by 2 reviewers (alice 3, bob 1)" in done.output and "agreement on 1 images judged by two or more" in done.output
    assert "win rate of constant over first:" in done.output and "position bias" in done.output


async def test_the_runs_screen_shows_review_agreement_and_comparisons(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    from engine.store.comparisons import add_comparison, pair_items
    from engine.store.results import add_rating

    db = tui_ws.open_db()
    items = pair_items(db, run_id(tui_ws, "first"), run_id(tui_ws, "constant"))
    for k, item in enumerate(items[:6]):
        add_rating(db, item.generation_a, "alice", 1 + k % 5)
        add_rating(db, item.generation_a, "bob", 1 + (k + 1) % 5)
    for item in items[:24]:  # a reviewer who always picks left, on enough images for the check
        add_comparison(db, item.generation_a, item.generation_b, "alice", "left")
    db.close()
    app = app_for(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("u")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        screen.table.move_cursor(row=next(i for i, r in enumerate(screen.runs) if r.name == "first"))
        await settle(pilot)
        review = text_of(screen, "#run-review")
    assert "6 images rated by alice (6), bob (6)" in review and "Krippendorff's alpha (ordinal)" in review
    assert "over 6 images rated by two or more" in review and "mean rating per scene:" in review
    assert "Spearman with the ratings (eval.first): " in review and "CIDEr" in review
    assert "constant vs first: 30 images in common" in review and "the left caption won 1.000" in review
    assert "position bias: the left side wins more often than chance" in review


def test_every_export_writes_the_review_and_the_comparisons_into_its_metrics_file(tui_ws: Workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from engine.jobs.foreground import run_foreground
    from engine.store.comparisons import add_comparison, pair_items
    from engine.store.results import add_rating

    db = tui_ws.open_db()
    items = pair_items(db, run_id(tui_ws, "first"), run_id(tui_ws, "constant"))
    for item in items[:4]:
        add_rating(db, item.generation_a, "alice", 4)
        add_comparison(db, item.generation_b, item.generation_a, "alice", "right")  # first (A) on the right, and it won
    db.close()
    for fmt, metrics_name in (("jsonl", "first.jsonl.metrics.json"), ("csv", "first.csv.metrics.json"), ("coco", "first.metrics.json")):
        out = tmp_path / f"first.{'json' if fmt == 'coco' else fmt}"
        result = run_foreground(tui_ws, "export", {"run": "first", "format": fmt, "output": str(out)})
        assert str(tmp_path / metrics_name) in result.message
        m = json.loads((tmp_path / metrics_name).read_text())
        assert m["review"]["rated_images"] == 4 and m["review"]["reviewers"] == {"alice": 4}
        [pair] = m["comparisons"]
        assert (pair["a"], pair["b"], pair["verdicts"]) == ("first", "constant", 4) and pair["win_rate_of_b"]["value"] == 0.0
        assert pair["left_won"]["value"] == 0.0 and "CIDEr" in m["corpus"]
        umask = os.umask(0)
        os.umask(umask)
        assert out.stat().st_mode & 0o777 == (tmp_path / metrics_name).stat().st_mode & 0o777 == 0o666 & ~umask  # readable by others


async def test_o_picks_runs_a_and_b_and_the_pair_is_remembered(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    from textual.widgets import OptionList

    from workbench.screens.choose import ChooseModal

    async def pick(pilot, name: str) -> None:  # type: ignore[no-untyped-def]
        modal = pilot.app.screen
        assert isinstance(modal, ChooseModal)
        options = modal.query_one(OptionList)
        options.highlighted = [o.id for o in options._options].index(name)
        await pilot.press("enter")
        await settle(pilot)

    async with app_for(tui_ws).run_test(size=SIZE) as pilot:
        await pilot.press("v")
        await settle(pilot)
        await pilot.press("o")
        await pick(pilot, "constant")
        await pick(pilot, "first")
        screen = pilot.app.screen
        assert isinstance(screen, CompareScreen) and (screen.run_a.name, screen.run_b.name) == ("constant", "first")  # type: ignore[union-attr]
    async with app_for(tui_ws).run_test(size=SIZE) as pilot:
        await pilot.press("v")
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, CompareScreen) and (screen.run_a.name, screen.run_b.name) == ("constant", "first")  # type: ignore[union-attr]


def test_ratings_compare_bad_input_is_one_line(tui_ws: Workspace) -> None:
    from workbench.cli import app

    cli = CliRunner()
    for args, message in ((["nope", "first"], "'nope' is not a generation or baseline run (those here: "),
                          (["first", "first"], "'first' twice: compare two different runs"),
                          (["first"], "Missing argument 'B'")):
        done = cli.invoke(app, ["-w", str(tui_ws.root), "ratings", "compare", *args])
        assert done.exit_code != 0 and message in done.output, done.output
    done = cli.invoke(app, ["-w", str(tui_ws.root), "ratings", "compare", "first", "constant"])
    assert done.exit_code == 0 and "no comparisons yet" in done.output, done.output


def test_undo_restores_the_verdict_before_it_as_it_was_shown(tui_ws: Workspace) -> None:
    """A verdict given with B on the left, then one with A on the left, then undo: the first one
    is current again, B still the winner (its choice belongs to its own order of the sides)."""
    from engine.store.comparisons import add_comparison, pair_items, withdraw_comparison

    a, b = run_id(tui_ws, "first"), run_id(tui_ws, "constant")
    db = tui_ws.open_db()
    item = pair_items(db, a, b)[0]
    add_comparison(db, item.generation_b, item.generation_a, "alice", "left")  # B on the left, B better
    second = add_comparison(db, item.generation_a, item.generation_b, "alice", "tie")
    assert [v.winner for v in current_verdicts(db, a, b)] == ["tie"]
    row, choice = withdraw_comparison(db, second, "alice")  # type: ignore[misc]
    assert choice == "left" and [v.winner for v in current_verdicts(db, a, b)] == ["b"]
    assert withdraw_comparison(db, row, "bob") is None  # not bob's row: nothing written


async def test_with_overlap_review_serves_what_another_reviewer_rated_first(tui_ws: Workspace, settle) -> None:  # type: ignore[no-untyped-def]
    from engine.store.results import add_rating, generations_of
    from workbench.screens.review import ReviewScreen

    db = tui_ws.open_db()
    bobs = [g.id for g in generations_of(db, run_id(tui_ws, "constant"))[5:8]]
    for g in bobs:
        add_rating(db, g, "bob", 3)
    db.close()
    tui_ws.config_path.write_text(tui_ws.config_path.read_text() + "\n[review]\noverlap = 0.3\n")
    async with app_for(tui_ws, reviewer="alice").run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, ReviewScreen) and screen.run_name == "constant"
        assert screen.items[0].generation_id in bobs and "rated 0/30, 0 shared" in text_of(screen, "#review-bar")
        await pilot.press("4")
        await settle(pilot)
        assert "rated 1/30, 1 shared" in text_of(screen, "#review-bar")
