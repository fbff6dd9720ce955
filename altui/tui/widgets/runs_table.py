"""The runs table: the runs of the view (experiment, filter, hidden, sort), in the columns that fit
its width without scrolling sideways. Rows update in place so that the cursor and marks stay put.

Two selections, never mixed: marks (space, `*`) are what `c` and `r` act on; the plotted runs (`o`)
are what the plots overlay.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from altui.results.plotting import COLORS
from altui.tui.format import STATUS_STYLE, SYMBOLS, run_cells, short_names, status_key
from altui.tui.messages import MarksChanged, ViewChanged
from altui.tui.runs_view import (
    COLUMNS,
    EXPERIMENT_WIDTH,
    ORDER,
    REASON_WIDTH,
    RESERVED,
    Run,
    View,
    choose_columns,
    extras,
    visible,
)

METHOD_WIDTH = 14


KEPT = ("text", "hide_finished", "sort", "reverse")  # the view the store keeps across reopenings


def kept(view: View) -> dict[str, Any]:
    return {key: getattr(view, key) for key in KEPT}


def restored(saved: dict[str, Any]) -> dict[str, Any]:
    """The kept parts of a saved view that are still valid (a store may have been written by another
    version): unknown keys, wrong types and unknown sort columns are left out."""
    view: dict[str, Any] = {}
    if isinstance(saved.get("text"), str):
        view["text"] = saved["text"][:200]
    for key in ("hide_finished", "reverse"):
        if isinstance(saved.get(key), bool):
            view[key] = saved[key]
    if saved.get("sort") in COLUMNS:
        view["sort"] = saved["sort"]
    return view


class RunsTable(DataTable):
    BINDINGS = [
        Binding("space", "toggle_mark", "mark", key_display="␣", tooltip="mark the run for c / r (several)"),
        Binding("asterisk", "mark_shown", "mark shown", show=False,
                tooltip="mark every run shown: filter by experiment or status first for bulk c / r"),
        Binding("o", "toggle_plot", "plot", show=False, tooltip="add the run's curves to the plots, or remove them"),
        Binding("enter", "select_cursor", "open", show=False, tooltip="the run's view"),
        Binding("s", "sort_next", "sort", show=False, tooltip="sort by the next column (or click a header)"),
        Binding("S", "sort_reverse", "reverse", show=False, tooltip="reverse the sort order"),
        Binding("j", "cursor_down", "down", show=False, tooltip="the next run (as down)"),
        Binding("k", "cursor_up", "up", show=False, tooltip="the previous run (as up)"),
    ]
    DEFAULT_CSS = "RunsTable { scrollbar-size-vertical: 1; overflow-x: hidden; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, cell_padding=0, **kwargs)
        self.marked: set[int] = set()
        self.plotted: list[int] = []  # in the order added: the order of the plots' colours
        self.view = View()
        self.runs: list[Run] = []
        self.shown: list[Run] = []
        self.columns_shown: list[str] = []
        self.short: dict[str, str] = {}  # experiment -> its short form in the table
        self._now: datetime | None = None
        self._eta: dict[int, float | None] = {}
        self._layout: tuple | None = None
        self._cells: dict[int, list[Text]] = {}

    # ---- what the table shows ----------------------------------------------------------------

    @property
    def highlighted_id(self) -> int | None:
        if not self.row_count:
            return None
        return int(self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value)

    @property
    def highlighted_run(self) -> Run | None:
        run_id = self.highlighted_id
        return next((r for r in self.shown if r["id"] == run_id), None)

    def show_runs(self, runs: list[Run], now: datetime, eta: dict[int, float | None]) -> None:
        self.runs, self._now, self._eta = runs, now, eta
        ids = {r["id"] for r in runs}
        self.marked &= ids
        self.plotted = [i for i in self.plotted if i in ids]
        self.refresh_rows()

    def set_view(self, **changes: Any) -> None:
        before = self.view
        self.view = replace(self.view, **changes)
        self.refresh_rows()
        if kept(self.view) != kept(before):
            self.post_message(ViewChanged())

    def on_resize(self) -> None:
        self.refresh_rows()

    def refresh_rows(self) -> None:
        if self._now is None or not self.is_mounted:
            return
        cells = {r["id"]: run_cells(r, self._now, self._eta.get(r["id"])) for r in self.runs}
        self.shown = visible(self.runs, self.view, self._eta)
        columns, widths = self._fit(cells)
        rows = {r["id"]: [self._cell(key, cells[r["id"]], r) for key in columns] for r in self.shown}
        layout = (tuple(columns), tuple(widths[k] for k in columns), self.view.sort, self.view.reverse)
        if layout != self._layout or list(rows) != list(self._cells):
            current = self.highlighted_id
            self.clear(columns=layout != self._layout)
            if layout != self._layout:
                for key in columns:
                    self.add_column(self._header(key), width=widths[key], key=key)
            for run_id, row in rows.items():
                self.add_row(*row, key=str(run_id))
            if current in rows:
                self.move_cursor(row=self.get_row_index(str(current)), animate=False)
            self._layout = layout
        else:
            for run_id, row in rows.items():
                for key, old, new in zip(columns, self._cells[run_id], row, strict=True):
                    if old != new:
                        self.update_cell(str(run_id), key, new)
        self.columns_shown = columns
        self._cells = rows

    def _fit(self, cells: dict[int, dict[str, str]]) -> tuple[list[str], dict[str, int]]:
        """The columns that fit the table's width, and their widths (a leading space each). Widths
        come from every run, not only those shown, so that filtering does not move columns."""
        widths = {key: max(RESERVED.get(key, 0), 1 + max([len(self._header(key)) - 1,
                                                          *(len(c[key]) for c in cells.values())]))
                  for key in ORDER}
        widths["reason"] = min(widths["reason"], 1 + REASON_WIDTH)
        widths["id"] = 1 + max([2, *(2 + len(c["id"]) for c in cells.values())])  # status symbol, mark
        widths["method"] = min(widths["method"], 1 + METHOD_WIDTH)
        names = sorted({r["experiment"] for r in self.runs})
        longest = max(map(len, names), default=0)
        widths["experiment"] = 1 + max(len("experiment"), min(longest, EXPERIMENT_WIDTH))
        total = self.size.width - 1  # the vertical scrollbar
        columns, spare = choose_columns(widths, total, extras(self.runs))
        if "experiment" in columns and spare > 0:  # spare width shows more of the names
            widths["experiment"] = min(1 + max(longest, len("experiment")), widths["experiment"] + spare)
        self.short = short_names(names, widths["experiment"] - 1)
        return columns, widths

    def _header(self, key: str) -> Text:
        column = COLUMNS[key]
        arrow = ("▼" if self.view.reverse else "▲") if self.view.sort == key else ""
        return Text(f" {column.header}{arrow}", style="bold")

    def _cell(self, key: str, cells: dict[str, str], run: Run) -> Text:
        if key == "id":
            status = status_key(run)
            mark = Text("●" if run["id"] in self.marked else " ", style="bold magenta")
            number = Text(cells["id"], style=self._plot_style(run["id"]))
            return Text.assemble(" ", (SYMBOLS[status], STATUS_STYLE[status]), mark, number)
        value = cells[key]
        if key == "experiment":
            value = self.short.get(value, value)
        elif key == "method" and len(value) > METHOD_WIDTH:
            value = value[: METHOD_WIDTH - 1] + "…"
        style = STATUS_STYLE[status_key(run)] if key in ("status", "reason") else "dim" if key == "eta" and \
            run["status"] == "queued" else ""
        return Text(" " + value, style=style, no_wrap=True, overflow="ellipsis")

    def _plot_style(self, run_id: int) -> str:
        if run_id not in self.plotted:
            return ""
        return f"bold reverse color({COLORS[self.plotted.index(run_id) % len(COLORS)]})"

    def _redraw_id(self, run_ids: set[int]) -> None:
        for run in self.shown:
            if run["id"] in run_ids and "id" in self.columns_shown:
                cell = self._cell("id", {"id": str(run["id"])}, run)
                self._cells[run["id"]][0] = cell
                self.update_cell(str(run["id"]), "id", cell)

    # ---- keys ------------------------------------------------------------------------------

    def action_toggle_mark(self) -> None:
        run_id = self.highlighted_id
        if run_id is None:
            return
        self.marked ^= {run_id}
        self._redraw_id({run_id})
        self.post_message(MarksChanged())

    def action_mark_shown(self) -> None:
        ids = {r["id"] for r in self.shown}
        self.marked |= ids
        self._redraw_id(ids)
        self.post_message(MarksChanged())

    def clear_marks(self) -> bool:
        """Clear the marks; False when there were none."""
        if not self.marked:
            return False
        ids, self.marked = self.marked, set()
        self._redraw_id(ids)
        self.post_message(MarksChanged())
        return True

    def action_toggle_plot(self) -> None:
        run_id = self.highlighted_id
        if run_id is None:
            return
        before = set(self.plotted)
        self.plotted = [i for i in self.plotted if i != run_id] if run_id in before else [*self.plotted, run_id]
        self._redraw_id(before | {run_id})  # colours follow the order
        self.post_message(MarksChanged())

    def clear_plotted(self) -> bool:
        if not self.plotted:
            return False
        ids, self.plotted = set(self.plotted), []
        self._redraw_id(ids)
        self.post_message(MarksChanged())
        return True

    def sort_by(self, key: str, reverse: bool | None = None) -> None:
        self.set_view(sort=key, reverse=(not self.view.reverse if key == self.view.sort else False)
                      if reverse is None else reverse)

    def action_sort_next(self) -> None:
        shown = self.columns_shown or ORDER
        index = shown.index(self.view.sort) if self.view.sort in shown else -1
        self.sort_by(shown[(index + 1) % len(shown)], reverse=False)

    def action_sort_reverse(self) -> None:
        self.set_view(reverse=not self.view.reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))
