"""Summary cells over seeds (mean and bootstrap interval) and the paper-style tables they make.

Pure functions over plain rows (dicts as `Store.result_rows` yields them), so that the summary tests without
a store and the export, the report, the plots, the claims and the dashboard share it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from altui.results.stats import bootstrap_interval

SUMMARY_COLUMNS = ("experiment", "method", "sweep", "n_labeled", "mean", "ci_low", "ci_high", "seeds")


@dataclass(frozen=True)
class SummaryRow:
    """One cell of a results table: a metric over the seeds of one method and sweep point at one x."""

    experiment: str
    method: str
    sweep: dict[str, Any]
    n_labeled: int  # the x value: labeled count, or the round for per-round metrics
    mean: float
    ci_low: float
    ci_high: float
    seeds: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(rows: Iterable[dict[str, Any]], metric: str = "accuracy",
              x: str = "n_labeled") -> list[SummaryRow]:
    """Mean and bootstrap interval over seeds of `metric`, per experiment, method, sweep point and `x`.

    Groups keep the order in which they first appear (run order); x values are sorted. The values of a
    group are taken in seed order, so that the interval does not depend on the order of the rows.
    """
    groups: dict[tuple[str, str, str], dict[int, list[tuple[int, float]]]] = {}
    for row in rows:
        key = (row["experiment"], row["method"], row.get("sweep_json") or "{}")
        groups.setdefault(key, {}).setdefault(row[x], []).append((row["seed"], row[metric]))
    summary = []
    for (experiment, method, sweep_json), by_x in groups.items():
        for x_value in sorted(by_x):
            values = [v for _, v in sorted(by_x[x_value], key=lambda sv: sv[0])]
            low, high = bootstrap_interval(values)
            summary.append(SummaryRow(experiment, method, json.loads(sweep_json), x_value,
                                      float(np.mean(values)), low, high, len(values)))
    return summary


def sweep_label(sweep: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sweep.items())


def row_label(method: str, sweep: dict[str, Any]) -> str:
    return f"{method} ({sweep_label(sweep)})" if sweep else method


def _foldable_keys(cells: Sequence[SummaryRow]) -> list[str]:
    """Sweep keys that can move from the row labels into the columns without two cells colliding.

    Table 1 sweeps `initial` with one round per run: without folding, each (method, initial, decay) row
    would hold one cell; folded, a row is a decay and its cells run along the labeled counts, as in
    the paper. Only one-cell sweep points fold: longer curves of different settings stay apart.
    """
    if len({(c.method, json.dumps(c.sweep)) for c in cells}) < len(cells):
        return []
    folded: list[str] = []
    keys = list(dict.fromkeys(k for c in cells for k in c.sweep))
    for key in keys:
        drop = {*folded, key}
        seen = {(c.method, _kept(c.sweep, drop), c.n_labeled) for c in cells}
        if len(seen) == len(cells):
            folded.append(key)
    return folded


def _kept(sweep: dict[str, Any], drop: set[str]) -> str:
    return json.dumps({k: v for k, v in sweep.items() if k not in drop})


def table_grid(cells: Sequence[SummaryRow]) -> tuple[list[int], dict[str, dict[int, SummaryRow]]]:
    """One experiment's cells as (columns, row label -> column -> cell), rows in first-seen order."""
    folded = set(_foldable_keys(cells))
    columns = sorted({c.n_labeled for c in cells})
    grid: dict[str, dict[int, SummaryRow]] = {}
    for c in cells:
        kept = {k: v for k, v in c.sweep.items() if k not in folded}
        grid.setdefault(row_label(c.method, kept), {})[c.n_labeled] = c
    return columns, grid


def format_cell(cell: SummaryRow, interval: str = "pm") -> str:
    """Percent with 2 decimals: "98.12 ± 0.31" (half the interval's width) or "98.12 [97.80, 98.41]";
    one seed gives no interval, so its cell is the value alone."""
    mean, low, high = 100 * cell.mean, 100 * cell.ci_low, 100 * cell.ci_high
    if cell.seeds == 1:
        return f"{mean:.2f}"
    if interval == "range":
        return f"{mean:.2f} [{low:.2f}, {high:.2f}]"
    return f"{mean:.2f} ± {(high - low) / 2:.2f}"


def _best(grid: dict[str, dict[int, SummaryRow]], column: int) -> float | None:
    means = [round(100 * row[column].mean, 2) for row in grid.values() if column in row]
    return max(means) if means else None  # compared as printed: equal-looking cells are all bold


def by_experiment(cells: Iterable[SummaryRow]) -> dict[str, list[SummaryRow]]:
    groups: dict[str, list[SummaryRow]] = {}
    for c in cells:
        groups.setdefault(c.experiment, []).append(c)
    return groups


def markdown_table(cells: Sequence[SummaryRow], interval: str = "pm") -> str:
    """One experiment's summary as a Markdown table; the best mean of each column in bold."""
    columns, grid = table_grid(cells)
    best = {col: _best(grid, col) for col in columns}
    lines = ["| Method | " + " | ".join(str(c) for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for label, row in grid.items():
        texts = []
        for col in columns:
            cell = row.get(col)
            text = format_cell(cell, interval) if cell else "–"
            texts.append(f"**{text}**" if cell and round(100 * cell.mean, 2) == best[col] else text)
        lines.append(f"| {label} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def latex_table(cells: Sequence[SummaryRow], interval: str = "pm") -> str:
    """One experiment's summary as a LaTeX tabular (booktabs rules); the best mean of each column in
    \\textbf."""
    columns, grid = table_grid(cells)
    best = {col: _best(grid, col) for col in columns}
    lines = [r"\begin{tabular}{l" + "r" * len(columns) + "}", r"\toprule",
             "Method & " + " & ".join(str(c) for c in columns) + r" \\", r"\midrule"]
    for label, row in grid.items():
        texts = []
        for col in columns:
            cell = row.get(col)
            text = format_cell(cell, interval).replace("±", r"$\pm$") if cell else "--"
            texts.append(rf"\textbf{{{text}}}" if cell and round(100 * cell.mean, 2) == best[col] else text)
        lines.append(latex_escape(label) + " & " + " & ".join(texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def summary_document(cells: Sequence[SummaryRow], fmt: str, interval: str = "pm") -> str:
    """md or latex: one table per experiment, each under its name."""
    parts = []
    for experiment, group in by_experiment(cells).items():
        if fmt == "md":
            parts.append(f"### {experiment}\n\n" + markdown_table(group, interval))
        else:
            parts.append(f"% {experiment}\n" + latex_table(group, interval))
    return "\n".join(parts)
