"""Experiments and runs: validate, queue, run in the foreground, list, cancel, retry, pause, logs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from altui.cli.app import (
    app,
    check_experiment,
    db_path,
    fail,
    fail_plain,
    open_store,
    out,
    queue_experiment,
    read_spec,
    tell,
    wide,
)
from altui.spec import SpecError
from altui.store import STATUSES, Store
from altui.tui.format import duration, status_text


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="An experiments.toml file.")]) -> None:
    """Check an experiment file and list the runs it expands to."""
    spec = read_spec(file)
    for exp in spec.experiments:
        out.print(f"{exp.name}: {len(exp.runs)} runs")
    out.print(f"{file}: OK")


class ProgressSink:
    """Rich progress bars for `altui run`: runs, rounds of the current run, epochs of its round."""

    def __init__(self, progress: Progress, rounds_task: int, epochs_task: int):
        self.progress, self.rounds_task, self.epochs_task = progress, rounds_task, epochs_task

    def log(self, message: str, level: str = "info") -> None:
        if level != "info":  # round summaries come from round_done; the store keeps every line
            self.progress.console.print(f"  {message}", style="yellow", highlight=False)

    def epoch_done(self, stats) -> None:
        self.progress.update(self.epochs_task, completed=stats.epoch, total=stats.epochs,
                             description=f"round {stats.round} epochs")

    def round_done(self, result, state) -> None:
        self.progress.update(self.rounds_task, completed=result.round + 1)
        self.progress.console.print(
            f"  round {result.round}: {result.n_labeled} labels, accuracy {result.accuracy:.4f}, "
            f"lambda {result.weight_decay:.4g}, effective channels {result.probes.effective_channels}"
            f"/{result.probes.total_channels}"
        )


@app.command()
def run(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="An experiments.toml file.")],
    name: Annotated[str, typer.Argument(help="The experiment to run.")],
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N (default: the experiment's).")] = None,
) -> None:
    """Run an experiment's runs one after another in the foreground. Ctrl-C cancels the current run
    and keeps its completed rounds; running the command again resumes it."""
    from altui import runner

    spec = read_spec(file)
    with open_store(ctx) as store:
        queue_experiment(store, spec, name)
        runs = store.runs(experiment=name)
        store.retry([r["id"] for r in runs if r["status"] in ("failed", "cancelled")])
        todo = [r for r in store.runs(experiment=name) if r["status"] == "queued"]
    if not todo:
        out.print(f"{name}: every run is already done or running (see `altui ls`)")
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=out) as progress:
        runs_task = progress.add_task("runs", total=len(todo))
        for r in todo:
            with open_store(ctx) as store:
                claimed = store.claim(device or "foreground", run_id=r["id"])
            if claimed is None:
                progress.console.print(f"{r['name']}: taken by a worker, skipped")
                progress.advance(runs_task)
                continue
            progress.console.print(f"[bold]{r['name']}[/bold]")
            rounds_task = progress.add_task("rounds", total=r["rounds_total"], completed=r["rounds_done"])
            epochs_task = progress.add_task("epochs", total=r["epochs_total"])
            sink = ProgressSink(progress, rounds_task, epochs_task)
            status = runner.execute(db_path(ctx), r["id"], device, observer=sink)
            progress.remove_task(rounds_task)
            progress.remove_task(epochs_task)
            progress.advance(runs_task)
            if status == "cancelled":
                progress.console.print(f"{r['name']}: cancelled; completed rounds are kept")
                raise typer.Exit(130)
            if status == "failed":
                with open_store(ctx) as store:
                    progress.console.print(f"[red]{r['name']}: failed[/red]\n{store.run(r['id'])['error']}")
    out.print(f"{name}: finished; results in {db_path(ctx)}")


def fmt(value: object, spec: str = "") -> str:
    return "" if value is None else format(value, spec)


LS_FIELDS = ("id", "name", "experiment", "method", "seed", "status", "round", "rounds", "accuracy", "weight_decay",
             "effective_channels", "eta_seconds", "slurm_job_id", "node")


def ls_row(run: dict, eta: float | None) -> dict:
    """A run as `altui ls --json` lists it (docs/cli.md)."""
    return {"id": run["id"], "name": run["name"], "experiment": run["experiment"], "method": run["method"],
            "seed": run["seed"], "status": run["status"], "round": run["rounds_done"], "rounds": run["rounds_total"],
            "accuracy": run["accuracy"], "weight_decay": run["weight_decay"],
            "effective_channels": run["effective_channels"],
            "eta_seconds": None if eta is None else round(eta, 1), "slurm_job_id": run.get("slurm_job_id"),
            "node": run.get("node")}


@app.command("ls")
def list_runs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    experiment: Annotated[str | None, typer.Option(help="Only this experiment's runs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list of objects (fields: docs/cli.md).")] = False,
) -> None:
    """List runs with status, round r/R, the last accuracy, λ_t, effective channels and ETA."""
    import json

    from altui.estimate import queue_finish
    from altui.worker import worker_status

    if status is not None and status not in STATUSES:
        fail_plain(f"unknown status {status!r}; allowed: {', '.join(STATUSES)}")
    with open_store(ctx) as store:
        check_experiment(store, experiment)
        everything = store.runs()
        throughput = store.measured_throughput()
    worker = worker_status(db_path(ctx))
    eta = queue_finish(everything, throughput, max(1, len((worker or {}).get("slots") or [])))
    rows = [r for r in everything if (status is None or r["status"] == status)
            and (experiment is None or r["experiment"] == experiment)]
    if as_json:
        out_json = json.dumps([ls_row(r, eta.get(r["id"], 0.0)) for r in rows], indent=2)
        tell(out_json)
        return
    slurm = any(r.get("slurm_job_id") for r in rows)
    table = Table(box=None, header_style="bold")
    columns = ["id", "name", "status", "round", "labeled", "accuracy", "lambda_t", "eff.ch", "ETA", "attempt"]
    for col in columns + (["job", "node"] if slurm else []):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["id"]), r["name"], status_text(r), f"{r['rounds_done']}/{r['rounds_total']}",
            fmt(r["n_labeled"]), fmt(r["accuracy"], ".4f"), fmt(r["weight_decay"], ".3g"),
            fmt(r["effective_channels"]), duration(eta.get(r["id"])), str(r["attempt"]),
            *([r.get("slurm_job_id") or "", r.get("node") or ""] if slurm else []),
        )
    wide.print(table if rows else f"no runs in {db_path(ctx)}")


def id_ranges(ids: list[int]) -> str:
    """[3, 4, 5, 9] -> "3-5, 9": queueing a sweep adds many consecutive ids."""
    parts: list[list[int]] = []
    for i in sorted(ids):
        if parts and i == parts[-1][1] + 1:
            parts[-1][1] = i
        else:
            parts.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in parts)


@app.command("queue")
def queue_runs(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="An experiments.toml file.")],
    names: Annotated[list[str] | None, typer.Argument(help="Experiments to queue (default: all).")] = None,
) -> None:
    """Queue experiments' runs for the worker. Runs already in the store are left as they are."""
    from altui.worker import worker_status

    spec = read_spec(file)
    names = names or [e.name for e in spec.experiments]
    for name in names:  # check every name before writing anything
        try:
            spec.get(name)
        except SpecError as e:
            fail(str(e))
    added = 0
    with open_store(ctx) as store:
        for name in names:
            ids, existing = queue_experiment(store, spec, name)
            added += len(ids)
            new = f"{len(ids)} new run(s)" + (f" (ids {id_ranges(ids)})" if ids else "")
            tell(f"{name}: {new}, {existing} already in the store")
    if added and worker_status(db_path(ctx)) is None:
        tell("no worker is running: start one with `altui worker start`")


