"""The paper's claims, checked on one experiment's runs with paired seeds (docs/export.md, "Claims").

For a given seed every method starts from the same labels and the same initialisation (the paper's fair
comparison), so two methods are compared seed by seed: per seed, the difference between them at the same
round; then the mean difference over the seeds and its 95% interval from 1000 bootstrap resamples of the
seeds (`stats.paired_interval` over `stats.bootstrap_interval`, the summary's own). Pure functions over the rows that
`Store.result_rows` and `Store.layer_rows` yield. Methods are found by name (the paper's preset names);
runs are compared only with runs at the same sweep point.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from altui.al.catalog import PAPER_LAYER
from altui.results.stats import BOOTSTRAP_RESAMPLES, CONTRADICTED, INCONCLUSIVE, MIN_SEEDS, SUPPORTED, paired_interval
from altui.results.summary import sweep_label
from altui.store import Store

VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)

WS, WS_INIT, KD1, KD2, ENTROPY_INIT = "WS", "WS+init", "WS+init+KD1", "WS+init+KD2", "Entropy+init"
BEST_CANDIDATES = (KD1, KD2, WS_INIT)  # claim 5's "our method"; on equal means the first wins
BASELINES = ("Random", "Entropy", "LL")

# What a claim compares, and the rows' column that holds it.
ACCURACY, CHANNELS, LAYER, BEST_DECAY = "accuracy", "effective_channels", "paper_layer_effective", "best_decay"
COLUMN = {ACCURACY: "accuracy", CHANNELS: "effective_channels", LAYER: "effective"}

Key = tuple[int, int]  # (round, n_labeled): "the same round" is the same index and the same labeled count
Values = dict[int, dict[Key, float]]  # seed -> round -> value


@dataclass(frozen=True)
class ClaimRow:
    """One claim checked at one sweep point. Differences are method - baseline, in the metric's stored
    unit (accuracy as a fraction, channels as counts); claim 6 has none (see `details`)."""

    claim: int  # 1-6, as numbered in docs/export.md
    text: str
    section: str  # where the paper makes it
    metric: str  # accuracy, effective_channels, paper_layer_effective or best_decay
    method: str
    baseline: str  # "" for claim 6
    sweep: dict[str, Any]
    rounds: tuple[int, ...]  # the rounds compared
    n_labeled: tuple[int, ...]  # their labeled counts
    mean_difference: float | None
    ci_low: float | None
    ci_high: float | None
    seeds: tuple[int, ...]  # the paired seeds
    dropped_seeds: tuple[int, ...]  # seeds of either method left out: no pair at the rounds compared
    verdict: str
    note: str = ""
    details: tuple[dict[str, Any], ...] = field(default=())  # claim 5: per round; claim 6: argmax per N

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples as lists."""
        return json.loads(json.dumps(asdict(self)))


# ---- pairing seeds (the statistic is stats.paired_interval) -------------------------------------


def _values(rows: Iterable[dict[str, Any]], method: str, column: str) -> Values:
    values: Values = {}
    for r in rows:
        if r["method"] == method:
            values.setdefault(r["seed"], {})[(r["round"], r["n_labeled"])] = float(r[column])
    return values


def _common_rounds(a: Values, b: Values) -> list[Key]:
    """Rounds that both methods recorded for at least one common seed."""
    keys: set[Key] = set()
    for seed in a.keys() & b.keys():
        keys |= a[seed].keys() & b[seed].keys()
    return sorted(keys)


def _pair(a: Values, b: Values, names: tuple[str, str], keys: Sequence[Key]) -> tuple[list[int], dict[int, str]]:
    """The seeds that both methods have at every round of `keys`, and why each other seed has no pair."""
    paired: list[int] = []
    dropped: dict[int, str] = {}
    for seed in sorted(a.keys() | b.keys()):
        absent = [name for name, v in zip(names, (a, b), strict=True) if seed not in v]
        if absent:
            dropped[seed] = f"no {absent[0]} round"
            continue
        if not keys:
            dropped[seed] = "no round at the same labeled count"
            continue
        lacking = [(name, k) for name, v in zip(names, (a, b), strict=True) for k in keys if k not in v[seed]]
        if lacking:
            dropped[seed] = f"{lacking[0][0]} has no round {lacking[0][1][0]}"
        else:
            paired.append(seed)
    return paired, dropped


