"""Experiments and runs: validate, queue, run in the foreground, list, cancel, retry, pause, logs."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from altui.cli.app import (
    MaxRuns,
    app,
    check_experiment,
    db_path,
    fail,
    open_store,
    out,
    printable,
    queue_experiment,
    read_spec,
    tell,
    wide,
)
from altui.cli.completion import complete_experiment, complete_run, values_of
from altui.spec import MAX_RUNS, SpecError
from altui.store import STATUSES, Store, parse_time, run_folder
from altui.tui.format import CANCELLABLE, RETRYABLE, duration, failure_reason, pending, status_text


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="An experiments.toml file.")],
             max_runs: MaxRuns = MAX_RUNS) -> None:
    """Check an experiment file and list the runs it expands to, and where each experiment's λ_0 comes from."""
    from altui.spec.decay import derivation

    spec = read_spec(file, max_runs)
    for exp in spec.experiments:
        tell(f"{exp.name}: {len(exp.runs)} runs")
        tell(f"  {derivation(exp.table)}")
    tell(f"{file}: OK")


class ProgressSink:
    """Rich progress bars for `altui run`: runs, rounds of the current run, epochs of its round."""

    def __init__(self, progress: Progress, rounds_task: int, epochs_task: int):
        self.progress, self.rounds_task, self.epochs_task = progress, rounds_task, epochs_task

    def log(self, message: str, level: str = "info") -> None:
        if level != "info":  # round summaries come from round_done; the store keeps every line
            self.progress.console.print(f"  {printable(message)}", style="yellow", soft_wrap=True)

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


@contextlib.contextmanager
def ctrl_c_seen() -> Iterator[list[int]]:
    """Remember a Ctrl-C (still a KeyboardInterrupt), to tell it from a cancel by `altui cancel`.
    Left alone where SIGINT is ignored (`nohup altui run ... &`)."""
    seen: list[int] = []

    def on_int(signum: int, frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_int)
    try:
        yield seen
    finally:
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous)


def requeue_lost(store: Store, name: str) -> None:
    """Runs of this experiment left `running` by a foreground `altui run` that died without a word
    (kill -9, a crash): no process id and no heartbeat for the worker's stale time. They are queued
    again and resume here. A worker's runs carry a pid and are the worker's to recover."""
    from datetime import datetime, timezone

    from altui.execution.worker import STALE_SECONDS

    for r in store.runs(status="running", experiment=name):
        beat = parse_time(r["heartbeat_at"])
        if r["pid"] is None and (beat is None or (datetime.now(timezone.utc) - beat).total_seconds() > STALE_SECONDS):
            store.finish(r["id"], "queued")
            store.log(r["id"], f"no heartbeat since {r['heartbeat_at']}: its foreground process is gone; "
                               "queued again by `altui run`", "warning")


@app.command()
def run(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="An experiments.toml file.")],
    name: Annotated[str, typer.Argument(help="The experiment to run.", autocompletion=complete_experiment)],
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N (default: the experiment's).")] = None,
    max_runs: MaxRuns = MAX_RUNS,
) -> None:
    """Run an experiment's runs one after another in the foreground. Ctrl-C cancels the current run
    and keeps its completed rounds; running the command again resumes it. Exit code 0 when every run
    is done, 1 when one failed or was cancelled (docs/cli.md lists the others)."""
    from altui.al.config import valid_device
    from altui.execution import runner

    if device is not None and not valid_device(device):
        fail(f"--device {device!r}: allowed: auto, cpu, cuda or cuda:N (N: digits 0-9)")
    spec = read_spec(file, max_runs)
    try:
        spec.get(name)  # before the store is opened: a wrong name creates or changes nothing
    except SpecError as e:
        fail(str(e))
    with open_store(ctx, create=True) as store:
        queue_experiment(store, spec, name)
        requeue_lost(store, name)
        runs = store.runs(experiment=name)
        store.retry([r["id"] for r in runs if r["status"] in ("failed", "cancelled")])
        todo = [r for r in store.runs(experiment=name) if r["status"] == "queued"]
    if not todo:
        tell(f"{name}: every run is already done or running elsewhere (see `altui ls`)")
        return
    try:
        ended = run_in_turn(ctx, todo, device)
    except runner.Stopped as stop:  # a signal between two runs: none is running
        raise typer.Exit(128 + (stop.signum or signal.SIGTERM)) from None
    summary = ", ".join(f"{n} {status}" for status, n in ended.items())
    tell(f"{name}: finished ({summary}); results in {db_path(ctx)}")
    if ended["failed"] or ended["cancelled"]:
        raise typer.Exit(1)


