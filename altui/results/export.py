"""Export of the store's tables: raw tables streamed from the SQLite cursor to the output one row at a time
(csv, json, jsonl), or loaded for reading (md, latex); the summary long or laid out like the paper's tables.
Formats are documented in docs/export.md.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

from altui.results.summary import SUMMARY_COLUMNS, latex_escape, summarize, summary_document
from altui.store import Store

RAW_TABLES = Store.EXPORT_TABLES
TABLES = (*RAW_TABLES, "summary")
FORMATS = ("csv", "json", "jsonl", "md", "latex")
INTERVALS = ("pm", "range")  # summary cells in md/latex (summary.format_cell): "mean ± half-width" or "mean [lo, hi]"


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
