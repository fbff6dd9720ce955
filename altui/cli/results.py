"""Results: export, plot, report (docs/export.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from altui.cli.app import app, check_experiment, err, fail_plain, open_store, out


@app.command("export")
def export_table(
    ctx: typer.Context,
    format_: Annotated[str, typer.Option("--format", "-f", help="csv, json, jsonl, md or latex.")] = "csv",
    table: Annotated[str, typer.Option(
        "--table", "-t", help="runs, rounds, epochs, channels, picks, or summary (mean and 95% bootstrap "
                              "interval over seeds).")] = "summary",
    experiment: Annotated[str | None, typer.Option(help="Only this experiment's runs.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here, not to stdout.")] = None,
    interval: Annotated[str, typer.Option(
        help="Summary cells in md/latex: pm (mean ± half-width) or range (mean \\[lo, hi]).")] = "pm",
) -> None:
    """Export a table of the store (streamed for csv, json, jsonl). Formats: docs/export.md."""
    from altui import report

    for value, allowed, what in ((format_, report.FORMATS, "format"), (table, report.TABLES, "table"),
                                 (interval, report.INTERVALS, "interval")):
        if value not in allowed:
            fail_plain(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")
    with open_store(ctx) as store:
        check_experiment(store, experiment)
        if output is None:
            report.export(store, table, format_, sys.stdout, experiment, interval)
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8", newline="") as fp:
            count = report.export(store, table, format_, fp, experiment, interval)
    err.print(f"wrote {count} rows to {output}", highlight=False)


@app.command("plot")
def plot_curves(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(
        metavar="EXPERIMENT|RUN", help="An experiment, or a run id or name.")],
    metric: Annotated[str, typer.Option(help="accuracy, weight_decay or effective_channels.")] = "accuracy",
    out_file: Annotated[Path | None, typer.Option(
        "--out",  # "\\[": a bracket, not Rich markup
        help="Draw the paper-style figure into FILE.png, .svg or .pdf (needs altui\\[report]).",
    )] = None,
) -> None:
    """Plot a metric: one curve per method (mean over seeds) of an experiment, or one run's curve."""
    import shutil

    from altui import plotting

    if metric not in plotting.METRICS:
        fail_plain(f"unknown metric {metric!r}; allowed: {', '.join(plotting.METRICS)}")
    with open_store(ctx) as store:
        if store.experiment(target) is not None:
            series = plotting.experiment_series(store.result_rows(experiment=target), metric)
        else:
            run_id = store.resolve([target])[0]
            series = plotting.run_series(store.result_rows(run_id=run_id), metric)
    if not series:
        fail_plain(f"{target}: no round is recorded yet")
    info = plotting.METRICS[metric]
    title = f"{target}: {metric.replace('_', ' ')}"
    if out_file is None:
        size = shutil.get_terminal_size((100, 30))
        chart = plotting.render_text(series, title, info.xlabel, info.ylabel, width=size.columns,
                                     height=max(15, min(size.lines - 4, 30)), color=sys.stdout.isatty())
        sys.stdout.write(chart + "\n")
        return
    if out_file.suffix.lower() not in (".png", ".svg", ".pdf"):
        fail_plain(f"--out {out_file}: allowed: a .png, .svg or .pdf file")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        plotting.save_figure(series, out_file, title, info.xlabel, info.ylabel)
    except plotting.MatplotlibMissing as e:
        fail_plain(str(e))
    out.print(f"wrote {out_file}", highlight=False)


@app.command("report")
def write_report(
    ctx: typer.Context,
    experiment: Annotated[str, typer.Argument(help="The experiment to report.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write FILE.md (figures as PNG files beside it); default: stdout.")] = None,
) -> None:
    """A Markdown reproduction report: settings, summary table, figures, the paper's numbers."""
    from altui import report

    with open_store(ctx) as store:
        check_experiment(store, experiment)
        if output is not None:  # figures are written beside the report, before it
            output.parent.mkdir(parents=True, exist_ok=True)
        text = report.reproduction_report(store, experiment, output)
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    out.print(f"wrote {output}", highlight=False)


@app.command("claims")
def check_claims(
    ctx: typer.Context,
    experiment: Annotated[str, typer.Argument(help="The experiment to check.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per claim row, in a list.")] = False,
) -> None:
    """Which of the paper's claims an experiment's runs support: paired seeds, bootstrap interval, verdict."""
    import json

    from altui import claims

    with open_store(ctx) as store:
        check_experiment(store, experiment)
        rows = claims.experiment_claims(store, experiment)
        methods = [r["method"] for r in store.runs(experiment=experiment)]
    if as_json:
        sys.stdout.write(json.dumps([r.as_dict() for r in rows], indent=2, ensure_ascii=False) + "\n")
        return
    sys.stdout.write(claims.markdown(rows, methods))
