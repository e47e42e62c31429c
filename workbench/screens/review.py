"""Review: a run's generated captions, the ones I have not rated first; 1-5 rate and advance.

Every key that changes a rating writes it at once (a new row; history is kept), so a dropped SSH
connection loses nothing. Undo writes a row that withdraws the one this session wrote last and
restores the rating before it; no row is ever deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Static

from engine.jobs.review import rating_queue
from engine.store.results import add_rating, latest_evaluation, scores_of, withdraw_rating
from engine.store.runs import list_runs
from engine.store.views import ReviewItem
from workbench.screens.choose import ChooseModal
from workbench.screens.filters import Choices, default_run
from workbench.screens.image import SCORE_COLUMNS
from workbench.screens.prompt import PromptModal
from workbench.screens.queue import QueueScreen
from workbench.widgets.picture import Picture

FLAG_KEYS = {"h": "hallucinated object", "c": "wrong count", "w": "wrong position", "s": "wrong scene", "g": "grammar"}


@dataclass
class QueueLoaded(Message):
    run: str
    run_id: int | None
    items: list[ReviewItem]
    scores: dict[int, dict[str, float]]
    runs: list[tuple[str, str]]
    others: frozenset[int] = frozenset()
    """Generations another reviewer rated (the shared items)."""


class ReviewScreen(QueueScreen):
    """Rate generated captions: 1-5 rates and moves on; h c w s g toggle the flags hallucinated
    object, wrong count, wrong position, wrong scene, grammar; n writes a note; z undoes; B hides
    run names and scores (blind review); ← → move without rating; o picks the run; f flags one of
    the references (misspelt, duplicated, not this image), for everyone to see. Captions I
    have not rated come first. Each change is saved at once."""

    BINDINGS = [
        *[Binding(str(k), f"rate({k})", "Rate" if k == 1 else f"Rate {k}", show=k == 1, key_display="1-5" if k == 1 else None,
                  id=f"review.rate{k}") for k in range(1, 6)],
        *[Binding(key, f"flag('{key}')", flag.split()[-1], show=False, id=f"review.flag.{flag.split()[-1]}")
          for key, flag in FLAG_KEYS.items()],
        Binding("n", "note", "Note", id="review.note"),
        Binding("z", "undo", "Undo", id="review.undo"),
        Binding("B", "blind", "Blind", id="review.blind"),
        Binding("right", "step(1)", "Next", show=False, id="review.next"),
        Binding("left", "step(-1)", "Previous", show=False, id="review.previous"),
        Binding("o", "choose_run", "Run", id="review.run"),
        Binding("f", "flag_reference", "Flag ref", id="review.reference_flag"),
    ]

    prefix = "review"

    def __init__(self) -> None:
        super().__init__()
        self.run_name = ""
        self.run_id: int | None = None
        self.items: list[ReviewItem] = []
        self.scores: dict[int, dict[str, float]] = {}
        self.runs: list[tuple[str, str]] = []
        self.others: frozenset[int] = frozenset()
        self.blind = False
        self.undo_stack: list[tuple[int, int]] = []
        """(queue index, rating id) of each rating row this screen wrote."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="review-bar", classes="bar")
        with Horizontal(id="review-body"):
            yield Picture(self.app.session.images, id="review-picture")  # type: ignore[attr-defined]
            with VerticalScroll(id="review-info"):
                yield Static("", id="review-caption")
                yield Static("", id="review-state")
                yield Static("", id="review-scores")
                yield Static("", id="review-references")
        yield Static("", id="review-empty", classes="empty")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.load_queue(None)

    @work(thread=True, exit_on_error=False, exclusive=True, group="review-queue")
    def load_queue(self, run_name: str | None) -> None:
        """The queue of ``run_name``; by default the run this reviewer chose last (remembered in
        the workspace), else the newest model generation of the dataset Browse opens on (a
        baseline only when there is none), else of any dataset."""
        db = self.session.db
        runs = [r for r in list_runs(db) if r.kind in ("generation", "baseline") and r.status == "complete"]
        if run_name is None:  # the run this reviewer had open last time, if it still exists
            remembered = self.session.recall("review_run")
            run_name = remembered if any(r.name == remembered for r in runs) else None
        run = next((r for r in runs if r.name == run_name), None) or default_run(
            Choices.read(db, None, self.session.dataset).runs) or default_run(runs)
        if run is None:
            self.post_message(QueueLoaded("", None, [], {}, []))
            return
        evaluation = latest_evaluation(db, run.id)
        queue = rating_queue(db, run.id, self.session.reviewer, self.session.workspace.config().review_overlap)
        self.post_message(QueueLoaded(
            run.name, run.id, queue.items, scores_of(db, evaluation) if evaluation else {},
            [(r.name, f"{r.name} ({r.kind})") for r in runs], queue.others))

    def on_queue_loaded(self, message: QueueLoaded) -> None:
        self.run_name, self.run_id, self.items, self.scores, self.runs, self.others = (
            message.run, message.run_id, message.items, message.scores, message.runs, message.others)
        self.index = 0
        self.undo_stack.clear()
        self.set_class(not self.items, "-empty")
        if not self.items:
            self.query_one("#review-empty", Static).update(
                "Nothing to review yet: generated captions come from `generate` or `baseline-knn` jobs "
                "(j: Jobs; `workbench demo` queues the whole pipeline).")
            return
        self.show_item()

    def refresh_text(self) -> None:
        item = self.item
        if item is None:
            return
        rated = sum(1 for i in self.items if i.score is not None)
        shared = sum(1 for i in self.items if i.score is not None and i.generation_id in self.others)
        run = "(hidden: blind review)" if self.blind else self.run_name
        self.query_one("#review-bar", Static).update(
            f"{self.index + 1}/{len(self.items)} · run {run} · reviewer {self.session.reviewer} · "
            f"rated {rated}/{len(self.items)}" + (f", {shared} shared" if self.others else "") + (" · blind" if self.blind else ""))
        caption = Text()
        caption.append(f"{item.filename}" + (f" · {item.scene}" if item.scene else "") + "\n", style="dim")
        caption.append(item.text or "(an empty caption)", style="bold" if item.text else "dim")
        self.query_one("#review-caption", Static).update(caption)
        stars = "★" * (item.score or 0) + "☆" * (5 - (item.score or 0))
        box = self.query_one("#review-state", Static)
        state = Text()
        state.append(f"my rating  {stars}  {item.score or 'not rated'}\n")
        state.append("flags      ")
        room, used = max(20, (box.content_region.width or 80) - 11), 0
        for key, flag in FLAG_KEYS.items():  # lines broken between flags, never inside a label
            label = f"[{key}] {flag}"
            if used and used + 2 + len(label) > room:
                state.append("\n" + " " * 11)
                used = 0
            elif used:
                state.append("  ")
                used += 2
            state.append(label, style="reverse" if flag in item.flags else "dim")
            used += len(label)
        state.append(f"\nnote       {item.note or '(n to write one)'}\n")
        box.update(state)
        scores = self.scores.get(item.image_id, {})
        self.query_one("#review-scores", Static).update(
            "" if self.blind else Group(Text("Scores", style="bold"),
                                        Text("  ".join(f"{label} {scores[k]:.3f}" for k, label in SCORE_COLUMNS if k in scores)
                                             or "not scored yet")))

    def save(self, score: int | None, flags: list[str], note: str, index: int | None = None, attempt: int = 0) -> bool:
        """Write a caption's rating now (the current one by default); False (with a message) when
        the store refused or is busy (then it is saved again in a second, for half a minute)."""
        index = self.index if index is None else index
        item = self.items[index] if 0 <= index < len(self.items) else None
        if item is None:
            return False
        rating = self.write("rating", lambda: add_rating(self.session.db, item.generation_id, self.session.reviewer, score, flags, note),
                            lambda n: self._saved_later(score, flags, note, index, n), attempt)
        if rating is None:
            return False
        self.session.ratings_changed += 1
        self.undo_stack.append((index, rating.id))
        self.items[index] = item._replace(rating_id=rating.id, score=rating.score, flags=rating.flags, note=rating.note)
        return True

    def _saved_later(self, score: int | None, flags: list[str], note: str, index: int, attempt: int) -> None:
        if self.save(score, flags, note, index, attempt):
            self.refresh_text()

    def action_rate(self, score: int) -> None:
        item = self.item
        if item is not None and self.save(score, item.flags, item.note):
            if self.index + 1 < len(self.items):
                self.index += 1
                self.show_item()
            else:
                self.refresh_text()
                self.notify("that was the last caption of the queue", timeout=2)

    def action_flag(self, key: str) -> None:
        item = self.item
        if item is None:
            return
        flag = FLAG_KEYS[key]
        flags = [f for f in item.flags if f != flag] if flag in item.flags else [*item.flags, flag]
        if self.save(item.score, flags, item.note):
            self.refresh_text()

    def action_note(self) -> None:
        item = self.item
        if item is None:
            return

        def done(note: str | None) -> None:
            current = self.item
            if note is not None and current is not None and current.generation_id == item.generation_id and self.save(
                    current.score, current.flags, note):
                self.refresh_text()

        self.app.push_screen(PromptModal(f"Note on {item.filename}", item.note), done)

    def action_undo(self) -> None:
        if not self.undo_stack:
            self.notify("nothing to undo in this session", timeout=2)
            return
        index, rating_id = self.undo_stack[-1]
        item = self.items[index]
        now = self.write("undo", lambda: withdraw_rating(self.session.db, rating_id, self.session.reviewer))
        if now is None:
            return
        self.undo_stack.pop()
        self.session.ratings_changed += 1
        self.items[index] = item._replace(rating_id=now.id, score=now.score, flags=now.flags, note=now.note)
        self.index = index
        self.show_item()

    def action_blind(self) -> None:
        self.blind = not self.blind
        self.refresh_text()

    def action_choose_run(self) -> None:
        if not self.runs:
            return

        def chosen(name: str | None) -> None:
            if name:
                self.session.remember("review_run", name)
                self.load_queue(name)

        self.app.push_screen(ChooseModal("Review which run?", self.runs, self.run_name), chosen)

    def export_defaults(self) -> dict[str, str]:
        return {"run": self.run_name} if self.run_name else {}

