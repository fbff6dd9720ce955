"""The experiments pane: "all", then the experiments of experiments.toml (and those only in the
store) with done/total and an ETA each, or the file's problems. The highlighted one filters the
runs table; enter or `a` queues it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Static

from altui.tui.backend import ExperimentsState, Snapshot
from altui.tui.format import duration, short_names
from altui.tui.messages import MarksChanged

ALL = ""  # the row key of "all experiments"


def eta_cell(seconds: float | None) -> str:
    """An experiment's time left: blank when nothing waits, ? when not measured yet."""
    if seconds is None:
        return "?"
    return duration(seconds) if seconds > 0 else ""


class ExperimentsTable(DataTable):
    BINDINGS = [
        Binding("space", "toggle_mark", "mark", tooltip="mark the experiment for `a` (several)"),
        Binding("enter", "select_cursor", "queue", tooltip="queue the experiment's runs (asks first)"),
        Binding("j", "cursor_down", "down", show=False, tooltip="the next experiment (as down)"),
        Binding("k", "cursor_up", "up", show=False, tooltip="the previous experiment (as up)"),
    ]
    DEFAULT_CSS = "ExperimentsTable { scrollbar-size-vertical: 1; overflow-x: hidden; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.marked: set[str] = set()
        self.queueable: set[str] = set()  # the experiments of experiments.toml
        self.short: dict[str, str] = {}

    def set_columns(self, name_width: int, count_width: int, eta_width: int) -> None:
        """Columns of fixed widths (auto widths go stale when a DataTable is cleared and refilled)."""
        self.clear(columns=True)
        self.add_column("experiment", width=name_width + 1, key="name")
        self.add_column("done", width=count_width, key="runs")
        self.add_column("ETA", width=eta_width, key="eta")

    @property
    def highlighted_name(self) -> str | None:
        """The highlighted experiment; None on the "all" row."""
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value or None

    def action_toggle_mark(self) -> None:
        name = self.highlighted_name
        if name is None or name not in self.queueable:
            self.app.bell()
            return
        self.marked ^= {name}
        self.update_cell(name, "name", self.name_cell(name))
        self.post_message(MarksChanged())

    def name_cell(self, name: str) -> Text:
        if name == ALL:
            return Text(" all", style="bold")
        style = "" if name in self.queueable else "dim"  # only in the store: not in the file
        return Text.assemble(("●" if name in self.marked else " ", "bold magenta"), (self.short[name], style))


class ExperimentsPane(Vertical):
    """The table of experiments, and below it the file's validation problems when it has any."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state: ExperimentsState | None = None
        self.rows: list[tuple[str, str, str]] = []  # (name, done/total, ETA); "" is "all"
        self._snapshot: Snapshot | None = None
        self._layout: tuple | None = None

    def compose(self) -> ComposeResult:
        yield ExperimentsTable(id="experiments-table")
        yield Static(id="experiments-issues")

    @property
    def table(self) -> ExperimentsTable:
        return self.query_one(ExperimentsTable)

    def targets(self) -> list[str]:
        """The experiments `a` queues: the marked ones, else the highlighted one (not "all")."""
        table = self.table
        if table.marked:
            return [name for name, _, _ in self.rows if name in table.marked]
        name = table.highlighted_name
        return [name] if name in table.queueable else []

    def on_resize(self) -> None:
        if self._snapshot is not None:
            self.show(self._snapshot)

    def show(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        state, runs = snapshot.experiments, snapshot.runs
        self.state = state
        in_file = [e.name for e in state.experiments]
        names = in_file + sorted({r["experiment"] for r in runs} - set(in_file))
        done = Counter(r["experiment"] for r in runs if r["status"] == "done")
        stored = Counter(r["experiment"] for r in runs)
        total = {e.name: e.runs for e in state.experiments}
        rows = [(ALL, f"{sum(done.values())}/{len(runs)}", eta_cell(snapshot.experiment_eta()))]
        rows += [(n, f"{done[n]}/{max(total.get(n, 0), stored[n])}", eta_cell(snapshot.experiment_eta(n)))
                 for n in names]
        table = self.table
        table.queueable = set(in_file)
        counts = max(len(r[1]) for r in rows)
        etas = max([3, *(len(r[2]) for r in rows)])
        width = max(6, self.size.width - counts - etas - 8)  # paddings, the mark, the scrollbar
        layout = (width, counts, etas)
        if rows != self.rows or layout != self._layout:
            table.short = short_names(names, width)
            current = table.highlighted_name or ALL
            table.marked &= set(in_file)
            if layout != self._layout:
                table.set_columns(max([9, *(len(s) for s in table.short.values())]),
                                  max(counts, 4), etas)
            else:
                table.clear()
            for name, count, eta in rows:
                table.add_row(table.name_cell(name), count, eta, key=name)
            keys = [name for name, _, _ in rows]
            if current in keys:
                table.move_cursor(row=keys.index(current), animate=False)
            self.rows, self._layout = rows, layout
        issues = self.query_one("#experiments-issues", Static)
        if state.issues:
            head = f"{state.path}: {len(state.issues)} problem(s)"
            issues.update(Text("\n".join([head, *state.issues]), style="red"))
        else:
            issues.update("")
        issues.display = bool(state.issues)
