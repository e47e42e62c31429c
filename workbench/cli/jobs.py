"""The job queue's commands (submit, list, show, logs, cancel, retry, exec) and the runner."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from engine.errors import WorkbenchError
from workbench.cli.common import (
    State,
    app,
    jobs_app,
    parse_pairs,
    require_workspace,
    user_errors,
)


@jobs_app.command("submit")
@user_errors
def jobs_submit(
    kind: Annotated[str, typer.Argument(help="Job kind (see `workbench run`).")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="A parameter as key=value (repeatable).")] = None,
    after: Annotated[list[int] | None, typer.Option("--after", help="Run only after this job succeeded (repeatable).")] = None,
    no_runner: Annotated[bool, typer.Option("--no-runner", help="Do not start a runner (one is started if none is alive).")] = False,
) -> None:
    """Validate and queue a job; a detached runner is started if none serves the workspace."""
    from engine.jobs.queue import submit

    ws = require_workspace()
    try:
        job_id = submit(ws, kind, parse_pairs(param), after=after or (), start_runner=not no_runner)
    except ValueError as exc:
        raise WorkbenchError(str(exc)) from None
    typer.echo(f"queued job #{job_id} ({kind})" + (f" after #{', #'.join(map(str, after))}" if after else ""))


def _eta(job: Any) -> str:
    left = job.time_left()
    return f"~{left} left" if left else ""


@jobs_app.command("list")
@user_errors
def jobs_list(
    limit: Annotated[int, typer.Option(help="Newest jobs to show.")] = 30,
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
) -> None:
    """The queue and its history: status, progress, ETA, message."""
    from engine.jobs.runner import STALE_AFTER, runner_alive
    from engine.store import jobs as q

    ws = State.workspace
    db = ws.open_db()
    if not runner_alive(ws):
        q.mark_stale(db, STALE_AFTER)
    jobs = q.list_jobs(db, limit=limit, status=status)
    if not jobs:
        typer.echo("no jobs yet; queue one with `workbench jobs submit KIND -p key=value`")
        return
    typer.echo(f"runner: {'running' if runner_alive(ws) else 'not running (started by the next submit, or `workbench worker`)'}")
    typer.echo(f"{'id':>4} {'kind':<18} {'status':<11} {'progress':>8}  message")
    for j in jobs:
        deps = f" (after #{', #'.join(map(str, j.after))})" if j.after and j.status == "queued" else ""
        eta = _eta(j)
        typer.echo(f"{j.id:>4} {j.kind:<18} {j.status:<11} {j.progress * 100:>7.0f}%  {j.message[:70]}{deps}{'  ' + eta if eta else ''}")


@jobs_app.command("show")
@user_errors
def jobs_show(job_id: Annotated[int, typer.Argument(help="Job id.")]) -> None:
    """One job: params, status, times, pid and host, log file, error, last progress events."""
    import json

    from engine.store import jobs as q

    db = State.workspace.open_db()
    job = q.get_job(db, job_id)
    if job is None:
        raise WorkbenchError(f"no job #{job_id}")
    typer.echo(f"job #{job.id}  {job.kind}  {job.status}  attempt {job.attempt}" + (f" (retry of #{job.retry_of})" if job.retry_of else ""))
    typer.echo(f"  params    {json.dumps(job.params, sort_keys=True)}")
    if job.after:
        typer.echo(f"  after     {', '.join(f'#{a}' for a in job.after)}")
    typer.echo(f"  progress  {job.progress * 100:.0f}%  {job.message}  {_eta(job)}")
    typer.echo(f"  created   {job.created_at}  started {job.started_at or '-'}  finished {job.finished_at or '-'}")
    typer.echo(f"  process   pid {job.pid or '-'} on {job.host or '-'}, heartbeat {job.heartbeat_at or '-'}")
    typer.echo(f"  log       {job.log_path or '-'}")
    if job.error:
        typer.echo("  error     " + job.error.strip().splitlines()[-1])
    curve = q.job_events(db, job_id, with_metrics_only=True)
    if curve:
        last = curve[-1]
        typer.echo(f"  metrics   {len(curve)} points; last at step {last['step']}: " + "  ".join(f"{k} {v:.4g}" for k, v in last["metrics"].items()))


@jobs_app.command("logs")
@user_errors
def jobs_logs(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
) -> None:
    """Print a job's log (with -f, follow it while the job runs)."""
    import time

    from engine.store import jobs as q

    db = State.workspace.open_db()
    job = q.get_job(db, job_id)
    if job is None:
        raise WorkbenchError(f"no job #{job_id}")
    path = State.workspace.job_log(job_id, job.log_path)
    position = 0
    while True:
        if path.exists():
            with path.open("r", encoding="utf-8", errors="replace") as fh:
                fh.seek(position)
                chunk = fh.read()
                position = fh.tell()
            if chunk:
                typer.echo(chunk, nl=False)
        job = q.get_job(db, job_id)
        if not follow or job is None or job.status not in ("queued", "running"):
            break
        time.sleep(0.5)
    if job is not None and not path.exists():
        typer.echo(f"job #{job_id} is {job.status}; it has no log yet")


