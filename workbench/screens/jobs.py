"""Jobs: the queue and its history with progress and ETA, the selected job's loss curve and live
log; submit, cancel, retry. A runner is started whenever jobs wait and none is alive."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Log, Sparkline, Static

from engine.store import jobs as q
from engine.store.views import job_curve

REFRESH_S = 1.0
LOG_TAIL_BYTES = 64_000
CURVE_KEYS = ("loss", "train_loss", "val_loss", "reward", "val_reward")


def bar(fraction: float, width: int = 10) -> str:
    full = round(max(0.0, min(fraction, 1.0)) * width)
    return "█" * full + "░" * (width - full) + f" {fraction * 100:3.0f}%"


@dataclass
class JobsLoaded(Message):
    jobs: list[q.Job]
    runner: bool
    curve: list[float]
    curve_name: str
    log_job: int | None
    log_text: str
    log_offset: int
    log_reset: bool = False
    started_runner: bool = field(default=False)


class JobsScreen(Screen[None]):
    """The job queue and history, refreshed every second: progress, ETA, message; the selected
    job's loss curve and log. n queues a job (a form built from the kind's parameters), c cancels,
    t retries a finished job. Closing the TUI never stops a job: a detached runner serves them."""

    BINDINGS = [
        Binding("n", "submit", "New job", id="jobs.submit"),
        Binding("c", "cancel", "Cancel job", id="jobs.cancel"),
        Binding("t", "retry", "Retry job", id="jobs.retry"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[q.Job] = []
        self.log_job: int | None = None
        self.log_offset = 0
        self.select_next: int | None = None
        """A job just queued here: the cursor moves to it once it is listed."""
        self.following = True
        """Until the user moves the cursor, it follows the running job."""
        self.auto_selected: int | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="jobs-bar", classes="bar")
        table: DataTable[str] = DataTable(id="jobs-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("#", "kind", "status", "where", "progress", "ETA", "message")
        yield table
        yield Static("", id="job-detail", classes="bar")
        yield Sparkline([], id="job-curve")
        yield Log(id="job-log", max_lines=2000)
        yield Static("", id="jobs-empty", classes="empty")
        yield Footer(compact=True)

    @property
    def table(self) -> DataTable[str]:
        return self.query_one("#jobs-table", DataTable)

    def on_mount(self) -> None:
        self.table.focus()
        self.poll(True)
        self.set_interval(REFRESH_S, self.poll)

    @property
    def selected(self) -> q.Job | None:
        row = self.table.cursor_row
        return self.jobs[row] if 0 <= row < len(self.jobs) else None

    def poll(self, ensure: bool = False) -> None:
        job = self.selected
        self.read(job.id if job else None, job.log_path if job else None, self.log_job, self.log_offset, ensure)

    @work(thread=True, exit_on_error=False, exclusive=True, group="jobs-poll")
    def read(self, job_id: int | None, log_path: str | None, log_job: int | None, offset: int, ensure: bool) -> None:
        session = self.app.session  # type: ignore[attr-defined]
        db = session.db
        jobs = q.list_jobs(db, limit=200)
        from engine.jobs.runner import ensure_runner, runner_alive

        started = False
        if ensure and session.start_runner and any(j.status == "queued" for j in jobs):
            started = ensure_runner(session.workspace)
        alive = started or runner_alive(session.workspace)
        if job_id is None and jobs:
            job_id, log_path = jobs[0].id, jobs[0].log_path
        curve, name = [], ""
        if job_id is not None:
            events = job_curve(db, job_id)
            name = next((k for k in CURVE_KEYS if any(k in e for e in events)), "")
            curve = [e[name] for e in events if name in e]
        reset = job_id != log_job
        log = session.workspace.job_log(job_id, log_path) if job_id is not None else None
        text, new_offset = read_tail(log, 0 if reset else offset)
        self.post_message(JobsLoaded(jobs, alive, curve, name, job_id, text, new_offset, reset, started))

    def on_jobs_loaded(self, m: JobsLoaded) -> None:
        table = self.table
        keys = [str(j.id) for j in m.jobs]
        rows = [(str(j.id), j.kind, j.status, j.where, bar(j.progress), j.time_left(), j.message[:200]) for j in m.jobs]
        if keys == [str(j.id) for j in self.jobs]:
            for new, row, old in zip(m.jobs, rows, self.jobs, strict=True):
                if new != old:
                    for col, value in zip(table.columns, row, strict=True):
                        table.update_cell(str(new.id), col, value, update_width=True)
        else:
            selected = self.selected
            table.clear()
            for key, row in zip(keys, rows, strict=True):
                table.add_row(*row, key=key)
            wanted = str(self.select_next) if self.select_next is not None else str(selected.id) if selected else None
            if wanted in keys:
                table.move_cursor(row=keys.index(wanted))
                self.select_next = None
        self.jobs = m.jobs
        if self.following:  # the cursor stays on the job that runs (or runs next) until the user moves it
            active = [j for j in m.jobs if j.status == "running"] or [j for j in reversed(m.jobs) if j.status == "queued"]
            if active and (self.selected is None or self.selected.id != active[0].id):
                self.auto_selected = active[0].id
                table.move_cursor(row=keys.index(str(active[0].id)))
        queued = sum(j.status == "queued" for j in m.jobs)
        running = sum(j.status == "running" for j in m.jobs)
        self.query_one("#jobs-bar", Static).update(
            f"runner {'alive' if m.runner else 'not running (it starts when a job is queued)'} · {running} running · {queued} queued"
            + (" · runner started" if m.started_runner else ""))
        self.set_class(not m.jobs, "-empty")
        self.query_one("#jobs-empty", Static).update(
            "No jobs yet. n queues one (a form per kind); `workbench demo` queues the whole pipeline on the synthetic world.")
        job = next((j for j in m.jobs if j.id == m.log_job), None)
        if job is not None:
            detail = f"#{job.id} {job.kind} · {job.status} · {job.where} · {job.message}"
            if job.error:
                detail += f" · error: {job.error.splitlines()[-1][:200]}"
            if m.curve:
                detail += f" · {m.curve_name} {m.curve[-1]:.4g} ({len(m.curve)} points)"
            self.query_one("#job-detail", Static).update(detail)
        self.query_one("#job-curve", Sparkline).data = m.curve
        self.query_one("#job-curve").set_class(not m.curve, "-hidden")
        log = self.query_one("#job-log", Log)
        if m.log_reset:
            log.clear()
        if m.log_text:
            log.write(m.log_text)
        self.log_job, self.log_offset = m.log_job, m.log_offset

    @on(DataTable.RowHighlighted, "#jobs-table")
    def highlighted(self) -> None:
        job = self.selected
        if job is not None and job.id != self.auto_selected:
            self.following = False
        if job is not None and job.id != self.log_job:
            self.poll()

    def action_submit(self) -> None:
        from workbench.screens.submit import SubmitModal

        def queued(job_id: int | None) -> None:
            if job_id is not None:
                self.notify(f"queued job #{job_id}; a runner serves it", timeout=3)
                self.select_next = job_id
                self.following = False
                self.poll()

        self.app.push_screen(SubmitModal(), queued)

    def action_cancel(self) -> None:
        if self.change(q.request_cancel, "#{job}: {result}") is not None:
            self.poll()

    def action_retry(self) -> None:
        new = self.change(q.retry_job, "#{job} queued again as #{result}")
        if new is not None:
            self.select_next = new
            self.following = False
            self.poll(True)

    def change(self, change: Callable[[Any, int], Any], said: str) -> Any:
        """Apply a queue change to the selected job and say what came of it (a refusal, such as
        cancelling a finished job, is said as a warning)."""
        job = self.selected
        if job is None:
            return None
        try:
            result = change(self.app.session.db, job.id)  # type: ignore[attr-defined]
        except ValueError as exc:
            self.notify(str(exc), severity="warning")
            return None
        self.notify(said.format(job=job.id, result=result), timeout=3)
        return result

def read_tail(path: Path | None, offset: int) -> tuple[str, int]:
    """New text of a log since ``offset`` (only the last part of a long log on first read)."""
    if path is None or not path.exists():
        return "", offset
    size = path.stat().st_size
    if offset > size:
        offset = 0
    start = max(offset, size - LOG_TAIL_BYTES) if offset == 0 else offset
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(size - start)
    return data.decode("utf-8", errors="replace"), size
