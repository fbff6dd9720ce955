"""Shell completion of values, and help that reads as usage.

Completers (Typer's `autocompletion=`) complete experiment names from the experiments file and the
store, run ids and names from the store, and the fixed values of `--format`, `--table`, `--status`,
`--metric`, ... Completion only reads: the store is opened read-only and never created, and nothing
heavy (torch) is imported. `tidy` makes every command's help read as usage: flags without a
`<bool>` type, values by their kind or allowed values, paragraphs that the terminal wraps.
"""

from __future__ import annotations

import inspect
import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import tomllib
import typer

from altui.cli.defaults import DEFAULT_DB, EXPERIMENTS_FILE


def _store_path(ctx: typer.Context) -> Path:
    return Path(ctx.find_root().params.get("db") or os.environ.get("ALTUI_DB") or DEFAULT_DB)


def _store_rows(ctx: typer.Context, query: str) -> list[tuple]:
    """Rows of a read-only query of the store; none when there is no store (or it cannot be read)."""
    path = _store_path(ctx)
    if not path.is_file():
        return []
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0) as db:
            return db.execute(query).fetchall()
    except sqlite3.Error:
        return []


def _file_experiments(ctx: typer.Context) -> list[str]:
    path = Path(ctx.params.get("file") or EXPERIMENTS_FILE)
    try:
        with path.open("rb") as fp:
            data = tomllib.load(fp)
    except (OSError, tomllib.TOMLDecodeError):
        return []
    tables = data.get("experiment", [])
    return [t["name"] for t in tables if isinstance(t, dict) and isinstance(t.get("name"), str)]


def complete_experiment(ctx: typer.Context, incomplete: str) -> list[str]:
    """Experiments of the experiments file (the command's FILE, else ./experiments.toml), then the store's."""
    stored = [name for (name,) in _store_rows(ctx, "SELECT name FROM experiments ORDER BY name")]
    return [n for n in dict.fromkeys([*_file_experiments(ctx), *stored]) if n.startswith(incomplete)]


def complete_run(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Run ids with the run's name and status as their help; run names once a letter is typed."""
    rows = _store_rows(ctx, "SELECT id, name, status FROM runs ORDER BY id")
    if incomplete[:1].isdigit() or not incomplete:
        return [(str(i), f"{n} ({s})") for i, n, s in rows if str(i).startswith(incomplete)]
    return [(n, s) for _, n, s in rows if n.startswith(incomplete)]


def complete_run_or_experiment(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    return [(n, "experiment") for n in complete_experiment(ctx, incomplete)] + complete_run(ctx, incomplete)


def _statuses() -> Iterable[str]:
    from altui.store.schema import STATUSES
    return STATUSES


def _tables() -> Iterable[str]:
    from altui.results.export import TABLES
    return TABLES


def _formats() -> Iterable[str]:
    from altui.results.export import FORMATS
    return FORMATS


def _intervals() -> Iterable[str]:
    from altui.results.export import INTERVALS
    return INTERVALS


def _metrics() -> Iterable[str]:
    from altui.results.plotting import METRICS
    return [*METRICS, "gamma"]


# An option's allowed values by its parameter name ("command.name" where a command allows fewer):
# completed, and listed in its help.
VALUES: dict[str, Callable[[], Iterable[str]]] = {
    "status": _statuses, "cancel.status": lambda: ("queued", "running"),
    "retry.status": lambda: ("failed", "cancelled"),
    "table": _tables, "format_": _formats, "interval": _intervals, "metric": _metrics,
}


def allowed(command: str | None, name: str | None) -> Callable[[], Iterable[str]] | None:
    return VALUES.get(f"{command}.{name}") or VALUES.get(name or "")


def values_of(key: str) -> Callable[[str], list[str]]:
    """The completer of an option with fixed values (VALUES[key])."""
    return lambda incomplete: [v for v in VALUES[key]() if v.startswith(incomplete)]


def _kind(param: Any, typed: str | None, values: Callable[[], Iterable[str]] | None) -> str | None:
    """A parameter's type column: nothing for a flag or an argument (its name says it), the option's
    name for one with a few allowed values (listed in its help), else its kind in capitals (PATH,
    INTEGER, TEXT, ...)."""
    if getattr(param, "param_type_name", "") == "argument" or getattr(param, "is_flag", False):
        return None
    if values is not None:
        return param.name.strip("_").upper()
    if not typed:
        return typed
    kind = typed.strip("<>").removesuffix(" range").removesuffix("...").removeprefix("list[").removesuffix("]")
    return {"str": "TEXT", "int": "INTEGER", "float": "NUMBER"}.get(kind, kind.upper())


def _paragraphs(text: str) -> str:
    """A docstring's paragraphs each on one line: the terminal wraps them, not the source's line breaks."""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


def _tidy_param(param: Any, command: str | None) -> Any:
    if getattr(param, "_altui_tidy", False):
        return param
    param._altui_tidy = True
    values = allowed(command, param.name)
    typed = getattr(param, "display_type_rich", None)  # Typer >= 0.20 shows `<bool>`, `<list[str]>`, ...
    if typed is not None:
        param.display_type_rich = lambda ctx: _kind(param, typed(ctx), values)
    if getattr(param, "help", None):
        param.help = " ".join(param.help.split())
        if values is not None:  # from the code's own list, so that none is left out
            param.help += f" One of: {', '.join(values())}."
    return param


def tidy(command: Any, name: str | None = None) -> None:
    """Help of `command` and its subcommands that reads as usage (see the module's docstring): each
    parameter is tidied as the help asks for it, --help and the completion options included."""
    if command.help:
        command.help = _paragraphs(command.help)
    get_params = command.get_params
    command.get_params = lambda ctx: [_tidy_param(p, name) for p in get_params(ctx)]
    for sub_name, sub in getattr(command, "commands", {}).items():
        tidy(sub, sub_name)