def change_runs(ctx: typer.Context, refs: list[str], change: str, experiment: str | None,
                status: str | None) -> None:
    """Cancel or retry runs by id or name, or every run of an experiment and/or status, saying for
    each whether it changed."""
    allowed = ("queued", "running") if change == "cancel" else ("failed", "cancelled")
    if refs and (experiment or status):
        fail_plain(f"{change}: give run ids or names, or --experiment/--status, not both")
    if not refs and not (experiment or status):
        fail_plain(f"{change}: give run ids or names, or --experiment NAME and/or --status STATUS")
    if status is not None and status not in allowed:
        fail_plain(f"{change} --status {status!r}: allowed: {', '.join(allowed)}")
    with open_store(ctx) as store:
        if refs:
            ids = store.resolve(refs)
        else:
            check_experiment(store, experiment)
            ids = store.select_runs(experiment, [status] if status else allowed)
            if not ids:
                where = f" of {experiment}" if experiment else ""
                tell(f"no {status or ' or '.join(allowed)} runs{where}: nothing to {change}")
                return
        changed = store.cancel(ids) if change == "cancel" else store.retry(ids)
        done = "cancelled" if change == "cancel" else "queued again"
        for rid in ids:
            r = store.run(rid)
            note = done if rid in changed else f"not changed: it is {r['status']}"
            tell(f"{rid} {r['name']}: {note}")


