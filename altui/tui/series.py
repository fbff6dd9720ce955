"""The main screen's curves as plain data, from the rows a snapshot carries.

The numbers come from altui.results.plotting (and so altui.results.stats' bootstrap), so that the dashboard draws
the same curves as `altui report`: accuracy in percent, each method's mean over seeds with its 95%
bootstrap interval.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

from altui.results.claims import ACCURACY, CHANNELS, ClaimRow, format_p, pair_claims
from altui.results.claims_table import format_difference, format_rounds
from altui.results.plotting import Series, experiment_series, run_series
from altui.results.provenance import provenance_differences

# plot name -> altui.results.plotting metric
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


def gamma_histogram(abs_gamma_json: str, bins: int = 20) -> tuple[list[float], list[int], float]:
    """A layer's |gamma| (a `gammas` row) as the paper's Figure 5 draws it: bin centres and counts
    from 0 to the largest |gamma|, and the mean/10 line. Without torch (the dashboard never imports
    it); the count below the line comes from the `channels` row, as recorded."""
    values = [v for v in json.loads(abs_gamma_json) if v is not None and math.isfinite(v)]
    top = max(values, default=0.0) or 1.0
    width = top / bins
    counts = [0] * bins
    for v in values:
        counts[min(int(v / width), bins - 1)] += 1
    centers = [round((i + 0.5) * width, 4) for i in range(bins)]
    return centers, counts, (sum(values) / len(values) / 10 if values else 0.0)


MAX_COMPARED = 4  # methods: 6 pairs at most, one line each


def compare_lines(runs: Rows, curves: dict[int, Rows], shown: Rows) -> list[str] | None:
    """The compare footer: when the overlaid runs are 2 to MAX_COMPARED methods of one experiment (at
    one sweep point), the paper's claim about each pair of them, over every seed of the experiment's
    runs, verdict first; the pairs no claim compares on one last line. None when the plots do not
    compare methods."""
    experiments, methods = {r["experiment"] for r in shown}, sorted({r["method"] for r in shown})
    points = {json.dumps(json.loads(r.get("sweep_json") or "{}"), sort_keys=True) for r in shown}
    if len(experiments) != 1 or len(points) != 1 or len(methods) < 2:
        return None
    if len(methods) > MAX_COMPARED:
        return [f"{len(methods)} methods overlaid: compare at most {MAX_COMPARED} (mark or filter fewer)"]
    experiment, sweep = experiments.pop(), json.loads(points.pop())
    rows = [row for run in runs if run["experiment"] == experiment
            for row in result_rows(run, curves.get(run["id"], []))]
    claims = pair_claims(rows, sweep) or {}
    lines, none = [], []
    for a, b in itertools.combinations(methods, 2):
        pair = frozenset((a, b))
        claim = claims.get((pair, ACCURACY)) or claims.get((pair, CHANNELS))
        if claim is None:
            none.append(f"{a} vs {b}")
        else:
            lines.append(claim_line(claim))
    if none:
        lines.append("no claim of the paper: " + ", ".join(none))
    differences = provenance_differences(r for r in runs if r["experiment"] == experiment and r["method"] in methods)
    if differences:  # numbers that may differ for that alone (docs/method.md)
        lines.append("⚠ the runs ran differently: " + "; ".join(differences))
    return lines


def claim_line(claim: ClaimRow) -> str:
    """One claim on one line, most important first, so that a narrow screen cuts only the detail: the
    verdict with its p and seeds, the difference, which claim, then its interval and rounds."""
    evidence = [] if claim.p_value is None else [f"p {format_p(claim.p_value)}"]
    evidence.append(f"{len(claim.seeds)} seed{'' if len(claim.seeds) == 1 else 's'}")
    if claim.dropped_seeds:
        evidence.append(f"{len(claim.dropped_seeds)} dropped")
    if claim.verdict == "inconclusive" and claim.seeds_needed is not None:
        evidence.append(f"~{claim.seeds_needed} would decide")
    unit = "accuracy" if claim.metric == ACCURACY else "effective channels"
    return (f"{claim.verdict} ({', '.join(evidence)}) · {claim.method} − {claim.baseline} {unit} "
            f"{format_difference(claim)} · claim {claim.claim}, {claim.section}, round {format_rounds(claim)}")
