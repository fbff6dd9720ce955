"""The `altui` command, split by command group. Every command but `ui` (and `demo`, which opens it)
works without a TTY."""

from __future__ import annotations

import os
import sys

from altui.cli.app import app, err
from altui.store import StoreError

# isort: off
# Each module registers its commands; this order is the order of `altui --help`.
from altui.cli import runs, worker, ui, results, bench  # noqa: E402,F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app()
    except StoreError as e:
        err.print(f"[red]error:[/red] {e}")
        sys.exit(1)