def run_in_turn(ctx: typer.Context, todo: list[dict[str, Any]], device: str | None) -> Counter[str]:
    """Run the queued runs one after another, with progress bars; how many ended how. Ctrl-C and a
    signal stop the whole command (Exit), a cancel from another shell only its run."""
    from altui.al.data import DATA_NOT_LOADED
    from altui.execution import runner

    ended: Counter[str] = Counter()
    unloadable: dict[str, str] = {}  # data set -> the run that could not load it
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with runner.stop_on_signals(signal.SIGTERM, signal.SIGHUP) as signals, ctrl_c_seen() as ctrl_c, \
            Progress(*columns, console=out) as progress:
        runs_task = progress.add_task("runs", total=len(todo))
        for r in todo:
            dataset = json.loads(r["spec_json"] or "{}").get("dataset")
            if dataset in unloadable:  # it would fail alike: said once, the run stays queued
                ended["not run"] += 1
                progress.advance(runs_task)
                continue
            with open_store(ctx) as store:
                claimed = store.claim(device or "foreground", run_id=r["id"])
            if claimed is None:
                progress.console.print(f"{printable(r['name'])}: taken by a worker, skipped", soft_wrap=True)
                progress.advance(runs_task)
                continue
            progress.console.print(printable(r["name"]), style="bold", soft_wrap=True)
            rounds_task = progress.add_task("rounds", total=r["rounds_total"], completed=r["rounds_done"])
            epochs_task = progress.add_task("epochs", total=r["epochs_total"])
            sink = ProgressSink(progress, rounds_task, epochs_task)
            status = runner.execute(db_path(ctx), r["id"], device, observer=sink)
            ended[status] += 1
            if status == "queued":  # SIGHUP or SIGTERM: the run is back in the queue, written before any print
                signum = signals[-1] if signals else signal.SIGTERM
                with contextlib.suppress(OSError):  # the terminal may be gone
                    progress.console.print(f"{printable(r['name'])}: stopped by {signal.Signals(signum).name}; "
                                           "queued again, it resumes with `altui run` or a worker", soft_wrap=True)
                raise typer.Exit(128 + signum)
            progress.remove_task(rounds_task)
            progress.remove_task(epochs_task)
            progress.advance(runs_task)
            if status == "cancelled":
                progress.console.print(f"{printable(r['name'])}: cancelled; completed rounds are kept", soft_wrap=True)
                if ctrl_c:
                    raise typer.Exit(130)
            if status == "failed":
                with open_store(ctx) as store:
                    error = store.run(r["id"])["error"] or ""
                progress.console.print(f"{printable(r['name'])}: failed: {printable(last_line(error))}", style="red",
                                       soft_wrap=True)
                if dataset and DATA_NOT_LOADED in error:
                    unloadable[dataset] = r["name"]
        left = sum(1 for r in todo if json.loads(r["spec_json"] or "{}").get("dataset") in unloadable) - len(unloadable)
        if left:
            sets = ", ".join(unloadable)
            progress.console.print(f"{left} more run(s) need {sets}, which could not be loaded: left queued, not run; "
                                   "put the files in place and run the command again", style="red", soft_wrap=True)
    return ended


def last_line(error: str) -> str:
    """What went wrong, in one line: a traceback's last line is the exception and its message."""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return " ".join(lines[-1].split()) if lines else "(no message)"


def node_text(run: dict) -> str:
    """The node a Slurm run's job runs on, or why it is pending (Slurm's reason)."""
    if run.get("node"):
        return run["node"]
    return f"pending: {run['slurm_reason']}" if pending(run) and run.get("slurm_reason") else ""


def slurm_hints(run: dict, db: Path) -> list[str]:
    """Where a Slurm run's job stands and the commands that tell more (`altui logs`)."""
    job = run.get("slurm_job_id")
    if not job:
        return []
    where = (f"on {run['node']}" if run.get("node") else
             f"pending: {run.get('slurm_reason') or 'no reason given yet'}" if pending(run) else "")
    return [f"Slurm job {job}" + (f" ({where})" if where else ""),
            f"  scontrol show job {job}        # while Slurm remembers it (a few minutes after its end)",
            f"  sacct -j {job} --format=JobID,JobName%40,State,ExitCode,Elapsed,NodeList,Reason",
            f"  output: {run_folder(db, run['id']) / 'slurm' / f'{job}_0_log.out'}"]


def fmt(value: object, spec: str = "") -> str:
    return "" if value is None else format(value, spec)


REASON_WIDTH_LS = 60  # a failure's reason in `altui ls`' table
LS_FIELDS = ("id", "name", "experiment", "method", "seed", "status", "round", "rounds", "accuracy", "weight_decay",
             "effective_channels", "eta_seconds", "slurm_job_id", "node", "slurm_reason", "reason")


