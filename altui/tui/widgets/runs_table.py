"""The runs table: one row per run, updated in place so that the cursor and marks stay put."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from altui.tui.format import run_cells
from altui.tui.messages import MarksChanged

# What matters most comes first: narrow terminals scroll the rest into view.
COLUMNS = (
    ("id", "id"), ("status", "status"), ("method", "method"), ("seed", "seed"), ("round", "round"),
    ("epochs", "epochs"), ("accuracy", "acc"), ("labeled", "labeled"), ("lambda", "λ_t"),
    ("channels", "eff.ch"), ("elapsed", "elapsed"), ("remaining", "left"), ("experiment", "experiment"),
)
STATUS_STYLE = {
    "queued": "dim", "running": "bold green", "done": "", "failed": "bold red", "cancelled": "yellow",
}


class RunsTable(DataTable):
    """Rows keyed by run id; space marks runs for the overlay and for cancel/retry."""

    # Space is left out of the footer (no room at 80 columns); the help lists it.
    BINDINGS = [
        Binding("space", "toggle_mark", "mark", show=False),
        Binding("enter", "select_cursor", "open"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.marked: set[int] = set()
        self._cells: dict[int, dict[str, str]] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def highlighted_id(self) -> int | None:
        if not self.row_count:
            return None
        return int(self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value)

    def targets(self) -> list[int]:
        """The runs an action applies to: the marked ones, else the highlighted one."""
        if self.marked:
            return sorted(self.marked)
        return [] if self.highlighted_id is None else [self.highlighted_id]

    def show_runs(self, runs: list[dict[str, Any]], now: datetime) -> None:
        cells = {r["id"]: run_cells(r, now) for r in runs}
        self.marked &= set(cells)
        if list(cells) != list(self._cells):  # runs came or went: rebuild, keeping the cursor's run
            current = self.highlighted_id
            self.clear()
            for run_id, row in cells.items():
                self.add_row(*self._row(run_id, row), key=str(run_id))
            if current in cells:
                self.move_cursor(row=self.get_row_index(str(current)), animate=False)
        else:
            for run_id, row in cells.items():
                old = self._cells[run_id]
                for key, value in row.items():
                    if old.get(key) != value:
                        self.update_cell(str(run_id), key, self._cell(key, value), update_width=True)
        self._cells = cells

    def _row(self, run_id: int, row: dict[str, str]) -> list[str | Text]:
        return [self._cell(key, row[key]) for key, _ in COLUMNS]

    def _cell(self, key: str, value: str) -> str | Text:
        if key == "id":  # a marked run's id carries the mark
            mark = "●" if int(value) in self.marked else " "
            return Text.assemble((mark, "bold magenta"), value)
        if key == "status":
            return Text(value, style=STATUS_STYLE.get(value, ""))
        if key in ("experiment", "method") and len(value) > 18:
            return value[:17] + "…"
        return value

    def action_toggle_mark(self) -> None:
        run_id = self.highlighted_id
        if run_id is None:
            return
        self.marked ^= {run_id}
        self.update_cell(str(run_id), "id", self._cell("id", str(run_id)))
        self.post_message(MarksChanged())
