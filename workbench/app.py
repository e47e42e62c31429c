"""The Textual workbench: one app, five modes (Browse, Review, Compare, Jobs, Runs), an Export modal.

``make_app`` is the only way to build it, for ``workbench tui``, ``workbench demo`` and the
tests alike. The app never runs heavy compute: it reads the store in thread workers and submits
jobs to the durable queue (torch is never imported here).
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from engine.errors import WorkbenchError
from engine.workspace import Workspace
from workbench.screens.browse import BrowseScreen, read_browse
from engine.store.connection import is_read_only
from workbench.session import IMAGES_MODES, ImagesMode, Session

START_SCREENS = ("browse", "review", "compare", "jobs", "runs")


# The screens other than Browse are imported when first shown, to keep start-up short.
def review_screen() -> Screen[None]:
    from workbench.screens.review import ReviewScreen

    return ReviewScreen()


def compare_screen() -> Screen[None]:
    from workbench.screens.pairwise import CompareScreen

    return CompareScreen()


def jobs_screen() -> Screen[None]:
    from workbench.screens.jobs import JobsScreen

    return JobsScreen()


def runs_screen() -> Screen[None]:
    from workbench.screens.runs import RunsScreen

    return RunsScreen()


class WorkbenchApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "rs-caption workbench"
    ENABLE_COMMAND_PALETTE = True
    MODES = {"browse": BrowseScreen, "review": review_screen, "compare": compare_screen, "jobs": jobs_screen, "runs": runs_screen}
    BINDINGS = [  # help first: the footer cuts the last keys on a narrow terminal
        Binding("question_mark", "help", "Help", id="help"),
        Binding("b", "go('browse')", "Browse", id="browse"),
        Binding("r", "go('review')", "Review", id="review"),
        Binding("v", "go('compare')", "Compare", id="compare"),
        Binding("j", "go('jobs')", "Jobs", id="jobs"),
        Binding("u", "go('runs')", "Runs", id="runs"),
        Binding("e", "export", "Export", id="export"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, session: Session, start: str = "browse") -> None:
        super().__init__()
        self.session = session
        self.start = start

    def on_mount(self) -> None:
        self.set_keymap(self.session.config.keys)
        self.sub_title = f"{self.session.workspace.root.name}  ·  reviewer {self.session.reviewer}"
        if is_read_only(self.session.workspace.db_path):
            self.sub_title += "  ·  READ-ONLY"
            self.notify("This workspace is read-only for you: Browse, Runs and Export work; ratings and jobs are off.", timeout=10)
        self.switch_mode(self.start)

    async def action_go(self, mode: str) -> None:
        """Show a mode's own screen from anywhere, also when a screen was opened on top of it
        (``b`` on the Image screen returns to the Browse list, its cursor where it was)."""
        if self.current_mode != mode:
            await self.switch_mode(mode)
        while len(self.screen_stack) > 1:
            self.pop_screen()

    def action_export(self) -> None:
        from workbench.screens.export import ExportModal

        query = getattr(self.screen, "export_defaults", None)
        self.push_screen(ExportModal(**(query() if callable(query) else {})))

    def action_help(self) -> None:
        from workbench.screens.help import HelpModal

        self.push_screen(HelpModal(self.screen))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A reader that failed (a locked or corrupt store, a vanished file) gets an error modal;
        the app keeps running."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.show_error(str(error) if isinstance(error, WorkbenchError) else f"{type(error).__name__}: {error}")

    def show_error(self, message: str) -> None:
        from workbench.screens.error import ErrorModal

        self.push_screen(ErrorModal(message))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Every workbench action of the screen and the app (the bindings with an id, which are
        also the ones config.toml can remap), so the palette reaches every action."""
        yield from super().get_system_commands(screen)
        seen = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.id or not binding.description or binding.action in seen:
                continue
            seen.add(binding.action)
            yield SystemCommand(binding.description, f"{binding.action}  (key {key})",
                                partial(self.call_later, self.run_action, binding.action, active.node))


def known_actions() -> set[str]:
    """Binding ids that ``[keys]`` in config.toml may remap."""
    from textual.dom import DOMNode

    from workbench.screens.image import ImageScreen
    from workbench.screens.jobs import JobsScreen
    from workbench.screens.pairwise import CompareScreen
    from workbench.screens.review import ReviewScreen
    from workbench.screens.runs import RunsScreen
    from workbench.widgets.image_list import ImageList

    ids: set[str] = set()
    classes: list[type[DOMNode]] = [WorkbenchApp, BrowseScreen, ReviewScreen, CompareScreen, JobsScreen, RunsScreen, ImageScreen,
                                    ImageList]
    for cls in classes:
        for b in cls.BINDINGS:
            if isinstance(b, Binding) and b.id:
                ids.add(b.id)
    return ids


def make_app(
    workspace: Workspace | Path | str,
    *,
    start: str = "browse",
    images: str | None = None,
    reviewer: str | None = None,
    dataset: str | None = None,
    start_runner: bool = True,
) -> WorkbenchApp:
    """Build the workbench app on a workspace.

    :raises WorkbenchError: for a missing workspace, a bad ``config.toml``, an unknown start
        screen, drawing mode, key action or dataset
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(Path(workspace))
    ws.open_db().close()  # migrates, and fails clearly when there is no workspace
    config = ws.config()
    mode = images or config.images
    if mode not in IMAGES_MODES:
        raise WorkbenchError(f"--images {mode!r}: choose one of {', '.join(IMAGES_MODES)}")
    if start not in START_SCREENS:
        raise WorkbenchError(f"--screen {start!r}: choose one of {', '.join(START_SCREENS)}")
    unknown = sorted(set(config.keys) - known_actions()) if config.keys else []
    if unknown:
        raise WorkbenchError(f"{ws.config_path}: [keys] {unknown[0]!r} is not an action; actions: {', '.join(sorted(known_actions()))}")
    if dataset is not None:
        from engine.store.catalog import list_datasets

        db = ws.open_db()
        try:
            names = [d.name for d in list_datasets(db) if d.kind == "captioning"]
        finally:
            db.close()
        if dataset not in names:
            raise WorkbenchError(f"--dataset {dataset!r}: no captioning dataset of that name; "
                                 + (f"datasets: {', '.join(names)}" if names else "ingest one with `workbench ingest captions PATH`"))
    session = Session(workspace=ws, config=config, reviewer=reviewer or getpass.getuser(), images=mode, dataset=dataset,  # type: ignore[arg-type]
                      start_runner=start_runner and not is_read_only(ws.db_path))
    if mode not in ("off", "halfcell"):
        # textual-image asks the terminal what it can draw when first imported; that must
        # happen before Textual takes the terminal over.
        import textual_image.widget  # noqa: F401
    if start == "browse":
        session.prefetch(read_browse)
    return WorkbenchApp(session, start=start)


__all__ = ["ImagesMode", "WorkbenchApp", "make_app"]
