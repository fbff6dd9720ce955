"""The keys, full screen (`?`): altui's own keys first, by where they work, each once with what it
does; then the keys of Textual's widgets (a table's cursor, the palette) that also work."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# Where each of altui's binding owners works, in the order the panel lists them.
PLACES = {
    "AltuiApp": "everywhere",
    "MainScreen": "main screen",
    "RunsTable": "runs table",
    "ExperimentsTable": "experiments pane",
    "RunScreen": "run view",
}
OTHERS = ("up/down, page up/down, home/end: move in a table or the log",
          "left/right: scroll a table sideways (run view: the round)",
          "ctrl+p: the command palette, every action by name",
          "tab, shift+tab: the next or previous pane",
          "mouse: click a row, a header (sort) or a button")


def key_lines(owners: Iterable[type]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(place, [(keys, what)]) for each class's own bindings: every action once, its keys joined."""
    sections = []
    for owner in owners:
        rows: dict[str, tuple[list[str], str]] = {}
        for binding in owner.BINDINGS:
            if not isinstance(binding, Binding) or not binding.description:
                continue
            shown = binding.key_display or binding.key
            keys, what = rows.setdefault(binding.action, ([], binding.tooltip or binding.description))
            keys.extend(k for k in (shown.replace("question_mark", "?").replace("slash", "/")
                                    .replace("asterisk", "*").replace("space", "␣").split(",")) if k not in keys)
        sections.append((PLACES.get(owner.__name__, owner.__name__), [("/".join(k), w) for k, w in rows.values()]))
    return sections


class KeysScreen(ModalScreen[None]):
    """Every key, full screen; `?`, `escape` or `q` closes it."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "close", priority=True)]
    DEFAULT_CSS = """
    KeysScreen { background: $background 95%; }
    KeysScreen VerticalScroll { padding: 0 1; }
    """

    def __init__(self, owners: Iterable[type]) -> None:
        super().__init__()
        self.sections = key_lines(owners)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.content(), id="keys-text")

    def content(self) -> Group:
        """A title, then per place a grid of keys and what they do (wrapped under its own column)."""
        parts: list[Any] = [Text("altui keys  (?, esc or q closes)", style="bold")]
        for place, rows in self.sections:
            if not rows:
                continue
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold cyan", no_wrap=True)
            grid.add_column(ratio=1)
            for keys, what in rows:
                grid.add_row(keys, what)
            parts += [Text(f"\n{place}", style="bold underline"), Padding(grid, (0, 0, 0, 2))]
        parts.append(Text("\nalso", style="bold underline"))
        parts += [Text(f"  {line}", style="dim") for line in OTHERS]
        return Group(*parts)