def _dropped_note(dropped: dict[int, str]) -> str:
    if not dropped:
        return ""
    return "unpaired, left out: " + "; ".join(f"seed {s} ({why})" for s, why in dropped.items()) + "."


# ---- claims 1-4: two methods at the last round --------------------------------------------------


@dataclass(frozen=True)
class PairClaim:
    claim: int
    method: str
    baseline: str
    metric: str
    section: str


PAIR_CLAIMS = (
    PairClaim(1, WS_INIT, ENTROPY_INIT, ACCURACY, "§4.2–4.4"),
    PairClaim(2, KD1, WS_INIT, ACCURACY, "§3.3, §4"),
    PairClaim(2, KD2, WS_INIT, ACCURACY, "§3.3, §4"),
    PairClaim(3, WS_INIT, WS, ACCURACY, "§5.1"),
    PairClaim(4, WS_INIT, WS, CHANNELS, "§5.1, Fig. 5"),
    PairClaim(4, WS_INIT, WS, LAYER, "§5.1, Fig. 5"),
)


def _point_text(text: str, sweep: dict[str, Any]) -> str:
    return f"{text} [{sweep_label(sweep)}]" if sweep else text


def _pair_claim(c: PairClaim, rows: list[dict[str, Any]], sweep: dict[str, Any]) -> ClaimRow | None:
    """Method - baseline at the last round that both reached; None when either has no round here."""
    a, b = _values(rows, c.method, COLUMN[c.metric]), _values(rows, c.baseline, COLUMN[c.metric])
    if not a or not b:
        return None
    last = _common_rounds(a, b)[-1:]
    seeds, dropped = _pair(a, b, (c.method, c.baseline), last)
    mean, low, high, verdict = paired_interval([a[s][last[0]] - b[s][last[0]] for s in seeds])
    what = {ACCURACY: "accuracy", CHANNELS: "effective channels (all layers)",
            LAYER: f"effective channels of the paper's layer {rows[0].get('layer', '')}"}[c.metric]
    text = f"{c.method} ≥ {c.baseline}: {what} at the last round"
    notes = [_dropped_note(dropped)]
    if c.claim == 1:
        text += " (same last-round decay)"
        notes.append(_decay_note(rows, c, seeds, last))
    return ClaimRow(c.claim, _point_text(text, sweep), c.section, c.metric, c.method, c.baseline, sweep,
                    tuple(k[0] for k in last), tuple(k[1] for k in last), mean, low, high, tuple(seeds),
                    tuple(dropped), verdict, " ".join(n for n in notes if n))


def _decay_note(rows: list[dict[str, Any]], c: PairClaim, seeds: list[int], last: list[Key]) -> str:
    """Claim 1 is the paper's comparison only when both methods end with the same decay (§4.3)."""
    if not seeds or "weight_decay" not in rows[0]:
        return ""
    decays = [_values(rows, m, "weight_decay") for m in (c.method, c.baseline)]
    a, b = ({d[s][last[0]] for s in seeds} for d in decays)
    if all(math.isclose(x, y, rel_tol=1e-6) for x in a for y in b):
        return ""
    show = ", ".join(f"{x:.3g}" for x in sorted(a)), ", ".join(f"{y:.3g}" for y in sorted(b))
    return (f"the last-round decays differ ({c.method} {show[0]}, {c.baseline} {show[1]}): not the "
            "paper's comparison at the same decay.")


# ---- claim 5: the best of ours against each baseline, every round after the first -----------------


