"""What Review and Compare share: a queue of items over images, each shown with its picture and
references (read in workers, the neighbours read ahead), moved through with ← →, references
flagged with f, and every write to the store made at once and retried while another writer holds
the database, never dropped in silence."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from textual import work
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static

from engine.store.connection import is_locked, is_read_only_error
from engine.store.views import ImageDetail, image_detail
from workbench.screens.reference_flag import ask_and_flag, references_text
from workbench.widgets.picture import Picture

BUSY_RETRIES = 30
"""Seconds a write waits for a busy database, retried once a second."""
PRELOADED = 64
"""Details kept read ahead."""
T = TypeVar("T")


@dataclass
class DetailLoaded(Message):
    index: int
    detail: ImageDetail | None


class QueueScreen(Screen[None]):
    """A screen over ``self.items`` (each with an ``image_id``) at ``self.index``. Subclasses
    set :attr:`prefix` (their widgets are ``#PREFIX-references`` and a :class:`Picture`) and
    :meth:`refresh_text`."""

    prefix = ""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[Any] = []
        self.index = 0
        self.detail: ImageDetail | None = None
        self._details: dict[int, ImageDetail] = {}
        """image id -> detail, read ahead for the neighbours of the item shown."""

    @property
    def session(self):  # type: ignore[no-untyped-def]
        return self.app.session  # type: ignore[attr-defined]

    @property
    def item(self) -> Any:
        return self.items[self.index] if 0 <= self.index < len(self.items) else None

    def refresh_text(self) -> None:
        raise NotImplementedError

    def show_item(self) -> None:
        """The current item; its image and references at once when they were read ahead (the
        neighbours of the item shown are), else from a worker."""
        ready = self._details.get(self.item.image_id) if self.item is not None else None
        if ready is not None:
            self.on_detail_loaded(DetailLoaded(self.index, ready))
        self.refresh_text()
        if self.item is not None and ready is None:
            self.load_detail(self.index, self.item.image_id)

    @work(thread=True, exit_on_error=False, exclusive=True, group="queue-item")
    def load_detail(self, index: int, image_id: int) -> None:
        self.post_message(DetailLoaded(index, image_detail(self.session.db, image_id)))

    @work(thread=True, exit_on_error=False, exclusive=True, group="queue-preload")
    def preload(self, image_ids: list[int]) -> None:
        """Read the next (and previous) items' details and pictures ahead of the keys."""
        picture = self.query_one(Picture)
        for image_id in image_ids:
            detail = self._details.get(image_id) or image_detail(self.session.db, image_id)
            if detail is None:
                continue
            if len(self._details) > PRELOADED:
                self._details.clear()
            self._details[image_id] = detail
            if detail.image.status == "ok":
                picture.preload(self.session.resolve(detail.root, detail.image.path))

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        if message.index != self.index or message.detail is None:
            return
        self.detail = d = message.detail
        self.preload([self.items[i].image_id for i in (self.index + 1, self.index - 1) if 0 <= i < len(self.items)])
        self.query_one(f"#{self.prefix}-references", Static).update(references_text(d.references, d.flags))
        ok = d.image.status == "ok"
        self.query_one(Picture).show(self.session.resolve(d.root, d.image.path) if ok else None,
                                     description=d.image.filename if ok else f"{d.image.status}: {d.image.filename}")

    def action_step(self, delta: int) -> None:
        if 0 <= self.index + delta < len(self.items):
            self.index += delta
            self.show_item()

    def action_flag_reference(self) -> None:
        """f: flag one of the image's references (misspelt, duplicated, not this image)."""
        detail = self.detail
        if self.item is None or detail is None or detail.image.id != self.item.image_id:
            return

        def saved(flags: dict[str, list[Any]]) -> None:
            now = dataclasses.replace(detail, flags=flags)
            self._details[detail.image.id] = now
            if self.detail is detail:
                self.detail = now
                self.query_one(f"#{self.prefix}-references", Static).update(references_text(now.references, flags))

        ask_and_flag(self, detail, detail.flags, saved)

    def write(self, what: str, fn: Callable[[], T], retry: Callable[[int], None] | None = None, attempt: int = 0) -> T | None:
        """Run a store write now. A read-only workspace, a bad value or a full disk is one error
        line; a database another writer holds is retried every second for half a minute through
        ``retry(attempt)``, and says so.

        :returns: what ``fn`` returned, or None when it was not written (yet)
        """
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if is_read_only_error(exc):
                self.app.show_error(f"{what} not saved: {self.session.workspace.db_path} is read-only for you "  # type: ignore[attr-defined]
                                    "(Browse and Export work; judging needs a workspace you can write)")
                return None
            if not is_locked(exc):
                raise
            if retry is None or attempt >= BUSY_RETRIES:
                self.app.show_error(f"{what} not saved: the database stayed busy; press the key again")  # type: ignore[attr-defined]
                return None
            self.notify("the database is busy (another writer holds it); saving again in a second", timeout=1.5)
            self.set_timer(1.0, lambda: retry(attempt + 1))
            return None
        except (ValueError, OSError) as exc:
            self.app.show_error(f"{what} not saved: {exc}")  # type: ignore[attr-defined]
            return None