@jobs_app.command("cancel")
@user_errors
def jobs_cancel(job_id: Annotated[int, typer.Argument(help="Job id.")]) -> None:
    """Cancel a job: a queued one leaves the queue; a running one is stopped (SIGTERM, then SIGKILL)."""
    import time

    from engine.store import jobs as q

    db = State.workspace.open_db()
    try:
        state = q.request_cancel(db, job_id)
    except ValueError as exc:
        raise WorkbenchError(str(exc)) from None
    if state == "cancelling":
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            job = q.get_job(db, job_id)
            if job is not None and job.status != "running":
                state = job.status
                break
            time.sleep(0.1)
    typer.echo(f"job #{job_id}: {state}")


@jobs_app.command("retry")
@user_errors
def jobs_retry(
    job_id: Annotated[int, typer.Argument(help="Job id of a finished job.")],
    no_runner: Annotated[bool, typer.Option("--no-runner", help="Do not start a runner.")] = False,
) -> None:
    """Queue a finished job again with the same params (training resumes from its checkpoint)."""
    from engine.jobs.runner import ensure_runner
    from engine.store import jobs as q

    ws = State.workspace
    db = ws.open_db()
    try:
        new = q.retry_job(db, job_id)
    except ValueError as exc:
        raise WorkbenchError(str(exc)) from None
    if not no_runner:
        ensure_runner(ws)
    typer.echo(f"queued job #{new}, a retry of #{job_id}")


@jobs_app.command("exec", hidden=True)
@user_errors
def jobs_exec(job_id: Annotated[int, typer.Argument(help="Job id.")]) -> None:
    """Run one queued job in this process (what a cluster scheduler or launcher runs)."""
    from engine.jobs.child import execute

    raise typer.Exit(execute(State.workspace, job_id))


@app.command()
@user_errors
def worker(
    exit_when_idle: Annotated[bool, typer.Option(help="Stop after a minute with nothing to do (how submits start it).")] = False,
) -> None:
    """Run the job runner in the foreground (one per workspace)."""
    from engine.jobs.runner import Runner, RunnerBusy, gpu_count

    ws = require_workspace()
    runner = Runner(ws, cpu_jobs=ws.config().cpu_jobs, gpus=gpu_count(), idle_exit=60.0 if exit_when_idle else None)
    typer.echo(f"runner for {ws.root.resolve()}: {runner.cpu_jobs} CPU slot(s), {runner.gpus} GPU(s); Ctrl-C stops it (running jobs are cancelled)")
    try:
        started = runner.serve()
    except RunnerBusy as exc:
        raise WorkbenchError(str(exc)) from None
    typer.echo(f"runner stopped after starting {started} jobs")

