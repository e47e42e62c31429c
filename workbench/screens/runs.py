"""Runs: every run with its params and metrics; scores with intervals and the per-scene table of
an evaluation, per-class IoU and the confusion matrix of a segmenter, the loss curve of a training
run, and the paired comparison of two evaluated runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Sparkline, Static

from engine.store.runs import Run, list_runs
from engine.store.views import run_curve
from workbench.widgets import shorten

if TYPE_CHECKING:
    from engine.evaluation.pairwise import PairwiseSummary
    from engine.jobs.review import ReviewSummary

METRIC_ORDER = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
HEADLINE = ("miou", "pixel_accuracy", "accuracy", "Bleu_4", "CIDEr", "val_loss", "val_reward", "images")
CURVE_KEYS = ("loss", "train_loss", "val_loss", "reward", "val_reward")
STATUS_MARK = {"complete": "✓", "running": "…", "failed": "✗"}


def headline(metrics: dict[str, Any]) -> str:
    text = "  ".join(f"{k} {metrics[k]:.3f}" if isinstance(metrics[k], float) else f"{k} {metrics[k]}"
                     for k in HEADLINE if k in metrics)
    return text + ("  ORACLE scenes" if metrics.get("scenes") == "oracle" else "")


def evaluation_view(m: dict[str, Any]) -> RenderableType:
    """Corpus scores with 95% intervals, then the per-scene table."""
    table = Table(box=None, header_style="bold", padding=(0, 1))
    table.add_column("metric")
    table.add_column("score", justify="right")
    table.add_column(f"95% interval ({m.get('resamples', 0)} resamples)")
    for name in METRIC_ORDER:
        if name in m:
            lo, hi = m.get("ci95", {}).get(name, (None, None))
            table.add_row(name, f"{m[name]:.3f}", f"[{lo:.3f}, {hi:.3f}]" if lo is not None else "")
        elif name in m.get("unavailable", {}):
            table.add_row(name, "n/a", str(m["unavailable"][name]))
    parts: list[RenderableType] = [
        Text(f"{m.get('images', '?')} images, tokenizer {m.get('tokenizer', '?')}"
             + (", leave-one-out human level" if m.get("human") else "")
             + (f", only the images of {m['subset']}" if m.get("subset") else "")
             + (f", against the references of {m['refs']}" if m.get("refs") else ""), style="dim")]
    if m.get("scenes") == "oracle":
        parts.append(Text("ORACLE scenes: its prompts read the dataset's true scene labels", style="bold reverse"))
    parts.append(table)
    scenes = m.get("per_scene", {})
    if scenes:
        cols = [c for c in ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr") if c in m]
        per = Table(box=None, header_style="bold", padding=(0, 1), title="per scene", title_justify="left")
        per.add_column("scene")
        per.add_column("images", justify="right")
        for c in cols:
            per.add_column(c, justify="right")
        for scene, row in scenes.items():
            per.add_row(scene, str(row["images"]), *(f"{row[c]:.3f}" for c in cols))
        parts.append(per)
    return Group(*parts)


def segmenter_view(m: dict[str, Any]) -> RenderableType:
    """Per-class IoU and the confusion matrix as row-normalised percentages (rows: truth)."""
    parts: list[RenderableType] = []
    iou = m.get("iou", {})
    if iou:
        t = Table(box=None, header_style="bold", padding=(0, 1), title="IoU per class", title_justify="left")
        t.add_column("class")
        t.add_column("IoU", justify="right")
        for name, value in iou.items():
            t.add_row(name, "–" if value is None else f"{value:.3f}")
        parts.append(t)
    per_scene = m.get("per_scene", {})
    if per_scene and isinstance(next(iter(per_scene.values())), float):  # a scene classifier's accuracy per scene
        t = Table(box=None, header_style="bold", padding=(0, 1), title="accuracy per scene", title_justify="left")
        t.add_column("scene")
        t.add_column("accuracy", justify="right")
        for name, value in per_scene.items():
            t.add_row(name, f"{value:.3f}")
        parts.append(t)
    cm, names = m.get("confusion"), m.get("class_names")
    if cm and names:
        parts.append(confusion_table(cm, names))
    return Group(*parts)


def confusion_table(cm: list[list[int]], names: list[str]) -> Table:
    """Row-normalised percentages; columns are numbered and each row names its number, so no
    label is cut however many classes there are."""
    t = Table(box=None, header_style="bold", padding=(0, 1), title="confusion, % of each true class (rows); columns: predicted",
              title_justify="left")
    t.add_column("truth")
    for k in range(len(names)):
        t.add_column(str(k + 1), justify="right")
    for k, (name, row) in enumerate(zip(names, cm, strict=False)):
        total = sum(row) or 1
        t.add_row(f"{k + 1:>2} {name}", *(f"{100 * v / total:.0f}" if v else "·" for v in row))
    return t


def other_metrics(m: dict[str, Any]) -> RenderableType:
    skip = {"confusion", "class_names", "history", "iou", "per_scene", "ci95", "unavailable"}
    t = Table(box=None, show_header=False, padding=(0, 1))
    for key, value in m.items():
        if key in skip or isinstance(value, dict | list):
            continue
        t.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return t


@dataclass
class RunsLoaded(Message):
    runs: list[Run]


@dataclass
class CurveLoaded(Message):
    run_id: int
    name: str
    values: list[float]


@dataclass
class BesideLoaded(Message):
    run_id: int
    beside: list[Any]
    metrics: dict[str, Any]


@dataclass
class Compared(Message):
    text: RenderableType


@dataclass
class ReviewLoaded(Message):
    run_id: int
    text: Text


def review_view(summary: ReviewSummary, pairs: list[PairwiseSummary]) -> Text:
    """A generation run's review: reviewers, agreement with the items it rests on, the mean
    rating per scene, each metric's Spearman correlation with the ratings, and every blind
    pairwise comparison it took part in."""
    from engine.jobs.review import pairwise_lines

    out = Text()
    s = summary
    out.append("Review\n", style="bold")
    if s.reviewers:
        out.append(f"{s.rated_images} image{'s' if s.rated_images != 1 else ''} rated by "
                   f"{', '.join(f'{k} ({v})' for k, v in s.reviewers.items())}; mean {s.mean_rating:.2f}\n")
        alpha = f"{s.alpha_ordinal:.3f}" if s.pairable_images >= 2 else "n/a"
        out.append(f"Krippendorff's alpha (ordinal) {alpha} over {s.pairable_images} image{'s' if s.pairable_images != 1 else ''} "
                   "rated by two or more\n")
        if s.per_scene:
            out.append("mean rating per scene: " + ", ".join(f"{k} {m:.2f} ({n})" for k, (m, n) in s.per_scene.items()) + "\n")
        if s.correlations and max(c.n for c in s.correlations) < 3:
            out.append(f"Spearman with the metrics of {s.evaluation}: needs 3 or more rated images\n", style="dim")
        elif s.correlations:
            out.append(f"Spearman with the ratings ({s.evaluation}): "
                       + ", ".join(f"{c.metric} {c.spearman:.2f} (n {c.n})" if c.spearman == c.spearman else f"{c.metric} n/a (n {c.n})"
                                   for c in s.correlations) + "\n")
    else:
        out.append("no ratings yet (r: Review)\n", style="dim")
    for pair in pairs:
        out.append("\n".join(pairwise_lines(pair)) + "\n")
    if not pairs:
        out.append("no blind comparisons yet (v: Compare)\n", style="dim")
    return out


class RunsScreen(Screen[None]):
    """Every run: params, metrics (with 95% intervals), per-scene scores, per-class IoU and
    confusion matrix, loss curve. space marks a run as A; c compares the highlighted run (B) with
    A by a paired bootstrap on the same images; g reloads."""

    BINDINGS = [
        Binding("space", "mark", "Mark A", id="runs.mark"),
        Binding("c", "compare", "Scores A/B", id="runs.compare"),
        Binding("g", "reload", "Reload", id="runs.reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[Run] = []
        self.marked: Run | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="runs-bar", classes="bar")
        with Horizontal(id="runs-body"):
            table: DataTable[str] = DataTable(id="runs-table", cursor_type="row")
            table.add_columns(" ", "run", "kind")
            yield table
            with VerticalScroll(id="run-detail"):
                yield Static("", id="run-summary")
                yield Static("", id="run-curve-label")
                yield Sparkline([], id="run-curve")
                yield Static("", id="run-compare")
                yield Static("", id="run-beside")
                yield Static("", id="run-review")
                yield Static("", id="run-metrics")
                yield Static("", id="run-params")
        yield Static("", id="runs-empty", classes="empty")
        yield Footer(compact=True)

    @property
    def table(self) -> DataTable[str]:
        return self.query_one("#runs-table", DataTable)

    def on_mount(self) -> None:
        self.table.focus()
        self.action_reload()

    def action_reload(self) -> None:
        self.load()

    @work(thread=True, exit_on_error=False, exclusive=True, group="runs")
    def load(self) -> None:
        self.post_message(RunsLoaded(list_runs(self.app.session.db)))  # type: ignore[attr-defined]

    def on_runs_loaded(self, m: RunsLoaded) -> None:
        self.runs = m.runs
        self.fill_table()
        self.set_class(not m.runs, "-empty")
        self.query_one("#runs-empty", Static).update("No runs yet: jobs make them (j: Jobs; `workbench demo` runs the pipeline).")
        self.refresh_bar()
        self.show_run()

    def fill_table(self) -> None:
        """One row per run; names are shortened in their middle to what the table's width leaves
        (the detail pane shows them whole), so the table never scrolls sideways. The kind column
        is shown only where every name still fits beside it (the detail pane names the kind)."""
        table = self.table
        row = table.cursor_row
        width = table.size.width or 40
        longest = max((len(r.name) for r in self.runs), default=0)
        with_kind = width - 15 - 1 - 7 >= longest
        if with_kind != (len(table.columns) == 3):
            table.clear(columns=True)
            table.add_columns(" ", "run", *(["kind"] if with_kind else []))
        room = max(12, width - (15 if with_kind else 0) - 1 - 7)
        table.clear()
        for r in self.runs:
            cells = (STATUS_MARK.get(r.status, "?"), shorten(r.name, room)) + ((r.kind,) if with_kind else ())
            table.add_row(*cells, key=str(r.id))
        if 0 <= row < len(self.runs):
            table.move_cursor(row=row)

    def on_resize(self) -> None:
        if self.runs:
            self.fill_table()

    def refresh_bar(self) -> None:
        self.query_one("#runs-bar", Static).update(
            f"{len(self.runs)} runs · " + (f"A = {self.marked.name} (c compares the highlighted run with it)" if self.marked
                                            else "space marks a run A, c compares another with it"))

    @property
    def selected(self) -> Run | None:
        row = self.table.cursor_row
        return self.runs[row] if 0 <= row < len(self.runs) else None

    @on(DataTable.RowHighlighted, "#runs-table")
    def show_run(self) -> None:
        run = self.selected
        if run is None:
            return
        head = Text()
        head.append(f"{run.name}", style="bold")
        head.append(f"  {run.kind} · {run.status} · created {run.created_at[:19]}\n")
        if run.artifact_dir:
            head.append(f"files  {run.artifact_dir}\n", style="dim")
        self.query_one("#run-summary", Static).update(head)
        self.query_one("#run-params", Static).update(Text("params " + json.dumps(run.params, sort_keys=True), style="dim"))
        m = run.metrics
        if run.kind == "evaluation":
            body: RenderableType = evaluation_view(m)
            self.load_beside(run)
        elif run.kind in ("segmenter", "classifier", "classification"):
            body = Group(other_metrics(m), segmenter_view(m))
        else:
            body = other_metrics(m)
        self.query_one("#run-metrics", Static).update(body)
        self.query_one("#run-beside", Static).update("")
        self.query_one("#run-review", Static).update("")
        if run.kind in ("generation", "baseline"):
            self.load_review(run)
        self.query_one("#run-curve-label", Static).update(headline(m))
        self.query_one("#run-curve", Sparkline).data = []
        self.query_one("#run-curve").set_class(True, "-hidden")
        if run.kind in ("segmenter", "captioner"):
            self.load_curve(run)

    @work(thread=True, exit_on_error=False, exclusive=True, group="run-beside")
    def load_beside(self, run: Run) -> None:
        from engine.jobs.compare import baselines_beside

        self.post_message(BesideLoaded(run.id, baselines_beside(self.app.session.workspace, run, meteor=False), run.metrics))  # type: ignore[attr-defined]

    def on_beside_loaded(self, m: BesideLoaded) -> None:
        run = self.selected
        if run is None or run.id != m.run_id or not m.beside:
            return
        cols = [c for c in ("Bleu_4", "ROUGE_L", "CIDEr") if c in m.metrics]  # METEOR would start Java
        t = Table(box=None, header_style="bold", padding=(0, 1), title="beside the baselines, on the same images", title_justify="left")
        t.add_column("")
        for c in cols:
            t.add_column(c, justify="right")
        t.add_row("this run", *(f"{m.metrics[c]:.3f}" for c in cols))
        for b in m.beside:
            t.add_row(b.label + (" (ORACLE scenes)" if b.scenes == "oracle" else ""),
                      *(f"{b.scores[c]:.3f}" for c in cols))
        self.query_one("#run-beside", Static).update(t)

    @work(thread=True, exit_on_error=False, exclusive=True, group="run-review")
    def load_review(self, run: Run) -> None:
        from engine.jobs.review import pairwise_summaries, review_summary

        db = self.app.session.db  # type: ignore[attr-defined]
        self.post_message(ReviewLoaded(run.id, review_view(review_summary(db, run.name), pairwise_summaries(db, run.id))))

    def on_review_loaded(self, m: ReviewLoaded) -> None:
        run = self.selected
        if run is not None and run.id == m.run_id:
            self.query_one("#run-review", Static).update(m.text)

    @work(thread=True, exit_on_error=False, exclusive=True, group="run-curve")
    def load_curve(self, run: Run) -> None:
        events = run_curve(self.app.session.db, run.id)  # type: ignore[attr-defined]
        history = run.metrics.get("history") or []
        source = events or [h for h in history if isinstance(h, dict)]
        name = next((k for k in CURVE_KEYS if any(k in e for e in source)), "")
        self.post_message(CurveLoaded(run.id, name, [e[name] for e in source if name in e and e[name] is not None]))

    def on_curve_loaded(self, m: CurveLoaded) -> None:
        run = self.selected
        if run is None or run.id != m.run_id:
            return
        label = (f"{m.name}: {m.values[0]:.4g} → {m.values[-1]:.4g} over {len(m.values)} points (min {min(m.values):.4g})"
                 if m.values else "no loss curve recorded")
        self.query_one("#run-curve-label", Static).update(label)
        self.query_one("#run-curve", Sparkline).data = m.values
        self.query_one("#run-curve").set_class(not m.values, "-hidden")

    def export_defaults(self) -> dict[str, str]:
        """Export the highlighted run (an evaluation exports the captions it scored)."""
        run = self.selected
        if run is not None and run.kind == "evaluation":
            run = next((r for r in self.runs if r.id == run.parent_run_id), None)
        return {"run": run.name} if run is not None and run.kind in ("generation", "baseline") else {}

    def action_mark(self) -> None:
        self.marked = self.selected
        self.refresh_bar()

    def action_compare(self) -> None:
        a, b = self.marked, self.selected
        if a is None or b is None or a.id == b.id or b.id == a.parent_run_id or a.id == b.parent_run_id:
            self.notify("mark run A with space, then highlight another run B (not A's own evaluation) and press c", timeout=3)
            return
        self.query_one("#run-compare", Static).update(f"comparing {b.name} with {a.name} (paired bootstrap) …")
        self.compare(a.name, b.name)

    @work(thread=True, exit_on_error=False, exclusive=True, group="compare")
    def compare(self, a: str, b: str) -> None:
        from engine.errors import WorkbenchError
        from engine.jobs.compare import compare_runs

        try:
            result = compare_runs(self.app.session.workspace, a, b)  # type: ignore[attr-defined]
        except WorkbenchError as exc:
            self.post_message(Compared(Text(f"cannot compare: {exc}", style="bold")))
            return
        t = Table(box=None, header_style="bold", padding=(0, 1),
                  title=f"A = {result.a}\nB = {result.b}\n{result.images} images, 1000 paired resamples\n", title_justify="left")
        for col in ("metric", "A", "B", "B − A", "95% interval", "P(B ≤ A)"):
            t.add_column(col, justify="left" if col == "metric" else "right", no_wrap=True)
        for name, row in result.rows.items():
            t.add_row(name, f"{row['a']:.3f}", f"{row['b']:.3f}", f"{row['difference']:+.3f}",
                      f"[{row['low']:+.3f}, {row['high']:+.3f}]", f"{row['p_not_better']:.3f}")
        self.post_message(Compared(t))

    def on_compared(self, m: Compared) -> None:
        from workbench.screens.compare import CompareModal

        self.query_one("#run-compare", Static).update("")
        self.app.push_screen(CompareModal(m.text))
