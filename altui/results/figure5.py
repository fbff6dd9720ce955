"""Figure 5 drawn: the |gamma| histograms of altui.results.gamma, one column per run and one row per round,
with the mean/10 line in red and the count of channels below it; in the terminal (plotext) or as the
paper's figure (matplotlib, PNG, SVG or PDF by the file's suffix).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotext

from altui.results.gamma import Panel, RunGamma
from altui.results.plotting import _PLOTEXT, load_matplotlib, span_ticks

LINE = "red"  # the paper's mean/10 line


def caption(columns: Sequence[RunGamma]) -> str:
    """What the figure shows, in one line."""
    layers = {(c.model, c.layer) for c in columns}
    where = "each model's paper layer"
    if len(layers) == 1:
        ((model, layer),) = layers
        where = f"batch norm {layer!r} ({model}'s paper layer)"
    return (f"Figure 5: |γ| of {where}; red line: mean |γ| / 10; number: channels below it "
            "(ineffective)")


def caption_lines(columns: Sequence[RunGamma], width: int) -> list[str]:
    """The caption in lines of at most `width` characters, the legend on a line of its own."""
    return [line for part in caption(columns).split("; ", 1) for line in textwrap.wrap(part, width)]


def _rows(columns: Sequence[RunGamma]) -> int:
    return max(len(c.panels) for c in columns)


def _column_title(column: RunGamma, columns: Sequence[RunGamma]) -> str:
    one_layer = len({c.layer for c in columns}) == 1
    return column.label if one_layer else f"{column.label} · {column.layer}"


def _panel_title(p: Panel) -> str:
    labels = f", {p.n_labeled} labels" if p.n_labeled is not None else ""
    return f"round {p.round}{labels}"


def _count_text(p: Panel) -> str:
    return f"{p.below}/{p.channels} below {p.threshold:.2g}"


# ---- terminal --------------------------------------------------------------------------------


def render_text(columns: Sequence[RunGamma], width: int = 100, row_height: int = 14, color: bool = True) -> str:
    """The figure as text: a header naming each column's run, then a grid of plotext histograms;
    with color=False, plain characters only (files, pipes, Markdown code blocks)."""
    if not columns:
        raise ValueError("no run to draw")
    rows = _rows(columns)
    slot = width // len(columns)
    scale = shared_scale(columns)
    header = "".join(_column_title(c, columns)[:slot - 1].center(slot) for c in columns).rstrip()
    with _PLOTEXT:
        _reset()
        plotext.limitsize(False, False)  # the grid may be taller than the terminal: it scrolls
        plotext.plotsize(slot * len(columns), row_height * rows)
        plotext.subplots(rows, len(columns))
        for j, column in enumerate(columns):
            for i in range(rows):
                plotext.subplot(i + 1, j + 1)
                if i < len(column.panels):
                    _text_panel(column.panels[i], color, scale, (slot - 8, row_height - 4))
                else:  # a run with fewer recorded rounds: no empty frame
                    plotext.theme("clear")
                    plotext.frame(False)
                    plotext.xaxes(False, False)
                    plotext.yaxes(False, False)
                    plotext.xticks([])
                    plotext.yticks([])
        text = plotext.build()
        _reset()
    if not color:
        text = plotext.uncolorize(text)
    return "\n".join([*caption_lines(columns, width), header, text])


def _reset() -> None:
    """A fresh plotext figure: clear_figure() clears the active figure only, which after subplot()
    is a sub-figure; main() makes the whole figure active again (and clearing it restores plotext's
    size limits for the next chart)."""
    plotext.main()
    plotext.clear_figure()


def shared_scale(columns: Sequence[RunGamma]) -> tuple[float, int]:
    """The largest |gamma| and the tallest bin over every panel: one x and one y scale for the whole
    figure, as in the paper's Figure 5, so that rounds and runs compare at a glance."""
    panels = [p for c in columns for p in c.panels]
    top = max((p.edges[-1] for p in panels), default=1.0)
    tallest = max((n for p in panels for n in p.counts), default=0)
    return top, max(tallest, 1)


def _text_panel(p: Panel, color: bool, scale: tuple[float, int], room: tuple[int, int]) -> None:
    if color:  # the terminal's own background and text colour
        plotext.canvas_color("default")
        plotext.axes_color("default")
        plotext.ticks_color("default")
    else:
        plotext.theme("clear")
    # Each bin a filled step of its own (plotext's bar widths follow the spacing of the bars drawn,
    # not the bins); empty bins stay blank.
    for low, high, n in zip(p.edges[:-1], p.edges[1:], p.counts, strict=True):
        if n:
            plotext.plot([low, high], [n, n], fillx=True, marker="█")
    top, tallest = scale
    columns, rows = room  # of the panel's data area
    if math.isfinite(p.threshold):  # drawn after the bins, so that it stays on top of them
        plotext.plot([p.threshold] * 2, [0, tallest], marker="│", color=LINE)
    plotext.xlim(0, top)
    plotext.ylim(0, tallest)
    plotext.xticks(*span_ticks(0.0, top, columns))
    plotext.yticks(*span_ticks(0.0, tallest, rows, integer=True, per_tick=3))
    plotext.title(_panel_title(p))
    plotext.xlabel(_count_text(p))


# ---- figure files ----------------------------------------------------------------------------


def build_figure(columns: Sequence[RunGamma]) -> Any:
    """The paper's layout as a matplotlib Figure: (a), (b), (c) down the first run's column, and so on;
    each panel a |gamma| histogram with the red mean/10 line and the count below it in large type."""
    if not columns:
        raise ValueError("no run to draw")
    figure_class = load_matplotlib()
    from matplotlib.ticker import MaxNLocator

    rows = _rows(columns)
    fig = figure_class(figsize=(3.4 * len(columns), 2.5 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, len(columns), squeeze=False, sharex=True, sharey=True)
    top, tallest = shared_scale(columns)
    letter = 0
    for j, column in enumerate(columns):
        axes[0][j].annotate(_column_title(column, columns), (0.5, 1.0), xytext=(0, 22), xycoords="axes fraction",
                            textcoords="offset points", ha="center", va="bottom", fontsize=11, weight="bold")
        for i in range(rows):
            ax = axes[i][j]
            if i >= len(column.panels):
                ax.set_visible(False)
                continue
            p = column.panels[i]
            ax.stairs(p.counts, p.edges, fill=True, color="tab:blue", alpha=0.85)
            if math.isfinite(p.threshold):
                ax.axvline(p.threshold, color=LINE, linewidth=1.5)
            # the count sits in headroom above the tallest bin
            ax.text(0.95, 0.95, str(p.below), transform=ax.transAxes, ha="right", va="top", fontsize=16)
            ax.set_ylim(0, 1.3 * tallest)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlim(0, 1.04 * top)
            tag = f"({chr(ord('a') + letter)}) " if letter < 26 else ""
            ax.set_title(tag + _panel_title(p), fontsize=9)
            ax.tick_params(labelsize=8)
            if i == len(column.panels) - 1:
                ax.set_xlabel("|γ|")
            if j == 0:
                ax.set_ylabel("channels")
            letter += 1
    # about 40 characters of 10-point text fit a 3.4-inch column
    fig.suptitle("\n".join(caption_lines(columns, 40 * len(columns))), fontsize=10)
    return fig


def save_figure(columns: Sequence[RunGamma], path: str | Path) -> Path:
    """Write the figure; PNG, SVG or PDF by the file's suffix (MatplotlibMissing without matplotlib)."""
    path = Path(path)
    build_figure(columns).savefig(path, dpi=150)
    return path
