"""Commands that set up a workspace and read datasets into it: init, ingest, stats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.errors import WorkbenchError
from workbench.cli.common import (
    State,
    app,
    format_stats,
    ingest_app,
    progress_runner,
    require_workspace,
    user_errors,
)


@app.command()
@user_errors
def init() -> None:
    """Create the workspace: folder, database and a commented config.toml."""
    ws = State.workspace
    new = ws.init()
    state = "created" if new else "already initialised; nothing overwritten"
    typer.echo(f"workspace {ws.root.resolve()} {state}")
    typer.echo(f"  database {ws.db_path}\n  config   {ws.config_path} (class groups, keys, defaults)")


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
    require_workspace()
    params = {
        "path": str(path), "name": name, "images": str(images) if images else None,
        "scenes": str(scenes) if scenes else None, "split": split,
        "split_from": str(split_from) if split_from else None,
        "allow_missing": allow_missing, "replace": replace, "verify": verify,
    }
    result = progress_runner("ingest-captions", params)
    typer.echo(result.message)


@ingest_app.command("drone")
@user_errors
def ingest_drone(
    path: Annotated[Path, typer.Argument(help="Semantic Drone Dataset folder.")],
    name: Annotated[str, typer.Option(help="Dataset name.")] = "drone",
    replace: Annotated[bool, typer.Option(help="Replace a dataset of the same name.")] = False,
) -> None:
    """Ingest the Semantic Drone Dataset (images, class-index masks, class table)."""
    require_workspace()
    result = progress_runner("ingest-drone", {"path": str(path), "name": name, "replace": replace})
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

