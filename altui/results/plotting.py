"""Curves as plain data, drawn in the terminal (plotext) or as paper-style figures (matplotlib).

The series functions take rows as `Store.result_rows` yields them and return plain data,
name -> Series(xs, ys, lo, hi), so that the CLI, the report and the dashboard draw the same curves.
matplotlib is an optional extra (`pip install 'altui[report]'`); plotext is always there.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import plotext

from altui.results.summary import summarize, table_grid


class Series(NamedTuple):
    """One curve; lo and hi bound the 95% bootstrap interval over seeds (None for a single run)."""

    xs: list[float]
    ys: list[float]
    lo: list[float] | None = None
    hi: list[float] | None = None


@dataclass(frozen=True)
class Metric:
    x: str  # the rows' column on the x axis
    xlabel: str
    ylabel: str
    scale: float = 1.0  # accuracy is stored as a fraction and drawn in percent, as in the paper


METRICS: dict[str, Metric] = {
    "accuracy": Metric("n_labeled", "labeled images", "accuracy (%)", 100.0),
    "weight_decay": Metric("round", "round", "weight decay λ_t"),
    "effective_channels": Metric("round", "round", "effective channels"),
}


class MatplotlibMissing(RuntimeError):
    def __init__(self) -> None:
        super().__init__("drawing figure files needs matplotlib: pip install 'altui[report]'")


def metric_info(metric: str) -> Metric:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    return METRICS[metric]


def experiment_series(rows: Iterable[dict[str, Any]], metric: str = "accuracy") -> dict[str, Series]:
    """One series per method (and sweep point): the mean over seeds and its bootstrap interval.

    Sweep keys that only shift the x axis (Table 1's `initial`) fold into the curve, as in the
    summary table: one curve per weight decay along the labeled counts.
    """
    info = metric_info(metric)
    cells = summarize(rows, metric, info.x)
    if not cells:
        return {}
    _, grid = table_grid(cells)
    series = {}
    for label, by_x in grid.items():
        xs = sorted(by_x)
        series[label] = Series(
            [float(x) for x in xs],
            [info.scale * by_x[x].mean for x in xs],
            [info.scale * by_x[x].ci_low for x in xs],
            [info.scale * by_x[x].ci_high for x in xs],
        )
    return series


def run_series(rows: Iterable[dict[str, Any]], metric: str = "accuracy") -> dict[str, Series]:
    """The curve of one run (rows of one run, in round order), named after the run."""
    info = metric_info(metric)
    rows = list(rows)
    if not rows:
        return {}
    name = rows[0].get("run", "run")
    return {name: Series([float(r[info.x]) for r in rows], [info.scale * r[metric] for r in rows])}


# ---- axes, styles and notes shared by the terminal charts and the figures ---------------------

COLORS = (39, 208, 76, 197, 220, 141, 51, 244)  # 256-colour codes, distinct on dark and light backgrounds
MARKERS = ("•", "x", "+", "o", "*", "#", "@", "%", "=", "~")  # one per curve: tell curves apart without colour
FIGURE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")  # matplotlib's, in the same order
NICE = (1.0, 2.0, 2.5, 5.0)


@dataclass(frozen=True)
class Axis:
    """A value axis over `rows` rows of text: row k stands for lim[0] + k * step_per_row, and only
    rows whose value is a tick are labelled, so that a point at a labelled value sits on its row."""

    lim: tuple[float, float]
    ticks: list[float]
    labels: list[str]


def nice_numbers(at_least: float) -> Iterator[float]:
    """1, 2, 2.5, 5 times a power of ten, from the first one >= at_least upwards."""
    exponent = math.floor(math.log10(at_least)) if at_least > 0 else 0
    while True:
        for mantissa in NICE:
            value = mantissa * 10.0 ** exponent
            if value >= at_least * (1 - 1e-9):
                yield float(f"{value:.12g}")
        exponent += 1


def decimals(step: float) -> int:
    """Decimal places that show multiples of `step` exactly: 0.0025 -> 4, 10 -> 0."""
    for places in range(0, 12):
        if abs(round(step, places) - step) <= abs(step) * 1e-9:
            return places
    return 12


def value_axis(values: Iterable[float], rows: int, integer: bool = False, zero: bool = False) -> Axis:
    """Limits and ticks for plotext's y axis of `rows` rows (plotext puts value v on row
    round((rows - 1) * (v - lo) / (hi - lo))): ticks are nice numbers (1, 2, 2.5, 5 times a power
    of ten) a whole number of rows apart, at least two when there is room, so that every labelled
    row stands exactly for its label; the rows in between are worth an equal share. `integer`:
    whole-number ticks (counts, channels, rounds); `zero`: the axis starts at 0 (bars)."""
    data = [float(v) for v in values if v is not None and math.isfinite(v)]
    spans = max(1, rows - 1)
    low, high = (min(data), max(data)) if data else (0.0, 1.0)
    if zero:
        low = min(low, 0.0)
    if high == low:  # a flat curve: its own value is the one tick
        per_row = 1.0 if integer or low == 0 else next(nice_numbers(abs(low) / 10 / spans))
        lo = low - (0 if zero else spans // 2) * per_row
        label = f"{low:.0f}" if integer else f"{low:.4g}"
        return Axis((lo, lo + spans * per_row), [low], [label])
    least = 2 if spans >= 3 else 1  # rows between ticks
    fits = []  # (fewer than 3 ticks, worth of a row, step, lo, ticks): the finest with 3 ticks if any
    steps = nice_numbers(least * (high - low) / spans)
    for step in (next(steps) for _ in range(12)):
        if integer and not (step >= 1 and _multiple(step, 1)):
            continue
        for apart in range(least, spans + 1):
            per_row = step / apart
            lo = 0.0 if zero and low >= 0 else math.floor(low / per_row + 1e-9) * per_row
            top = lo + spans * per_row
            if top >= high - per_row * 1e-9:
                count = math.floor(top / step + 1e-9) - math.ceil(lo / step - 1e-9) + 1
                fits.append((count < 3, per_row, step, lo, count))
    few, finest = min(fits)[:2]
    # about as fine (within 20%) but with more ticks reads better
    _, _, per_row, step, lo = max((c, -r, r, st, lo) for f, r, st, lo, c in fits if f == few and r <= 1.2 * finest)
    places = decimals(step)
    rows_values = (lo + k * per_row for k in range(spans + 1))
    ticks = [round(v, places) for v in rows_values if _multiple(v, step)]
    return Axis((lo, lo + spans * per_row), ticks, [f"{t:.{places}f}" for t in ticks])


def _multiple(value: float, of: float) -> bool:
    quotient = value / of
    return abs(quotient - round(quotient)) < 1e-6


def point_ticks(xs: Iterable[Any], width: int) -> tuple[list[float], list[str]] | None:
    """x ticks at the data's own x values (rounds, labeled counts, bin centres), thinned to fit
    `width` columns; None for text categories (plotext labels those itself)."""
    values = sorted(set(xs))
    if not values or isinstance(values[0], str):
        return None
    integers = all(float(v).is_integer() for v in values)
    labels = [str(int(v)) if integers else f"{v:.3g}" for v in values]
    fits = max(1, width // (max(map(len, labels)) + 2))
    step = -(-len(values) // fits)
    return [float(v) for v in values[::step]], labels[::step]


def identical_to(series: dict[str, Any]) -> dict[str, str]:
    """label -> the label of the first earlier curve with the same points: drawn one over the other,
    the later one hides; the legend says so."""
    same: dict[str, str] = {}
    items = [(label, list(s[0]), list(s[1])) for label, s in series.items()]
    for i, (label, xs, ys) in enumerate(items):
        for other, oxs, oys in items[:i]:
            if other not in same and xs == oxs and len(ys) == len(oys) and all(
                    math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(ys, oys, strict=True)):
                same[label] = other
                break
    return same


def same_note(other: str) -> str:
    """The legend's note for a hidden curve: "= #2" for a run's curve, "= Random" for a method's."""
    return "= " + (other.split()[0] if other.startswith("#") else other)


