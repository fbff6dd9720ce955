"""Results: export, plot, report (docs/export.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from altui.cli.app import app, check_experiment, err, fail, open_store, out


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
    from altui.results import export

    for value, allowed, what in ((format_, export.FORMATS, "format"), (table, export.TABLES, "table"),
                                 (interval, export.INTERVALS, "interval")):
        if value not in allowed:
            fail(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")
    with open_store(ctx, read_only=True) as store:
        check_experiment(store, experiment)
        if output is None:
            export.export(store, table, format_, sys.stdout, experiment, interval)
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8", newline="") as fp:
            count = export.export(store, table, format_, fp, experiment, interval)
    err.print(f"wrote {count} rows to {output}", highlight=False)


GAMMA = "gamma"  # Figure 5: not a curve, the |gamma| histograms of the runs' paper layer


@app.command("plot")
def plot_curves(
    ctx: typer.Context,
    targets: Annotated[list[str], typer.Argument(
        metavar="EXPERIMENT|RUN",
        help="An experiment, or a run id or name; with --metric gamma several, one column each (an "
             "experiment stands for its WS, WS+init and Entropy+init runs).")],
    metric: Annotated[str, typer.Option(
        help="accuracy, weight_decay, effective_channels, or gamma (the paper's Figure 5: |γ| histograms "
             "of the model's paper layer at the first, a middle and the last round).")] = "accuracy",
    out_file: Annotated[Path | None, typer.Option(
        "--out",  # "\\[": a bracket, not Rich markup
        help="Draw the paper-style figure into FILE.png, .svg or .pdf (needs altui\\[report]).",
    )] = None,
) -> None:
    """Plot a metric: one curve per method (mean over seeds) of an experiment, or one run's curve;
    `--metric gamma` draws the paper's Figure 5 for one or several runs."""
    import shutil

    from altui.results import plotting

    if metric != GAMMA and metric not in plotting.METRICS:
        fail(f"unknown metric {metric!r}; allowed: {', '.join([*plotting.METRICS, GAMMA])}")
    if out_file is not None and out_file.suffix.lower() not in (".png", ".svg", ".pdf"):
        fail(f"--out {out_file}: allowed: a .png, .svg or .pdf file")
    if metric == GAMMA:
        plot_gamma(ctx, targets, out_file)
        return
    if len(targets) > 1:
        fail(f"--metric {metric} plots one EXPERIMENT or RUN, got {len(targets)}; several runs side "
                   "by side are for --metric gamma")
    target = targets[0]
    with open_store(ctx, read_only=True) as store:
        if store.experiment(target) is not None:
            series = plotting.experiment_series(store.result_rows(experiment=target), metric)
        else:
            run_id = store.resolve([target])[0]
            series = plotting.run_series(store.result_rows(run_id=run_id), metric)
    if not series:
        fail(f"{target}: no round is recorded yet")
    info = plotting.METRICS[metric]
    title = f"{target}: {metric.replace('_', ' ')}"
    if out_file is None:
        size = shutil.get_terminal_size((100, 30))
        chart = plotting.render_text(series, title, info.xlabel, info.ylabel, width=size.columns,
                                     height=max(15, min(size.lines - 4, 30)), color=sys.stdout.isatty())
        sys.stdout.write(chart + "\n")
        return
    out_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        plotting.save_figure(series, out_file, title, info.xlabel, info.ylabel)
    except plotting.MatplotlibMissing as e:
        fail(str(e))
    out.print(f"wrote {out_file}", highlight=False)


def plot_gamma(ctx: typer.Context, targets: list[str], out_file: Path | None) -> None:
    """Figure 5: one column per run, in the terminal or into `out_file`."""
    import shutil

    from altui.results import figure5, gamma, plotting

    with open_store(ctx, read_only=True) as store:
        try:
            columns = [gamma.run_gamma(store, run_id) for run_id in gamma.target_runs(store, targets)]
        except gamma.GammaError as e:
            fail(str(e))
    if out_file is None:
        size = shutil.get_terminal_size((100, 30))
        tty = sys.stdout.isatty()
        rows = max(len(c.panels) for c in columns)
        height = max(10, min((size.lines - 3) // rows, 16)) if tty else 14  # a file or pipe: no screen to fit
        chart = figure5.render_text(columns, width=size.columns, row_height=height, color=tty)
        sys.stdout.write(chart + "\n")
        return
    out_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure5.save_figure(columns, out_file)
    except plotting.MatplotlibMissing as e:
        fail(str(e))
    out.print(f"wrote {out_file}", highlight=False)


@app.command("report")
def write_report(
    ctx: typer.Context,
    experiment: Annotated[str, typer.Argument(help="The experiment to report.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write FILE.md (figures as PNG files beside it); default: stdout.")] = None,
) -> None:
    """A Markdown reproduction report: settings, summary table, figures, the paper's numbers."""
    from altui.results import report

    with open_store(ctx, read_only=True) as store:
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

    from altui.results import claims, claims_table

    with open_store(ctx, read_only=True) as store:
        check_experiment(store, experiment)
        rows = claims.experiment_claims(store, experiment)
        methods = [r["method"] for r in store.runs(experiment=experiment)]
    if as_json:
        sys.stdout.write(json.dumps([r.as_dict() for r in rows], indent=2, ensure_ascii=False) + "\n")
        return
    sys.stdout.write(claims_table.markdown(rows, methods))
