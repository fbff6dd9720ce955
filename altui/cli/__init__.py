"""The `altui` command (Typer), split by command group; the top layer: may import every package.
Every command but `ui` (and `demo`, which opens it) works without a TTY."""

from __future__ import annotations

import os

from altui.cli.app import app

# isort: off
# Each module registers its commands; this order is the order of `altui --help`.
from altui.cli import runs, worker, ui, results, bench  # noqa: E402,F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    """`altui`: known failures become one line and exit code 1 inside the app (AltuiGroup), so that
    the same holds for every caller of `app`."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
