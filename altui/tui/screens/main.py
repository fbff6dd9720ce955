"""The main screen: experiments, runs, and the three curves of the runs marked or highlighted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer

from altui.tui.backend import Snapshot
from altui.tui.messages import MarksChanged
from altui.tui.series import METRICS, means_series, runs_series
from altui.tui.widgets.experiments import ExperimentsPane, ExperimentsTable
from altui.tui.widgets.plot import PlotWidget
from altui.tui.widgets.runs_table import RunsTable
from altui.tui.widgets.status import StatusLine

if TYPE_CHECKING:
    from altui.tui.app import AltuiApp

TITLES = {"accuracy": "accuracy % vs labels", "lambda": "λ_t vs round", "channels": "eff. channels vs round"}


class MainScreen(Screen):
    # Below 120 columns only one plot fits: `g` shows the next one.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("q", "queue", "queue"),
        Binding("c", "cancel", "cancel"),
        Binding("r", "retry", "retry"),
        Binding("m", "compare", "compare"),
        Binding("g", "next_plot", "plot", show=False),  # narrow plots' titles say "g: next"
    ]

    app: AltuiApp

    def __init__(self) -> None:
        super().__init__()
        self.compare = False  # False: marked/highlighted runs; True: method means of one experiment
        self.plot_index = 0

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        with Horizontal(id="top"):
            yield ExperimentsPane(id="experiments")
            yield RunsTable(id="runs")
        with Horizontal(id="plots"):
            for i, name in enumerate(METRICS):
                yield PlotWidget(TITLES[name], id=f"plot-{name}", classes="-current" if i == 0 else "")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(RunsTable).focus()
        if self.app.snapshot is not None:
            self.apply(self.app.snapshot)

    @property
    def runs_table(self) -> RunsTable:
        return self.query_one(RunsTable)

    @property
    def pane(self) -> ExperimentsPane:
        return self.query_one(ExperimentsPane)

    # ---- data in -----------------------------------------------------------------------------

    def apply(self, snapshot: Snapshot) -> None:
        self.query_one(StatusLine).show(snapshot, str(self.app.backend.db), self.app.error)
        self.pane.show(snapshot.experiments, snapshot.runs)
        self.runs_table.show_runs(snapshot.runs, snapshot.taken_at)
        self.update_plots()

    def update_plots(self) -> None:
        snapshot = self.app.snapshot
        if snapshot is None:
            return
        hint = "  (g: next)" if self.has_class("-narrow") else ""  # one plot at a time
        if self.compare:
            experiment = self.compared_experiment()
            runs = [r for r in snapshot.runs if r["experiment"] == experiment]
            for name in METRICS:
                title = f"{TITLES[name]} · {experiment} mean, 95% CI{hint}"
                series = means_series(runs, snapshot.curves, name)
                self.query_one(f"#plot-{name}", PlotWidget).set_data(series, title)
            return
        by_id = {r["id"]: r for r in snapshot.runs}
        shown = [by_id[i] for i in self.runs_table.targets() if i in by_id]
        for name in METRICS:
            series = runs_series(shown, snapshot.curves, name)
            self.query_one(f"#plot-{name}", PlotWidget).set_data(series, TITLES[name] + hint)

    def compared_experiment(self) -> str | None:
        """The experiment highlighted in the pane when it has focus, else the highlighted run's."""
        table = self.pane.table
        if table.has_focus and table.highlighted_name:
            return table.highlighted_name
        run_id = self.runs_table.highlighted_id
        runs = self.app.snapshot.runs if self.app.snapshot else []
        run = next((r for r in runs if r["id"] == run_id), None)
        return run["experiment"] if run else table.highlighted_name

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.update_plots()

    def on_marks_changed(self, event: MarksChanged) -> None:
        self.update_plots()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if isinstance(event.data_table, RunsTable):
            self.action_open_run()
        elif isinstance(event.data_table, ExperimentsTable):  # enter on an experiment: its means
            self.compare = True
            self.update_plots()

    # ---- actions -----------------------------------------------------------------------------

    def action_queue(self) -> None:
        self.app.act(self.app.backend.queue, self.pane.targets())

    def action_cancel(self) -> None:
        self.app.act(self.app.backend.cancel, self.runs_table.targets())

    def action_retry(self) -> None:
        self.app.act(self.app.backend.retry, self.runs_table.targets())

    def action_open_run(self) -> None:
        run_id = self.runs_table.highlighted_id
        if run_id is not None:
            self.app.open_run(run_id)

    def action_compare(self) -> None:
        self.compare = not self.compare
        self.update_plots()

    def action_next_plot(self) -> None:
        plots = list(self.query(PlotWidget))
        plots[self.plot_index].remove_class("-current")
        self.plot_index = (self.plot_index + 1) % len(plots)
        plots[self.plot_index].add_class("-current")

    def on_resize(self) -> None:
        self.update_plots()

    def on_show(self, event: events.Show) -> None:
        if self.app.snapshot is not None:
            self.apply(self.app.snapshot)