RUNS_ARGUMENT = typer.Argument(help="Run ids or names (or use --experiment / --status).", show_default=False)


@app.command()
def cancel(
    ctx: typer.Context,
    runs: Annotated[list[str] | None, RUNS_ARGUMENT] = None,
    experiment: Annotated[str | None, typer.Option(help="Every queued or running run of this experiment.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs with this status: queued or running.")] = None,
) -> None:
    """Cancel queued or running runs; a running one stops within seconds and keeps its rounds."""
    change_runs(ctx, runs or [], "cancel", experiment, status)


@app.command()
def retry(
    ctx: typer.Context,
    runs: Annotated[list[str] | None, RUNS_ARGUMENT] = None,
    experiment: Annotated[str | None, typer.Option(help="Every failed or cancelled run of this experiment.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs with this status: failed or cancelled.")] = None,
) -> None:
    """Queue failed or cancelled runs again; they resume after their last completed round."""
    change_runs(ctx, runs or [], "retry", experiment, status)


@app.command()
def pause(ctx: typer.Context) -> None:
    """Pause the queue: the worker starts no new run; running runs go on."""
    with open_store(ctx) as store:
        store.set_paused(True)
    tell("queue paused (running runs go on); `altui resume` resumes it")


@app.command()
def resume(ctx: typer.Context) -> None:
    """Resume the queue."""
    with open_store(ctx) as store:
        store.set_paused(False)
    tell("queue resumed")


def print_events(store: Store, run_id: int, after: int) -> int:
    """Print a run's events after event id `after`; returns the last id printed."""
    for e in store.events(run_id, after=after, limit=100_000):
        level = "" if e["level"] == "info" else f"{e['level'].upper()} "
        tell(f"{e['at'][:19].replace('T', ' ')} {level}{e['message']}")
        after = e["id"]
    return after


@app.command()
def logs(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="A run id or name.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")] = False,
) -> None:
    """A run's log: its events (rounds, recoveries, errors). Its process output is in
    <db folder>/<run id>/output.log."""
    import time

    with open_store(ctx) as store:
        run_id = store.resolve([run])[0]
        last = print_events(store, run_id, 0)
        try:
            while follow and store.run(run_id)["status"] in ("queued", "running"):
                time.sleep(1.0)
                last = print_events(store, run_id, last)
            if follow:
                time.sleep(0.5)  # lines logged just after the run's end
                print_events(store, run_id, last)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        r = store.run(run_id)
        tell(f"run {run_id} {r['name']}: {r['status']}")
        if r["status"] == "failed" and r["error"]:
            tell(r["error"])