def _best(rows: list[dict[str, Any]]) -> tuple[str, str] | None:
    """Our best method at this sweep point and how it was chosen: the highest mean accuracy over its
    seeds at the latest round that every candidate reached."""
    present = {m: _values(rows, m, "accuracy") for m in BEST_CANDIDATES}
    present = {m: v for m, v in present.items() if v}
    if not present:
        return None
    common = set.intersection(*({k for by_round in v.values() for k in by_round} for v in present.values()))
    if len(present) == 1 or not common:
        only = next(iter(present))
        why = "the only one of " if len(present) == 1 else "no round common to "
        return only, f"best: {only}, {why}{', '.join(BEST_CANDIDATES)} here."
    key = max(common)
    means = {m: float(np.mean([r[key] for r in v.values() if key in r])) for m, v in present.items()}
    best = max(means, key=lambda m: means[m])  # max keeps the first of equal means
    shown = ", ".join(f"{m} {100 * x:.2f}%" for m, x in means.items())
    return best, (f"best: {best}, the highest mean accuracy at round {key[0]} of {shown}; chosen on these "
                  "same runs, which favours it.")


def _headline(rows: list[dict[str, Any]], sweep: dict[str, Any]) -> list[ClaimRow]:
    chosen = _best(rows)
    if chosen is None:
        return []
    best, how = chosen
    claims = []
    for baseline in BASELINES:
        a, b = _values(rows, best, "accuracy"), _values(rows, baseline, "accuracy")
        if not b:
            continue
        keys = [k for k in _common_rounds(a, b) if k[0] >= 1]
        seeds, dropped = _pair(a, b, (best, baseline), keys)
        per_round = []
        for key in keys:
            mean, low, high, verdict = paired_interval([a[s][key] - b[s][key] for s in seeds])
            per_round.append({"round": key[0], "n_labeled": key[1], "mean_difference": mean, "ci_low": low,
                              "ci_high": high, "verdict": verdict})
        verdicts = {d["verdict"] for d in per_round}
        if per_round and verdicts == {SUPPORTED}:
            verdict, shown, why = SUPPORTED, min(per_round, key=lambda d: d["ci_low"]), "the weakest"
        elif CONTRADICTED in verdicts:
            verdict, shown, why = CONTRADICTED, min(per_round, key=lambda d: d["ci_high"]), "the most contrary"
        else:
            verdict, why = INCONCLUSIVE, "the weakest"
            shown = min(per_round, key=lambda d: d["ci_low"]) if seeds and per_round else None
        notes = [how, _dropped_note(dropped)]
        if not keys:
            notes.append("no round after the first is recorded for both.")
        elif shown is not None and len(keys) > 1:
            notes.append(f"shown: round {shown['round']}, {why} of rounds {keys[0][0]}–{keys[-1][0]}.")
        text = f"best ({best}) ≥ {baseline}: accuracy at every round after the first"
        claims.append(ClaimRow(
            5, _point_text(text, sweep), "§4.2–4.4 (headline)", ACCURACY, best, baseline, sweep,
            tuple(k[0] for k in keys), tuple(k[1] for k in keys),
            *((shown["mean_difference"], shown["ci_low"], shown["ci_high"]) if shown else (None, None, None)),
            tuple(seeds), tuple(dropped), verdict, " ".join(n for n in notes if n), tuple(per_round)))
    return claims


# ---- claim 6: Table 1's argmax decay per labeled count -------------------------------------------


def _sweep_claims(rows: list[dict[str, Any]]) -> list[ClaimRow]:
    """For sweeps of `initial` x `weight_decay`: round 0 of each sweep point is one training on N random
    labels with one decay, a cell of Table 1. Per N, the decay of the highest mean accuracy over seeds;
    the claim holds when that decay does not increase with N."""
    groups: dict[tuple[str, str], dict[tuple[int, float], dict[str, Any]]] = {}
    for r in rows:
        sweep = json.loads(r.get("sweep_json") or "{}")
        if r["round"] != 0 or "initial" not in sweep or "weight_decay" not in sweep:
            continue
        other = {k: v for k, v in sweep.items() if k not in ("initial", "weight_decay")}
        cell = groups.setdefault((r["method"], json.dumps(other)), {}).setdefault(
            (r["n_labeled"], float(sweep["weight_decay"])), {"decay": r["weight_decay"], "accuracy": {}})
        cell["accuracy"][r["seed"]] = r["accuracy"]
    return [_argmax_claim(method, json.loads(other), cells) for (method, other), cells in groups.items()]


