"""The demo (the whole pipeline on the synthetic world, queued and watched) and the TUI."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from workbench.cli.common import (
    State,
    app,
    format_evaluation,
    format_stats,
    progress_runner,
    require_workspace,
    user_errors,
)


@app.command()
@user_errors
def tui(
    screen: Annotated[str, typer.Option(help="Screen to open on: browse, review, compare, jobs, runs.")] = "browse",
    images: Annotated[str | None, typer.Option(help="How images are drawn: auto, tgp (kitty), sixel, halfcell, off (default from config.toml).")] = None,
    reviewer: Annotated[str | None, typer.Option(help="Reviewer name for ratings (default: your OS user).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset to browse first (default: the first captioning dataset).")] = None,
) -> None:
    """Open the terminal workbench: Browse, Image, Review, Jobs, Runs, Export (`?` lists the keys)."""
    _open_tui(start=screen, images=images, reviewer=reviewer, dataset=dataset)


def _open_tui(**options: Any) -> None:
    """Run the TUI on an existing workspace (a mistyped --workspace is an error, not a new one),
    in a terminal only: written to a pipe or a file it would be escape codes."""
    from engine.errors import WorkbenchError
    from workbench.app import make_app

    app = make_app(State.workspace, **{k: v for k, v in options.items() if v is not None})
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise WorkbenchError("the TUI needs a terminal (stdin and stdout are not one here); from scripts use the CLI: "
                             "`workbench runs list`, `workbench export RUN`, `workbench jobs list`")
    app.run()


def demo_pipeline(fast: bool) -> list[tuple[str, dict[str, Any], str, list[str]]]:
    """(kind, params, run family it makes, families it waits for) for the whole pipeline on the
    synthetic world. Every step names its run, so steps are wired by family: a bare name means the
    newest version, and a rerun makes new versions instead of replacing anything.

    Sized for two CPU cores (a few minutes); ``fast`` trains for a handful of steps (smoke tests).
    """
    seg = {"dataset": "synthetic-drone", "name": "seg", "epochs": 1 if fast else 6, "steps_per_epoch": 2 if fast else 20,
           "input_size": 128, "eval_size": 256, "decoder_channels": "64,32,16,16,8"}
    # The captioner learns from true scenes (clean supervision) and is tested on predicted ones:
    # the true scene of a test image is an oracle no deployed model has.
    cap = {"dataset": "synthetic", "composition": "compose.seg.synthetic", "prompt": "both", "name": "cap", "epochs": 1 if fast else 8}
    clf = {"dataset": "synthetic", "name": "scene-clf", "epochs": 1 if fast else 12, "input_size": 64, "batch_size": 16, "num_workers": 0}
    if fast:
        cap["max_steps"] = 10
    steps: list[tuple[str, dict[str, Any], list[str]]] = [
        ("train-segmenter", seg, []),
        ("segment", {"dataset": "synthetic", "segmenter": "seg", "name": "seg.synthetic"}, ["seg"]),
        ("compose", {"dataset": "synthetic", "segmentation": "seg.synthetic", "name": "compose.seg.synthetic"}, ["seg.synthetic"]),
        ("train-scene-classifier", clf, []),
        ("classify", {"dataset": "synthetic", "classifier": "scene-clf", "name": "scenes.synthetic"}, ["scene-clf"]),
        ("train-captioner", cap, ["compose.seg.synthetic"]),
        ("generate", {"captioner": "cap", "scenes": "scenes.synthetic", "name": "gen.cap.test"}, ["cap", "scenes.synthetic"]),
        ("evaluate", {"generation": "gen.cap.test", "name": "eval.gen.cap.test"}, ["gen.cap.test"]),
        ("baseline-scene", {"dataset": "synthetic", "scenes": "scenes.synthetic", "name": "scene.synthetic.test"}, ["scenes.synthetic"]),
        ("evaluate", {"generation": "scene.synthetic.test", "name": "eval.scene.synthetic.test"}, ["scene.synthetic.test"]),
        ("baseline-knn", {"dataset": "synthetic", "composition": "compose.seg.synthetic", "name": "knn.compose.seg.synthetic.test"},
         ["compose.seg.synthetic"]),
        ("evaluate", {"generation": "knn.compose.seg.synthetic.test", "name": "eval.knn.compose.seg.synthetic.test"},
         ["knn.compose.seg.synthetic.test"]),
    ]
    return [(kind, params, str(params["name"]), needs) for kind, params, needs in steps]


@app.command()
@user_errors
def demo(
    images: Annotated[int, typer.Option(help="Synthetic captioning images.")] = 240,
    drone_images: Annotated[int, typer.Option(help="Synthetic drone-style images.")] = 48,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic world.")] = 0,
    fresh: Annotated[bool, typer.Option(help="Redraw the world and rerun the pipeline: every run gets a new version; rated runs are kept.")] = False,
    follow: Annotated[bool, typer.Option(help="Follow the queued pipeline until it ends (--no-follow returns at once).")] = True,
    fast: Annotated[bool, typer.Option(help="Train for a handful of steps only (a smoke test of the pipeline).")] = False,
    no_runner: Annotated[bool, typer.Option("--no-runner", help="Only queue the jobs; start `workbench worker` yourself.")] = False,
    open_tui: Annotated[bool, typer.Option("--tui/--no-tui", help="Watch the pipeline in the TUI's Jobs screen (--no-tui: progress bars here, for scripts).")] = True,
    executor: Annotated[str | None, typer.Option("--executor", help="Run the jobs on local or slurm (default: config.toml's [executor] name).")] = None,
) -> None:
    """Draw the synthetic world, ingest it, queue the whole pipeline on it (segmenter, masks, compositions, scene classifier, captioner, captions, baselines, scores) and watch it in the TUI's Jobs screen."""
    from engine.jobs.queue import submit
    from engine.store.catalog import dataset_stats, get_dataset
    from engine.store.runs import get_run

    ws = require_workspace()
    use_tui = open_tui and sys.stdin.isatty() and sys.stdout.isatty()
    typer.echo(f"workspace {ws.root.resolve()}")
    db = ws.open_db()
    steps = demo_pipeline(fast)
    have = get_dataset(db, "synthetic") is not None and get_dataset(db, "synthetic-drone") is not None
    if have and not fresh:
        typer.echo("the synthetic world is already ingested here (--fresh redraws it and reruns everything)")
    else:
        out = ws.synthetic_dir
        typer.echo(f"drawing the synthetic world (seed {seed}) into {out} ...")
        progress_runner("synthesize", {"out": str(out), "images": images, "drone_images": drone_images, "seed": seed})
        for kind, params in (
            ("ingest-captions", {"path": str(out / "captions"), "name": "synthetic", "replace": True}),
            ("ingest-drone", {"path": str(out / "drone"), "name": "synthetic-drone", "replace": True}),
        ):
            typer.echo(progress_runner(kind, params).message)
    for name in ("synthetic", "synthetic-drone"):
        ds = get_dataset(db, name)
        if ds is not None:
            typer.echo(format_stats(dataset_stats(db, ds)))
    typer.echo("Synthetic data, drawn from a seed; not real imagery.\n")
    job_of: dict[str, int] = {}
    queued: list[int] = []
    for kind, params, run_name, needs in steps:
        existing = get_run(db, run_name)
        if not fresh and existing is not None and existing.status == "complete" and not any(n in job_of for n in needs):
            typer.echo(f"  {kind:<16} {existing.name}: done already")
            continue
        after = [job_of[n] for n in needs if n in job_of]
        job_id = submit(ws, kind, params, after=after, start_runner=False, executor=executor)
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
    classified = get_run(db, "scenes.synthetic")
    if classified is not None and classified.status == "complete" and "accuracy" in classified.metrics:
        typer.echo(f"\n{classified.name}: scene classifier accuracy {classified.metrics['accuracy']:.3f} on {classified.metrics['labelled']} images")
    for run_name in ("eval.gen.cap.test", "eval.knn.compose.seg.synthetic.test", "eval.scene.synthetic.test"):
        run = get_run(db, run_name)
        if run is not None and run.status == "complete":
            typer.echo(f"\n{run.name}")
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

