"""The Typer app and what every command group shares: the store option, output and error helpers.

One error path: a known failure raised by any command (a StoreError, an SQLite error, bad settings or
data, a file that cannot be written) becomes one line, `error: ...`, on stderr and exit code 1 (see
AltuiGroup). Nothing is printed as Rich markup, and unprintable characters are shown escaped: names,
paths and messages are the user's text.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from altui.al.config import ConfigError
from altui.spec import MAX_RUNS, SpecError, SpecFile, load_spec
from altui.store import BUSY_TIMEOUT_MS, READ_BUSY_MS, Store, StoreError, store_error

DEFAULT_DB = Path("runs") / "altui.db"
EXPERIMENTS_FILE = Path("experiments.toml")

# Consoles never read markup: "[bold]x" is a method name, "[/red]" a run reference.
out = Console(markup=False, highlight=False, emoji=False)  # emoji: "file:100:10" is no 💯
err = Console(stderr=True, markup=False, highlight=False, emoji=False)
# Piped output (altui ls | grep ...) keeps whole run names instead of cutting them to 80 columns.
wide = out if out.is_terminal else Console(width=240, markup=False, highlight=False, emoji=False)


def printable(text: str) -> str:
    """User text as it may reach a terminal: control characters (ESC, BEL) escaped, never sent."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else ascii(c)[1:-1] for c in text)


def fail(message: str, code: int = 1) -> None:
    err.print(Text.assemble(("error: ", "red"), printable(message)), soft_wrap=True)
    raise typer.Exit(code)


def tell(text: str) -> None:
    """One message as it is: never wrapped (paths stay whole), no markup, control characters escaped."""
    out.print(printable(text), soft_wrap=True)


def known_failure(exc: BaseException, db: Path | None) -> str | None:
    """The one line to print for a failure a user can act on; None for a bug (whose traceback helps)."""
    runner = sys.modules.get("altui.execution.runner")  # (not imported: none of its errors was raised)
    if isinstance(exc, sqlite3.Error):
        return str(store_error(db or DEFAULT_DB, exc))
    if isinstance(exc, (StoreError, SpecError, ConfigError)) or runner and isinstance(
            exc, (runner.DiskFull, runner.RunError)):
        return str(exc)
    if isinstance(exc, OSError):  # a file or folder that cannot be read or written
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return None


class AltuiGroup(TyperGroup):
    """The one error path of the CLI: known failures become one line and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as e:
            message = known_failure(e, (ctx.obj or {}).get("db"))
            if message is None:
                raise
            fail(" ".join(message.split()) if not isinstance(e, SpecError) else message)


app = typer.Typer(
    cls=AltuiGroup,
    help="Active learning with weight-decay scheduling and distillation: queue, run, watch, export.",
    no_args_is_help=False,
    add_completion=True,  # --install-completion, --show-completion
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def db_path(ctx: typer.Context) -> Path:
    return ctx.obj["db"]


def open_store(ctx: typer.Context, create: bool = False, read_only: bool = False) -> Store:
    """The store of --db. Only commands that queue or run (create=True) create it; the others
    read an existing one and fail with one line when there is none. Commands that only read
    (`read_only`) wait a second, not 30, for a lock another program holds, and then say so."""
    return Store(db_path(ctx), create=create, busy_ms=READ_BUSY_MS if read_only else BUSY_TIMEOUT_MS)


MaxRuns = Annotated[int, typer.Option(
    "--max-runs", min=1, help=f"Allow a file to expand to this many runs (default {MAX_RUNS:,}).")]


def read_spec(file: Path, max_runs: int = MAX_RUNS) -> SpecFile:
    """Load and validate an experiment file; on any problem print every issue and exit 1."""
    try:
        return load_spec(file, max_runs)
    except SpecError as e:
        err.print(printable(str(e)), soft_wrap=True)
        err.print(f"{len(e.issues)} problem(s) in {printable(str(file))}; nothing was written.", style="red",
                  soft_wrap=True)
        raise typer.Exit(1) from None


def queue_experiment(store: Store, spec: SpecFile, name: str) -> tuple[list[int], int]:
    """Enqueue one experiment's runs; returns the new run ids and how many were already there."""
    from altui.tui.backend import enqueue  # shared with the dashboard; imports no UI

    try:
        return enqueue(store, spec, name)
    except SpecError as e:
        fail(str(e))


def check_experiment(store: Store, name: str | None) -> None:
    if name is not None and store.experiment(name) is None:
        fail(f"no experiment {name!r} in {store.path} (see `altui ls`)")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("altui")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def print_version(value: bool) -> None:
    if value:
        tell(f"altui {version()}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    db: Annotated[Path | None, typer.Option(
        "--db", envvar="ALTUI_DB", help="The SQLite store (default runs/altui.db under the working directory)."
    )] = None,
    _version: Annotated[bool, typer.Option(
        "--version", callback=print_version, is_eager=True, help="Print altui's version and exit.")] = False,
) -> None:
    ctx.obj = {"db": db or DEFAULT_DB}
    if ctx.invoked_subcommand is None:
        from altui.tui.app import run_ui

        run_ui(ctx.obj["db"], EXPERIMENTS_FILE)
