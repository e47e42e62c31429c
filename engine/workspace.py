"""The workspace folder: one place holding the database, config, masks, models, logs, exports.

``--workspace DIR`` / ``WORKBENCH_WORKSPACE`` / ``./workspace`` choose it. Images are referenced
where they lie; nothing is copied in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from engine.config import DEFAULT_CONFIG, Config, load_config
from engine.errors import WorkspaceError

ENV_VAR = "WORKBENCH_WORKSPACE"
DEFAULT_DIR = "workspace"
DB_NAME = "workbench.db"


def default_workspace_dir() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace; cheap to build, touches nothing until asked."""

    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    def masks_dir(self, run: str) -> Path:
        return self.root / "masks" / run

    def model_dir(self, run: str) -> Path:
        return self.root / "models" / run

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def job_log(self, job_id: int, stored: str | None) -> Path:
        """A job's log: where its runner wrote it. Runners before absolute paths stored the path
        relative to the directory they started in; such a log is looked up in ``logs/``."""
        if not stored:
            return self.logs_dir / f"job-{job_id}.log"
        path = Path(stored)
        return path if path.is_absolute() or path.exists() else self.logs_dir / path.name

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def synthetic_dir(self) -> Path:
        """Where `workbench demo` writes the synthetic world's files."""
        return self.root / "synthetic"

    @property
    def exists(self) -> bool:
        return self.db_path.is_file()

    def init(self) -> bool:
        """Create the folder, database and config (existing files are kept).

        :returns: True if the workspace was new
        :raises WorkspaceError: if the folder cannot be created
        """
        new = not self.db_path.exists()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for sub in ("masks", "models", "logs", "exports"):
                (self.root / sub).mkdir(exist_ok=True)
            if not self.config_path.exists():
                self.config_path.write_text(DEFAULT_CONFIG, encoding="utf-8")
        except OSError as exc:
            raise WorkspaceError(f"{self.root}: cannot create the workspace ({exc.strerror})") from exc
        from engine.store import connect

        connect(self.db_path, journal=self.config().journal).close()
        return new

    def open_db(self) -> sqlite_utils.Database:
        """Open the workspace's database (migrating it if needed).

        :raises WorkspaceError: if the workspace was never initialised
        """
        if not self.exists:
            raise WorkspaceError(
                f"{self.root}: no workspace here; run `workbench init --workspace {self.root}` first "
                f"(or set {ENV_VAR})"
            )
        from engine.store import connect

        return connect(self.db_path, journal=self.config().journal)

    def config(self) -> Config:
        return load_config(self.config_path)
