"""The `altui` command. Every command but `ui` (and `demo`, which opens it) works without a TTY."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

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
# Piped output (altui ls | grep ...) keeps whole run names instead of cutting them to 80 columns.
wide = out if out.is_terminal else Console(width=240)


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
    from altui.tui.backend import enqueue  # shared with the dashboard; imports no UI

    try:
        return enqueue(store, spec, name)
    except SpecError as e:
        fail(str(e))


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    db: Annotated[Path | None, typer.Option(
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


@app.command("ls")
def list_runs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    experiment: Annotated[str | None, typer.Option(help="Only this experiment's runs.")] = None,
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
    wide.print(table if rows else f"no runs in {db_path(ctx)}")


# Commands of the worker, dashboard, report and benchmark modules register below.
# <commands:worker>
worker_app = typer.Typer(help="The background worker that runs queued runs (docs/worker.md).",
                         no_args_is_help=True)
app.add_typer(worker_app, name="worker")


def tell(text: str) -> None:
    """One message as it is: never wrapped (paths stay whole), no markup (names may hold brackets)."""
    out.print(text, markup=False, highlight=False, soft_wrap=True)


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


@worker_app.command("start")
def worker_start(
    ctx: typer.Context,
    gpus: Annotated[str, typer.Option(help="auto (visible GPUs, else the CPU), cpu, or ids: 0,1")] = "auto",
    slots_per_gpu: Annotated[int, typer.Option(min=1, help="Runs at once per GPU (or on the CPU).")] = 1,
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
         f"slots: {', '.join(status['slots']) or 'starting'}\n{queue}\nlog: {status['log']}")


def change_runs(ctx: typer.Context, refs: list[str], change: str) -> None:
    """Cancel or retry runs by id or name, saying for each whether it changed."""
    with open_store(ctx) as store:
        ids = store.resolve(refs)
        changed = store.cancel(ids) if change == "cancel" else store.retry(ids)
        done = "cancelled" if change == "cancel" else "queued again"
        for rid in ids:
            r = store.run(rid)
            note = done if rid in changed else f"not changed: it is {r['status']}"
            tell(f"{rid} {r['name']}: {note}")


@app.command()
def cancel(ctx: typer.Context, runs: Annotated[list[str], typer.Argument(help="Run ids or names.")]) -> None:
    """Cancel queued or running runs; a running one stops within seconds and keeps its rounds."""
    change_runs(ctx, runs, "cancel")


@app.command()
def retry(ctx: typer.Context, runs: Annotated[list[str], typer.Argument(help="Run ids or names.")]) -> None:
    """Queue failed or cancelled runs again; they resume after their last completed round."""
    change_runs(ctx, runs, "retry")


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
# </commands:worker>
# <commands:ui>
EXPERIMENTS_FILE = Path("experiments.toml")


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
    from altui.tui.app import run_ui
    from altui.worker import WorkerError, start_worker, worker_status

    spec = read_spec(file)
    with open_store(ctx) as store:
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
    out.print("opening the dashboard; quitting it (ctrl+q) leaves the runs going", highlight=False)
    run_ui(db_path(ctx), file)
# </commands:ui>
# <commands:report>
def fail_plain(message: str) -> None:
    """fail() with text that may hold brackets ("altui[report]", user input): no Rich markup."""
    from rich.markup import escape

    fail(escape(message))


def check_experiment(store: Store, name: str | None) -> None:
    if name is not None and store.experiment(name) is None:
        fail_plain(f"no experiment {name!r} in {store.path} (see `altui ls`)")


@app.command("export")
def export_table(
    ctx: typer.Context,
    format_: Annotated[str, typer.Option("--format", "-f", help="csv, json, jsonl, md or latex.")] = "csv",
    table: Annotated[str, typer.Option(
        "--table", "-t", help="runs, rounds, epochs, channels, picks, or summary (mean and 95% bootstrap "
                              "interval over seeds).")] = "summary",
    experiment: Annotated[str | None, typer.Option(help="Only this experiment's runs.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here, not to stdout.")] = None,
    interval: Annotated[str, typer.Option(
        help="Summary cells in md/latex: pm (mean ± half-width) or range (mean \\[lo, hi]).")] = "pm",
) -> None:
    """Export a table of the store (streamed for csv, json, jsonl). Formats: docs/export.md."""
    from altui import report

    for value, allowed, what in ((format_, report.FORMATS, "format"), (table, report.TABLES, "table"),
                                 (interval, report.INTERVALS, "interval")):
        if value not in allowed:
            fail_plain(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")
    with open_store(ctx) as store:
        check_experiment(store, experiment)
        if output is None:
            report.export(store, table, format_, sys.stdout, experiment, interval)
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8", newline="") as fp:
            count = report.export(store, table, format_, fp, experiment, interval)
    err.print(f"wrote {count} rows to {output}", highlight=False)


@app.command("plot")
def plot_curves(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(
        metavar="EXPERIMENT|RUN", help="An experiment, or a run id or name.")],
    metric: Annotated[str, typer.Option(help="accuracy, weight_decay or effective_channels.")] = "accuracy",
    out_file: Annotated[Path | None, typer.Option(
        "--out",  # "\\[": a bracket, not Rich markup
        help="Draw the paper-style figure into FILE.png, .svg or .pdf (needs altui\\[report]).",
    )] = None,
) -> None:
    """Plot a metric: one curve per method (mean over seeds) of an experiment, or one run's curve."""
    import shutil

    from altui import plotting

    if metric not in plotting.METRICS:
        fail_plain(f"unknown metric {metric!r}; allowed: {', '.join(plotting.METRICS)}")
    with open_store(ctx) as store:
        if store.experiment(target) is not None:
            series = plotting.experiment_series(store.result_rows(experiment=target), metric)
        else:
            run_id = store.resolve([target])[0]
            series = plotting.run_series(store.result_rows(run_id=run_id), metric)
    if not series:
        fail_plain(f"{target}: no round is recorded yet")
    info = plotting.METRICS[metric]
    title = f"{target}: {metric.replace('_', ' ')}"
    if out_file is None:
        size = shutil.get_terminal_size((100, 30))
        chart = plotting.render_text(series, title, info.xlabel, info.ylabel, width=size.columns,
                                     height=max(15, min(size.lines - 4, 30)), color=sys.stdout.isatty())
        sys.stdout.write(chart + "\n")
        return
    if out_file.suffix.lower() not in (".png", ".svg", ".pdf"):
        fail_plain(f"--out {out_file}: allowed: a .png, .svg or .pdf file")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        plotting.save_figure(series, out_file, title, info.xlabel, info.ylabel)
    except plotting.MatplotlibMissing as e:
        fail_plain(str(e))
    out.print(f"wrote {out_file}", highlight=False)


