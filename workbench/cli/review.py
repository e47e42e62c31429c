"""Review from the command line: rate a caption, read a run's review analytics, and the win rate
of one run over another from blind pairwise comparisons (made in the TUI's Compare screen)."""

from __future__ import annotations

from typing import Annotated

import typer
from typer.core import TyperGroup

from engine.errors import WorkbenchError
from workbench.cli.common import State, app, user_errors


class _ShowByDefault(TyperGroup):
    """`workbench ratings RUN` means `workbench ratings show RUN`."""

    def resolve_command(self, ctx, args):  # type: ignore[no-untyped-def]
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().resolve_command(ctx, args)


ratings_app = typer.Typer(cls=_ShowByDefault, no_args_is_help=True,
                          help="Review analytics: `ratings RUN` (ratings, agreement, metrics) and `ratings compare A B` (win rate).")
app.add_typer(ratings_app, name="ratings")


@app.command()
@user_errors
def rate(
    caption: Annotated[list[str], typer.Argument(
        help="The caption and the score: RUN IMAGE SCORE (IMAGE a filename or the source's image id) or GENERATION_ID SCORE "
             "(the generation_id column of `workbench export`); SCORE is 1 (bad) to 5 (good).", show_default=False)],
    flag: Annotated[list[str] | None, typer.Option("--flag", help="hallucinated object, wrong count, wrong position, wrong scene, grammar (repeatable).")] = None,
    note: Annotated[str, typer.Option(help="A free-text note.")] = "",
    reviewer: Annotated[str | None, typer.Option(help="Reviewer name (default: your OS user).")] = None,
) -> None:
    """Rate one generated caption, named RUN IMAGE or by its generation id (the newest rating per reviewer counts; history is kept)."""
    import getpass

    from engine.store.results import add_rating, find_caption
    from engine.store.runs import get_run

    if len(caption) not in (2, 3) or not caption[-1].lstrip("-").isdigit():
        raise WorkbenchError("rate: give RUN IMAGE SCORE or GENERATION_ID SCORE (e.g. `workbench rate gen.cap.test bareland_2.jpg 4`)")
    score = int(caption[-1])
    db = State.workspace.open_db()
    if len(caption) == 3:
        run = get_run(db, caption[0])
        if run is None or run.kind not in ("generation", "baseline"):
            raise WorkbenchError(f"rate: {caption[0]!r} is not a generation or baseline run (`workbench runs list`)")
        found = find_caption(db, run_id=run.id, image=caption[1])
        if found is None:
            raise WorkbenchError(f"rate: run {run.name!r} has no caption of an image {caption[1]!r} (a filename or the source's image id)")
    else:
        if not caption[0].isdigit():
            raise WorkbenchError(f"rate: {caption[0]!r} is not a generation id; name the caption as RUN IMAGE SCORE")
        found = find_caption(db, int(caption[0]))
        if found is None:
            raise WorkbenchError(f"rate: no generated caption with id {caption[0]} (the generation_id column of `workbench export`)")
    try:
        rating = add_rating(db, found.generation_id, reviewer or getpass.getuser(), score, flag or (), note)
    except ValueError as exc:
        raise WorkbenchError(f"rate: {exc}") from None
    typer.echo(f"rated caption {found.generation_id} of run {found.run} on {found.filename} ({found.text!r}): {rating.score} by {rating.reviewer}"
               + (f", flags: {', '.join(rating.flags)}" if rating.flags else "") + (f", note: {rating.note!r}" if rating.note else ""))


@ratings_app.command("show")
@user_errors
def ratings_show(run: Annotated[str, typer.Argument(help="Generation or baseline run.")]) -> None:
    """Review analytics of a run: reviewers, agreement (Krippendorff's alpha), mean rating per scene, ratings vs metrics."""
    from engine.jobs.review import review_summary

    s = review_summary(State.workspace.open_db(), run)
    if not s.reviewers:
        typer.echo(f"{s.run}: no ratings yet; rate captions with `workbench rate RUN IMAGE SCORE` (or the TUI's Review screen)")
        return
    typer.echo(f"{s.run}: {s.rated_images} images rated by {len(s.reviewers)} reviewers ({', '.join(f'{k} {v}' for k, v in s.reviewers.items())}), mean {s.mean_rating:.2f}")
    alpha = f"{s.alpha_ordinal:.3f}" if s.pairable_images >= 2 else "n/a (needs 2 or more images rated by two or more)"
    typer.echo(f"  Krippendorff's alpha (ordinal) {alpha} over {s.pairable_images} image{'s' if s.pairable_images != 1 else ''} "
               "rated by two or more")
    if s.flags:
        typer.echo("  flags: " + ", ".join(f"{k} {v}" for k, v in sorted(s.flags.items())))
    if s.per_scene:
        typer.echo("  mean rating per scene: " + ", ".join(f"{k} {m:.2f} ({n})" for k, (m, n) in s.per_scene.items()))
    if s.correlations:
        typer.echo(f"  ratings vs per-image metrics of {s.evaluation}:")
        typer.echo(f"  {'metric':<9} {'Spearman':>9} {'Kendall':>9} {'images':>7}")
        for c in s.correlations:
            if c.spearman != c.spearman:  # NaN: too few images, or one side constant (no rank order)
                typer.echo(f"  {c.metric:<9} {'n/a':>9} {'n/a':>9} {c.n:>7}")
            else:
                typer.echo(f"  {c.metric:<9} {c.spearman:>9.3f} {c.kendall:>9.3f} {c.n:>7}")
        typer.echo("  (n/a: fewer than 3 images, or the metric or the ratings the same on all of them)")


@ratings_app.command("compare")
@user_errors
def ratings_compare(
    run_a: Annotated[str, typer.Argument(metavar="A", help="A generation or baseline run.")],
    run_b: Annotated[str, typer.Argument(metavar="B", help="The run whose win rate over A is reported.")],
) -> None:
    """Win rate of B over A from blind pairwise comparisons, with its 95% interval, per scene, ties, agreement and position bias."""
    from engine.jobs.review import pairwise_lines, pairwise_summary

    s = pairwise_summary(State.workspace.open_db(), run_a, run_b)
    for line in pairwise_lines(s):
        typer.echo(line)

