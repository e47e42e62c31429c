"""Compare: two runs' captions of one image side by side, blind; 1-4 judge and advance.

Run names and scores are never shown. Which run's caption is on the left is drawn per reviewer
and image (recorded with the verdict, so position bias can be checked), identical captions are
skipped and counted, and every key writes its row at once (an undo is a new row).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Static

from engine.jobs.review import CompareQueue, compare_queue
from engine.store.comparisons import PairItem, add_comparison, left_is_a, withdraw_comparison
from engine.store.runs import Run, list_runs
from engine.store.views import pair_candidates
from workbench.screens.choose import ChooseModal
from workbench.screens.queue import QueueScreen
from workbench.widgets.picture import Picture

CHOICE_KEYS = {"1": ("left", "Left better"), "2": ("right", "Right better"), "3": ("tie", "Tie"), "4": ("both_bad", "Both bad")}
WORDS = {"left": "left better", "right": "right better", "tie": "tie", "both_bad": "both bad"}


@dataclass
class PairLoaded(Message):
    run_a: Run | None
    run_b: Run | None
    queue: CompareQueue | None
    runs: list[tuple[str, str]]


class CompareScreen(QueueScreen):
    """Blind pairwise comparison of two runs: 1 left better, 2 right better, 3 tie, 4 both bad;
    z undoes; ← → move without judging; o picks the two runs; f flags a reference. Items I have not judged come first
    (with [review] overlap, items others judged before the rest). Each verdict is saved at once."""

    BINDINGS = [
        *[Binding(k, f"judge('{choice}')", label, key_display=k, id=f"compare.{choice}") for k, (choice, label) in CHOICE_KEYS.items()],
        Binding("z", "undo", "Undo", id="compare.undo"),
        Binding("right", "step(1)", "Next", show=False, id="compare.next"),
        Binding("left", "step(-1)", "Previous", show=False, id="compare.previous"),
        Binding("o", "choose_runs", "Runs A/B", id="compare.runs"),
        Binding("f", "flag_reference", "Flag ref", id="compare.reference_flag"),
    ]
    prefix = "compare"

    def __init__(self) -> None:
        super().__init__()
        self.run_a: Run | None = None
        self.run_b: Run | None = None
        self.verdicts: dict[int, str] = {}
        self.others: frozenset[int] = frozenset()
        self.identical = 0
        self.runs: list[tuple[str, str]] = []
        self.shared_images = 0
        """Images both runs captioned."""
        self.undo_stack: list[tuple[int, int]] = []
        """(queue index, comparison row id) of each row this screen wrote."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="compare-bar", classes="bar")
        with Horizontal(id="compare-body"):
            yield Picture(self.app.session.images, id="compare-picture")  # type: ignore[attr-defined]
            with VerticalScroll(id="compare-info"):
                yield Static("", id="compare-left", classes="compare-caption")
                yield Static("", id="compare-right", classes="compare-caption")
                yield Static("", id="compare-verdict")
                yield Static("", id="compare-references")
        yield Static("", id="compare-empty", classes="empty")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.load_pair(None)

    @work(thread=True, exit_on_error=False, exclusive=True, group="compare-queue")
    def load_pair(self, names: tuple[str, str] | None) -> None:
        """The queue of runs (A, B); by default the pair this reviewer compared last, else the
        newest model generation against the newest other run over the same images."""
        db = self.session.db
        runs = [r for r in list_runs(db) if r.kind in ("generation", "baseline") and r.status == "complete"]
        by_name = {r.name: r for r in runs}
        if names is None:
            remembered = self.session.recall("compare_runs")
            if isinstance(remembered, list) and len(remembered) == 2 and all(n in by_name for n in remembered):
                names = (remembered[0], remembered[1])
        pair = (by_name[names[0]], by_name[names[1]]) if names else pair_candidates(db, runs)
        choices = [(r.name, f"{r.name} ({r.kind})") for r in runs]
        if pair is None:
            self.post_message(PairLoaded(None, None, None, choices))
            return
        a, b = pair
        queue = compare_queue(db, a.id, b.id, self.session.reviewer, self.session.workspace.config().review_overlap)
        self.post_message(PairLoaded(a, b, queue, choices))

    def on_pair_loaded(self, message: PairLoaded) -> None:
        self.run_a, self.run_b, self.runs = message.run_a, message.run_b, message.runs
        q = message.queue
        self.items, self.verdicts, self.others, self.identical = (q.items, dict(q.verdicts), q.others, q.identical) if q else ([], {}, frozenset(), 0)
        self.shared_images = len(self.items) + self.identical
        self.index = 0
        self.undo_stack.clear()
        self.set_class(not self.items, "-empty")
        if not self.items:
            why = ("Nothing to compare yet: Compare needs two generation or baseline runs over the same images "
                   "(`generate` and `baseline-knn` jobs; `workbench demo` queues both).")
            if q is not None and self.run_a is not None and self.run_b is not None:
                why = (f"{self.run_a.name} and {self.run_b.name}: " + (
                    f"every caption is the same in both runs ({self.identical} skipped)" if self.identical
                    else "they captioned no image in common") + "; o picks two other runs.")
            self.query_one("#compare-empty", Static).update(why)
            return
        self.show_item()

    def sides(self, item: PairItem) -> tuple[tuple[int, str], tuple[int, str]]:
        """((generation, caption) on the left, the same on the right) for this reviewer."""
        assert self.run_a is not None and self.run_b is not None
        a, b = (item.generation_a, item.text_a), (item.generation_b, item.text_b)
        return (a, b) if left_is_a(self.session.reviewer, item.image_id, self.run_a.id, self.run_b.id) else (b, a)

    def refresh_text(self) -> None:
        item = self.item
        if item is None:
            return
        done = sum(1 for i in self.items if i.image_id in self.verdicts)
        shared = sum(1 for i in self.items if i.image_id in self.verdicts and i.image_id in self.others)
        self.query_one("#compare-bar", Static).update(
            f"{self.index + 1}/{len(self.items)} · blind: runs hidden · reviewer {self.session.reviewer} · judged {done}/{len(self.items)}"
            + (f", {shared} shared" if self.others else "") + (f" · {self.identical} identical skipped" if self.identical else ""))
        (_, left), (_, right) = self.sides(item)
        mine = self.verdicts.get(item.image_id)
        for side, text, picked in (("left", left, ("left", "tie")), ("right", right, ("right", "tie"))):
            caption = Text()
            caption.append(f"{'Left' if side == 'left' else 'Right'} ({'1' if side == 'left' else '2'})\n", style="bold")
            caption.append(text or "(an empty caption)", style=("bold reverse" if mine in picked else "") + ("" if text else " dim"))
            self.query_one(f"#compare-{side}", Static).update(caption)
        verdict = Text(f"{item.filename}" + (f" · {item.scene}" if item.scene else "") + "\n", style="dim")
        verdict.append(f"my verdict  {WORDS[mine] if mine else 'not judged'}\n")
        verdict.append("1 left better  2 right better  3 tie  4 both bad  z undo", style="dim")
        self.query_one("#compare-verdict", Static).update(verdict)

    def save(self, choice: str, index: int, attempt: int = 0) -> bool:
        """Write a verdict now; False (with a message) when the store refused or is busy (then it
        is saved again in a second, for half a minute)."""
        item = self.items[index]
        (left, _), (right, _) = self.sides(item)
        row = self.write("verdict", lambda: add_comparison(self.session.db, left, right, self.session.reviewer, choice),
                         lambda n: self._saved_later(choice, index, n), attempt)
        if row is None:
            return False
        self.undo_stack.append((index, row))
        self.verdicts[item.image_id] = choice
        return True

    def _saved_later(self, choice: str, index: int, attempt: int) -> None:
        if self.save(choice, index, attempt):
            self.refresh_text()

    def action_judge(self, choice: str) -> None:
        if self.item is None or not self.save(choice, self.index):
            return
        if self.index + 1 < len(self.items):
            self.index += 1
            self.show_item()
        else:
            self.refresh_text()
            self.notify("that was the last pair of the queue", timeout=2)

    def action_undo(self) -> None:
        if not self.undo_stack:
            self.notify("nothing to undo in this session", timeout=2)
            return
        index, row = self.undo_stack[-1]
        undone = self.write("undo", lambda: withdraw_comparison(self.session.db, row, self.session.reviewer))
        if undone is None:
            return
        self.undo_stack.pop()
        now, image_id = undone[1], self.items[index].image_id
        if now is None:
            self.verdicts.pop(image_id, None)
        else:
            self.verdicts[image_id] = now
        self.index = index
        self.show_item()

    def action_choose_runs(self) -> None:
        if len(self.runs) < 2:
            self.notify("Compare needs two generation or baseline runs", timeout=3)
            return

        def chosen_a(a: str | None) -> None:
            if not a:
                return

            def chosen_b(b: str | None) -> None:
                if b and b != a:
                    self.session.remember("compare_runs", [a, b])
                    self.load_pair((a, b))
                elif b:
                    self.notify("pick two different runs", timeout=3)

            self.app.push_screen(ChooseModal(f"Compare {a} with which run (B)?", [r for r in self.runs if r[0] != a],
                                             self.run_b.name if self.run_b else None), chosen_b)

        self.app.push_screen(ChooseModal("Compare: which run is A?", self.runs, self.run_a.name if self.run_a else None), chosen_a)
