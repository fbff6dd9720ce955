"""Curves as plain data, drawn in the terminal (plotext) or as paper-style figures (matplotlib).

The series functions take rows as `Store.result_rows` yields them and return plain data,
name -> Series(xs, ys, lo, hi), so that the CLI, the report and the dashboard draw the same curves.
matplotlib is an optional extra (`pip install 'altui[report]'`); plotext is always there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import plotext

from altui.report import summarize, table_grid


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


# ---- terminal --------------------------------------------------------------------------------

_PLOTEXT = threading.Lock()  # plotext draws on one global figure: one chart at a time
PLAIN_MARKERS = ("•", "x", "+", "o", "*", "#", "@", "%", "=", "~")  # tell curves apart without colour


def render_text(series: dict[str, Series], title: str = "", xlabel: str = "", ylabel: str = "",
                width: int = 80, height: int = 20, color: bool = True) -> str:
    """A plotext chart of the series' means as text; with color=False, plain characters only (for
    files, pipes and Markdown code blocks)."""
    with _PLOTEXT:
        plotext.clear_figure()
        plotext.plotsize(width, height)
        if color:  # the terminal's own background and text colour, coloured curves
            plotext.canvas_color("default")
            plotext.axes_color("default")
            plotext.ticks_color("default")
        else:
            plotext.theme("clear")
        for i, (name, s) in enumerate(series.items()):
            marker = None if color else PLAIN_MARKERS[i % len(PLAIN_MARKERS)]
            plotext.plot(s.xs, s.ys, label=name, marker=marker)
        plotext.title(title)
        plotext.xlabel(xlabel)
        plotext.ylabel(ylabel)
        text = plotext.build()
        plotext.clear_figure()
    return text if color else plotext.uncolorize(text)


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
    """The paper's figure style: a mean line per method and its shaded 95% interval; PNG, SVG or PDF
    by the file's suffix."""
    figure_class = load_matplotlib()
    fig = figure_class(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    for name, s in series.items():
        (line,) = ax.plot(s.xs, s.ys, marker="o", markersize=3, linewidth=1.5, label=name)
        if s.lo is not None and s.hi is not None:
            ax.fill_between(s.xs, s.lo, s.hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize="small")
    path = Path(path)
    fig.savefig(path, dpi=150)
    return path
