"""PlotWidget: the dashboard's one chart widget, a textual-plotext plot with its title and legend
outside the data. altui.results.plotting draws (the same axes, markers and notes as `altui plot`).

The widget holds what it draws as plain data (`series`, `bands`, `vlines`, `title`, `legend`), so
tests read what a plot shows without parsing characters; it draws again when the data or its size
changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

from altui.results.plotting import COLORS, LegendEntry, draw_chart, hidden_curves, legend_entries, note_hidden
from altui.tui.format import short_names

Kind = Literal["line", "bar"]
RIGHT_LEGEND_WIDTH = 60  # from this width on, the legend is a column right of the data; else lines below
LEGEND_LINES = 3
MIN_ROWS = 5  # rows of data a legend below may leave


class PlotWidget(PlotextPlot):
    """One chart: line series (each with an optional low/high band) or bars, and optional vertical
    marker lines (a threshold on a histogram, say)."""

    DEFAULT_CSS = "PlotWidget { height: 1fr; min-height: 5; }"

    def __init__(self, title: str, kind: Kind = "line", *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.title = title
        self.kind: Kind = kind
        self.empty = "no data yet"
        self.show_title = True  # False when the title is shown elsewhere (a border above the plot)
        self.series: dict[str, tuple[list, list[float]]] = {}  # label -> (x, y)
        self.bands: dict[str, tuple[list[float], list[float], list[float]]] = {}  # label -> (x, low, high)
        self.vlines: dict[str, float] = {}  # label -> x of a vertical line
        self._key: tuple | None = None
        self.hidden: dict[str, str] = {}  # label -> the curve drawn over it, as last drawn

    def set_data(self, series: Mapping[str, Sequence], title: str | None = None, empty: str = "no data yet",
                 vlines: Mapping[str, float] | None = None) -> None:
        """`series`: label -> (x, y) or (x, y, low, high), e.g. altui.results.plotting.Series; a low/high
        pair draws a band around the curve. `vlines`: label -> x. `empty` is shown when there is
        nothing to draw."""
        self.empty = empty
        self.series = {k: (list(v[0]), list(v[1])) for k, v in series.items()}
        self.bands = {k: (list(v[0]), list(v[2]), list(v[3]))
                      for k, v in series.items() if len(v) == 4 and v[2] is not None and v[3] is not None}
        self.vlines = dict(vlines or {})
        if title is not None:
            self.title = title
        key = (self.title, self.empty, self.show_title, repr(self.series), repr(self.bands), repr(self.vlines))
        if key != self._key:  # polls bring the same data most of the time
            self._key = key
            self.refresh()

    def set_show_title(self, show: bool) -> None:
        if show != self.show_title:
            self.show_title = show
            self.refresh()

    @property
    def legend(self) -> list[str]:
        """The legend's lines as text: each curve (identical ones noted "= #2", hidden ones "under #3",
        as last drawn) and vertical line."""
        return [e.text for e in note_hidden(self._entries(), self.hidden)]

    def _entries(self) -> list[LegendEntry]:
        curves = legend_entries(self.series) if len(self.series) > 1 or self.vlines else []
        lines = [LegendEntry("│", label, "", COLORS[(len(self.series) + i) % len(COLORS)])
                 for i, label in enumerate(self.vlines)]
        return curves + lines

    def render(self) -> RenderResult:
        width, height = self.size
        title = Text(self.title, style="bold", no_wrap=True, overflow="ellipsis") if self.show_title else None
        if title is not None:
            title.truncate(width, overflow="ellipsis")  # one line: the joined text would wrap it
        rows = height - (1 if title else 0)
        if width < 12 or rows < 4:
            return Text(self.title, style="bold")
        if not any(y for _, y in self.series.values()):
            return Text(f"{self.title}\n\n{self.empty}", style="dim", justify="center")
        entries = self._entries()
        below = _pack([_entry(e, width) for e in entries], width)
        # right of the data on wide plots, or where lines below would leave too few rows of data
        right = bool(entries) and (width >= RIGHT_LEGEND_WIDTH or rows - len(below) - 2 < MIN_ROWS)
        legend_width = min(max(len(e.text) for e in entries) + 4, width * 2 // 5) if right else 0
        below = [] if right else below[: max(0, rows - 2 - MIN_ROWS)]
        chart = self._chart(width - legend_width, rows - len(below))
        # a curve whose every point lies under a later one's markers at this size is noted as such
        self.hidden = hidden_curves(self.series, chart.plain) if len(self.series) > 1 else {}
        entries = note_hidden(entries, self.hidden)
        legend = [_entry(e, legend_width - 2) for e in shortened(entries, legend_width - 2)]
        below = _pack([_entry(e, width) for e in entries], width)[: len(below)]
        lines = chart.split("\n", allow_blank=True)[: rows - len(below)]
        if right:
            for i, line in enumerate(lines):
                line.pad_right(width - legend_width - line.cell_len)
                if i < len(legend):
                    line.append("  ")
                    line.append_text(legend[i])
        out = ([title] if title else []) + lines + below
        return Text("\n").join(out)

    def _chart(self, width: int, height: int) -> Text:
        series = {k: (x, y, *self.bands[k][1:]) if k in self.bands else (x, y) for k, (x, y) in self.series.items()}
        draw_chart(self.plt, series, width, height, kind=self.kind, vlines=self.vlines)
        return Text.from_ansi(self.plt.build())


def shortened(entries: list[LegendEntry], width: int) -> list[LegendEntry]:
    """Entries whose label and note do not fit `width` characters with their labels shortened
    together (tui.format.short_names: each word cut alike, digits kept, still unique: blocks.0.0.1 ->
    blo.0.0.1), and their notes in the short form where the long one does not fit."""
    long = [e for e in entries if len(e.text) > width - 2]
    if not long:
        return entries
    room = width - 2 - max((len(e.short_note) + 1 for e in long if e.note), default=0)
    shorts = short_names([e.label for e in entries], max(room, 4))
    fitted = []
    for e in entries:
        if e in long:
            label = shorts[e.label]
            note = e.note if len(label) + 1 + len(e.note) <= width - 2 else e.short_note
            e = e._replace(label=label, note=note)
        fitted.append(e)
    return fitted


def _entry(entry: LegendEntry, width: int) -> Text:
    """A legend entry in its curve's colour, in `width` characters: its marker, label and note."""
    return Text(f"{entry.marker} {entry.fit(max(1, width - 2))}", style=f"color({entry.color})", no_wrap=True)


def _pack(entries: list[Text], width: int) -> list[Text]:
    """Legend entries side by side in lines of `width`, at most LEGEND_LINES (the rest counted)."""
    lines: list[Text] = []
    for i, entry in enumerate(entries):
        if lines and lines[-1].cell_len + 2 + entry.cell_len <= width:
            lines[-1].append("  ")
            lines[-1].append_text(entry)
        elif len(lines) < LEGEND_LINES:
            lines.append(entry.copy())
        else:
            more = Text(f"  +{len(entries) - i} more", style="dim")
            lines[-1].truncate(width - more.cell_len)
            lines[-1].append_text(more)
            break
    return lines
