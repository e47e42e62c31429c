"""Browse filters in a modal: dataset, split, scene, status, rated, and the run and metric whose
ratings and scores the list shows."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import sqlite_utils
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Select

from engine.store.catalog import list_datasets
from engine.store.models import Dataset
from engine.store.results import latest_evaluation
from engine.store.runs import Run, list_runs
from engine.store.views import BrowseQuery

METRICS = ("CIDEr", "Bleu_4", "Bleu_1", "METEOR", "ROUGE_L", "Bleu_2", "Bleu_3")
ALL = "*"


@dataclass(frozen=True)
class Choices:
    """What the filters can be set to, read from the store."""

    datasets: list[Dataset]
    dataset: Dataset | None
    runs: list[Run]
    """Complete generation and baseline runs of the dataset, oldest first."""
    evaluations: dict[int, int] = field(default_factory=dict)
    """generation run id -> its newest complete evaluation run id."""
    scenes: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, db: sqlite_utils.Database, dataset_id: int | None, preferred: str | None = None) -> Choices:
        datasets = [d for d in list_datasets(db) if d.kind == "captioning"]
        dataset = next((d for d in datasets if d.id == dataset_id), None) or next(
            (d for d in datasets if d.name == preferred), None) or (datasets[0] if datasets else None)
        runs = [r for r in list_runs(db) if r.kind in ("generation", "baseline") and r.status == "complete"
                and dataset is not None and r.dataset_id == dataset.id]
        evaluations = {r.id: e for r in runs if (e := latest_evaluation(db, r.id)) is not None}
        return cls(datasets, dataset, runs, evaluations)

    def evaluation_of(self, run: Run | None) -> int | None:
        return self.evaluations.get(run.id) if run else None

    def run_name(self, run_id: int | None) -> str:
        return next((r.name for r in self.runs if r.id == run_id), "")


def default_run(runs: list[Run]) -> Run | None:
    """The newest model generation (what a reviewer came for), else the newest baseline."""
    return next((r for r in reversed(runs) if r.kind == "generation"), None) or (runs[-1] if runs else None)


class FiltersModal(ModalScreen[BrowseQuery | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "apply", "Apply")]

    def __init__(self, query: BrowseQuery, choices: Choices) -> None:
        super().__init__()
        self.query_state = query
        self.choices = choices

    def compose(self) -> ComposeResult:
        q, c = self.query_state, self.choices
        rows: list[tuple[str, list[tuple[str, Any]], Any]] = [
            ("dataset", [(d.name, d.id) for d in c.datasets], q.dataset_id),
            ("split", [("all", ALL), ("train", "train"), ("val", "val"), ("test", "test")], q.split or ALL),
            ("scene", [("all", ALL)] + [(s, s) for s in c.scenes], q.scene or ALL),
            ("status", [("all", ALL), ("ok", "ok"), ("missing", "missing"), ("corrupt", "corrupt")], q.status or ALL),
            ("rated", [("all", ALL), ("rated by me", "yes"), ("not rated by me", "no")],
             {None: ALL, True: "yes", False: "no"}[q.rated]),
            ("run", [("none", ALL)] + [(f"{r.name} ({r.kind})", r.id) for r in c.runs], q.generation_run_id or ALL),
            ("metric", [(m, m) for m in METRICS], q.metric),
        ]
        with Vertical(classes="dialog -wide"):
            yield Label("Filter the list", classes="dialog-title")
            for name, options, value in rows:
                with Horizontal(classes="form-row"):
                    yield Label(name, classes="form-label")
                    yield Select(options, value=value, allow_blank=False, compact=True, id=f"filter-{name}")
            with Horizontal(classes="buttons"):
                yield Button("Apply (ctrl+s)", id="apply", variant="primary", compact=True, action="screen.apply")
                yield Button("Cancel (esc)", id="cancel", compact=True, action="screen.cancel")

    def value(self, name: str) -> Any:
        v = self.query_one(f"#filter-{name}", Select).value
        return None if v == ALL else v

    def action_apply(self) -> None:
        run_id = self.value("run")
        rated = self.value("rated")
        dataset_id = self.value("dataset")
        query = replace(
            self.query_state, split=self.value("split"), scene=self.value("scene"), status=self.value("status"),
            rated=None if rated is None else rated == "yes", generation_run_id=run_id,
            evaluation_run_id=self.choices.evaluations.get(run_id) if run_id else None, metric=self.value("metric"),
        )
        if dataset_id != self.query_state.dataset_id:
            query = BrowseQuery(dataset_id=dataset_id, reviewer=self.query_state.reviewer)
        self.dismiss(query)

    def action_cancel(self) -> None:
        self.dismiss(None)