def ls_row(run: dict, eta: float | None) -> dict:
    """A run as `altui ls --json` lists it (docs/cli.md)."""
    return {"id": run["id"], "name": run["name"], "experiment": run["experiment"], "method": run["method"],
            "seed": run["seed"], "status": run["status"], "round": run["rounds_done"], "rounds": run["rounds_total"],
            "accuracy": run["accuracy"], "weight_decay": run["weight_decay"],
            "effective_channels": run["effective_channels"],
            "eta_seconds": None if eta is None else round(eta, 1), "slurm_job_id": run.get("slurm_job_id"),
            "node": run.get("node"), "slurm_reason": run.get("slurm_reason") if pending(run) else None,
            "reason": failure_reason(run) or None}


LS_LIMIT = 100  # table rows `altui ls` prints unless --limit says otherwise


@app.command("ls")
def list_runs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.",
        autocompletion=values_of("status"))] = None,
    experiment: Annotated[str | None, typer.Option(help="Only this experiment's runs.",
        autocompletion=complete_experiment)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list of objects (fields: docs/cli.md).")] = False,
    limit: Annotated[int | None, typer.Option(
        min=0, help=f"At most this many runs, oldest first; 0: all (default: {LS_LIMIT} in the table, all with "
                    "--json).")] = None,
) -> None:
    """List runs with status, round r/R, the last accuracy, λ_t, effective channels and ETA."""
    import json

    from altui.execution.daemon import worker_status
    from altui.speed.eta import queue_finish
    from altui.speed.speeds import known_speeds
    from altui.tui.backend import worker_layout, worker_slots

    if status is not None and status not in STATUSES:
        fail(f"unknown status {status!r}; allowed: {', '.join(STATUSES)}")
    if not db_path(ctx).exists():  # nothing was ever queued there: say so, create nothing
        if experiment is not None:
            fail(f"no experiment {experiment!r} in {db_path(ctx)} (see `altui ls`)")
        wide.print("[]" if as_json else printable(f"no runs in {db_path(ctx)}"))
        return
    with open_store(ctx, read_only=True) as store:
        check_experiment(store, experiment)
        everything = store.runs()  # one query; every run, for the queue's ETAs
        worker = worker_status(db_path(ctx), store)
        speeds = known_speeds(store, worker_layout(worker)[1])
    eta = queue_finish(everything, speeds, worker_slots(worker), datetime.now(timezone.utc))
    rows = [r for r in everything if (status is None or r["status"] == status)
            and (experiment is None or r["experiment"] == experiment)]
    limit = (0 if as_json else LS_LIMIT) if limit is None else limit
    shown = rows[:limit] if limit else rows
    if as_json:  # ASCII (json escapes the rest): nothing for the terminal to interpret
        sys.stdout.write(json.dumps([ls_row(r, eta.get(r["id"], 0.0)) for r in shown], indent=2) + "\n")
        return
    wide.print(runs_table(shown, eta) if rows else printable(f"no runs in {db_path(ctx)}"))
    if len(shown) < len(rows):
        tell(f"{len(rows) - len(shown):,} more run(s) not shown ({len(shown):,} of {len(rows):,}); --limit 0 "
             "lists all, --status and --experiment narrow the list")


def runs_table(rows: list[dict], eta: dict[int, float | None]) -> Table:
    slurm = any(r.get("slurm_job_id") for r in rows)
    failed = any(r["status"] == "failed" for r in rows)
    table = Table(box=None, header_style="bold")
    columns = ["id", "name", "status", "round", "labeled", "accuracy", "lambda_t", "eff.ch", "ETA", "attempt"]
    for col in columns + (["job", "node"] if slurm else []):
        table.add_column(col)
    if failed:  # why, in a line; `altui logs ID` has the whole error
        table.add_column("reason", style="red", overflow="fold")
    for r in rows:
        table.add_row(
            str(r["id"]), printable(r["name"]), status_text(r), f"{r['rounds_done']}/{r['rounds_total']}",
            fmt(r["n_labeled"]), fmt(r["accuracy"], ".4f"), fmt(r["weight_decay"], ".3g"),
            fmt(r["effective_channels"]), duration(eta.get(r["id"])), str(r["attempt"]),
            *([r.get("slurm_job_id") or "", node_text(r)] if slurm else []),
            *([failure_reason(r, REASON_WIDTH_LS)] if failed else []),
        )
    return table


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
    names: Annotated[list[str] | None, typer.Argument(help="Experiments to queue (default: all).",
        autocompletion=complete_experiment)] = None,
    max_runs: MaxRuns = MAX_RUNS,
) -> None:
    """Queue experiments' runs for the worker. Runs already in the store are left as they are."""
    from altui.execution.daemon import worker_status

    spec = read_spec(file, max_runs)
    names = names or [e.name for e in spec.experiments]
    for name in names:  # check every name before writing anything
        try:
            spec.get(name)
        except SpecError as e:
            fail(str(e))
    added = 0
    with open_store(ctx, create=True) as store:
        for name in names:
            ids, existing = queue_experiment(store, spec, name)
            added += len(ids)
            new = f"{len(ids)} new run(s)" + (f" (ids {id_ranges(ids)})" if ids else "")
            tell(f"{name}: {new}, {existing} already in the store")
    if added and worker_status(db_path(ctx)) is None:
        tell("no worker is running: start one with `altui worker start`")


