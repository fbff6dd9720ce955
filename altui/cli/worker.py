"""The background worker: start, stop, status (docs/worker.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from altui.cli.app import app, db_path, fail, open_store, tell

worker_app = typer.Typer(help="The background worker that runs queued runs (docs/worker.md).",
                         no_args_is_help=True)
app.add_typer(worker_app, name="worker")


@worker_app.command("start")
def worker_start(
    ctx: typer.Context,
    gpus: Annotated[str, typer.Option(help="auto (visible GPUs, else the CPU), cpu, or ids: 0,1")] = "auto",
    slots_per_gpu: Annotated[str, typer.Option(
        help="Runs at once per GPU (or on the CPU): auto (from free memory, the queued models and the cores) or N."
    )] = "auto",
    max_attempts: Annotated[int, typer.Option(min=1, help="Starts of a run before a crash fails it.")] = 3,
    foreground: Annotated[bool, typer.Option("--foreground", help="Serve in this terminal.")] = False,
) -> None:
    """Start the worker in the background (it outlives the terminal and SSH); no-op if one runs."""
    from altui.worker import WorkerError, start_worker, worker_status

    db = db_path(ctx)
    running = worker_status(db)
    if running is None and foreground:
        tell(f"serving {db} in the foreground; Ctrl-C stops the worker and requeues its runs")
    try:
        started = running is None and start_worker(db, gpus, slots_per_gpu, not foreground, max_attempts)
    except WorkerError as e:
        fail(str(e))
    status = worker_status(db) if running is None else running
    if not started:
        tell(f"a worker is already running for {db} (pid {status['pid'] if status else '?'})")
    elif not foreground:
        tell(f"worker started (pid {status['pid'] if status else '?'}); log: {db.parent / 'worker.log'}")


@worker_app.command("stop")
def worker_stop(ctx: typer.Context) -> None:
    """Stop the worker. Its runs are requeued and resume from their last round at the next start."""
    from altui.worker import WorkerError, stop_worker, worker_status

    status = worker_status(db_path(ctx))
    if status is None:
        tell(f"no worker is running for {db_path(ctx)}")
        return
    tell(f"stopping the worker (pid {status['pid']}) and its runs ...")
    try:
        stop_worker(db_path(ctx))
    except WorkerError as e:
        fail(str(e))
    tell("worker stopped; its runs are queued and resume when a worker starts")


@worker_app.command("status")
def worker_show(ctx: typer.Context) -> None:
    """Whether a worker serves the store: pid, heartbeat, slots, queue."""
    from datetime import datetime, timezone

    from altui.store import parse_time
    from altui.worker import worker_status

    status = worker_status(db_path(ctx))
    with open_store(ctx) as store:
        counts = {s: len(store.runs(status=s)) for s in ("running", "queued")}
    queue = f"queue: {counts['running']} running, {counts['queued']} queued" + (
        " (paused)" if status and status["paused"] else "")
    if status is None:
        tell(f"no worker is running for {db_path(ctx)}; {queue}")
        return
    beat = parse_time(status["heartbeat"])
    age = f"{(datetime.now(timezone.utc) - beat).total_seconds():.0f} s ago" if beat else "not yet"
    tell(f"worker pid {status['pid']}, started {status['started']}, heartbeat {age}\n"
         f"slots: {', '.join(status['slots']) or 'starting'}"
         + (f" ({status['slots_choice']})" if status.get("slots_choice") else "")
         + f"\n{queue}\nlog: {status['log']}")
