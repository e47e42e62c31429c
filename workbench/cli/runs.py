"""Commands over runs and their results: run a job kind in the foreground, list, show, compare and
delete runs, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from engine.errors import WorkbenchError
from workbench.cli.common import (
    State,
    app,
    format_evaluation,
    headline,
    parse_pairs,
    progress_runner,
    require_workspace,
    runs_app,
    table,
    user_errors,
)


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
    params = job_kind.parse(parse_pairs(param))
    require_workspace()
    result = progress_runner(kind, params)
    typer.echo(result.message)
    if kind == "evaluate" and result.run_id is not None:
        from engine.store.runs import get_run_by_id

        run = get_run_by_id(State.workspace.open_db(), result.run_id)
        if run is not None:
            typer.echo(format_evaluation(run.metrics))


@runs_app.command("list")
@user_errors
def runs_list(
    kind: Annotated[str | None, typer.Option(help="Only runs of this kind (segmenter, segmentation, composition, ...).")] = None,
    superseded: Annotated[bool, typer.Option(help="Also list replaced runs kept for their ratings.")] = True,
) -> None:
    """List runs: name, version, kind, status, parent, headline metrics."""
    from engine.store.runs import get_run_by_id, list_runs

    db = State.workspace.open_db()
    runs = list_runs(db, kind, superseded=superseded)
    if not runs:
        typer.echo("no runs yet; start one with `workbench run KIND` (see `workbench run`)")
        return
    names = {r.id: r.name for r in runs}

    def parent(r: Any) -> str:
        if not r.parent_run_id:
            return ""
        found = names.get(r.parent_run_id) or get_run_by_id(db, r.parent_run_id)
        return found if isinstance(found, str) else (found.name if found else "")

    rows = [(r.name, str(r.version), r.kind, r.status, parent(r), headline(r.metrics)) for r in runs]
    for line in table(("name", "ver", "kind", "status", "parent", "metrics"), rows):
        typer.echo(line)


@runs_app.command("delete")
@user_errors
def runs_delete(
    name: Annotated[str, typer.Argument(help="Run name (a bare name: its newest version).")],
    yes: Annotated[bool, typer.Option("--yes", help="Really delete (without it, only list what would go).")] = False,
) -> None:
    """Delete a run for good: its captions, scores, files, evaluations, ratings and comparisons (written to exports/ first)."""
    from engine.jobs.deletion import delete, plan_deletion
    from engine.store.catalog import held_phrase

    ws = State.workspace
    plan = plan_deletion(ws, name)
    for run, held in plan.runs:
        parts = [f"{n} {what}" for n, what in ((held.captions, "captions"), (held.scores, "scores"), (held.masks, "masks"),
                                              (held.compositions, "compositions"), (held.ratings, "ratings"),
                                              (held.comparisons, "comparisons")) if n]
        typer.echo(f"  {run.kind:<11} {run.name}: {', '.join(parts) or 'no rows'}")
    for folder in plan.folders:
        typer.echo(f"  folder      {folder}")
    for folder in plan.outside:
        typer.echo(f"  kept        {folder}: outside this workspace (a copy's runs name the original's files); not deleted")
    for orphan in plan.orphans:
        typer.echo(f"  kept        {orphan.name} ({orphan.kind}), made from it; it loses that link")
    judged = held_phrase(plan.ratings, plan.comparisons)
    if not yes:
        raise WorkbenchError("nothing deleted; run again with --yes to delete the above"
                             + (f" ({judged} are written to exports/ first)" if judged else ""))
    saved = delete(ws, plan)
    typer.echo(f"deleted {', '.join(r.name for r, _ in plan.runs)}"
               + (f"; its {judged} are saved in {', '.join(str(p) for p in saved)}" if saved else ""))


@runs_app.command("show")
@user_errors
def runs_show(
    name: Annotated[str, typer.Argument(help="Run name.")],
    samples: Annotated[int, typer.Option(help="Compositions to print (composition runs).")] = 3,
) -> None:
    """Show one run: params, metrics, and for composition runs a few prompts."""
    import json

    from engine.store.catalog import get_image
    from engine.store.runs import (
        compositions_of,
        family_runs,
        get_run,
        get_run_by_id,
        list_runs,
    )

    db = State.workspace.open_db()
    run = get_run(db, name)
    if run is None:
        known = ", ".join(r.name for r in list_runs(db)) or "none yet"
        raise WorkbenchError(f"no run named {name!r} (runs: {known})")
    versions = len(family_runs(db, run.family))
    version = f", version {run.version} of {run.family}" if versions > 1 or run.version > 1 else ""
    typer.echo(f"{run.name}  ({run.kind}, {run.status}{version}, created {run.created_at})")
    if run.superseded_by:
        newer = get_run_by_id(db, run.superseded_by)
        typer.echo(f"  replaced by {newer.name if newer else 'a deleted run'}; kept for its ratings")
    if run.kind == "evaluation":
        typer.echo(format_evaluation(run.metrics))
        from engine.jobs.compare import baselines_beside

        beside = baselines_beside(State.workspace, run)
        if beside:
            cols = [m for m in ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr") if m in run.metrics]
            typer.echo("\n  beside the baselines, on the same images:")
            typer.echo(f"  {'':<56} " + " ".join(f"{c:>8}" for c in cols))
            typer.echo(f"  {'this run':<56} " + " ".join(f"{run.metrics[c]:>8.3f}" for c in cols))
            for b in beside:
                label = f"{b.label} ({b.run}{', ORACLE scenes' if b.scenes == 'oracle' else ''})"
                typer.echo(f"  {label[:56]:<56} " + " ".join(f"{b.scores[c]:>8.3f}" if c in b.scores else f"{'n/a':>8}" for c in cols))
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
    id: Annotated[str, typer.Option("--id", help="What image_id holds: source (the annotation file's image id, its own type) or filename.")] = "source",
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Export a run's captions, one row per image, with references, per-image scores and ratings."""
    result = progress_runner("export", {"run": run, "format": format, "output": str(output) if output else "", "split": split,
                                        "id": id, "force": force})
    typer.echo(result.message)
