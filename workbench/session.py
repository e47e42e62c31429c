"""What every screen of the TUI shares: the workspace, who is reviewing, how images are drawn,
and a database connection per thread (screens read in thread workers; sqlite3 connections must
not be used by two threads at once).
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any, Literal

import sqlite_utils

from engine.config import Config
from engine.store import connect
from engine.workspace import Workspace

ImagesMode = Literal["auto", "tgp", "sixel", "halfcell", "off"]
IMAGES_MODES: tuple[ImagesMode, ...] = ("auto", "tgp", "sixel", "halfcell", "off")


@dataclass
class Session:
    workspace: Workspace
    config: Config
    reviewer: str
    images: ImagesMode
    dataset: str | None = None
    """Dataset the TUI opens on (default: the first captioning dataset)."""
    start_runner: bool = True
    """Start a detached runner when jobs wait and none is alive (tests switch it off)."""
    ratings_changed: int = 0
    """Counts this session's rating writes, so a screen showing ratings knows to read them again."""
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _prefetched: Future[Any] | None = field(default=None, repr=False)

    def prefetch(self, read: Callable[[Session], Any]) -> None:
        """Start ``read(self)`` in a thread now (while Textual starts up); the first screen takes
        its result with :meth:`take_prefetched`."""
        future: Future[Any] = Future()

        def work() -> None:
            try:
                future.set_result(read(self))
            except BaseException as exc:  # handed to the screen, which reports it
                future.set_exception(exc)

        threading.Thread(target=work, name="prefetch", daemon=True).start()
        self._prefetched = future

    def take_prefetched(self) -> Future[Any] | None:
        future, self._prefetched = self._prefetched, None
        return future

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection (migrations already ran when the app was made)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.workspace.db_path, migrate=False, journal=self.config.journal)
            self._local.db = db
        return db

    @property
    def _memory_path(self) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.reviewer) or "_"
        return self.workspace.root / "tui" / f"{safe}.json"

    def recall(self, key: str) -> Any:
        """What this reviewer's TUI remembered under ``key`` (the run Review showed last), or None."""
        try:
            return json.loads(self._memory_path.read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            return None

    def remember(self, key: str, value: Any) -> None:
        """Keep ``value`` for this reviewer's next session (WORKSPACE/tui/REVIEWER.json, written
        atomically); a read-only workspace simply forgets."""
        path = self._memory_path
        try:
            data = json.loads(path.read_text()) if path.exists() else {}
            data = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            data = {}
        data[key] = value
        try:
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, path)
        except OSError:
            pass

    def resolve(self, root: str, relative: str) -> Path:
        """An image's file: image paths are stored relative to their dataset's root."""
        return Path(root) / relative

    def workspace_file(self, relative: str) -> Path:
        """A file the workspace holds (masks), stored relative to the workspace."""
        path = Path(relative)
        return path if path.is_absolute() else self.workspace.root / path
