"""Helpers the test folders share (plain functions; fixtures live in conftest.py files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from altui.cli import app


def cli(db: Path, *args: str) -> Any:
    """`altui --db DB ARGS...` in this process, as a user types it."""
    return CliRunner().invoke(app, ["--db", str(db), *args])
