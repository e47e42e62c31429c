"""Browse: every image of a dataset, filtered, searched and sorted; enter opens one."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from engine.store.views import SORT_COLUMNS, BrowseQuery, BrowseRow, browse_rows, newest_classification, scenes_of
from workbench.screens.filters import Choices, FiltersModal, default_run
from workbench.session import Session
from workbench.widgets import shorten
from workbench.widgets.image_list import ImageList, header_text


@dataclass
class RowsLoaded(Message):
    """A browse query's rows, read in a worker."""

    query: BrowseQuery
    rows: list[BrowseRow]
    choices: Choices
    token: int


def read_browse(session: Session, query: BrowseQuery | None = None, reset: bool = False) -> tuple[list[BrowseRow], BrowseQuery, Choices]:
    """The rows ``query`` selects and what the filters can choose from; with no query (or
    ``reset``), the chosen dataset with its newest run. Runs in a thread."""
    db = session.db
    choices = Choices.read(db, query.dataset_id if query else None, session.dataset)
    if choices.dataset is None:
        return [], BrowseQuery(dataset_id=-1), choices
    if query is None or reset or query.dataset_id != choices.dataset.id:
        run = default_run(choices.runs)
        query = BrowseQuery(dataset_id=choices.dataset.id, reviewer=session.reviewer,
                            generation_run_id=run.id if run else None, evaluation_run_id=choices.evaluation_of(run))
    if query.classification_run_id is None and (classified := newest_classification(db, choices.dataset.id)):
        query = replace(query, classification_run_id=classified[0])
    choices = replace(choices, scenes=scenes_of(db, choices.dataset.id))
    return browse_rows(db, query), query, choices