def change_runs(ctx: typer.Context, refs: list[str], change: str, experiment: str | None = None,
                status: str | None = None) -> None:
    """Cancel, retry or restart runs by id or name, or every run of an experiment and/or status,
    saying for each whether it changed."""
    allowed = CANCELLABLE if change == "cancel" else RETRYABLE
    if refs and (experiment or status):
        fail(f"{change}: give run ids or names, or --experiment/--status, not both")
    if not refs and not (experiment or status):
        fail(f"{change}: give run ids or names, or --experiment NAME and/or --status STATUS")
    if status is not None and status not in allowed:
        fail(f"{change} --status {status!r}: allowed: {', '.join(allowed)}")
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
        act: dict[str, Any] = {"cancel": store.cancel, "retry": store.retry, "restart": store.restart}
        changed = act[change](ids)
        done = {"cancel": "cancelled", "retry": "queued again",
                "restart": "queued again from round 0 (its recorded rounds are deleted)"}[change]
        for rid in ids:
            r = store.run(rid)
            note = done if rid in changed else f"not changed: it is {r['status']}"
            tell(f"{rid} {r['name']}: {note}")
            if change == "cancel" and rid in changed and r["slurm_job_id"]:
                tell(f"{rid} {r['name']}: {scancel_job(r['slurm_job_id'])}")


def scancel_job(job_id: str) -> str:
    """scancel a cancelled run's Slurm job now, so it stops even when no worker runs."""
    from altui.execution.executors.slurm.jobs import scancel
    from altui.execution.executors.slurm.options import SlurmError

    try:
        scancel([job_id])
    except SlurmError as e:
        said = str(e).strip().splitlines() or [""]
        return f"scancel of Slurm job {job_id} failed ({said[-1]}); the worker retries it"
    return f"Slurm job {job_id} cancelled (scancel)"


RUNS_ARGUMENT = typer.Argument(help="Run ids or names (or use --experiment / --status).", show_default=False,
                               autocompletion=complete_run)


@app.command()
def cancel(
    ctx: typer.Context,
    runs: Annotated[list[str] | None, RUNS_ARGUMENT] = None,
    experiment: Annotated[str | None, typer.Option(help="Every queued or running run of this experiment.",
        autocompletion=complete_experiment)] = None,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.",
        autocompletion=values_of("cancel.status"))] = None,
) -> None:
    """Cancel queued or running runs; a running one stops within seconds and keeps its rounds."""
    change_runs(ctx, runs or [], "cancel", experiment, status)


@app.command()
def retry(
    ctx: typer.Context,
    runs: Annotated[list[str] | None, RUNS_ARGUMENT] = None,
    experiment: Annotated[str | None, typer.Option(help="Every failed or cancelled run of this experiment.",
        autocompletion=complete_experiment)] = None,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.",
        autocompletion=values_of("retry.status"))] = None,
    from_scratch: Annotated[bool, typer.Option(
        "--from-scratch", help="Delete the runs' recorded rounds, epochs, channels, picks and gammas and start "
                               "again at round 0 (for a run whose checkpoint is missing or damaged).")] = False,
) -> None:
    """Queue failed or cancelled runs again; they resume after their last completed round, or start
    over with --from-scratch."""
    change_runs(ctx, runs or [], "restart" if from_scratch else "retry", experiment, status)


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
        reason = store.pause_reason()
    tell("queue resumed" if reason is None else f"queue resumed, but still paused: {reason}")


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
    run: Annotated[str, typer.Argument(help="A run id or name.", autocompletion=complete_run)],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")] = False,
) -> None:
    """A run's log: its events (rounds, recoveries, errors). Its process output is in
    its run folder: <db folder>/<db file>-runs/<run id>/output.log."""
    import time

    with open_store(ctx, read_only=True) as store:
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
        for line in slurm_hints(r, db_path(ctx)):
            tell(line)
        if r["status"] == "failed" and r["error"]:
            tell(r["error"])
