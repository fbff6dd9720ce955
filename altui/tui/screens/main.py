"""The main screen: experiments, runs, and the three curves of the plotted (or highlighted) runs or
of one experiment's method means."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from altui.spec import SpecError
from altui.tui.backend import Snapshot
from altui.tui.format import CANCEL_NOTE, CANCELLABLE, RETRYABLE, duration, run_target
from altui.tui.messages import MarksChanged
from altui.tui.series import METRICS, means_series, pair_claim, runs_series
from altui.tui.widgets.experiments import ExperimentsPane, ExperimentsTable
from altui.tui.widgets.plot import PlotWidget
from altui.tui.widgets.runs_table import RunsTable
from altui.tui.widgets.status import ContextLine, StatusLine

if TYPE_CHECKING:
    from altui.tui.app import AltuiApp

TITLES = {"accuracy": "accuracy % vs labels", "lambda": "λ_t vs round", "channels": "eff. channels vs round"}


def seeds_text(runs: list[dict[str, Any]], curves: dict[int, list]) -> str:
    """How many seeds each method's mean is over: "3 seeds", or "1–3 seeds" when they differ."""
    seeds: dict[str, set[int]] = {}
    for run in runs:
        if curves.get(run["id"]):
            seeds.setdefault(run["method"], set()).add(run["seed"])
    counts = sorted({len(s) for s in seeds.values()}) or [0]
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return f"{n} seed{'' if n == '1' else 's'}"


