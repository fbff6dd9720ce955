"""PlotWidget: a plotext chart in a Static. Every plotext call of the dashboard is in this module.

The widget holds what it draws as plain data (`series`, `bands`, `title`), so tests read what a plot
shows without parsing characters; it draws again when the data or its size changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import plotext as plt
from rich.text import Text
from textual.widgets import Static

from altui.plotting import _PLOTEXT as PLOTEXT_LOCK  # plotext draws on one global figure

# 256-colour palette codes, distinct on dark and light backgrounds.
COLORS = (39, 208, 76, 197, 220, 141, 51, 244)

Kind = Literal["line", "bar"]


class PlotWidget(Static):
    """One chart: line series (optionally with a low/high band each) or one bar series."""

    DEFAULT_CSS = "PlotWidget { height: 1fr; min-height: 5; }"

    def __init__(self, title: str, kind: Kind = "line", *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.title = title
        self.empty = "no data yet"
        self.kind: Kind = kind
        self.series: dict[str, tuple[list, list[float]]] = {}  # label -> (x, y)
        self.bands: dict[str, tuple[list[float], list[float], list[float]]] = {}  # label -> (x, low, high)
        self._drawn: tuple | None = None

    def set_data(
        self, series: Mapping[str, Sequence], title: str | None = None, empty: str = "no data yet"
    ) -> None:
        """`series`: label -> (x, y) or (x, y, low, high), e.g. altui.plotting.Series; a low/high
        pair draws a band around the curve. `empty` is shown when there is nothing to draw."""
        self.empty = empty
        self.series = {k: (list(v[0]), list(v[1])) for k, v in series.items()}
        self.bands = {k: (list(v[0]), list(v[2]), list(v[3]))
                      for k, v in series.items() if len(v) == 4 and v[2] is not None and v[3] is not None}
        if title is not None:
            self.title = title
        self.draw()

    def on_resize(self) -> None:
        self.draw()

    def draw(self) -> None:
        width, height = self.content_size
        key = (width, height, self.title, self.empty, self.kind, repr(self.series), repr(self.bands))
        if key == self._drawn:  # polls bring the same data most of the time
            return
        self._drawn = key
        if width < 12 or height < 4:
            self.update(Text(self.title, style="bold"))
        elif not any(y for _, y in self.series.values()):
            self.update(Text(f"{self.title}\n\n{self.empty}", style="dim", justify="center"))
        else:
            self.update(Text.from_ansi(self._build(width, height)))

    def _build(self, width: int, height: int) -> str:
        with PLOTEXT_LOCK:
            return self._build_locked(width, height)

    def _build_locked(self, width: int, height: int) -> str:
        plt.clf()
        plt.plotsize(width, height)
        plt.theme("clear")
        plt.title(self.title)
        if self.kind == "bar":
            for i, (label, (x, y)) in enumerate(self.series.items()):
                plt.bar(x, y, color=COLORS[i % len(COLORS)], label=label if len(self.series) > 1 else "")
        else:
            for i, (label, (x, y)) in enumerate(self.series.items()):
                color = COLORS[i % len(COLORS)]
                if label in self.bands:
                    bx, low, high = self.bands[label]
                    if low != high:  # one seed has no band
                        plt.plot(bx, low, color=color, marker="·")
                        plt.plot(bx, high, color=color, marker="·")
                plt.plot(x, y, color=color, marker="braille", label=label)
        self._xticks(width)
        text = plt.build()
        plt.clf()
        return text

    def _xticks(self, width: int) -> None:
        """Ticks at the data's own x values, thinned to fit: plotext's choice for bars changes from
        one process to the next, and rounds or label counts read better without 0.75 ticks."""
        xs = sorted({v for x, _ in self.series.values() for v in x})
        if not xs or isinstance(xs[0], str):
            return
        integers = all(float(v).is_integer() for v in xs)
        if self.kind == "line" and not integers:
            return
        labels = [str(int(v)) if integers else f"{v:.3g}" for v in xs]
        fits = max(1, (width - 8) // (max(map(len, labels)) + 2))
        step = -(-len(xs) // fits)
        plt.xticks(xs[::step], labels[::step])
