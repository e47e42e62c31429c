"""Shared fixtures: throwaway databases and workspaces, the shared real samples, helpers."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine.store import connect  # noqa: E402
from engine.workspace import Workspace  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """java/gpu tests run where the machine can; skip with the reason elsewhere."""
    has_java = shutil.which("java") is not None
    has_gpu = False
    if any("gpu" in item.keywords for item in items):
        try:
            import torch

            has_gpu = torch.cuda.is_available()
        except ImportError:
            has_gpu = False
    slurm_problem = _slurm_problem() if any("slurm" in item.keywords for item in items) else None
    for item in items:
        if "java" in item.keywords and not has_java:
            item.add_marker(pytest.mark.skip(reason="needs Java (java not on PATH)"))
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "slurm" in item.keywords and slurm_problem:
            item.add_marker(pytest.mark.skip(reason=slurm_problem))


def _slurm_problem() -> str | None:
    """Why the Slurm tests cannot run here, or None when a Slurm answers with an idle node."""
    import subprocess

    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "needs Slurm (sinfo/sbatch not found; `scripts/slurm-up` installs and starts one as root)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"needs a running Slurm (sinfo failed: {exc})"
    if out.returncode != 0 or not any(s.strip() in ("idle", "mixed", "allocated") for s in out.stdout.splitlines()):
        return f"needs a running Slurm with a node up (sinfo: {(out.stderr or out.stdout).strip()[:120] or 'no nodes'}); run scripts/slurm-up"
    return None


@pytest.fixture
def shared_data() -> Path:
    """The real dataset samples in ../shared/data; skipped when absent (a fresh clone)."""
    if not SHARED.is_dir():
        pytest.skip(f"real sample data not found at {SHARED} (../shared is absent)")
    return SHARED


@pytest.fixture
def fresh_db() -> Iterator[sqlite_utils.Database]:
    """An in-memory database with every migration applied."""
    db = connect(":memory:")
    yield db
    db.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """An initialised, empty workspace."""
    ws = Workspace(tmp_path / "ws")
    ws.init()
    return ws


def db_fingerprint(ws: Workspace) -> str:
    """A hash of every row of the workspace database, to prove a failed command changed nothing."""
    db = ws.open_db()
    try:
        return hashlib.sha256("\n".join(db.conn.iterdump()).encode()).hexdigest()
    finally:
        db.close()


def fails_unchanged(ws: Workspace, kind: str, params: dict[str, object], match: str) -> str:
    """Run a job kind that must fail: its message contains ``match``, is one line, and the
    database is exactly as before. Returns the message."""
    from engine.jobs.foreground import run_foreground

    before = db_fingerprint(ws)
    with pytest.raises(Exception) as err:
        run_foreground(ws, kind, params)
    message = str(err.value)
    assert match in message, message
    assert "\n" not in message, message
    assert db_fingerprint(ws) == before
    return message
