"""Aggregation over seeds (mean and bootstrap interval), paper-style tables, and export.

The summary is built by pure functions over plain rows (dicts as `Store.result_rows` yields them), so
that it tests without a store and the dashboard can reuse it. Raw tables are exported streamed: rows go
from the SQLite cursor to the output one at a time. Formats are documented in docs/export.md.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from altui.results import paper_numbers
from altui.results.paper_numbers import PaperQuote, PaperTable
from altui.store import Store, StoreError

RAW_TABLES = Store.EXPORT_TABLES
TABLES = (*RAW_TABLES, "summary")
FORMATS = ("csv", "json", "jsonl", "md", "latex")
INTERVALS = ("pm", "range")  # table cells: "mean ± half-width" or "mean [lo, hi]"

BOOTSTRAP_RESAMPLES = 1000  # the paper's figures: "1000 bootstrap resampling"
BOOTSTRAP_SEED = 0  # a fresh numpy Generator per cell, so every cell is reproducible on its own
SUMMARY_COLUMNS = ("experiment", "method", "sweep", "n_labeled", "mean", "ci_low", "ci_high", "seeds")


# ---- summary ---------------------------------------------------------------------------------


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


def bootstrap_interval(values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """The 95% percentile interval of the mean: `resamples` resamples of the values (with replacement,
    each as many as the values), the 2.5th and 97.5th percentiles of their means."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


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


# ---- export ----------------------------------------------------------------------------------


def iter_rows(store: Store, table: str, experiment: str | None = None) -> Iterator[dict[str, Any]]:
    """A raw table's rows straight from the SQLite cursor; `summary` rows as dicts (long format)."""
    if table == "summary":
        return (row.as_dict() for row in summarize(store.result_rows(experiment)))
    return store.export_rows(table, experiment)


def columns_of(store: Store, table: str) -> list[str]:
    return list(SUMMARY_COLUMNS) if table == "summary" else store.export_columns(table)