class LegendEntry(NamedTuple):
    marker: str
    label: str
    note: str  # "= #2" or "= Random" when an earlier curve has the same points, else ""
    color: int
    short_note: str = ""  # the note by the other curve's marker, "= x", where the note does not fit

    @property
    def text(self) -> str:
        return f"{self.label} {self.note}" if self.note else self.label

    def fit(self, width: int) -> str:
        """The entry in `width` characters: the label is cut before the note, and a long note gives
        way to its short form."""
        if len(self.text) <= width:
            return self.text
        for note in (self.note, self.short_note):
            if note and width - len(note) - 2 >= 4:
                return f"{self.label[: width - len(note) - 2]}… {note}"
        return self.label[: max(1, width - 1)] + "…"


def legend_entries(series: dict[str, Any]) -> list[LegendEntry]:
    """Each curve's legend entry, in drawing order, identical curves noted."""
    same = identical_to(series)
    order = {label: i for i, label in enumerate(series)}
    entries = []
    for i, label in enumerate(series):
        other = same.get(label)
        entries.append(LegendEntry(
            MARKERS[i % len(MARKERS)], label, same_note(other) if other else "", COLORS[i % len(COLORS)],
            f"= {MARKERS[order[other] % len(MARKERS)]}" if other else ""))
    return entries


