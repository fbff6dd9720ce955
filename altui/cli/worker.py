"""The background worker: start, stop, status (docs/worker.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from altui.cli.app import app, db_path, fail, open_store, tell

worker_app = typer.Typer(help="The background worker that runs queued runs (docs/worker.md).",
                         no_args_is_help=True)
app.add_typer(worker_app, name="worker")


SLURM = "Slurm executor (saved for the next start; docs/worker.md)"


@worker_app.command("start")
def worker_start(
    ctx: typer.Context,
    gpus: Annotated[str, typer.Option(help="auto (visible GPUs, else the CPU), cpu, or ids: 0,1")] = "auto",
    slots_per_gpu: Annotated[str, typer.Option(
        help="Runs at once per GPU (or on the CPU): auto (from free memory, the queued models and the cores) or N."
    )] = "auto",
    max_attempts: Annotated[int, typer.Option(min=1, help="Starts of a run before a crash fails it.")] = 3,
    foreground: Annotated[bool, typer.Option("--foreground", help="Serve in this terminal.")] = False,
    exit_when_empty: Annotated[bool, typer.Option(
        "--exit-when-empty", help="Stop once no run is queued or running (e.g. the head as an sbatch job).")] = False,
    executor: Annotated[str | None, typer.Option(
        help="local (subprocesses here) or slurm (one Slurm job per run); default: the last start's.")] = None,
    max_jobs: Annotated[int | None, typer.Option(
        min=1, help="Slurm jobs in flight at most (default 8).", rich_help_panel=SLURM)] = None,
    partition: Annotated[str | None, typer.Option(help="sbatch --partition.", rich_help_panel=SLURM)] = None,
    time: Annotated[str | None, typer.Option(
        help="Time limit per job: minutes, hours:minutes:seconds or days-hours:minutes:seconds.",
        rich_help_panel=SLURM)] = None,
    gpus_per_job: Annotated[int | None, typer.Option(
        min=0, help="GPUs per job (default 1; 0: CPU jobs).", rich_help_panel=SLURM)] = None,
    cpus_per_job: Annotated[int | None, typer.Option(
        min=1, help="sbatch --cpus-per-task.", rich_help_panel=SLURM)] = None,
    mem: Annotated[str | None, typer.Option(help="sbatch --mem, e.g. 16G.", rich_help_panel=SLURM)] = None,
    account: Annotated[str | None, typer.Option(help="sbatch --account.", rich_help_panel=SLURM)] = None,
    qos: Annotated[str | None, typer.Option(help="sbatch --qos.", rich_help_panel=SLURM)] = None,
    constraint: Annotated[str | None, typer.Option(help="sbatch --constraint.", rich_help_panel=SLURM)] = None,
    slurm_arg: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE passed to submitit (repeatable); replaces the saved list.", rich_help_panel=SLURM)] = None,
) -> None:
    """Start the worker in the background (it outlives the terminal and SSH); no-op if one runs."""
    from altui.execution.daemon import WorkerError, start_worker, worker_status

    db = db_path(ctx)
    slurm = {"max_jobs": max_jobs, "partition": partition, "time": time, "gpus_per_job": gpus_per_job,
             "cpus_per_job": cpus_per_job, "mem": mem, "account": account, "qos": qos, "constraint": constraint,
             "slurm_args": slurm_arg}
    running = worker_status(db)
    if running is None and foreground:
        with open_store(ctx) as store:
            slurm_jobs = (executor or store.settings().get("executor")) == "slurm"
        tell(f"serving {db} in the foreground; Ctrl-C stops the worker and "
             + ("leaves its Slurm jobs running" if slurm_jobs else "requeues its runs"))
    try:
        started = running is None and start_worker(db, gpus, slots_per_gpu, not foreground, max_attempts,
                                                   executor, slurm, exit_when_empty)
    except WorkerError as e:
        fail(str(e))
    status = worker_status(db) if running is None else running
    if not started:
        tell(f"a worker is already running for {db} (pid {status['pid'] if status else '?'})"
             + (f", and it serves no store: {status['store_changed']}" if status and status["store_changed"] else ""))
    elif not foreground:
        via = f"; Slurm executor: {status['slurm']}" if status and status["slurm"] else ""
        tell(f"worker started (pid {status['pid'] if status else '?'}){via}; log: {db.parent / 'worker.log'}")


@worker_app.command("stop")
def worker_stop(ctx: typer.Context) -> None:
    """Stop the worker. Its runs are requeued and resume from their last round at the next start
    (with the Slurm executor, its jobs go on and the next start re-attaches to them)."""
    from altui.execution.daemon import WorkerError, stop_worker, worker_status

    status = worker_status(db_path(ctx))
    if status is None:
        tell(f"no worker is running for {db_path(ctx)}")
        return
    slurm = status["executor"] == "slurm"
    with open_store(ctx) as store:
        running = store.select_runs(statuses=["running"])
    tell(f"stopping the worker (pid {status['pid']})" + (" and its runs ..." if running and not slurm else " ..."))
    try:
        stop_worker(db_path(ctx))
    except WorkerError as e:
        fail(str(e))
    if slurm:
        tell("worker stopped; its Slurm jobs go on, and the next `altui worker start` re-attaches to them")
    elif running:
        tell(f"worker stopped; its {len(running)} running run(s) are queued again and resume after their last "
             "round when a worker starts")
    else:
        tell("worker stopped; no run was running")


@worker_app.command("status")
def worker_show(ctx: typer.Context) -> None:
    """Whether a worker serves the store: pid, heartbeat, slots, queue."""
    from datetime import datetime, timezone

    from altui.execution.daemon import worker_status
    from altui.store import parse_time

    status = worker_status(db_path(ctx))
    if status and status["store_changed"]:  # said first: the store may be gone (never created here)
        tell(f"worker pid {status['pid']} serves no store: {status['store_changed']}")
    with open_store(ctx, read_only=True) as store:
        running, queued = store.runs(status="running"), store.runs(status="queued")
        reason = store.pause_reason()
    pending = sum(r["slurm_job_id"] is not None for r in queued)  # queued with a job: pending in Slurm
    in_slurm = f" ({pending} pending in Slurm)" if pending else ""
    queue = f"queue: {len(running)} running, {len(queued)} queued{in_slurm}" + (
        f" (paused: {reason})" if reason else "")
    if status is None or status["store_changed"]:
        tell(f"{'no' if status is None else 'no other'} worker is running for {db_path(ctx)}; {queue}")
        return
    beat = parse_time(status["heartbeat"])
    age = f"{(datetime.now(timezone.utc) - beat).total_seconds():.0f} s ago" if beat else "not yet"
    chosen = f" ({status['slots_choice']})" if status["slots_choice"] else ""
    where = (f"executor: slurm, {status['slurm']}" if status["executor"] == "slurm"
             else f"slots: {', '.join(status['slots']) or 'starting'}{chosen}")
    tell(f"worker pid {status['pid']}, started {status['started']}, heartbeat {age}\n{where}\n{queue}\n"
         f"log: {status['log']}")