def _argmax_claim(method: str, sweep: dict[str, Any], cells: dict[tuple[int, float], dict[str, Any]]) -> ClaimRow:
    ns = sorted({n for n, _ in cells})
    grids = [{wd for m, wd in cells if m == n} for n in ns]
    common = sorted(set.intersection(*grids), reverse=True)  # a decay missing at some N is left out
    left_out = sorted((n, wd) for n, wd in cells if wd not in common)
    notes = [f"cells left out (their decay is not swept at every N): "
             f"{', '.join(f'N={n} λ={wd:g}' for n, wd in left_out)}."] if left_out else []
    details, edge = [], []
    for n in ns if common else ():
        means = {wd: float(np.mean(list(cells[(n, wd)]["accuracy"].values()))) for wd in common}
        wd = max(common, key=lambda d: means[d])  # on equal means the larger decay
        decay = float(cells[(n, wd)]["decay"])  # as trained: a fixed preset's round 0 may differ from λ_0
        details.append({"n_labeled": n, "weight_decay": decay, "accuracy": means[wd],
                        "seeds": len(cells[(n, wd)]["accuracy"]), "product": decay * n})
        if wd in (common[0], common[-1]):
            edge.append(n)
    best = [d["weight_decay"] for d in details]
    if len(ns) < 2 or len(common) < 2:
        verdict = INCONCLUSIVE
        notes.append("needs at least two labeled counts that share at least two decays.")
    else:
        steady = all(x >= y or math.isclose(x, y) for x, y in zip(best, best[1:], strict=False))
        verdict = SUPPORTED if steady else CONTRADICTED
        if edge:
            notes.append(f"the argmax is at an end of the decay grid for N = {', '.join(map(str, edge))}: "
                         "the best decay may lie outside it.")
    seeds = sorted({s for cell in cells.values() for s in cell["accuracy"]})
    return ClaimRow(6, _point_text(f"the accuracy-maximising decay does not increase with N ({method})", sweep),
                    "§4.1, Table 1", BEST_DECAY, method, "", sweep, (0,), tuple(ns), None, None, None,
                    tuple(seeds), (), verdict, " ".join(notes), tuple(details))


# ---- all claims of an experiment -----------------------------------------------------------------


def _point(row: dict[str, Any]) -> str:
    return json.dumps(json.loads(row.get("sweep_json") or "{}"), sort_keys=True)