def hidden_curves(series: dict[str, Any], chart: str) -> dict[str, str]:
    """label -> the later curve drawn over it, for each curve none of whose markers shows in the drawn
    `chart` text (different points that fall in the same cells at this size); curves with identical
    points are left to `identical_to`'s note. Markers repeat after len(MARKERS) curves: those are not
    judged."""
    same = identical_to(series)
    labels = list(series)
    markers = [MARKERS[i % len(MARKERS)] for i in range(len(labels))]
    hidden: dict[str, str] = {}
    for i, label in enumerate(labels):
        xs, ys = list(series[label][0]), list(series[label][1])
        if (not ys or label in same.values() or label in same or markers.count(markers[i]) > 1
                or markers[i] in chart):
            continue
        later = [other for other in labels[i + 1:] if other not in same]
        if later:
            hidden[label] = min(later, key=lambda other: _distance(xs, ys, series[other]))
    return hidden


def _distance(xs: list, ys: list[float], other: Any) -> float:
    """How far apart two curves are where they share x values (infinite where they share none)."""
    at = dict(zip(other[0], other[1], strict=True))
    gaps = [abs(y - at[x]) for x, y in zip(xs, ys, strict=True) if x in at]
    return max(gaps) if gaps else math.inf


def under_note(other: str) -> str:
    """The legend's note for a curve hidden under a later one: "under #3" for a run, "under WS" else."""
    return "under " + (other.split()[0] if other.startswith("#") else other)


def note_hidden(entries: list[LegendEntry], hidden: dict[str, str]) -> list[LegendEntry]:
    """The entries with a note on each hidden curve, naming the curve over it (short: its marker)."""
    marker = {e.label: e.marker for e in entries}
    return [e._replace(note=under_note(hidden[e.label]), short_note=f"under {marker[hidden[e.label]]}")
            if e.label in hidden else e for e in entries]


# ---- terminal --------------------------------------------------------------------------------

_PLOTEXT = threading.Lock()  # plotext's module functions draw on one global figure: one chart at a time


def draw_chart(plt: Any, series: dict[str, Any], width: int, height: int, *, kind: str = "line",
               color: bool = True, bands: bool = True, vlines: dict[str, float] | None = None) -> None:
    """Draw `series` (label -> (x, y) or (x, y, low, high)) on a plotext figure `plt` (the plotext
    module or a textual-plotext Plot) of width x height characters: no title and no legend inside
    (the caller puts them outside the data), a left and a bottom axis only, y ticks on rows that
    show their values (`value_axis`), x ticks at the data's own x values. Lines are braille in the
    curve's colour with its marker at each point; with color=False the whole line is the marker.
    `kind="bar"` draws bars from 0; `vlines` (label -> x) draws vertical marker lines."""
    plt.clf()
    plt.plotsize(width, height)
    plt.theme("clear")
    plt.xaxes(True, False)
    plt.yaxes(True, False)
    values = [v for s in series.values() for v in s[1]]
    if bands:
        values += [v for s in series.values() if len(s) == 4 and s[2] is not None for v in (*s[2], *s[3])]
    integer = all(float(v).is_integer() for v in values)
    axis = value_axis(values, height - 2, integer=integer, zero=kind == "bar")  # 2 rows: x axis, x labels
    plt.ylim(*axis.lim)
    plt.yticks(axis.ticks, axis.labels)
    styles = [(COLORS[i % len(COLORS)] if color else None, MARKERS[i % len(MARKERS)]) for i in range(len(series))]
    for (tint, marker), s in zip(styles, series.values(), strict=True):
        xs, ys = list(s[0]), list(s[1])
        if kind == "bar":
            plt.bar(xs, ys, color=tint, width=0.8)
            continue
        if bands and len(s) == 4 and s[2] is not None and list(s[2]) != list(s[3]):  # one seed: no band
            plt.plot(xs, list(s[2]), color=tint, marker="·")
            plt.plot(xs, list(s[3]), color=tint, marker="·")
        plt.plot(xs, ys, color=tint, marker="braille" if color else marker)
    if kind == "line":  # every curve's markers over every line, so that no line hides a point
        for (tint, marker), s in zip(styles, series.values(), strict=True):
            plt.scatter(list(s[0]), list(s[1]), color=tint, marker=marker)
    for i, x in enumerate((vlines or {}).values()):
        plt.vline(x, COLORS[(len(series) + i) % len(COLORS)] if color else None)
    xs = [x for s in series.values() for x in s[0]] + list((vlines or {}).values())
    room = width - max(map(len, axis.labels), default=1) - 3
    ticks = point_ticks(xs, room)
    if kind == "bar" and ticks and not all(float(x).is_integer() for x in xs):
        # bins of a histogram: their centres are no values to read; nice ticks over the bins' span
        bins = sorted(set(xs))
        half = min((b - a for a, b in itertools.pairwise(bins)), default=1.0) / 2
        plt.xlim(min(xs) - half, max(xs) + half)
        ticks = span_ticks(min(xs) - half, max(xs) + half, room)
    if ticks:
        plt.xticks(*ticks)