@app.command("report")
def write_report(
    ctx: typer.Context,
    experiment: Annotated[str, typer.Argument(help="The experiment to report.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write FILE.md (figures as PNG files beside it); default: stdout.")] = None,
) -> None:
    """A Markdown reproduction report: settings, summary table, figures, the paper's numbers."""
    from altui import report

    with open_store(ctx) as store:
        check_experiment(store, experiment)
        if output is not None:  # figures are written beside the report, before it
            output.parent.mkdir(parents=True, exist_ok=True)
        text = report.reproduction_report(store, experiment, output)
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    out.print(f"wrote {output}", highlight=False)
# </commands:report>
# <commands:bench>
@app.command()
def bench(
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seconds: Annotated[float, typer.Option(min=0.01, help="Seconds of the slower loop's timed block.")] = 2.0,
    repeats: Annotated[int, typer.Option(min=1, help="Timed blocks of each loop; the median counts.")] = 3,
    images: Annotated[int | None, typer.Option(min=1, help="Images per block, instead of --seconds.")] = None,
    workers: Annotated[int, typer.Option(min=0, help="The reference DataLoader's num_workers.")] = 0,
) -> None:
    """Images/s of altui's training and pool scoring against a per-sample DataLoader loop.

    See docs/benchmarks.md."""
    import torch

    from altui.al.config import ConfigError
    from altui.bench import describe_device, results_table, run_bench

    try:
        where = describe_device(device)
        results = run_bench(device, seconds, repeats, images, workers,
                            log=lambda m: err.print(f"  {m}", style="dim", highlight=False))
    except ConfigError as e:
        fail(str(e))
    out.print(f"altui bench: {where}, torch {torch.__version__}, reference DataLoader num_workers={workers}, "
              f"median of {repeats} blocks", highlight=False)
    out.print(results_table(results))
# </commands:bench>


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app()
    except StoreError as e:
        err.print(f"[red]error:[/red] {e}")
        sys.exit(1)