def _scalar(value: Any) -> Any:
    """Nested values (the summary's sweep point) go into csv and table cells as compact JSON."""
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def write_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str], fp: TextIO) -> int:
    writer = csv.writer(fp, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow([_scalar(row[c]) for c in columns])
        count += 1
    return count


def write_jsonl(rows: Iterable[dict[str, Any]], fp: TextIO) -> int:
    count = 0
    for row in rows:
        fp.write(json.dumps(row) + "\n")
        count += 1
    return count


def write_json(rows: Iterable[dict[str, Any]], fp: TextIO) -> int:
    """A JSON array written one element at a time, so that it never sits whole in memory."""
    fp.write("[")
    count = 0
    for row in rows:
        fp.write(("," if count else "") + "\n  " + json.dumps(row))
        count += 1
    fp.write("\n]\n" if count else "]\n")
    return count


def plain_table(rows: Iterable[dict[str, Any]], columns: Sequence[str], fmt: str) -> str:
    """A raw table as Markdown or LaTeX. These formats are for reading, so the rows are loaded."""
    body = [[_scalar(row[c]) for c in columns] for row in rows]
    if fmt == "md":
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join("" if v is None else str(v).replace("|", r"\|") for v in r) + " |"
                  for r in body]
    else:
        lines = [r"\begin{tabular}{" + "l" * len(columns) + "}", r"\toprule",
                 " & ".join(latex_escape(c) for c in columns) + r" \\", r"\midrule"]
        lines += [" & ".join("" if v is None else latex_escape(v) for v in r) + r" \\" for r in body]
        lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def export(store: Store, table: str, fmt: str, fp: TextIO, experiment: str | None = None,
           interval: str = "pm") -> int:
    """Write one table in one format to `fp`; returns the number of rows written."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; allowed: {', '.join(TABLES)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if table == "summary" and fmt in ("md", "latex"):  # laid out like the paper's tables
        cells = summarize(store.result_rows(experiment))
        fp.write(summary_document(cells, fmt, interval))
        return len(cells)
    rows = iter_rows(store, table, experiment)
    if fmt == "csv":
        return write_csv(rows, columns_of(store, table), fp)
    if fmt == "jsonl":
        return write_jsonl(rows, fp)
    if fmt == "json":
        return write_json(rows, fp)
    listed = list(rows)
    fp.write(plain_table(listed, columns_of(store, table), fmt))
    return len(listed)


# ---- reproduction report ---------------------------------------------------------------------


def _matches(cell: SummaryRow, method: str, sweep: dict[str, Any], n_labeled: int) -> bool:
    def same(a: Any, b: Any) -> bool:
        numbers = isinstance(a, (int, float)) and isinstance(b, (int, float))
        return math.isclose(a, b) if numbers else a == b  # 0.1 read back from JSON is still 0.1

    return (cell.method == method and cell.n_labeled == n_labeled
            and all(k in cell.sweep and same(cell.sweep[k], v) for k, v in sweep.items()))


def find_cell(cells: Iterable[SummaryRow], method: str, sweep: dict[str, Any],
              n_labeled: int) -> SummaryRow | None:
    return next((c for c in cells if _matches(c, method, sweep, n_labeled)), None)


def _ours(cell: SummaryRow | None) -> str:
    return format_cell(cell) if cell else "–"


def paper_table_comparison(table: PaperTable, cells: dict[str, list[SummaryRow]]) -> str:
    """The paper's table with our numbers beside each of its cells: "paper / ours"; `cells` holds the
    summary of each experiment the table draws on."""
    lines = [f"**{table.title}** (paper / ours, %)\n",
             "| | " + " | ".join(str(c) for c in table.columns) + " |",
             "|---|" + "---:|" * len(table.columns)]
    for row in table.rows:
        source = cells.get(row.experiment or table.experiment, [])
        texts = [f"{paper:.2f} / {_ours(find_cell(source, row.method, row.sweep, n))}"
                 for n, paper in zip(table.columns, row.values, strict=True)]
        where = f" (ours: {row.experiment})" if row.experiment else ""
        lines.append(f"| {row.label}{where} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def quotes_comparison(quotes: Sequence[PaperQuote], cells: Sequence[SummaryRow]) -> str:
    """The numbers the paper's text quotes, beside ours at the same labeled count."""
    lines = ["| Method (paper) | Where | Labels | Paper | Ours | Seeds |", "|---|---|---:|---:|---:|---:|"]
    for q in quotes:
        cell = find_cell(cells, q.method, {}, q.n_labeled)
        seeds = cell.seeds if cell else 0
        lines.append(f"| {q.label} | {q.where} | {q.n_labeled} | {q.value:.2f} | {_ours(cell)} | {seeds} |")
    return "\n".join(lines) + "\n"


def _figure(store: Store, experiment: str, metric: str, out: Path | None) -> str:
    """A PNG beside the report when matplotlib is there and the report is a file; else a text chart."""
    from altui.results import plotting  # plotting builds on this module's summary

    info = plotting.metric_info(metric)
    series = plotting.experiment_series(store.result_rows(experiment), metric)
    title = f"{experiment}: {metric.replace('_', ' ')}"
    if out is not None:
        try:
            png = plotting.save_figure(series, out.parent / f"{out.stem}-{metric}.png", title,
                                       info.xlabel, info.ylabel)
            return f"![{title}]({png.name})\n"
        except plotting.MatplotlibMissing:
            pass
    chart = plotting.render_text(series, title, info.xlabel, info.ylabel, width=100, height=24, color=False)
    return f"```text\n{chart}\n```\n"