class MainScreen(Screen):
    # Below 120 columns one plot fits (`g` shows the next) and the experiments pane opens on tab.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("a", "queue", "queue", tooltip="queue the marked experiments, else the highlighted one (asks first)"),
        Binding("c", "cancel", "cancel", tooltip="cancel the marked runs, else the cursor's; in the experiments "
                "pane: the experiment's queued and running runs (asks first)"),
        Binding("r", "retry", "retry", tooltip="retry the marked runs, else the cursor's; in the experiments "
                "pane: the experiment's failed and cancelled runs (asks first)"),
        Binding("slash", "filter", "filter", tooltip="show the runs with these words in experiment, method or status"),
        Binding("h", "hide_finished", "hide done", show=False, tooltip="hide or show done and cancelled runs"),
        Binding("m", "means", "means", tooltip="plots: one experiment's method means over seeds <-> runs"),
        Binding("g", "next_plot", "next plot", show=False, tooltip="the next plot (one at a time below 120 columns)"),
        Binding("escape", "clear", "clear", show=False,
                tooltip="clear the marks; again: the plotted runs, then the filters"),
        Binding("tab,shift+tab", "switch_pane", "experiments", show=False,
                tooltip="the experiments pane <-> the runs table"),
    ]

    app: AltuiApp

    def __init__(self) -> None:
        super().__init__()
        self.means = False  # False: the plotted (or highlighted) runs; True: one experiment's method means
        self.plot_index = 0
        self._claim: tuple[tuple, str | None] = ((), None)  # (what it was computed from, the line)

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        yield ContextLine(id="context")
        with Horizontal(id="filter-bar"):
            yield Static("/", id="filter-label")
            yield Input(placeholder="words of the experiment, method or status; enter keeps them, esc clears",
                        id="filter", compact=True)
        with Horizontal(id="top"):
            yield ExperimentsPane(id="experiments")
            yield RunsTable(id="runs")
        with Horizontal(id="plots"):
            for i, name in enumerate(METRICS):
                yield PlotWidget(TITLES[name], id=f"plot-{name}", classes="-current" if i == 0 else "")
        yield Static(id="claim-line")  # two methods overlaid: the paper's claim about them (altui.results.claims)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#filter-bar").display = False
        self.runs_table.focus()
        if self.app.snapshot is not None:
            self.apply(self.app.snapshot)

    @property
    def runs_table(self) -> RunsTable:
        return self.query_one(RunsTable)

    @property
    def pane(self) -> ExperimentsPane:
        return self.query_one(ExperimentsPane)

    @property
    def snapshot(self) -> Snapshot | None:
        return self.app.snapshot

    # ---- data in -----------------------------------------------------------------------------

    def apply(self, snapshot: Snapshot) -> None:
        self.show_status(snapshot)
        self.pane.show(snapshot)
        self.runs_table.show_runs(snapshot.runs, snapshot.taken_at, snapshot.eta)
        self.update_context()
        self.update_plots()

    def show_status(self, snapshot: Snapshot) -> None:
        self.query_one(StatusLine).show(snapshot, str(self.app.backend.db), self.app.error)

    def update_context(self) -> None:
        table = self.runs_table
        view = table.view.describe()
        if table.marked:
            view.append(f"{len(table.marked)} marked")
        if table.plotted:
            view.append(f"{len(table.plotted)} plotted")
        self.query_one(ContextLine).show(table.highlighted_run, view)

    def update_plots(self) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            return
        narrow = self.has_class("-narrow")
        plots = self.query_one("#plots", Horizontal)
        if self.means:
            experiment = self.compared_experiment()
            runs = [r for r in snapshot.runs if r["experiment"] == experiment]
            mode = f"{experiment} — mean ± 95% CI over {seeds_text(runs, snapshot.curves)}"
            data = {name: means_series(runs, snapshot.curves, name) for name in METRICS}
            shown = runs
        else:
            table = self.runs_table
            by_id = {r["id"]: r for r in snapshot.runs}
            ids = table.plotted or ([table.highlighted_id] if table.highlighted_id is not None else [])
            shown = [by_id[i] for i in ids if i in by_id]
            mode = ("plotted: " + " ".join(f"#{r['id']}" for r in shown) if table.plotted
                    else f"#{shown[0]['id']} {shown[0]['name']} (o: plot more runs)" if shown else "no run")
            data = {name: runs_series(shown, snapshot.curves, name) for name in METRICS}
        self.show_claim(snapshot, shown)
        current = list(METRICS)[self.plot_index]
        plots.border_title = f"{TITLES[current]} · {mode} · g: next" if narrow else mode
        for name in METRICS:
            widget = self.query_one(f"#plot-{name}", PlotWidget)
            widget.set_show_title(not narrow)
            widget.set_data(data[name], TITLES[name])

    def show_claim(self, snapshot: Snapshot, shown: list[dict[str, Any]]) -> None:
        """The footer line of the compare mode, computed again only when its rows change."""
        experiments = {r["experiment"] for r in shown}
        mine = [r for r in snapshot.runs if r["experiment"] in experiments]
        key = (tuple(r["id"] for r in shown), tuple((r["id"], r["rounds_done"]) for r in mine))
        if key != self._claim[0]:
            self._claim = (key, pair_claim(mine, snapshot.curves, shown) if len(experiments) == 1 else None)
        line = self.query_one("#claim-line", Static)
        line.update(self._claim[1] or "")
        line.display = self._claim[1] is not None

    def compared_experiment(self) -> str | None:
        """The experiment of the means: the one the table is filtered to, else the one highlighted in
        the pane when it has focus, else the highlighted run's."""
        table = self.runs_table
        pane = self.pane.table
        if table.view.experiment:
            return table.view.experiment
        if pane.has_focus and pane.highlighted_name:
            return pane.highlighted_name
        run = table.highlighted_run
        return run["experiment"] if run else pane.highlighted_name

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if isinstance(event.data_table, ExperimentsTable):  # the pane's choice filters the table
            name = event.data_table.highlighted_name
            if name != self.runs_table.view.experiment:
                self.runs_table.set_view(experiment=name)
        self.update_context()
        self.update_plots()

    def on_marks_changed(self, event: MarksChanged) -> None:
        self.update_context()
        self.update_plots()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if isinstance(event.data_table, RunsTable):
            run_id = self.runs_table.highlighted_id
            if run_id is not None:
                self.app.open_run(run_id)
        elif isinstance(event.data_table, ExperimentsTable):
            self.action_queue()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self.set_class(self.pane.table.has_focus, "-pane-open")

    def on_resize(self) -> None:
        self.update_plots()

    def on_show(self, event: events.Show) -> None:
        if self.snapshot is not None:
            self.apply(self.snapshot)

    def action_queue(self) -> None:
        names = self.pane.targets()
        if not names and self.runs_table.view.experiment in self.pane.table.queueable:
            names = [self.runs_table.view.experiment]
        if not names or self.snapshot is None:
            self.notify("pick the experiment to queue in the experiments pane (tab), then enter or a")
            self.action_switch_pane(to_pane=True)
            return
        try:
            plan = self.app.backend.plan_queue(names, self.snapshot)
        except SpecError as e:
            self.notify(str(e), title="cannot queue", severity="error")
            return
        count = sum(plan.new.values())
        if not count:
            self.notify(f"nothing to queue: every run of {', '.join(names)} is already in the store")
            return
        lines = [f"{name}: {n} new run{'s' * (n != 1)}" for name, n in plan.new.items()]
        est = plan.estimate
        if est.wall_seconds is None:
            note = ("time: not known yet (no throughput measured for this model and batch size; "
                    "`altui estimate FILE EXPERIMENT` measures it)")
        else:
            note = (f"estimated {duration(est.wall_seconds)} on {plan.slots} slot{'s' * (plan.slots != 1)} "
                    f"({plan.source}; {est.train_images:,} training images)")
            ahead = self.snapshot.experiment_eta()
            if ahead:
                note += f", after the {duration(ahead)} already queued"
        if plan.existing:
            note += f"; {plan.existing} run(s) already in the store are left as they are"
        if self.snapshot.worker is None:
            note += "; no worker runs: queueing starts one" if self.app.backend.start_worker_on_queue \
                else "; no worker runs (w starts one)"
        self.app.confirm(f"Queue {count} run{'s' * (count != 1)} of {', '.join(names)}?", lines, note, "queue",
                     lambda: self._queued(names))

    def _queued(self, names: list[str]) -> None:
        self.pane.table.marked.clear()
        self.app.act(self.app.backend.queue, names)

    def action_cancel(self) -> None:
        self._change("cancel", CANCELLABLE)

    def action_retry(self) -> None:
        self._change("retry", RETRYABLE)

    def _change(self, verb: str, allowed: tuple[str, ...]) -> None:
        """Ask before cancelling or retrying, naming each run it applies to: the experiment's runs
        in the pane; else the marked runs (said so), else the cursor's."""
        snapshot = self.snapshot
        if snapshot is None:
            return
        table, pane = self.runs_table, self.pane.table
        by_id = {r["id"]: r for r in snapshot.runs}
        if pane.has_focus:
            experiment = pane.highlighted_name
            chosen = [r for r in snapshot.runs if experiment is None or r["experiment"] == experiment]
            chosen = [r for r in chosen if r["status"] in allowed]
            what = f"the {' or '.join(allowed)} runs of {experiment or 'every experiment'}"
            marked = False
        elif table.marked:
            chosen = [by_id[i] for i in sorted(table.marked) if i in by_id]
            shown = {r["id"] for r in table.shown}
            hidden = sum(r["id"] not in shown for r in chosen)
            what = f"the {len(chosen)} marked run{'s' * (len(chosen) != 1)}"
            what += f" ({hidden} hidden by the filter)" if hidden else ""
            marked = True
        else:
            run = table.highlighted_run
            chosen = [run] if run else []
            what = f"run #{run['id']} (the cursor row)" if run else "no run"
            marked = False
        targets = [r for r in chosen if r["status"] in allowed]
        if not targets:
            self.notify(f"nothing to {verb} in {what}: only {' or '.join(allowed)} runs can be")
            return
        left = len(chosen) - len(targets)
        note = f"{left} of them {'is' if left == 1 else 'are'} not {' or '.join(allowed)}: left as they are. " \
            if left else ""
        note += CANCEL_NOTE if verb == "cancel" else "They resume after their last completed round."
        count = len(targets)
        some = f"{count} of " if count < len(chosen) else ""
        question = f"{verb.capitalize()} {some}{what}?"
        ids = [r["id"] for r in targets]
        action = self.app.backend.cancel if verb == "cancel" else self.app.backend.retry

        def act() -> None:
            if marked:
                table.clear_marks()
            self.app.act(action, ids)

        self.app.confirm(question, [run_target(r) for r in targets], note, verb, act)

    # ---- the view ------------------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        self.query_one("#filter-bar").display = True
        self.query_one(ContextLine).display = False
        box.value = self.runs_table.view.text
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.runs_table.set_view(text=event.value.strip())
        self.update_context()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._close_filter()

    def _close_filter(self) -> None:
        self.query_one("#filter-bar").display = False
        self.query_one(ContextLine).display = True
        self.runs_table.focus()
        self.update_context()

    def action_hide_finished(self) -> None:
        self.runs_table.set_view(hide_finished=not self.runs_table.view.hide_finished)
        self.update_context()

    def action_clear(self) -> None:
        """Escape: close the filter box (clearing it), else clear the marks, else the plotted runs,
        else the filters; in the pane below 120 columns, back to the runs."""
        table, box = self.runs_table, self.query_one("#filter", Input)
        if box.has_focus:
            box.value = ""
            self._close_filter()
        elif table.clear_marks() or self._clear_pane_marks() or table.clear_plotted():
            pass
        elif self.pane.table.has_focus and self.has_class("-narrow"):
            table.focus()
        elif table.view.experiment or table.view.text or table.view.hide_finished:
            table.set_view(experiment=None, text="", hide_finished=False)
            self.pane.table.move_cursor(row=0)
        self.update_context()

    def _clear_pane_marks(self) -> bool:
        pane = self.pane.table
        if not pane.marked:
            return False
        for name in list(pane.marked):
            pane.marked.discard(name)
            pane.update_cell(name, "name", pane.name_cell(name))
        return True

    def action_switch_pane(self, to_pane: bool | None = None) -> None:
        pane = self.pane.table
        if to_pane is None:
            to_pane = not pane.has_focus
        if to_pane:
            self.add_class("-pane-open")  # below 120 columns the pane shows while it has focus
            self.call_after_refresh(pane.focus)
        else:
            self.runs_table.focus()

    def action_means(self) -> None:
        self.means = not self.means
        self.update_plots()

    def action_next_plot(self) -> None:
        plots = list(self.query(PlotWidget))
        plots[self.plot_index].remove_class("-current")
        self.plot_index = (self.plot_index + 1) % len(plots)
        plots[self.plot_index].add_class("-current")
        self.update_plots()