def _by_point(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    points: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        points.setdefault(_point(r), []).append(dict(r))
    return points


def evaluate(rows: Iterable[dict[str, Any]], layer_rows: Iterable[dict[str, Any]] = ()) -> list[ClaimRow]:
    """Every claim that one experiment's runs test, by claim number, then sweep point in run order.
    `rows` as `Store.result_rows` yields them; `layer_rows` (`Store.layer_rows`, the paper's layer)
    add claim 4's paper-layer variant."""
    rows = list(rows)
    layers = _by_point(layer_rows)
    claims: list[ClaimRow] = []
    for point, point_rows in _by_point(rows).items():
        sweep = json.loads(point)
        for c in PAIR_CLAIMS:
            source = layers.get(point, []) if c.metric == LAYER else point_rows
            row = _pair_claim(c, source, sweep) if source else None
            if row is not None:
                claims.append(row)
        claims += _headline(point_rows, sweep)
    claims += _sweep_claims(rows)
    return sorted(claims, key=lambda c: c.claim)


def experiment_claims(store: Store, experiment: str) -> list[ClaimRow]:
    """`evaluate` over one experiment of the store."""
    rows = list(store.result_rows(experiment))
    layer_rows: list[dict[str, Any]] = []
    if {WS, WS_INIT} <= {r["method"] for r in rows}:
        layer_rows = store.layer_rows(experiment, PAPER_LAYER)
    return evaluate(rows, layer_rows)


def claim_for_pair(rows: Iterable[dict[str, Any]], method_a: str, method_b: str,
                   sweep: dict[str, Any] | None = None, metric: str = ACCURACY) -> ClaimRow | None:
    """The claim that two overlaid methods test (in either order), for the dashboard's compare mode.

    `rows`: the experiment's, as `Store.result_rows` yields them. `sweep`: the sweep point; None when the
    rows hold a single one (else the pair is ambiguous and None is returned). `metric`: accuracy (claims
    1, 2, 3 and 5; claim 5 only when one of the two is the best method) or effective_channels (claim 4).
    None when no claim compares the two.
    """
    points = _by_point(rows)
    if sweep is None:
        if len(points) != 1:
            return None
        point_rows = next(iter(points.values()))
    else:
        point_rows = points.get(json.dumps(sweep, sort_keys=True), [])
    pair = {method_a, method_b}
    return next((c for c in evaluate(point_rows) if {c.method, c.baseline} == pair and c.metric == metric), None)


# ---- Markdown ------------------------------------------------------------------------------------


def format_difference(c: ClaimRow) -> str:
    """Accuracy in percentage points with 2 decimals, channels with 1: "+1.23 pp [+0.40, +2.10]"."""
    if c.metric == BEST_DECAY:
        return "argmax λ by N: " + (", ".join(f"{d['weight_decay']:g}" for d in c.details) or "–")
    if c.mean_difference is None:
        return "–"
    scale, digits, unit = (100, 2, " pp") if c.metric == ACCURACY else (1, 1, "")
    mean, low, high = (scale * v for v in (c.mean_difference, c.ci_low, c.ci_high))
    return f"{mean:+.{digits}f}{unit} [{low:+.{digits}f}, {high:+.{digits}f}]"


def format_rounds(c: ClaimRow) -> str:
    if c.metric == BEST_DECAY:
        return f"0 at N = {', '.join(map(str, c.n_labeled))}"
    if not c.rounds:
        return "–"
    if len(c.rounds) == 1:
        return f"{c.rounds[0]} ({c.n_labeled[0]} labels)"
    return f"{c.rounds[0]}–{c.rounds[-1]} ({c.n_labeled[0]}–{c.n_labeled[-1]} labels)"


def format_seeds(c: ClaimRow) -> str:
    return f"{len(c.seeds)} ({len(c.dropped_seeds)} dropped)" if c.dropped_seeds else str(len(c.seeds))


def markdown(claims: Sequence[ClaimRow], methods: Iterable[str] = ()) -> str:
    """The claims as a Markdown table, each row's notes below it, and claim 6's argmax tables."""
    intro = (
        "Paired over seeds: per seed, the difference between the two methods at the same round (same "
        "index, same labeled count); the mean difference with its 95% interval from "
        f"{BOOTSTRAP_RESAMPLES} bootstrap resamples of the seeds. **supported**: the interval is above 0; "
        f"**contradicted**: below 0; **inconclusive**: it contains 0, or fewer than {MIN_SEEDS} seeds pair. "
        "Accuracy differences in percentage points (pp). Statistic and limits: docs/export.md.\n"
    )
    if not claims:
        named = ", ".join(dict.fromkeys(methods)) or "none with a recorded round"
        return (intro + "\nNo claim of the paper can be checked here: each compares recorded rounds of the "
                "paper's methods, found by name (WS+init, Entropy+init, WS+init+KD1, ...), or a sweep of "
                f"`initial` x `weight_decay`; this experiment's methods: {named}.\n")
    lines = ["| # | Claim | Paper | Rounds | Mean difference [95% interval] | Seeds | Verdict |",
             "|---|---|---|---|---|---:|---|"]
    for c in claims:
        lines.append(f"| {c.claim} | {c.text} | {c.section} | {format_rounds(c)} | {format_difference(c)} | "
                     f"{format_seeds(c)} | **{c.verdict}** |")
    parts = [intro, "\n".join(lines) + "\n"]
    notes = [f"- Claim {c.claim} ({c.text}): {c.note}" for c in claims if c.note]
    if notes:
        parts.append("\n".join(notes) + "\n")
    for c in claims:
        if c.metric == BEST_DECAY:
            rows = [f"| {d['n_labeled']} | {d['weight_decay']:g} | {100 * d['accuracy']:.2f} | {d['seeds']} | "
                    f"{d['product']:.4g} |" for d in c.details]
            parts.append(f"Claim 6, {c.text}:\n\n| N | argmax λ | accuracy (%) | seeds | λ·N |\n"
                         "|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)
