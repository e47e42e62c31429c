"""Export a run (the one on screen, with the screen's split) to csv, jsonl or COCO results.

The file is written by the same `export` job kind as ``workbench export``, in a thread worker;
an existing file is only replaced after a yes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from engine.store.runs import list_runs
from workbench.screens.confirm import ConfirmModal

SUFFIX = {"csv": "csv", "jsonl": "jsonl", "coco": "json"}


@dataclass
class Exported(Message):
    message: str
    ok: bool


class ExportModal(ModalScreen[str | None]):
    """Dismissed with the message of the written export, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "export", "Write")]

    def __init__(self, run: str = "", split: str = "all") -> None:
        super().__init__()
        self.run = run
        self.split = split if split in ("all", "train", "val", "test") else "all"

    def compose(self) -> ComposeResult:
        session = self.app.session  # type: ignore[attr-defined]
        runs = [r.name for r in list_runs(session.db) if r.kind in ("generation", "baseline") and r.status == "complete"]
        run = self.run if self.run in runs else (runs[-1] if runs else None)
        with Vertical(classes="dialog -wide"):
            yield Label("Export a run", classes="dialog-title")
            if not runs:
                yield Static("Nothing to export yet: generated captions come from `generate` or `baseline-knn` jobs.", classes="empty-line")
                yield Button("Close (esc)", id="cancel", compact=True, action="screen.cancel")
                return
            with Horizontal(classes="form-row"):
                yield Label("run", classes="form-label")
                yield Select([(r, r) for r in runs], value=run, allow_blank=False, compact=True, id="export-run")
            with Horizontal(classes="form-row"):
                yield Label("format", classes="form-label")
                yield Select([(f, f) for f in SUFFIX], value="jsonl", allow_blank=False, compact=True, id="export-format")
            with Horizontal(classes="form-row"):
                yield Label("split", classes="form-label")
                yield Select([(s, s) for s in ("all", "train", "val", "test")], value=self.split, allow_blank=False, compact=True, id="export-split")
            with Horizontal(classes="form-row"):
                yield Label("image_id", classes="form-label")
                yield Select([("the source file's image id", "source"), ("the filename", "filename")], value="source",
                             allow_blank=False, compact=True, id="export-id")
            with Horizontal(classes="form-row"):
                yield Label("file", classes="form-label")
                yield Input(self.default_path(run, "jsonl"), compact=True, id="export-path")
            yield Static("", id="export-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Write (ctrl+s)", id="export", variant="primary", compact=True, action="screen.export")
                yield Button("Cancel (esc)", id="cancel", compact=True, action="screen.cancel")

    def default_path(self, run: str | None, fmt: str) -> str:
        return str(self.app.session.workspace.exports_dir.resolve() / f"{run}.{SUFFIX[fmt]}")  # type: ignore[attr-defined]

    @on(Select.Changed)
    def changed(self, event: Select.Changed) -> None:
        if event.select.id in ("export-run", "export-format"):
            run = self.query_one("#export-run", Select).value
            fmt = str(self.query_one("#export-format", Select).value)
            path = self.query_one("#export-path", Input)
            if Path(path.value).parent == self.app.session.workspace.exports_dir.resolve():  # type: ignore[attr-defined]
                path.value = self.default_path(str(run), fmt)

    def action_export(self, force: bool = False) -> None:
        if not self.query("#export-run"):
            return
        path = Path(self.query_one("#export-path", Input).value.strip()).expanduser()
        if not str(path).strip() or path.is_dir():
            self.query_one("#export-error", Static).update(f"file: {path or '(empty)'} is not a file name")
            return
        fmt = str(self.query_one("#export-format", Select).value)
        metrics = path.with_name(path.stem + ".metrics.json") if fmt == "coco" else None
        existing = [p for p in (path, metrics) if p is not None and p.exists()]
        if existing and not force:
            def answer(yes: bool | None) -> None:
                if yes:
                    self.action_export(force=True)

            self.app.push_screen(ConfirmModal(f"{', '.join(map(str, existing))} exists. Overwrite?"), answer)
            return
        exports = self.app.session.workspace.exports_dir.resolve()  # type: ignore[attr-defined]
        if path.parent == exports:
            exports.mkdir(parents=True, exist_ok=True)
        self.query_one("#export-error", Static).update("writing …")
        self.write(str(self.query_one("#export-run", Select).value), fmt, str(self.query_one("#export-split", Select).value),
                   str(self.query_one("#export-id", Select).value), str(path), force)

    @work(thread=True, exit_on_error=False, exclusive=True, group="export")
    def write(self, run: str, fmt: str, split: str, id_: str, path: str, force: bool) -> None:
        from engine.errors import WorkbenchError
        from engine.jobs.foreground import run_foreground

        try:
            result = run_foreground(self.app.session.workspace, "export",  # type: ignore[attr-defined]
                                    {"run": run, "format": fmt, "split": split, "id": id_, "output": path, "force": str(force)})
        except WorkbenchError as exc:
            self.post_message(Exported(str(exc), False))
            return
        self.post_message(Exported(result.message, True))

    def on_exported(self, m: Exported) -> None:
        if m.ok:
            self.app.notify(m.message, timeout=6)
            self.dismiss(m.message)
        else:
            self.query_one("#export-error", Static).update(m.message)

    def action_cancel(self) -> None:
        self.dismiss(None)