def _gamma_figure(store: Store, experiment: str, out: Path | None) -> list[str]:
    """The paper's Figure 5 for the experiment's WS, WS+init and Entropy+init runs (the lowest seed of
    each), when it has any: a PNG beside the report when matplotlib is there and the report is a file,
    else a text chart. Runs without |gamma| rows are named, not drawn."""
    from altui.results import figure5, gamma, plotting

    columns, missing = [], []
    for run_id in gamma.paper_runs(store, experiment):
        try:
            columns.append(gamma.run_gamma(store, run_id))
        except gamma.GammaError as e:
            missing.append(f"- not drawn: {e}\n")
    if not columns and not missing:
        return []
    parts = ["### Effective channels of the paper's layer (Figure 5)\n",
             "|γ| of one batch norm at the first, a middle and the last round of each run, one column per "
             "run; the red line is the layer's mean |γ| / 10, the number the channels below it (§5.1).\n",
             *missing]
    if not columns:
        return parts
    if out is not None:
        try:
            png = figure5.save_figure(columns, out.parent / f"{out.stem}-gamma.png")
            return [*parts, f"![{figure5.caption(columns)}]({png.name})\n"]
        except plotting.MatplotlibMissing:
            pass
    return [*parts, f"```text\n{figure5.render_text(columns, width=100, color=False)}\n```\n"]


def reproduction_report(store: Store, experiment: str, out: Path | None = None) -> str:
    """A Markdown report of one experiment: settings, summary table, figures, and the paper's
    numbers beside ours where the experiment is one of the paper's. Figures are PNG files beside
    `out` when matplotlib is installed, else text charts in the report."""
    row = store.experiment(experiment)
    if row is None:
        raise StoreError(f"no experiment {experiment!r} in {store.path} (see `altui ls`)")
    runs = store.runs(experiment=experiment)
    cells = summarize(store.result_rows(experiment))
    statuses = ", ".join(f"{n} {s}" for s, n in Counter(r["status"] for r in runs).items())
    seeds = sorted({r["seed"] for r in runs})
    paper = paper_numbers.FIGURES.get(experiment)
    figure = f" Reproduces the paper's {paper}." if paper else ""
    parts = [
        f"# Reproduction report: {experiment}\n",
        f"Store `{store.path}`, generated {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.{figure}\n",
        f"{len(runs)} runs ({statuses or 'none'}); seeds {', '.join(map(str, seeds)) or '–'}.\n",
        "## Settings\n",
        f"```json\n{json.dumps(json.loads(row['spec_json']), indent=2)}\n```\n",
        "## Results\n",
        "Test accuracy (%) by number of labeled images: mean over seeds ± half the width of the 95% "
        f"interval from {BOOTSTRAP_RESAMPLES} bootstrap resamples of the seeds; best of each column "
        "in bold.\n",
        markdown_table(cells) if cells else "No round is recorded yet.\n",
    ]
    parts += _claims_section(store, experiment, runs)
    if cells:
        multi_round = max(r["rounds_done"] for r in runs) > 1
        metrics = ("accuracy", "weight_decay", "effective_channels") if multi_round else ("accuracy",)
        parts += ["## Figures\n", *(_figure(store, experiment, m, out) for m in metrics)]
        parts += _gamma_figure(store, experiment, out)
    parts += _paper_section(store, experiment, cells)
    return "\n".join(parts)


def _claims_section(store: Store, experiment: str, runs: list[dict[str, Any]]) -> list[str]:
    """Which of the paper's claims the runs support, from paired seeds (altui/results/claims.py)."""
    from altui.results import claims  # claims builds on this module's bootstrap

    checked = claims.experiment_claims(store, experiment)
    return ["## Claims\n", claims.markdown(checked, (r["method"] for r in runs))]


def _paper_section(store: Store, experiment: str, cells: list[SummaryRow]) -> list[str]:
    table = paper_numbers.TABLES.get(experiment)
    quotes = paper_numbers.quotes_for(experiment)
    if table is None and not quotes:
        return []
    parts = ["## The paper's numbers\n"]
    if table is not None:
        sources = {experiment: cells}
        for other in {r.experiment for r in table.rows if r.experiment}:
            sources[other] = summarize(store.result_rows(other))
        parts.append(paper_table_comparison(table, sources))
    if quotes:
        parts.append(quotes_comparison(quotes, cells))
    return parts
