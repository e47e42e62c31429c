"""The ``workbench`` command line.

Every command resolves the workspace, calls the engine, and prints. Errors the user can fix
(:class:`engine.errors.WorkbenchError`) become one line on stderr and exit code 1; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from engine.errors import WorkbenchError
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
        except KeyboardInterrupt:
            raise fail("interrupted; nothing half-written was kept") from None

    return wrapper  # type: ignore[return-value]


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


def _parse_pairs(items: list[str] | None) -> dict[str, str]:
    raw: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise WorkbenchError(f"--param {item!r}: write it as key=value")
        raw[key.strip()] = value
    return raw


def _progress_runner(kind: str, params: Any, *, quiet: bool = False) -> Any:
    """Run a job kind in the foreground with a rich progress bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from engine.jobs.foreground import run_foreground

    columns = [TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[metrics]}")]
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True, disable=quiet or not console.is_terminal) as bar:
        task = bar.add_task(kind, total=None, metrics="")

        def on_progress(p: Any) -> None:
            metrics = "  ".join(f"{k} {v:.4g}" for k, v in p.metrics.items())
            bar.update(task, completed=p.step, total=p.total, description=p.message or kind, metrics=metrics)

        return run_foreground(State.workspace, kind, params, on_progress=on_progress)


@app.command()
@user_errors
def init() -> None:
    """Create the workspace: folder, database and a commented config.toml."""
    ws = State.workspace
    new = ws.init()
    state = "created" if new else "already initialised; nothing overwritten"
    typer.echo(f"workspace {ws.root.resolve()} {state}")
    typer.echo(f"  database {ws.db_path}\n  config   {ws.config_path} (class groups, keys, defaults)")


def _require_workspace() -> Workspace:
    ws = State.workspace
    if not ws.exists:
        ws.init()
        typer.echo(f"created workspace {ws.root.resolve()}", err=True)
    return ws


@ingest_app.command("captions")
@user_errors
def ingest_captions(
    path: Annotated[Path, typer.Argument(help="Annotation file (Karpathy or COCO JSON) or the folder holding it.")],
    name: Annotated[str | None, typer.Option(help="Dataset name (default: from the file).")] = None,
    images: Annotated[Path | None, typer.Option(help="Folder of the images (default: found beside the file).")] = None,
    scenes: Annotated[Path | None, typer.Option(help="Folder of per-scene lists (Scene.txt, one filename a line).")] = None,
    split: Annotated[str | None, typer.Option(help="Split of every image, for COCO files: train, val or test.")] = None,
    split_from: Annotated[Path | None, typer.Option(help="Karpathy JSON whose splits a COCO file's images take.")] = None,
    allow_missing: Annotated[bool, typer.Option(help="Store missing/corrupt images with that status instead of failing.")] = False,
    replace: Annotated[bool, typer.Option(help="Replace a dataset of the same name.")] = False,
    verify: Annotated[bool, typer.Option(help="Decode every image fully (slower).")] = False,
) -> None:
    """Ingest a captioning dataset (RSICD, UCM-captions, Sydney-captions, COCO captions)."""
    _require_workspace()
    params = {
        "path": str(path), "name": name, "images": str(images) if images else None,
        "scenes": str(scenes) if scenes else None, "split": split,
        "split_from": str(split_from) if split_from else None,
        "allow_missing": allow_missing, "replace": replace, "verify": verify,
    }
    result = _progress_runner("ingest-captions", params)
    typer.echo(result.message)


@ingest_app.command("drone")
@user_errors
def ingest_drone(
    path: Annotated[Path, typer.Argument(help="Semantic Drone Dataset folder.")],
    name: Annotated[str, typer.Option(help="Dataset name.")] = "drone",
    replace: Annotated[bool, typer.Option(help="Replace a dataset of the same name.")] = False,
) -> None:
    """Ingest the Semantic Drone Dataset (images, class-index masks, class table)."""
    _require_workspace()
    result = _progress_runner("ingest-drone", {"path": str(path), "name": name, "replace": replace})
    typer.echo(result.message)


