"""Run one job kind in this process: ``workbench run KIND`` and the demo use it.

The job gets the same context it would get from the durable runner, with its log written to
``logs/<kind>-<time>.log`` in the workspace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from engine.jobs.base import JobContext, JobResult, Progress
from engine.jobs.registry import get_kind
from engine.workspace import Workspace


def run_foreground(
    workspace: Workspace,
    kind: str,
    params: Any,
    *,
    on_progress: Callable[[Progress], None] = lambda p: None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> JobResult:
    """Run ``kind`` with ``params`` (a params instance or a mapping of strings) to completion.

    :raises ParamsError: for invalid params, before anything runs
    :raises WorkbenchError: for problems the job reports
    """
    job_kind = get_kind(kind)
    if not isinstance(params, job_kind.params):
        params = job_kind.parse(params)
    db = workspace.open_db()
    workspace.logs_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    log = logging.getLogger(f"workbench.job.{kind}.{stamp}")
    log.setLevel(logging.INFO)
    log.propagate = False
    handler = logging.FileHandler(workspace.logs_dir / f"{kind}-{stamp}.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    ctx = JobContext(workspace=workspace, db=db, log=log, on_progress=on_progress, stop_requested=stop_requested)
    try:
        log.info("start %s %s", kind, params)
        result = job_kind.run(params, ctx)
        log.info("done: %s", result.message)
        return result
    except Exception as exc:
        log.error("failed: %s", exc, exc_info=True)
        raise
    finally:
        handler.close()
        log.removeHandler(handler)
        db.close()
