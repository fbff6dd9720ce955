"""One run's view: effective channels per layer, the |gamma| and pick histograms of a round, the log.
`l` switches the channels and |gamma| plots between all layers and the paper's Figure 5 layer; `t`
switches the picks plot to the teacher diagnostics (why distillation helps or hurts, per round)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from altui.store import parse_time
from altui.tui.backend import RunDetail, Snapshot
from altui.tui.format import CANCEL_NOTE, CANCELLABLE, RETRYABLE, job_text, num, run_target, status_text
from altui.tui.series import gamma_histogram
from altui.tui.widgets.plot import PlotWidget
from altui.tui.widgets.status import StatusLine

if TYPE_CHECKING:
    from altui.tui.app import AltuiApp

MAX_LAYERS_PLOTTED = 8
LEVEL_STYLE = {"warning": "yellow", "error": "bold red"}
TEACHER_SERIES = (("teacher_test_accuracy", "teacher: test"), ("teacher_picks_accuracy", "teacher: new picks"),
                  ("student_picks_fit", "student fit: new picks"))


def layer_table(channels: list[dict[str, Any]]) -> dict[str, dict[int, tuple[int, int]]]:
    """layer -> round -> (effective, channels), layers in network order."""
    table: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
    for c in channels:
        table[c["layer"]][c["round"]] = (c["effective"], c["channels"])
    return table


def layers_to_plot(table: dict[str, dict[int, tuple[int, int]]]) -> list[str]:
    """All layers when few; else those whose share of effective channels fell the most."""
    if len(table) <= MAX_LAYERS_PLOTTED:
        return list(table)

    def drop(layer: str) -> float:
        rounds = table[layer]
        first, last = rounds[min(rounds)], rounds[max(rounds)]
        return first[0] / first[1] - last[0] / last[1]

    keep = set(sorted(table, key=drop, reverse=True)[:MAX_LAYERS_PLOTTED])
    return [layer for layer in table if layer in keep]


class RunScreen(Screen):
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]  # short terminals: a shorter log
    BINDINGS = [
        Binding("escape", "back", "back", tooltip="back to the main screen"),
        Binding("left", "round(-1)", "round-", priority=True, tooltip="the histograms of the previous round"),
        Binding("right", "round(1)", "round+", priority=True, tooltip="the histograms of the next round"),
        Binding("l", "layers", "layers", tooltip="channels and |γ|: all layers, or the paper's layer (Figure 5)"),
        Binding("t", "teacher", "teacher", tooltip="classes picked, or the teacher diagnostics per round"),
        Binding("c", "cancel", "cancel", tooltip="cancel this run (asks first)"),
        Binding("r", "retry", "retry", tooltip="retry this run (asks first)"),
    ]

    app: AltuiApp

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.round: int | None = None  # the round whose histograms are shown; None: the last one
        self.detail: RunDetail | None = None
        self._channels_key: tuple | None = None
        self.paper = False  # plots of all layers (False) or of the paper's Figure 5 layer alone
        self.teacher = False  # the picks plot (False) or the teacher diagnostics (True)

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        with Horizontal(id="run-top"):
            yield DataTable(id="channels", cursor_type="none", zebra_stripes=True)
            yield PlotWidget("effective channels per layer", id="plot-layers")
        with Horizontal(id="run-middle"):
            yield PlotWidget("|γ| histogram", kind="bar", id="plot-gamma")
            yield PlotWidget("classes picked", kind="bar", id="plot-picks")
        with VerticalScroll(id="log"):
            yield Static(id="log-text")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#status", StatusLine).show(None, f"run #{self.run_id}")

    def apply(self, snapshot: Snapshot) -> None:
        detail = snapshot.detail if snapshot.detail and snapshot.detail.run["id"] == self.run_id else None
        run = detail.run if detail else None
        title = f"#{self.run_id} {run['name']} · {status_text(run)}" if run else f"run #{self.run_id}"
        if run and job_text(run):
            title += f" · job {job_text(run)}"
        self.query_one("#status", StatusLine).show(snapshot, title, self.app.error)
        if detail is None:
            return
        self.detail = detail
        self.show_channels(detail)
        self.show_round(detail)
        self.show_live(detail)
        self.show_log(detail)

    def show_channels(self, detail: RunDetail) -> None:
        table = layer_table(detail.channels)
        rounds = [r["round"] for r in detail.rounds]
        chosen = self.chosen_round(detail)
        key = (len(detail.channels), chosen, self.paper)
        if key == self._channels_key:  # rebuild only on news, so that the table keeps its scroll
            return
        self._channels_key = key
        widget = self.query_one("#channels", DataTable)
        widget.clear(columns=True)
        widget.add_column("layer")
        widget.add_column("ch")
        for r in rounds:
            widget.add_column(Text(f"r{r}", style="reverse" if r == chosen else ""))
        for layer, by_round in table.items():
            total = next(iter(by_round.values()))[1]
            widget.add_row(layer, str(total), *(str(by_round[r][0]) if r in by_round else "" for r in rounds))
        plot = self.query_one("#plot-layers", PlotWidget)
        if self.paper:
            layer = detail.paper_layer
            by_round = table.get(layer or "", {})
            series = {layer: (sorted(by_round), [by_round[r][0] for r in sorted(by_round)])} if by_round else {}
            empty = f"no channels of the paper layer {layer} yet" if layer else "no paper layer for this model"
            plot.set_data(series, f"effective channels: paper layer {layer} (Figure 5) · l: all layers", empty)
            return
        shown = layers_to_plot(table)
        series = {layer: (sorted(table[layer]), [table[layer][r][0] for r in sorted(table[layer])])
                  for layer in shown}
        which = f"all {len(table)} layers" if len(shown) == len(table) else \
            f"{len(shown)} of {len(table)} layers (the most fallen)"
        plot.set_data(series, f"effective channels: {which} · l: paper layer")

    def chosen_round(self, detail: RunDetail) -> int | None:
        if not detail.rounds:
            return None
        last = detail.rounds[-1]["round"]
        return last if self.round is None else min(max(self.round, 0), last)

    def show_round(self, detail: RunDetail) -> None:
        gamma, picks = self.query_one("#plot-gamma", PlotWidget), self.query_one("#plot-picks", PlotWidget)
        chosen = self.chosen_round(detail)
        live = detail.run["status"] == "running"  # the picks' place shows the round in progress (show_live)
        if chosen is None:
            gamma.set_data({}, "|γ| histogram")
            if not live:
                picks.set_data({}, "classes picked")
            return
        row = next(r for r in detail.rounds if r["round"] == chosen)
        if self.paper:
            self.show_paper_gamma(detail, chosen)
        else:
            bins, counts = json.loads(row["gamma_bins"]), json.loads(row["gamma_counts"])
            centers = [round((a + b) / 2, 4) for a, b in zip(bins[:-1], bins[1:], strict=True)]
            gamma.set_data({f"round {chosen}": (centers, counts)}, f"|γ|, all layers, round {chosen}  ←/→")
        if self.teacher:
            self.show_teacher(detail)
            return
        classes = json.loads(row["pick_class_counts"])
        if live:
            return
        if sum(classes):
            picks.set_data({f"round {chosen}": ([str(i) for i in range(len(classes))], classes)},
                           f"classes picked after round {chosen}")
        else:
            title = f"classes picked after round {chosen}"
            picks.set_data({}, title, empty="none: the last round picks none")

    def show_live(self, detail: RunDetail) -> None:
        """While the run trains, the round in progress takes the picks' place: its training loss by
        epoch, with the epoch, accuracy and throughput in the title, so that a run that diverges or
        stalls shows at once, not after the round."""
        run = detail.run
        if run["status"] != "running" or self.teacher:  # t asked for the teacher diagnostics instead
            return
        picks, round_ = self.query_one("#plot-picks", PlotWidget), run["rounds_done"]
        epochs = detail.epochs
        if not epochs:
            picks.set_data({}, f"round {round_} in progress", empty="waiting for its first epoch")
            return
        last = epochs[-1]
        finite = [(e["epoch"], e["train_loss"]) for e in epochs
                  if e["train_loss"] is not None and math.isfinite(e["train_loss"])]
        note = "" if len(finite) == len(epochs) else " · loss NOT FINITE"
        title = (f"round {round_} live: epoch {last['epoch']}/{run.get('epochs_total') or '?'} · "
                 f"loss {num(last['train_loss'], '.3g')} · acc {num(last['train_accuracy'], '.1%')} · "
                 f"{num(last['images_per_second'], '.0f')} img/s{note}")
        picks.set_data({"train loss": ([e for e, _ in finite], [v for _, v in finite])}, title,
                       empty="no finite training loss yet")

    def show_teacher(self, detail: RunDetail) -> None:
        """Per round t >= 1 (%): the teacher (the previous round's model) on the test set and on the new
        picks, and the student's fit of the new picks' labels (docs/method.md)."""
        plot = self.query_one("#plot-picks", PlotWidget)
        rows = detail.teacher
        rounds = [r["round"] for r in rows]
        series = {label: (rounds, [round(100 * r[key], 1) for r in rows]) for key, label in TEACHER_SERIES}
        plot.set_data(series if rows else {}, "teacher (previous model) and student, %  · t: picks",
                      empty="no round with a previous model yet (rounds >= 1)")

    def show_paper_gamma(self, detail: RunDetail, chosen: int) -> None:
        """Figure 5: the paper layer's |γ| after the round, its mean/10 line and the channels below it."""
        gamma, layer = self.query_one("#plot-gamma", PlotWidget), detail.paper_layer
        row = next((g for g in detail.paper_gammas if g["round"] == chosen), None)
        if row is None:
            gamma.set_data({}, f"|γ| of paper layer {layer}, round {chosen}",
                           empty="not recorded for this round" if layer else "no paper layer for this model")
            return
        centers, counts, line = gamma_histogram(row["abs_gamma"])
        counted = next((c for c in detail.channels if c["round"] == chosen and c["layer"] == layer), None)
        below = f"{counted['channels'] - counted['effective']}/{counted['channels']} below mean/10 · " \
            if counted else ""
        gamma.set_data({f"round {chosen}": (centers, counts)},
                       f"round {chosen}: {below}|γ| of paper layer {layer}  ←/→",
                       vlines={f"mean/10 = {line:.3g}": line})

    def show_log(self, detail: RunDetail) -> None:
        text = Text()
        for e in detail.events:
            at = parse_time(e["at"])
            stamp = at.astimezone().strftime("%H:%M:%S") if at else ""
            text.append(f"{stamp} {e['message']}\n", style=LEVEL_STYLE.get(e["level"], ""))
        if detail.run.get("error"):
            text.append(detail.run["error"].rstrip()[-2000:], style="red")
        log = self.query_one("#log", VerticalScroll)
        at_end = log.scroll_y >= log.max_scroll_y
        self.query_one("#log-text", Static).update(text if text else Text("no events yet", style="dim"))
        if at_end:  # follow the tail unless the user scrolled up
            log.call_after_refresh(log.scroll_end, animate=False)

    def action_round(self, step: int) -> None:
        if self.detail is None or not self.detail.rounds:
            return
        last = self.detail.rounds[-1]["round"]
        self.round = min(max(self.chosen_round(self.detail) + step, 0), last)
        self.show_channels(self.detail)
        self.show_round(self.detail)

    def action_layers(self) -> None:
        self.paper = not self.paper
        self.notify("plots of the paper's layer (Figure 5)" if self.paper else "plots of all layers")
        if self.detail is not None:
            self.show_channels(self.detail)
            self.show_round(self.detail)

    def action_teacher(self) -> None:
        self.teacher = not self.teacher
        self.notify("teacher diagnostics per round" if self.teacher else "classes picked per round")
        if self.detail is not None:
            self.show_round(self.detail)

    def _change(self, verb: str, allowed: tuple[str, ...]) -> None:
        run = self.detail.run if self.detail else None
        if run is None:
            return
        if run["status"] not in allowed:
            self.notify(f"nothing to {verb}: run #{run['id']} is {status_text(run)} "
                        f"(only {' or '.join(allowed)} runs can be)")
            return
        action = self.app.backend.cancel if verb == "cancel" else self.app.backend.retry
        note = CANCEL_NOTE if verb == "cancel" else "It resumes after its last completed round."
        self.app.confirm(f"{verb.capitalize()} run #{run['id']} (this run)?", [run_target(run)], note, verb,
                         lambda: self.app.act(action, [run["id"]]))

    def action_cancel(self) -> None:
        self._change("cancel", CANCELLABLE)

    def action_retry(self) -> None:
        self._change("retry", RETRYABLE)

    def action_back(self) -> None:
        self.app.backend.detail_run = None  # polls stop reading this run's details
        self.dismiss()
