"""The dashboard: `altui ui` and `altui demo` (docs/dashboard.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from altui.cli.app import EXPERIMENTS_FILE, app, db_path, fail, open_store, out, queue_experiment, read_spec


@app.command("ui")
def ui(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option(help="The experiments file to queue from.")] = EXPERIMENTS_FILE,
) -> None:
    """Open the dashboard (needs a terminal; same as `altui` alone). See docs/dashboard.md."""
    from altui.tui.app import run_ui

    run_ui(db_path(ctx), file)


@app.command()
def demo(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option(help="The experiments file.")] = EXPERIMENTS_FILE,
    experiment: Annotated[str, typer.Option(help="The experiment to queue.")] = "digits-demo",
) -> None:
    """Queue the offline digits demo, start a worker if none runs, and open the dashboard."""
    from altui.execution.daemon import WorkerError, start_worker, worker_status
    from altui.tui.app import require_terminal, run_ui

    require_terminal()  # before the store is changed: without a terminal the demo queues nothing
    spec = read_spec(file)
    with open_store(ctx, create=True) as store:
        ids, existing = queue_experiment(store, spec, experiment)
    out.print(f"{experiment}: queued {len(ids)} new run(s), {existing} already in {db_path(ctx)}",
              highlight=False)
    status = worker_status(db_path(ctx))
    if status is None:
        try:
            start_worker(db_path(ctx))
        except WorkerError as e:
            fail(str(e))
        status = worker_status(db_path(ctx)) or {}
        out.print(f"started a worker (pid {status.get('pid')}); log: {status.get('log')}", highlight=False)
    else:
        out.print(f"a worker is already running (pid {status['pid']})", highlight=False)
    out.print("opening the dashboard; quitting it (q) leaves the runs going", highlight=False)
    run_ui(db_path(ctx), file)
