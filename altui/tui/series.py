"""The main screen's curves as plain data, from the rows a snapshot carries.

The numbers come from altui.plotting (and so altui.report's bootstrap), so that the dashboard draws
the same curves as `altui report`: accuracy in percent, each method's mean over seeds with its 95%
bootstrap interval.
"""

from __future__ import annotations

from typing import Any

from altui.plotting import Series, experiment_series, run_series

# plot name -> altui.plotting metric
METRICS = {"accuracy": "accuracy", "lambda": "weight_decay", "channels": "effective_channels"}
Rows = list[dict[str, Any]]


def run_label(run: dict[str, Any]) -> str:
    return f"#{run['id']} {run['method']} s{run['seed']}"


def result_rows(run: dict[str, Any], rounds: Rows) -> Rows:
    """A run's rounds shaped like Store.result_rows: each with the run's experiment, method, seed."""
    info = {"experiment": run["experiment"], "method": run["method"], "seed": run["seed"],
            "sweep_json": run.get("sweep_json") or "{}", "run": run_label(run)}
    return [{**row, **info} for row in rounds]


def runs_series(runs: Rows, curves: dict[int, Rows], plot: str) -> dict[str, Series]:
    """One curve per run, overlaid."""
    series: dict[str, Series] = {}
    for run in runs:
        series.update(run_series(result_rows(run, curves.get(run["id"], [])), METRICS[plot]))
    return series


def means_series(runs: Rows, curves: dict[int, Rows], plot: str) -> dict[str, Series]:
    """One curve per method (and sweep point): the mean over seeds with its 95% bootstrap band."""
    rows = [row for run in runs for row in result_rows(run, curves.get(run["id"], []))]
    return experiment_series(rows, METRICS[plot])
