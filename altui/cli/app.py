"""The Typer app and what every command group shares: the store option, output and error helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from altui.spec import SpecError, SpecFile, load_spec
from altui.store import Store

DEFAULT_DB = Path("runs") / "altui.db"
EXPERIMENTS_FILE = Path("experiments.toml")

app = typer.Typer(
    help="Active learning with weight-decay scheduling and distillation: queue, run, watch, export.",
    no_args_is_help=False,
    add_completion=True,  # --install-completion, --show-completion
    context_settings={"help_option_names": ["-h", "--help"]},
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


def fail_plain(message: str) -> None:
    """fail() with text that may hold brackets ("altui[report]", user input): no Rich markup."""
    from rich.markup import escape

    fail(escape(message))


def tell(text: str) -> None:
    """One message as it is: never wrapped (paths stay whole), no markup (names may hold brackets)."""
    out.print(text, markup=False, highlight=False, soft_wrap=True)


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


def check_experiment(store: Store, name: str | None) -> None:
    if name is not None and store.experiment(name) is None:
        fail_plain(f"no experiment {name!r} in {store.path} (see `altui ls`)")


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
