"""What every command shares: the typer apps, the workspace option, one-line errors, the
foreground progress display, and the formatting of stats and scores."""

from __future__ import annotations

import functools
import signal
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from engine.errors import WorkbenchError
from engine.store.connection import is_read_only_error
from engine.workspace import ENV_VAR, Workspace, default_workspace_dir

app = typer.Typer(
    help="Remote-sensing image captioning workbench: datasets, segmentation, composition, captioning, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
ingest_app = typer.Typer(help="Read a dataset from disk into the workspace.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
runs_app = typer.Typer(help="List and inspect runs (trained models, masks, compositions, ...).", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
jobs_app = typer.Typer(help="The durable job queue: submit, list, show, logs, cancel, retry.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")

F = TypeVar("F", bound=Callable[..., Any])


class State:
    workspace: Workspace = Workspace(default_workspace_dir())


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def user_errors(fn: F) -> F:
    """Turn a WorkbenchError into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WorkbenchError as exc:
            raise fail(str(exc)) from None
        except sqlite3.OperationalError as exc:
            if not is_read_only_error(exc):
                raise
            raise fail(f"{State.workspace.db_path}: read-only for you, and this command writes to it; "
                       "copy the workspace, or ask its owner") from None
        except PermissionError as exc:
            raise fail(f"{exc.filename or 'a file'}: permission denied ({'the workspace is read-only for you' if _in_workspace(exc.filename) else exc.strerror}); "
                       "this command writes there") from None
        except Terminated:
            raise fail("terminated (SIGTERM); its runs are marked failed, nothing half-written was kept") from None
        except KeyboardInterrupt:
            raise fail("interrupted; nothing half-written was kept") from None

    return wrapper  # type: ignore[return-value]


def _in_workspace(filename: str | None) -> bool:
    try:
        return filename is not None and Path(filename).resolve().is_relative_to(State.workspace.root.resolve())
    except (OSError, ValueError):
        return False


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    typer.echo(f"warning: {message}", err=True)


@app.callback()
def main_options(
    workspace: Annotated[
        Path | None,
        typer.Option("--workspace", "-w", help="Workspace folder (default ./workspace).", envvar=ENV_VAR),
    ] = None,
) -> None:
    """Remote-sensing image captioning workbench."""
    warnings.showwarning = _show_warning
    State.workspace = Workspace(workspace or default_workspace_dir())


def parse_pairs(items: list[str] | None) -> dict[str, str]:
    raw: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise WorkbenchError(f"--param {item!r}: write it as key=value")
        raw[key.strip()] = value
    return raw


class Terminated(KeyboardInterrupt):
    "The process got SIGTERM (a scheduler's cancel or time limit, `kill`): unwind like Ctrl-C."


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated`, so a foreground job's runs are
    marked failed and its transactions roll back instead of the process vanishing mid-write."""

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


PLAIN_EVERY = 10.0
"""Seconds between plain progress lines when stderr is not a terminal (a log file, a pipe)."""


class PlainProgress:
    """Progress as plain lines for logs: one every :data:`PLAIN_EVERY` seconds (so a quick job
    prints none), and every report that carries validation figures (epoch ends)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.start = self.last = time.monotonic()

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        validated = any(k not in ("loss", "lr") for k in p.metrics)
        if now - self.last < PLAIN_EVERY and not validated:
            return
        self.last = now
        share = f" ({100 * p.step / p.total:.0f}%)" if p.total else ""
        metrics = "".join(f"  {k} {v:.4g}" for k, v in p.metrics.items())
        typer.echo(f"[{now - self.start:6.0f} s] {self.kind}: {p.message or 'working'} {p.step}"
                   f"{f'/{p.total}' if p.total else ''}{share}{metrics}", err=True)


def progress_runner(kind: str, params: Any, *, quiet: bool = False) -> Any:
    """Run a job kind in the foreground: a rich progress bar on a terminal, plain lines otherwise."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from engine.jobs.foreground import run_foreground

    console = Console(stderr=True)
    with sigterm_unwinds():
        if quiet:
            return run_foreground(State.workspace, kind, params)
        if not console.is_terminal:
            return run_foreground(State.workspace, kind, params, on_progress=PlainProgress(kind))
        columns = [TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[metrics]}")]
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(kind, total=None, metrics="")

            def on_progress(p: Any) -> None:
                metrics = "  ".join(f"{k} {v:.4g}" for k, v in p.metrics.items())
                bar.update(task, completed=p.step, total=p.total, description=p.message or kind, metrics=metrics)

            return run_foreground(State.workspace, kind, params, on_progress=on_progress)


def table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]], *, gap: int = 2) -> list[str]:
    """Aligned text columns as wide as their longest cell (the last column is not padded)."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    return [(" " * gap).join(str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=False)) + " " * gap * (len(row) > 1) + str(row[-1])
            for row in (headers, *rows)]


def require_workspace() -> Workspace:
    ws = State.workspace
    if not ws.exists:
        ws.init()
        typer.echo(f"created workspace {ws.root.resolve()}", err=True)
    return ws


def format_stats(s: Any) -> str:
    ds = s.dataset
    lines = [f"{ds.name}  ({ds.kind}, {ds.source_format}, {ds.root})"]
    splits = "  ".join(f"{k} {v}" for k, v in s.by_split.items())
    lines.append(f"  images      {s.images:>7}   {splits}")
    statuses = "  ".join(f"{k} {v}" for k, v in s.by_status.items())
    lines.append(f"  status               {statuses}")
    if ds.kind == "captioning":
        lines.append(
            f"  captions    {s.captions:>7}   {s.duplicate_captions} repeated references in {s.images_with_duplicates} images"
        )
        reasons = ", ".join(f"{k} {v}" for k, v in s.flags_by_reason.items())
        unmatched = (f"; {s.unmatched_flags} more flag{'s' if s.unmatched_flags != 1 else ''} name a reference it no longer has"
                     if s.unmatched_flags else "")
        lines.append(f"  flagged     {s.flagged_references:>7}   references flagged by reviewers"
                     + (f" ({reasons})" if reasons else "") + unmatched)
        lines.append(f"  vocabulary  {s.vocabulary:>7}   distinct lower-cased tokens")
        top = ", ".join(f"{k} {v}" for k, v in list(s.scenes.items())[:8])
        more = f", ... ({len(s.scenes)} in all)" if len(s.scenes) > 8 else ""
        lines.append(f"  scenes      {len(s.scenes):>7}   {top}{more}")
    else:
        lines.append(f"  classes     {len(ds.meta.get('classes', [])):>7}")
    return "\n".join(lines)


def headline(metrics: dict[str, Any]) -> str:
    """The few numbers that summarise a run."""
    keys = ("miou", "pixel_accuracy", "accuracy", "images", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "val_loss", "val_reward")
    text = "  ".join(f"{k} {metrics[k]:.3f}" if isinstance(metrics[k], float) else f"{k} {metrics[k]}" for k in keys if k in metrics)
    return text + ("  ORACLE scenes" if metrics.get("scenes") == "oracle" else "")


def format_evaluation(m: dict[str, Any]) -> str:
    """Corpus scores with their 95% intervals, unavailable metrics, and the per-scene table."""
    from engine.evaluation.metrics import ALL_METRICS

    lines = [f"  {m.get('images', '?')} images, {m.get('captions', '?')} captions scored, tokenizer {m.get('tokenizer', '?')}"
             + (", references leave-one-out (human level)" if m.get("human") else "")
             + (f", only the images of {m['subset']}" if m.get("subset") else "")
             + (f", against the references of {m['refs']}" if m.get("refs") else "")
             + (f", {m['skipped_flagged_refs']} flagged reference{'s' if m['skipped_flagged_refs'] != 1 else ''} left out"
                if "skipped_flagged_refs" in m else "")
             + (f" ({m['kept_flagged_refs']} more kept, of {m.get('images_all_refs_flagged', '?')} image(s) whose every reference is flagged)"
                if m.get("kept_flagged_refs") else "")
             + (", ORACLE scenes (the dataset's true labels were in the prompts)" if m.get("scenes") == "oracle" else "")]
    lines.append(f"  {'metric':<9} {'score':>7}   95% interval ({m.get('resamples', 0)} bootstrap resamples)")
    for name in ALL_METRICS:
        if name in m:
            lo, hi = m.get("ci95", {}).get(name, (None, None))
            ci = f"[{lo:.3f}, {hi:.3f}]" if lo is not None else ""
            lines.append(f"  {name:<9} {m[name]:>7.3f}   {ci}")
        elif name in m.get("unavailable", {}):
            lines.append(f"  {name:<9} {'n/a':>7}   {m['unavailable'][name]}")
    scenes = m.get("per_scene", {})
    if scenes:
        cols = [n for n in ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr") if n in m]
        lines.append("\n  " + f"{'scene':<22} {'images':>6} " + " ".join(f"{c:>8}" for c in cols))
        for scene, row in scenes.items():
            lines.append(f"  {scene:<22} {row['images']:>6} " + " ".join(f"{row[c]:>8.3f}" for c in cols))
    return "\n".join(lines)