def span_ticks(low: float, high: float, width: int, *, integer: bool = False,
               per_tick: int | None = None) -> tuple[list[float], list[str]]:
    """Nice ticks (1, 2, 2.5, 5 times a power of ten) within [low, high], as many as fit `width`
    columns with their labels apart (or `per_tick` rows or columns each): the ticks of a continuous
    axis such as a histogram's. `integer`: whole numbers only (counts)."""
    for step in nice_numbers((high - low) / 12 if high > low else 1.0):
        if integer and not (step >= 1 and _multiple(step, 1)):
            continue
        places = decimals(step)
        first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
        ticks = [round(k * step, places) for k in range(first, last + 1)]
        labels = [f"{t:.{places}f}" for t in ticks]
        each = per_tick or max(map(len, labels), default=1) + 2
        if len(ticks) * each <= max(width, 1) or len(ticks) <= 2:
            return ticks, labels
    raise AssertionError("unreachable: nice_numbers grows without bound")


def render_text(series: dict[str, Series], title: str = "", xlabel: str = "", ylabel: str = "",
                width: int = 80, height: int = 20, color: bool = True) -> str:
    """A chart of the series' means as text: the title, the chart, then the legend (each curve's
    marker, identical and hidden curves noted) and the axes' names below it, outside the data. With
    color=False, plain characters only (for files, pipes and Markdown code blocks)."""
    entries = legend_entries(series)
    axes = f"x: {xlabel}   y: {ylabel}" if xlabel or ylabel else ""
    chart_height = max(6, height - 1 - len(entries) - bool(axes))
    with _PLOTEXT:
        draw_chart(plotext, series, width, chart_height, color=color, bands=False)
        chart = plotext.build()
        plotext.clf()
    plain = plotext.uncolorize(chart)
    entries = note_hidden(entries, hidden_curves(series, plain))
    legend = [f"{e.marker} {e.text}" for e in entries]
    if color:
        legend = [plotext.colorize(line, e.color) for line, e in zip(legend, entries, strict=True)]
    lines = [title.center(width).rstrip()] if title else []
    lines += [line.rstrip() for line in (chart if color else plain).splitlines()] + legend + ([axes] if axes else [])
    return "\n".join(lines)


# ---- figure files ----------------------------------------------------------------------------


def load_matplotlib() -> Any:
    """matplotlib's Figure class (no pyplot: no global state, no GUI backend), or MatplotlibMissing."""
    try:
        import matplotlib  # noqa: F401  (imported first so that a missing package fails here)
        from matplotlib.figure import Figure
    except ImportError:
        raise MatplotlibMissing() from None
    return Figure


def save_figure(series: dict[str, Series], path: str | Path, title: str = "", xlabel: str = "",
                ylabel: str = "") -> Path:
    """The paper's figure style: a mean line per method with its own marker and its shaded 95%
    interval, integer ticks where the axis counts (rounds, labels), the legend outside the data
    with identical curves noted; PNG, SVG or PDF by the file's suffix."""
    figure_class = load_matplotlib()
    from matplotlib.ticker import MaxNLocator

    fig = figure_class(figsize=(7.2, 4.4), layout="constrained")
    ax = fig.subplots()
    same = identical_to(series)
    for i, (name, s) in enumerate(series.items()):
        label = f"{name} {same_note(same[name])}" if name in same else name
        (line,) = ax.plot(s.xs, s.ys, marker=FIGURE_MARKERS[i % len(FIGURE_MARKERS)], markersize=4,
                          linewidth=1.5, label=label)
        if s.lo is not None and s.hi is not None:
            ax.fill_between(s.xs, s.lo, s.hi, color=line.get_color(), alpha=0.2, linewidth=0)
    xs = [x for s in series.values() for x in s.xs]
    if xs and all(float(x).is_integer() for x in xs):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ys = [y for s in series.values() for y in s.ys]
    if ys and all(float(y).is_integer() for y in ys):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if series:
        fig.legend(loc="outside right upper", fontsize="small")
    path = Path(path)
    fig.savefig(path, dpi=150)
    return path
