"""The reproduction report of one experiment (settings, summary table, claims, figures) and the paper's
numbers beside ours. The summary cells and tables are altui.results.summary's, the export of the store's
tables altui.results.export's (docs/export.md).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from altui.results import claims, claims_table, distillation, figure5, gamma, paper_numbers, plotting, provenance
from altui.results.paper_numbers import PaperQuote, PaperTable
from altui.results.stats import BOOTSTRAP_RESAMPLES
from altui.results.summary import SummaryRow, format_cell, markdown_table, summarize
from altui.spec.decay import derivation
from altui.store import Store, StoreError


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
        *_provenance_warning(runs),
        "## Settings\n",
        f"{derivation(json.loads(row['spec_json']))}.\n",
        f"```json\n{json.dumps(json.loads(row['spec_json']), indent=2)}\n```\n",
        "## Results\n",
        "Test accuracy (%) by number of labeled images: mean over seeds ± half the width of the 95% "
        f"interval from {BOOTSTRAP_RESAMPLES} bootstrap resamples of the seeds; best of each column "
        "in bold.\n",
        markdown_table(cells) if cells else "No round is recorded yet.\n",
    ]
    parts += _claims_section(store, experiment, runs)
    parts += distillation.section(store, experiment)
    if cells:
        multi_round = max(r["rounds_done"] for r in runs) > 1
        metrics = ("accuracy", "weight_decay", "effective_channels") if multi_round else ("accuracy",)
        parts += ["## Figures\n", *(_figure(store, experiment, m, out) for m in metrics)]
        parts += _gamma_figure(store, experiment, out)
    parts += _paper_section(store, experiment, cells)
    return "\n".join(parts)


def _provenance_warning(runs: list[dict[str, Any]]) -> list[str]:
    text = provenance.warning(runs)
    return [f"> **Warning:** {text}.\n"] if text else []


def _claims_section(store: Store, experiment: str, runs: list[dict[str, Any]]) -> list[str]:
    """Which of the paper's claims the runs support, from paired seeds (altui/results/claims.py)."""
    checked = claims.experiment_claims(store, experiment)
    return ["## Claims\n", claims_table.markdown(checked, (r["method"] for r in runs))]


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
