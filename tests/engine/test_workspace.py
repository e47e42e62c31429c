"""Workspace paths."""

from __future__ import annotations

from pathlib import Path

from engine.workspace import Workspace


def test_job_log_is_found_whatever_directory_its_runner_started_in(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace(tmp_path / "ws")
    ws.init()
    assert ws.job_log(3, None) == ws.logs_dir / "job-3.log"
    absolute = str(tmp_path / "elsewhere" / "job-3.log")
    assert ws.job_log(3, absolute) == Path(absolute)
    monkeypatch.chdir(tmp_path / "ws")  # an older runner stored "workspace/logs/job-3.log" relative to its cwd
    assert ws.job_log(3, "workspace/logs/job-3.log") == ws.logs_dir / "job-3.log"
    (tmp_path / "ws" / "here.log").write_text("x")
    assert ws.job_log(3, "here.log") == Path("here.log")
