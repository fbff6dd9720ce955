"""The `altui` command. Every command but `ui` (and `demo`, which opens it) works without a TTY."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from altui.spec import SpecError, SpecFile, load_spec
from altui.store import Store, StoreError

DEFAULT_DB = Path("runs") / "altui.db"

app = typer.Typer(
    help="Active learning with weight-decay scheduling and distillation: queue, run, watch, export.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


def db_path(ctx: typer.Context) -> Path:
    return ctx.obj["db"]


def open_store(ctx: typer.Context) -> Store:
    return Store(db_path(ctx))


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def read_spec(file: Path) -> SpecFile:
    """Load and validate an experiment file; on any problem print every issue and exit 1."""
    try:
        return load_spec(file)
    except SpecError as e:
        err.print(str(e), highlight=False, markup=False, soft_wrap=True)
        err.print(f"{len(e.issues)} problem(s) in {file}; nothing was written.", style="red")
        raise typer.Exit(1) from None


def queue_experiment(store: Store, spec: SpecFile, name: str) -> tuple[list[int], int]:
    """Enqueue one experiment's runs; returns the new run ids and how many were already there."""
    try:
        exp = spec.get(name)
    except SpecError as e:
        fail(str(e))
    ids = store.enqueue(exp.name, spec.path, exp.table, [
        {"name": r.name, "method": r.method, "seed": r.seed, "sweep": r.sweep, "config": r.config.to_dict()}
        for r in exp.runs
    ])
    return ids, len(exp.runs) - len(ids)


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    db: Annotated[Optional[Path], typer.Option(
        "--db", envvar="ALTUI_DB", help="The SQLite store (default runs/altui.db under the working directory)."
    )] = None,
) -> None:
    ctx.obj = {"db": db or DEFAULT_DB}
    if ctx.invoked_subcommand is None:
        from altui.tui.app import run_ui

        run_ui(ctx.obj["db"], Path("experiments.toml"))


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
        self.progress.console.print(f"  {message}", style="yellow" if level != "info" else "dim")

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
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda or cuda:N (default: the experiment's).")] = None,
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


@app.command("ls")
def list_runs(
    ctx: typer.Context,
    status: Annotated[Optional[str], typer.Option(help="Only runs with this status.")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="Only this experiment's runs.")] = None,
) -> None:
    """List runs with status, round r/R and the last accuracy."""
    with open_store(ctx) as store:
        rows = store.runs(status=status, experiment=experiment)
    table = Table(box=None, header_style="bold")
    for col in ("id", "name", "status", "round", "labeled", "accuracy", "lambda_t", "eff.ch", "attempt"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["id"]), r["name"], r["status"], f"{r['rounds_done']}/{r['rounds_total']}",
            fmt(r["n_labeled"]), fmt(r["accuracy"], ".4f"), fmt(r["weight_decay"], ".3g"),
            fmt(r["effective_channels"]), str(r["attempt"]),
        )
    out.print(table if rows else f"no runs in {db_path(ctx)}")


# Commands of the worker, dashboard, report and benchmark modules register below.
# <commands:worker>
# </commands:worker>
# <commands:ui>
# </commands:ui>
# <commands:report>
# </commands:report>
# <commands:bench>
# </commands:bench>


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app()
    except StoreError as e:
        err.print(f"[red]error:[/red] {e}")
        sys.exit(1)