class BrowseScreen(Screen[None]):
    """Browse every image of a dataset. Filter by split, scene, status and rating; search the
    reference captions; sort by any column (score ascending finds the worst captions first);
    enter opens the image with its mask, composition, references and every run's caption."""

    BINDINGS = [
        Binding("slash", "search", "Search", id="browse.search"),
        Binding("f", "filters", "Filter", id="browse.filters"),
        Binding("s", "sort", "Sort", id="browse.sort"),
        Binding("o", "order", "Reverse", id="browse.order"),
        Binding("escape", "leave_search", "List", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.query_state: BrowseQuery | None = None
        self.choices: Choices | None = None
        self.token = 0
        """Counts loads; rows of an older load than the newest are dropped."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="browse-bar", classes="bar")
        yield Input(placeholder="/ search the reference captions (words, prefix of the last)", id="search")
        yield Static("", id="browse-header", classes="table-header")
        yield ImageList(id="images")
        yield Static("", id="browse-empty", classes="empty")
        yield Footer(compact=True)

    @property
    def image_list(self) -> ImageList:
        return self.query_one(ImageList)

    def on_mount(self) -> None:
        self.image_list.focus()
        self.ratings_seen = self.app.session.ratings_changed  # type: ignore[attr-defined]
        self.load(None)

    def on_screen_resume(self) -> None:
        """Back from Review with new ratings: read the rows again (the rated column and filter)."""
        changed = self.app.session.ratings_changed  # type: ignore[attr-defined]
        if changed != self.ratings_seen and self.query_state is not None:
            self.ratings_seen = changed
            self.load(self.query_state)

    def load(self, query: BrowseQuery | None, reset: bool = False) -> None:
        """Show the rows of ``query`` (``reset``: a new dataset, so choose its newest run)."""
        self.token += 1
        if query is not None and not reset:
            self.query_state = query
            self.refresh_bar()
        self.read_rows(query, reset, self.token)

    @work(thread=True, exit_on_error=False, group="browse-rows")
    def read_rows(self, query: BrowseQuery | None, reset: bool, token: int) -> None:
        session = self.app.session  # type: ignore[attr-defined]
        first = session.take_prefetched() if query is None else None
        rows, query, choices = first.result() if first is not None else read_browse(session, query, reset)
        self.post_message(RowsLoaded(query, rows, choices, token))

    def on_rows_loaded(self, message: RowsLoaded) -> None:
        if message.token != self.token:
            return
        self.choices = message.choices
        empty = self.query_one("#browse-empty", Static)
        if message.choices.dataset is None:
            empty.update("No captioning dataset in this workspace yet.\n\nIngest one with `workbench ingest captions PATH`,"
                         " or run `workbench demo` to draw the synthetic world and run the pipeline on it (j: Jobs).")
            self.set_class(True, "-empty")
            self.query_one("#search", Input).disabled = True  # hidden: it must not take the keys
            return
        self.set_class(False, "-empty")
        self.query_one("#search", Input).disabled = False
        old = self.image_list.current
        self.query_state = message.query
        self.image_list.set_rows(message.rows, keep_id=old.id if old else None)
        self.refresh_bar()

    def refresh_bar(self) -> None:
        """Count, dataset, the filters that are set, the run; fitted to the width by shortening
        the run's name in its middle, so no field falls off a narrow terminal."""
        q, c = self.query_state, self.choices
        if q is None or c is None or c.dataset is None:
            return
        run = c.run_name(q.generation_run_id)
        n = len(self.image_list.rows)
        filters = [f"{label} {value}" for label, value in (("split", q.split), ("scene", q.scene), ("status", q.status),
                                                            ("rated", {None: None, True: "yes", False: "no"}[q.rated])) if value]
        if q.search:
            filters.append(f"search “{q.search}”")
        head = " · ".join([f"{n:,} image{'' if n == 1 else 's'}", c.dataset.name, *(filters or ["no filter (f)"])])
        if run:
            tail = "" if q.evaluation_run_id else " (not scored)"
            room = (self.size.width or 120) - 2 - len(head) - len(" · run ") - len(tail)
            text = f"{head} · run {shorten(run, max(room, 12))}{tail}"
        else:
            text = f"{head} · no generated captions yet"
        self.query_one("#browse-bar", Static).update(text)
        width = self.image_list.scrollable_content_region.width or self.size.width - 2
        self.query_one("#browse-header", Static).update(header_text(width, q.sort, q.descending, q.metric))

    def on_resize(self) -> None:
        self.refresh_bar()

    def requery(self, **changes: Any) -> None:
        if self.query_state is not None:
            self.load(replace(self.query_state, **changes))

    @on(Input.Changed, "#search")
    def search_changed(self, event: Input.Changed) -> None:
        self.requery(search=event.value)

    @on(Input.Submitted, "#search")
    def search_done(self) -> None:
        self.image_list.focus()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_leave_search(self) -> None:
        self.image_list.focus()

    def action_sort(self) -> None:
        if self.query_state is not None:
            i = SORT_COLUMNS.index(self.query_state.sort)
            self.requery(sort=SORT_COLUMNS[(i + 1) % len(SORT_COLUMNS)])

    def action_order(self) -> None:
        if self.query_state is not None:
            self.requery(descending=not self.query_state.descending)

    def action_filters(self) -> None:
        if self.query_state is None or self.choices is None or self.choices.dataset is None:
            return

        old = self.query_state.dataset_id

        def apply(query: BrowseQuery | None) -> None:
            if query is not None:
                self.load(query, reset=query.dataset_id != old)

        self.app.push_screen(FiltersModal(self.query_state, self.choices), apply)

    @on(ImageList.Selected)
    def open_image(self, event: ImageList.Selected) -> None:
        from workbench.screens.image import ImageScreen  # first use; keeps start-up short

        ids = [r.id for r in self.image_list.rows]
        self.app.push_screen(ImageScreen(ids, self.image_list.cursor))

    def export_defaults(self) -> dict[str, Any]:
        q, c = self.query_state, self.choices
        if q is None or c is None:
            return {}
        return {"run": c.run_name(q.generation_run_id), "split": q.split or "all"}