@app.command()
@user_errors
def stats(
    dataset: Annotated[str | None, typer.Argument(help="Dataset name (default: all).")] = None,
) -> None:
    """Summarise datasets: images per split and status, captions, scenes, vocabulary, duplicates."""
    from engine.store.catalog import dataset_stats, get_dataset, list_datasets

    db = State.workspace.open_db()
    if dataset is not None:
        found = get_dataset(db, dataset)
        if found is None:
            names = ", ".join(d.name for d in list_datasets(db)) or "none yet"
            raise WorkbenchError(f"no dataset named {dataset!r} (datasets: {names})")
        datasets = [found]
    else:
        datasets = list_datasets(db)
        if not datasets:
            typer.echo("no datasets yet; try `workbench ingest captions PATH` or `workbench demo`")
            return
    for ds in datasets:
        typer.echo(format_stats(dataset_stats(db, ds)))


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
        lines.append(f"  vocabulary  {s.vocabulary:>7}   distinct lower-cased tokens")
        top = ", ".join(f"{k} {v}" for k, v in list(s.scenes.items())[:8])
        more = f", ... ({len(s.scenes)} in all)" if len(s.scenes) > 8 else ""
        lines.append(f"  scenes      {len(s.scenes):>7}   {top}{more}")
    else:
        lines.append(f"  classes     {len(ds.meta.get('classes', [])):>7}")
    return "\n".join(lines)


