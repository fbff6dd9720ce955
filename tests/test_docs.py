"""docs/ holds the public interfaces as they really are: the SQLite schema and the CLI."""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command

from altui.cli import app
from altui.store import Store

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_table_and_column_is_documented(tmp_path):
    text = (DOCS / "schema.md").read_text()
    with Store(tmp_path / "altui.db") as store:
        tables = [t for t in store.db.table_names() if not t.startswith("_")]
        assert set(tables) >= {"experiments", "runs", "rounds", "epochs", "channels", "picks", "events"}
        for table in tables:
            section = re.search(rf"^### `{table}`\n(.*?)(?=^### |^## |\Z)", text, re.S | re.M)
            assert section, f"docs/schema.md has no section for table {table}"
            documented = set(re.findall(r"^\| `(\w+)` \|", section.group(1), re.M))
            columns = {c.name for c in store.db[table].columns}
            assert columns == documented, f"{table}: undocumented {columns - documented}, stale {documented - columns}"

def test_docs_describe_every_command_of_the_cli():
    text = (DOCS / "cli.md").read_text()
    group = get_command(app)
    names = []
    for name, cmd in group.commands.items():
        subs = getattr(cmd, "commands", None)
        names += [f"altui {name} {sub}" for sub in subs] if subs else [f"altui {name}"]
    missing = [n for n in names if f"`{n}" not in text and f"/ `{n}" not in text]
    assert not missing, f"docs/cli.md does not describe {missing}"
