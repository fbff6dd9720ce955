"""The experiments pane: experiments of experiments.toml with their run counts, or its problems."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Static

from altui.tui.backend import ExperimentsState
from altui.tui.messages import MarksChanged


class ExperimentsTable(DataTable):
    BINDINGS = [
        Binding("space", "toggle_mark", "mark", show=False),
        Binding("enter", "select_cursor", "means"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.marked: set[str] = set()
        self.name_width = 20

    def on_mount(self) -> None:
        self.add_column("experiment", key="name")
        self.add_column("runs", key="runs")

    @property
    def highlighted_name(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value

    def action_toggle_mark(self) -> None:
        name = self.highlighted_name
        if name is None:
            return
        self.marked ^= {name}
        self.update_cell(name, "name", name_cell(name, name in self.marked, self.name_width))
        self.post_message(MarksChanged())


def name_cell(name: str, marked: bool, width: int) -> Text:
    """The name cut to fit, keeping both ends: `cifar100-r…k1000` still tells experiments apart."""
    if len(name) > width:
        head = (width - 1) * 2 // 3
        name = name[:head] + "…" + name[len(name) - (width - 1 - head):]
    return Text.assemble(("●" if marked else " ", "bold magenta"), name)


class ExperimentsPane(Vertical):
    """The table of experiments, and below it the file's validation problems when it has any."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state: ExperimentsState | None = None
        self.rows: list[tuple[str, str]] = []  # (name, runs: "done/total" once some are in the store)
        self._runs: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield ExperimentsTable(id="experiments-table")
        yield Static(id="experiments-issues")

    @property
    def table(self) -> ExperimentsTable:
        return self.query_one(ExperimentsTable)

    def targets(self) -> list[str]:
        """The experiments `q` queues: the marked ones, else the highlighted one."""
        table = self.table
        if table.marked:
            return [name for name, _ in self.rows if name in table.marked]
        return [] if table.highlighted_name is None else [table.highlighted_name]

    def on_resize(self) -> None:
        if self.state is not None:
            self.show(self.state, self._runs)

    def show(self, state: ExperimentsState, runs: list[dict[str, Any]]) -> None:
        self.state, self._runs = state, runs
        done = Counter(r["experiment"] for r in runs if r["status"] == "done")
        stored = Counter(r["experiment"] for r in runs)
        rows = [(e.name, f"{done[e.name]}/{e.runs}" if stored[e.name] else str(e.runs))
                for e in state.experiments]
        table = self.table
        width = max(10, self.size.width - 11)  # what the runs column and the paddings leave
        if rows != self.rows or width != table.name_width:
            current = table.highlighted_name
            table.name_width = width
            table.marked &= {name for name, _ in rows}
            table.clear()
            for name, count in rows:
                table.add_row(name_cell(name, name in table.marked, width), count, key=name)
            names = [name for name, _ in rows]
            if current in names:
                table.move_cursor(row=names.index(current), animate=False)
            self.rows = rows
        issues = self.query_one("#experiments-issues", Static)
        if state.issues:
            head = f"{state.path}: {len(state.issues)} problem(s)"
            issues.update(Text("\n".join([head, *state.issues]), style="red"))
        else:
            issues.update("")
        issues.display = bool(state.issues)