@app.command("run")
@user_errors
def run_kind(
    kind: Annotated[str | None, typer.Argument(help="Job kind; leave out to list them.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="A parameter as key=value (repeatable).")] = None,
    show_params: Annotated[bool, typer.Option("--params", help="List the kind's parameters and exit.")] = False,
) -> None:
    """Run one job kind in the foreground with a progress bar."""
    from engine.jobs import KINDS, get_kind
    from engine.jobs.base import describe_params

    if kind is None:
        for k in KINDS.values():
            typer.echo(f"{k.name:<18} {k.summary}")
        return
    job_kind = get_kind(kind)
    if show_params:
        for name, tp, default, doc in describe_params(job_kind.params):
            typer.echo(f"{name:<16} {tp:<6} {default or '-':<12} {doc}")
        return
    params = job_kind.parse(_parse_pairs(param))
    _require_workspace()
    result = _progress_runner(kind, params)
    typer.echo(result.message)
    if kind == "evaluate" and result.run_id is not None:
        from engine.store.runs import get_run_by_id

        run = get_run_by_id(State.workspace.open_db(), result.run_id)
        if run is not None:
            typer.echo(format_evaluation(run.metrics))


@runs_app.command("list")
@user_errors
def runs_list(kind: Annotated[str | None, typer.Option(help="Only runs of this kind (segmenter, segmentation, composition, ...).")] = None) -> None:
    """List runs: name, kind, status, parent, headline metrics."""
    from engine.store.runs import get_run_by_id, list_runs

    db = State.workspace.open_db()
    runs = list_runs(db, kind)
    if not runs:
        typer.echo("no runs yet; start one with `workbench run KIND` (see `workbench run`)")
        return
    names = {r.id: r.name for r in runs}
    typer.echo(f"{'name':<32} {'kind':<12} {'status':<9} {'parent':<28} metrics")
    for r in runs:
        parent = names.get(r.parent_run_id or -1) or (get_run_by_id(db, r.parent_run_id).name if r.parent_run_id else "")  # type: ignore[union-attr]
        typer.echo(f"{r.name:<32} {r.kind:<12} {r.status:<9} {parent:<28} {headline(r.metrics)}")


def headline(metrics: dict[str, Any]) -> str:
    """The few numbers that summarise a run."""
    keys = ("miou", "pixel_accuracy", "images", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "val_loss")
    return "  ".join(f"{k} {metrics[k]:.3f}" if isinstance(metrics[k], float) else f"{k} {metrics[k]}" for k in keys if k in metrics)


@runs_app.command("show")
@user_errors
def runs_show(
    name: Annotated[str, typer.Argument(help="Run name.")],
    samples: Annotated[int, typer.Option(help="Compositions to print (composition runs).")] = 3,
) -> None:
    """Show one run: params, metrics, and for composition runs a few prompts."""
    import json

    from engine.store.catalog import get_image
    from engine.store.runs import compositions_of, get_run, list_runs

    db = State.workspace.open_db()
    run = get_run(db, name)
    if run is None:
        known = ", ".join(r.name for r in list_runs(db)) or "none yet"
        raise WorkbenchError(f"no run named {name!r} (runs: {known})")
    typer.echo(f"{run.name}  ({run.kind}, {run.status}, created {run.created_at})")
    if run.kind == "evaluation":
        typer.echo(format_evaluation(run.metrics))
        return
    if run.artifact_dir:
        typer.echo(f"  files    {run.artifact_dir}")
    typer.echo("  params   " + json.dumps(run.params, sort_keys=True))
    metrics = {k: v for k, v in run.metrics.items() if k not in ("confusion", "history", "class_names")}
    for key, value in metrics.items():
        if isinstance(value, dict):
            typer.echo(f"  {key}")
            for k, v in value.items():
                typer.echo(f"    {k:<22} {v:.3f}" if isinstance(v, float) else f"    {k:<22} {v}")
        else:
            typer.echo(f"  {key:<22} {value:.4f}" if isinstance(value, float) else f"  {key:<22} {value}")
    if run.kind == "composition":
        for row in compositions_of(db, run.id)[:samples]:
            image = get_image(db, row.image_id)
            typer.echo(f"\n  {image.filename if image else row.image_id}")
            for line in row.prompt.splitlines():
                typer.echo(f"    {line}")


def format_evaluation(m: dict[str, Any]) -> str:
    """Corpus scores with their 95% intervals, unavailable metrics, and the per-scene table."""
    from engine.evaluation.metrics import ALL_METRICS

    lines = [f"  {m.get('images', '?')} images, {m.get('captions', '?')} captions scored, tokenizer {m.get('tokenizer', '?')}"
             + (", references leave-one-out (human level)" if m.get("human") else "")]
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


@runs_app.command("compare")
@user_errors
def runs_compare(
    a: Annotated[str, typer.Argument(help="Evaluation run (or a generation run: its newest evaluation).")],
    b: Annotated[str, typer.Argument(help="The run to compare with A.")],
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
) -> None:
    """Paired bootstrap of B - A on the same images: the difference of every metric and its interval."""
    from engine.jobs.compare import compare_runs

    result = compare_runs(State.workspace, a, b, resamples=resamples)
    typer.echo(f"{result.b} - {result.a} on {result.images} images ({resamples} paired resamples)")
    typer.echo(f"  {'metric':<9} {'A':>7} {'B':>7} {'B - A':>8}   95% interval    P(B <= A)")
    for name, row in result.rows.items():
        typer.echo(f"  {name:<9} {row['a']:>7.3f} {row['b']:>7.3f} {row['difference']:>+8.3f}   [{row['low']:+.3f}, {row['high']:+.3f}]   {row['p_not_better']:.3f}")


@app.command()
@user_errors
def export(
    run: Annotated[str, typer.Argument(help="Generation or baseline run (or an evaluation of one).")],
    format: Annotated[str, typer.Option("--format", "-f", help="csv, jsonl or coco (results file + metrics JSON).")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default WORKSPACE/exports/RUN.EXT).")] = None,
    split: Annotated[str, typer.Option(help="all, train, val or test.")] = "all",
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Export a run's captions, one row per image, with references, per-image scores and ratings."""
    result = _progress_runner("export", {"run": run, "format": format, "output": str(output) if output else "", "split": split, "force": force})
    typer.echo(result.message)


@app.command()
@user_errors
def rate(
    generation_id: Annotated[int, typer.Argument(help="Id of a generated caption (see `workbench export`).")],
    score: Annotated[int, typer.Argument(help="1 (bad) to 5 (good).")],
    flag: Annotated[list[str] | None, typer.Option("--flag", help="hallucinated object, wrong count, wrong position, wrong scene, grammar (repeatable).")] = None,
    note: Annotated[str, typer.Option(help="A free-text note.")] = "",
    reviewer: Annotated[str | None, typer.Option(help="Reviewer name (default: your OS user).")] = None,
) -> None:
    """Rate one generated caption (the newest rating per reviewer counts; history is kept)."""
    import getpass

    from engine.store.results import add_rating

    db = State.workspace.open_db()
    try:
        rating = add_rating(db, generation_id, reviewer or getpass.getuser(), score, flag or (), note)
    except ValueError as exc:
        raise WorkbenchError(str(exc)) from None
    typer.echo(f"rated caption {generation_id}: {rating.score} by {rating.reviewer}" + (f", flags: {', '.join(rating.flags)}" if rating.flags else ""))


@app.command()
@user_errors
def ratings(run: Annotated[str, typer.Argument(help="Generation or baseline run.")]) -> None:
    """Review analytics of a run: reviewers, agreement (Krippendorff's alpha), ratings vs metrics."""
    from engine.jobs.review import review_summary

    s = review_summary(State.workspace.open_db(), run)
    if not s.reviewers:
        typer.echo(f"{s.run}: no ratings yet; rate captions with `workbench rate ID SCORE` (or the TUI's Review screen)")
        return
    typer.echo(f"{s.run}: {s.rated_images} images rated by {len(s.reviewers)} reviewers ({', '.join(f'{k} {v}' for k, v in s.reviewers.items())}), mean {s.mean_rating:.2f}")
    typer.echo(f"  Krippendorff's alpha (ordinal) {s.alpha_ordinal:.3f} over {s.pairable_images} images rated by two or more")
    if s.flags:
        typer.echo("  flags: " + ", ".join(f"{k} {v}" for k, v in sorted(s.flags.items())))
    if s.correlations:
        typer.echo(f"  ratings vs per-image metrics of {s.evaluation}:")
        typer.echo(f"  {'metric':<9} {'Spearman':>9} {'Kendall':>9} {'images':>7}")
        for c in s.correlations:
            typer.echo(f"  {c.metric:<9} {c.spearman:>9.3f} {c.kendall:>9.3f} {c.n:>7}")


@jobs_app.command("submit")
@user_errors
def jobs_submit(
    kind: Annotated[str, typer.Argument(help="Job kind (see `workbench run`).")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="A parameter as key=value (repeatable).")] = None,
    after: Annotated[list[int] | None, typer.Option("--after", help="Run only after this job succeeded (repeatable).")] = None,
    no_runner: Annotated[bool, typer.Option("--no-runner", help="Do not start a runner (one is started if none is alive).")] = False,
) -> None:
    """Validate and queue a job; a detached runner is started if none serves the workspace."""
    from engine.jobs.queue import submit

    ws = _require_workspace()
    try:
        job_id = submit(ws, kind, _parse_pairs(param), after=after or (), start_runner=not no_runner)
    except ValueError as exc:
        raise WorkbenchError(str(exc)) from None
    typer.echo(f"queued job #{job_id} ({kind})" + (f" after #{', #'.join(map(str, after))}" if after else ""))


def _eta(job: Any) -> str:
    left = job.time_left()
    return f"~{left} left" if left else ""


@jobs_app.command("list")
@user_errors
def jobs_list(
    limit: Annotated[int, typer.Option(help="Newest jobs to show.")] = 30,
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
) -> None:
    """The queue and its history: status, progress, ETA, message."""
    from engine.jobs.runner import STALE_AFTER, runner_alive
    from engine.store import jobs as q

    ws = State.workspace
    db = ws.open_db()
    if not runner_alive(ws):
        q.mark_stale(db, STALE_AFTER)
    jobs = q.list_jobs(db, limit=limit, status=status)
    if not jobs:
        typer.echo("no jobs yet; queue one with `workbench jobs submit KIND -p key=value`")
        return
    typer.echo(f"runner: {'running' if runner_alive(ws) else 'not running (started by the next submit, or `workbench worker`)'}")
    typer.echo(f"{'id':>4} {'kind':<18} {'status':<11} {'progress':>8}  message")
    for j in jobs:
        deps = f" (after #{', #'.join(map(str, j.after))})" if j.after and j.status == "queued" else ""
        eta = _eta(j)
        typer.echo(f"{j.id:>4} {j.kind:<18} {j.status:<11} {j.progress * 100:>7.0f}%  {j.message[:70]}{deps}{'  ' + eta if eta else ''}")


@jobs_app.command("show")
@user_errors
def jobs_show(job_id: Annotated[int, typer.Argument(help="Job id.")]) -> None:
    """One job: params, status, times, pid and host, log file, error, last progress events."""
    import json

    from engine.store import jobs as q

    db = State.workspace.open_db()
    job = q.get_job(db, job_id)
    if job is None:
        raise WorkbenchError(f"no job #{job_id}")
    typer.echo(f"job #{job.id}  {job.kind}  {job.status}  attempt {job.attempt}" + (f" (retry of #{job.retry_of})" if job.retry_of else ""))
    typer.echo(f"  params    {json.dumps(job.params, sort_keys=True)}")
    if job.after:
        typer.echo(f"  after     {', '.join(f'#{a}' for a in job.after)}")
    typer.echo(f"  progress  {job.progress * 100:.0f}%  {job.message}  {_eta(job)}")
    typer.echo(f"  created   {job.created_at}  started {job.started_at or '-'}  finished {job.finished_at or '-'}")
    typer.echo(f"  process   pid {job.pid or '-'} on {job.host or '-'}, heartbeat {job.heartbeat_at or '-'}")
    typer.echo(f"  log       {job.log_path or '-'}")
    if job.error:
        typer.echo("  error     " + job.error.strip().splitlines()[-1])
    curve = q.job_events(db, job_id, with_metrics_only=True)
    if curve:
        last = curve[-1]
        typer.echo(f"  metrics   {len(curve)} points; last at step {last['step']}: " + "  ".join(f"{k} {v:.4g}" for k, v in last["metrics"].items()))


@jobs_app.command("logs")
@user_errors
def jobs_logs(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
) -> None:
    """Print a job's log (with -f, follow it while the job runs)."""
    import time

    from engine.store import jobs as q

    db = State.workspace.open_db()
    job = q.get_job(db, job_id)
    if job is None:
        raise WorkbenchError(f"no job #{job_id}")
    path = State.workspace.job_log(job_id, job.log_path)
    position = 0
    while True:
        if path.exists():
            with path.open("r", encoding="utf-8", errors="replace") as fh:
                fh.seek(position)
                chunk = fh.read()
                position = fh.tell()
            if chunk:
                typer.echo(chunk, nl=False)
        job = q.get_job(db, job_id)
        if not follow or job is None or job.status not in ("queued", "running"):
            break
        time.sleep(0.5)
    if job is not None and not path.exists():
        typer.echo(f"job #{job_id} is {job.status}; it has no log yet")


@jobs_app.command("cancel")
@user_errors
def jobs_cancel(job_id: Annotated[int, typer.Argument(help="Job id.")]) -> None:
    """Cancel a job: a queued one leaves the queue; a running one is stopped (SIGTERM, then SIGKILL)."""
    import time

    from engine.store import jobs as q

    db = State.workspace.open_db()
    try:
        state = q.request_cancel(db, job_id)
    except ValueError as exc:
        raise WorkbenchError(str(exc)) from None
    if state == "cancelling":
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            job = q.get_job(db, job_id)
            if job is not None and job.status != "running":
                state = job.status
                break
            time.sleep(0.1)
    typer.echo(f"job #{job_id}: {state}")


@jobs_app.command("retry")
@user_errors
def jobs_retry(
    job_id: Annotated[int, typer.Argument(help="Job id of a finished job.")],
    no_runner: Annotated[bool, typer.Option("--no-runner", help="Do not start a runner.")] = False,
) -> None:
    """Queue a finished job again with the same params (training resumes from its checkpoint)."""
    from engine.jobs.runner import ensure_runner
    from engine.store import jobs as q

    ws = State.workspace
    db = ws.open_db()
    try:
        new = q.retry_job(db, job_id)
    except ValueError as exc:
        raise WorkbenchError(str(exc)) from None
    if not no_runner:
        ensure_runner(ws)
    typer.echo(f"queued job #{new}, a retry of #{job_id}")


@jobs_app.command("exec", hidden=True)
@user_errors
def jobs_exec(job_id: Annotated[int, typer.Argument(help="Job id.")]) -> None:
    """Run one queued job in this process (what a cluster scheduler or launcher runs)."""
    from engine.jobs.child import execute

    raise typer.Exit(execute(State.workspace, job_id))


@app.command()
@user_errors
def worker(
    exit_when_idle: Annotated[bool, typer.Option(help="Stop after a minute with nothing to do (how submits start it).")] = False,
) -> None:
    """Run the job runner in the foreground (one per workspace)."""
    from engine.jobs.runner import Runner, RunnerBusy, gpu_count

    ws = _require_workspace()
    runner = Runner(ws, cpu_jobs=ws.config().cpu_jobs, gpus=gpu_count(), idle_exit=60.0 if exit_when_idle else None)
    typer.echo(f"runner for {ws.root.resolve()}: {runner.cpu_jobs} CPU slot(s), {runner.gpus} GPU(s); Ctrl-C stops it (running jobs are cancelled)")
    try:
        started = runner.serve()
    except RunnerBusy as exc:
        raise WorkbenchError(str(exc)) from None
    typer.echo(f"runner stopped after starting {started} jobs")


@app.command()
@user_errors
def tui(
    screen: Annotated[str, typer.Option(help="Screen to open on: browse, review, jobs, runs.")] = "browse",
    images: Annotated[str | None, typer.Option(help="How images are drawn: auto, tgp (kitty), sixel, halfcell, off (default from config.toml).")] = None,
    reviewer: Annotated[str | None, typer.Option(help="Reviewer name for ratings (default: your OS user).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset to browse first (default: the first captioning dataset).")] = None,
) -> None:
    """Open the terminal workbench: Browse, Image, Review, Jobs, Runs, Export (`?` lists the keys)."""
    _open_tui(start=screen, images=images, reviewer=reviewer, dataset=dataset)


def _open_tui(**options: Any) -> None:
    """Run the TUI on an existing workspace (a mistyped --workspace is an error, not a new one)."""
    from workbench.app import make_app

    make_app(State.workspace, **{k: v for k, v in options.items() if v is not None}).run()


def demo_pipeline(fast: bool) -> list[tuple[str, dict[str, Any], str, list[str]]]:
    """(kind, params, run it makes, runs it waits for) for the whole pipeline on the synthetic world.

    Sized for two CPU cores (a few minutes); ``fast`` trains for a handful of steps (smoke tests).
    """
    seg = {"dataset": "synthetic-drone", "name": "seg", "epochs": 1 if fast else 6, "steps_per_epoch": 2 if fast else 20,
           "input_size": 128, "eval_size": 256, "decoder_channels": "64,32,16,16,8"}
    cap = {"dataset": "synthetic", "composition": "compose.seg.synthetic", "name": "cap", "epochs": 1 if fast else 8}
    if fast:
        cap["max_steps"] = 10
    return [
        ("train-segmenter", seg, "seg", []),
        ("segment", {"dataset": "synthetic", "segmenter": "seg"}, "seg.synthetic", ["seg"]),
        ("compose", {"dataset": "synthetic", "segmentation": "seg.synthetic"}, "compose.seg.synthetic", ["seg.synthetic"]),
        ("train-captioner", cap, "cap", ["compose.seg.synthetic"]),
        ("generate", {"captioner": "cap"}, "gen.cap.test", ["cap"]),
        ("evaluate", {"generation": "gen.cap.test"}, "eval.gen.cap.test", ["gen.cap.test"]),
        ("baseline-knn", {"dataset": "synthetic", "composition": "compose.seg.synthetic"}, "knn.compose.seg.synthetic.test", ["compose.seg.synthetic"]),
        ("evaluate", {"generation": "knn.compose.seg.synthetic.test"}, "eval.knn.compose.seg.synthetic.test", ["knn.compose.seg.synthetic.test"]),
    ]


@app.command()
@user_errors
def demo(
    images: Annotated[int, typer.Option(help="Synthetic captioning images.")] = 240,
    drone_images: Annotated[int, typer.Option(help="Synthetic drone-style images.")] = 48,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic world.")] = 0,
    fresh: Annotated[bool, typer.Option(help="Redraw the world and rerun the pipeline from scratch.")] = False,
    follow: Annotated[bool, typer.Option(help="Follow the queued pipeline until it ends (--no-follow returns at once).")] = True,
    fast: Annotated[bool, typer.Option(help="Train for a handful of steps only (a smoke test of the pipeline).")] = False,
    no_runner: Annotated[bool, typer.Option("--no-runner", help="Only queue the jobs; start `workbench worker` yourself.")] = False,
    open_tui: Annotated[bool, typer.Option("--tui/--no-tui", help="Watch the pipeline in the TUI's Jobs screen (--no-tui: progress bars here, for scripts).")] = True,
) -> None:
    """Draw the synthetic world, ingest it, queue the whole pipeline on it (segmenter, masks, compositions, captioner, captions, baseline, scores) and watch it in the TUI's Jobs screen."""
    import shutil

    from engine.jobs.queue import submit
    from engine.store.catalog import dataset_stats, get_dataset
    from engine.store.runs import delete_run, get_run

    ws = _require_workspace()
    use_tui = open_tui and sys.stdin.isatty() and sys.stdout.isatty()
    typer.echo(f"workspace {ws.root.resolve()}")
    db = ws.open_db()
    steps = demo_pipeline(fast)
    if fresh:
        for _, _, run_name, _ in steps:
            old = get_run(db, run_name)
            if old is not None:
                delete_run(db, old.id)
            for folder in (ws.model_dir(run_name), ws.masks_dir(run_name)):
                shutil.rmtree(folder, ignore_errors=True)
    have = get_dataset(db, "synthetic") is not None and get_dataset(db, "synthetic-drone") is not None
    if have and not fresh:
        typer.echo("the synthetic world is already ingested here (--fresh redraws it and reruns everything)")
    else:
        out = ws.synthetic_dir
        typer.echo(f"drawing the synthetic world (seed {seed}) into {out} ...")
        _progress_runner("synthesize", {"out": str(out), "images": images, "drone_images": drone_images, "seed": seed})
        for kind, params in (
            ("ingest-captions", {"path": str(out / "captions"), "name": "synthetic", "replace": True}),
            ("ingest-drone", {"path": str(out / "drone"), "name": "synthetic-drone", "replace": True}),
        ):
            typer.echo(_progress_runner(kind, params).message)
    for name in ("synthetic", "synthetic-drone"):
        ds = get_dataset(db, name)
        if ds is not None:
            typer.echo(format_stats(dataset_stats(db, ds)))
    typer.echo("Synthetic data, drawn from a seed; not real imagery.\n")
    job_of: dict[str, int] = {}
    queued: list[int] = []
    for kind, params, run_name, needs in steps:
        existing = get_run(db, run_name)
        if existing is not None and existing.status == "complete":
            typer.echo(f"  {kind:<16} {run_name}: done already")
            continue
        after = [job_of[n] for n in needs if n in job_of]
        job_id = submit(ws, kind, params, after=after, start_runner=False)
        job_of[run_name] = job_id
        queued.append(job_id)
        typer.echo(f"  queued #{job_id:<4} {kind:<16} -> {run_name}" + (f" (after #{', #'.join(map(str, after))})" if after else ""))
    if queued and no_runner:
        typer.echo("queued only; run `workbench worker` to run them")
    elif queued:
        from engine.jobs.runner import ensure_runner

        ensure_runner(ws)
        typer.echo("The jobs run in a detached runner: closing this terminal does not stop them; `workbench jobs list` shows them.")
        if follow and not use_tui:
            _follow(queued)
    if follow and use_tui:
        _open_tui(start="jobs")
        typer.echo("Jobs keep running in the background: `workbench tui` (j: Jobs) or `workbench jobs list` shows them.")
        return
    for run_name in ("eval.gen.cap.test", "eval.knn.compose.seg.synthetic.test"):
        run = get_run(db, run_name)
        if run is not None and run.status == "complete":
            typer.echo(f"\n{run_name}")
            typer.echo(format_evaluation(run.metrics))
    typer.echo("\nNext: `workbench runs list`, `workbench runs compare knn.compose.seg.synthetic.test gen.cap.test`, "
               "`workbench export gen.cap.test`.")


def _follow(job_ids: list[int]) -> None:
    """Show the queued jobs until every one has ended: progress bars on a terminal, one line per
    status change otherwise (logs, pipes)."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from engine.store import jobs as q

    db = State.workspace.open_db()
    console = Console()
    bars = Progress(TextColumn("#{task.fields[id]:<4} {task.fields[kind]:<16}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), TextColumn("{task.description}"), console=console, disable=not console.is_terminal)
    tasks = {j: bars.add_task("queued", total=100, id=j, kind="", start=False) for j in job_ids}
    shown: dict[int, str] = {}
    with bars:
        while True:
            jobs = [q.get_job(db, j) for j in job_ids]
            for job in jobs:
                if job is None:
                    continue
                task = tasks[job.id]
                if job.status != "queued":
                    bars.start_task(task)
                bars.update(task, completed=job.progress * 100, kind=job.kind, description=f"{job.status}: {job.message[:60]}")
                if not console.is_terminal and shown.get(job.id) != job.status:
                    shown[job.id] = job.status
                    typer.echo(f"  #{job.id:<4} {job.kind:<16} {job.status:<10} {job.message[:90]}")
            if all(j is not None and j.status not in ("queued", "running") for j in jobs):
                break
            time.sleep(0.5)
    failed = [j for j in jobs if j is not None and j.status != "succeeded"]
    if failed:
        typer.echo(f"{len(failed)} jobs did not succeed; `workbench jobs show ID` and `workbench jobs logs ID` say why")


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `workbench ... | head`
        sys.stderr.close()


if __name__ == "__main__":
    main()
