"""What every screen of the TUI shares: the workspace, who is reviewing, how images are drawn,
and a database connection per thread (screens read in thread workers; sqlite3 connections must
not be used by two threads at once).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection (migrations already ran when the app was made)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.workspace.db_path, migrate=False)
            self._local.db = db
        return db

    def resolve(self, root: str, relative: str) -> Path:
        """An image's file: image paths are stored relative to their dataset's root."""
        return Path(root) / relative

    def workspace_file(self, relative: str) -> Path:
        """A file the workspace holds (masks), stored relative to the workspace."""
        path = Path(relative)
        return path if path.is_absolute() else self.workspace.root / path
