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


def slurm_overrides(partition: str | None, time: str | None, gpus: int | None, sbatch_arg: list[str] | None) -> dict[str, Any]:
    """Per-call Slurm resources, as stored on the job row."""
    out: dict[str, Any] = {}
    if partition:
        out["partition"] = partition
    if time:
        out["time"] = time
    if gpus is not None:
        if gpus < 0:
            raise WorkbenchError("--gpus: must be 0 or more")
        out["gpus"] = gpus
    if sbatch_arg:
        out["extra"] = list(sbatch_arg)
    return out


ExecutorOption = Annotated[str | None, typer.Option("--executor", help="local or slurm (default: config.toml's [executor] name).")]
PartitionOption = Annotated[str | None, typer.Option(help="Slurm partition for this job.")]
TimeOption = Annotated[str | None, typer.Option(help="Slurm time limit (minutes, or D-HH:MM:SS).")]
GpusOption = Annotated[int | None, typer.Option(help="Slurm GPUs (--gres=gpu:N) for this job.")]
SbatchOption = Annotated[list[str] | None, typer.Option("--sbatch-arg", help="An extra sbatch argument, e.g. --sbatch-arg=--exclusive (repeatable).")]


@jobs_app.command("submit")
@user_errors
def jobs_submit(
    kind: Annotated[str, typer.Argument(help="Job kind (see `workbench run`).")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="A parameter as key=value (repeatable).")] = None,
    after: Annotated[list[int] | None, typer.Option("--after", help="Run only after this job succeeded (repeatable).")] = None,
    no_runner: Annotated[bool, typer.Option("--no-runner", help="Do not start a runner (one is started if none is alive).")] = False,
    executor: ExecutorOption = None,
    partition: PartitionOption = None,
    time: TimeOption = None,
    gpus: GpusOption = None,
    sbatch_arg: SbatchOption = None,
) -> None:
    """Validate and queue a job; a detached runner is started if none serves the workspace."""
    from engine.jobs.queue import submit

    ws = require_workspace()
    try:
        job_id = submit(ws, kind, parse_pairs(param), after=after or (), start_runner=not no_runner, executor=executor,
                        resources=slurm_overrides(partition, time, gpus, sbatch_arg))
    except ValueError as exc:
        raise WorkbenchError(str(exc)) from None
    where = f" on {executor}" if executor else ""
    typer.echo(f"queued job #{job_id} ({kind}){where}" + (f" after #{', #'.join(map(str, after))}" if after else ""))


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

    from engine.store.connection import is_read_only

    ws = State.workspace
    db = ws.open_db()
    if not runner_alive(ws) and not is_read_only(ws.db_path):  # a read-only workspace is only listed
        q.mark_stale(db, STALE_AFTER)
        if q.active_jobs(db, "slurm"):  # someone must follow Slurm's jobs
            from engine.jobs.runner import ensure_runner

            ensure_runner(ws)
    jobs = q.list_jobs(db, limit=limit, status=status)
    if not jobs:
        typer.echo("no jobs yet; queue one with `workbench jobs submit KIND -p key=value`")
        return
    typer.echo(f"runner: {'running' if runner_alive(ws) else 'not running (started by the next submit, or `workbench worker`)'}")
    typer.echo(f"{'id':>4} {'kind':<18} {'status':<11} {'where':<16} {'progress':>8}  message")
    for j in jobs:
        deps = f" (after #{', #'.join(map(str, j.after))})" if j.after and j.status == "queued" else ""
        eta = _eta(j)
        typer.echo(f"{j.id:>4} {j.kind:<18} {j.status:<11} {j.where:<16} {j.progress * 100:>7.0f}%  {j.message[:70]}{deps}{'  ' + eta if eta else ''}")


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
    typer.echo(f"  process   pid {job.pid or '-'} on {job.host or '-'}, heartbeat {job.heartbeat_at or '-'}"
               + (f", {job.processes} processes" if job.processes > 1 else ""))
    external = f", Slurm job {job.external_id}" if job.executor == "slurm" and job.external_id else ""
    typer.echo(f"  executor  {job.executor}{external}" + (f"  resources {json.dumps(job.resources, sort_keys=True)}" if job.resources else ""))
    waiting = job.status == "queued" and job.gpus_needed
    typer.echo(f"  gpus: {job.gpus or (f'{job.gpus_needed} asked, none assigned yet' if waiting else 'none')}")
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
    executor: Annotated[str | None, typer.Option("--executor", help="Run it on local or slurm (default: where it ran).")] = None,
    partition: PartitionOption = None,
    time: TimeOption = None,
    gpus: GpusOption = None,
    sbatch_arg: SbatchOption = None,
) -> None:
    """Queue a finished job again with the same params (training resumes from its checkpoint);
    the Slurm options change its resources for this attempt."""
    from engine.config import EXECUTORS
    from engine.jobs.runner import ensure_runner
    from engine.store import jobs as q

    if executor is not None and executor not in EXECUTORS:
        raise WorkbenchError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    ws = State.workspace
    db = ws.open_db()
    try:
        new = q.retry_job(db, job_id, executor=executor, resources=slurm_overrides(partition, time, gpus, sbatch_arg))
    except ValueError as exc:
        raise WorkbenchError(str(exc)) from None
    if not no_runner:
        ensure_runner(ws)
    job = q.get_job(db, new)
    typer.echo(f"queued job #{new}, a retry of #{job_id}" + (f", on {job.executor}" if job else ""))


@jobs_app.command("exec", hidden=True)
@user_errors
def jobs_exec(job_id: Annotated[int, typer.Argument(help="Job id.")]) -> None:
    """Run one job in this process (what Slurm and launchers run): a queued job, or the one this
    process was launched for; any other status is refused and nothing changes (exit code 2)."""
    from engine.jobs.child import execute

    raise typer.Exit(execute(State.workspace, job_id))


@app.command()
@user_errors
def worker(
    exit_when_idle: Annotated[bool, typer.Option(help="Stop after a minute with nothing to do (how submits start it).")] = False,
) -> None:
    """Run the job runner in the foreground (one per workspace)."""
    from engine.jobs.runner import Runner, RunnerBusy

    ws = require_workspace()
    runner = Runner(ws, cpu_jobs=ws.config().cpu_jobs, idle_exit=60.0 if exit_when_idle else None)
    pool = f"GPUs {', '.join(runner.gpu_pool)}" if runner.gpu_pool else "no GPUs"
    typer.echo(f"runner for {ws.root.resolve()}: {runner.cpu_jobs} CPU slot(s), {pool}; Ctrl-C stops it "
               "(local jobs are cancelled; Slurm's keep running)")
    try:
        started = runner.serve()
    except RunnerBusy as exc:
        raise WorkbenchError(str(exc)) from None
    typer.echo(f"runner stopped after starting {started} jobs")

