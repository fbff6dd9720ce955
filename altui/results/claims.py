"""The paper's claims, checked on one experiment's runs with paired seeds (docs/export.md, "Claims").

For a given seed every method starts from the same labels and the same initialisation (the paper's fair
comparison), so two methods are compared seed by seed at the same round (pairing.py), and the mean
difference is tested with `stats.paired_test`: Student's t over the seeds and, where the rounds recorded
which test images each model got right, over the test images too. Each row gets a two-sided p-value;
the rows of one claim (all its sweep points, baselines and variants) are a family, adjusted by Holm,
and the verdict reads the adjusted p at 5%. Claim 5 ("the best of ours beats each baseline at every
round") tests every candidate at every round: it holds for a candidate when every round does (an
intersection-union test, no correction needed), for the row when one candidate holds (Bonferroni over
the candidates); it is contradicted when every candidate falls below the baseline at some round
(Bonferroni over the rounds). Claim 6 tests the decay-by-N interaction contrast. Pure functions over
the rows that `Store.result_rows(test_correct=True)` and `Store.layer_rows` yield.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from altui.al.catalog import PAPER_LAYER
from altui.results import pairing
from altui.results.acquisition_pairs import KEYS as SETTING_KEYS
from altui.results.acquisition_pairs import SECTION as BEYOND_SECTION
from altui.results.acquisition_pairs import acquisition_pairs
from altui.results.pairing import Key, Pairing, after_first, ahead_note, dropped_note, last_round, pair, runs_of
from altui.results.stats import (
    ALPHA,
    CONTRADICTED,
    INCONCLUSIVE,
    MIN_SEEDS,
    SUPPORTED,
    Evidence,
    holm,
    image_noise_hides,
    paired_test,
    seeds_to_decide,
    two_sided,
    verdict,
)
from altui.results.summary import sweep_label
from altui.store import Store

VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)

WS, WS_INIT, KD1, KD2, ENTROPY_INIT = "WS", "WS+init", "WS+init+KD1", "WS+init+KD2", "Entropy+init"
BEST_CANDIDATES = (KD1, KD2, WS_INIT)  # claim 5's "our method"
BASELINES = ("Random", "Entropy", "LL")

# What a claim compares, and the rows' column that holds it.
ACCURACY, CHANNELS, LAYER, BEST_DECAY = "accuracy", "effective_channels", "paper_layer_effective", "best_decay"
COLUMN = {ACCURACY: "accuracy", CHANNELS: "effective_channels", LAYER: "effective"}


@dataclass(frozen=True)
class ClaimRow:
    """One claim checked at one sweep point. Differences are method - baseline, in the metric's stored
    unit (accuracy as a fraction, channels as counts); claim 6's is its interaction contrast."""

    claim: int  # 1-7, as numbered in docs/export.md
    text: str
    section: str  # where the paper makes it
    metric: str  # accuracy, effective_channels, paper_layer_effective or best_decay
    method: str
    baseline: str  # "" for claim 6
    sweep: dict[str, Any]
    rounds: tuple[int, ...]  # the rounds compared
    n_labeled: tuple[int, ...]  # their labeled counts
    mean_difference: float | None
    ci_low: float | None  # the 95% t interval of the shown comparison
    ci_high: float | None
    seeds: tuple[int, ...]  # the paired seeds
    dropped_seeds: tuple[int, ...]  # seeds of either method left out: no pair at the rounds compared
    verdict: str
    note: str = ""
    details: tuple[dict[str, Any], ...] = field(default=())  # claim 5: per candidate and round; claim 6: per N
    test: str = ""  # the statistic's name
    p_value: float | None = None  # two-sided, Holm-adjusted over the family; None: no test (see reason)
    p_unadjusted: float | None = None
    family: int = 1  # rows in the Holm family: this claim's rows in the experiment
    seeds_needed: int | None = None  # the fewest seeds that would decide the observed effect at its spread
    reason: str = ""  # why it is inconclusive, one line ("" when decided)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples as lists."""
        return json.loads(json.dumps(asdict(self)))


@dataclass
class Draft:
    """A row before its family's correction: its one-sided p-values, what blocks a test, and how many
    seeds would decide it given the family's size."""

    row: ClaimRow
    p_greater: float = 1.0
    p_less: float = 1.0
    blocked: str = ""  # why no test is possible
    needed: Callable[[int], int | None] = lambda family: None
    hidden: Callable[[int], bool] = lambda family: False  # the test set's noise alone hides the effect


def _shown(e: Evidence | None) -> tuple[float | None, float | None, float | None]:
    if e is None or e.seeds == 0:
        return None, None, None
    return (e.mean, *e.interval())


def _few_seeds(n: int) -> str:
    if n == 0:
        return "no seed has both methods at a common round"
    return f"{n} paired seed{'s' if n != 1 else ''}: a verdict needs at least {MIN_SEEDS}"


def _point_text(text: str, sweep: dict[str, Any]) -> str:
    return f"{text} [{sweep_label(sweep)}]" if sweep else text


# ---- claims 1-4 and 7: two methods at the latest round that every paired seed reached ------------


@dataclass(frozen=True)
class PairClaim:
    claim: int
    method: str
    baseline: str
    metric: str
    section: str
    qualifier: str = ""  # added to the row's text


PAIR_CLAIMS = (
    PairClaim(1, WS_INIT, ENTROPY_INIT, ACCURACY, "§4.2–4.4"),
    PairClaim(2, KD1, WS_INIT, ACCURACY, "§3.3, §4"),
    PairClaim(2, KD2, WS_INIT, ACCURACY, "§3.3, §4"),
    PairClaim(3, WS_INIT, WS, ACCURACY, "§5.1"),
    PairClaim(4, WS_INIT, WS, CHANNELS, "§5.1, Fig. 5"),
    PairClaim(4, WS_INIT, WS, LAYER, "§5.1, Fig. 5"),
)


def _pair_claim(c: PairClaim, rows: list[dict[str, Any]], sweep: dict[str, Any]) -> Draft | None:
    """Method - baseline at the last round; None when either has no round here."""
    per_image = c.metric == ACCURACY
    a, b = (runs_of(rows, m, COLUMN[c.metric], per_image) for m in (c.method, c.baseline))
    if not a.values or not b.values:
        return None
    p = pair(a, b, (c.method, c.baseline), last_round)
    e = pairing.evidence(a, b, p.seeds, p.keys[0]) if p.keys and p.seeds else None
    what = {ACCURACY: "accuracy", CHANNELS: "effective channels (all layers)",
            LAYER: f"effective channels of the paper's layer {rows[0].get('layer', '')}"}[c.metric]
    text = f"{c.method} ≥ {c.baseline}: {what} at the last round{c.qualifier}"
    notes = [ahead_note(p), dropped_note(p.dropped)]
    if c.claim == 1:
        text += " (same last-round decay)"
        notes.append(_decay_note(rows, c, p))
    if e is not None and per_image and not e.images:
        notes.append("no per-image results for these rounds (recorded before schema 5): the test set's "
                     "own noise is not in the statistic.")
    row = ClaimRow(c.claim, _point_text(text, sweep), c.section, c.metric, c.method, c.baseline, sweep,
                   tuple(k[0] for k in p.keys), tuple(k[1] for k in p.keys), *_shown(e), tuple(p.seeds),
                   tuple(p.dropped), INCONCLUSIVE, " ".join(n for n in notes if n),
                   test=e.test if e else "paired t (seeds)")
    return _simple_draft(row, e)


def _simple_draft(row: ClaimRow, e: Evidence | None) -> Draft:
    if e is None or e.seeds < MIN_SEEDS:
        return Draft(row, blocked=_few_seeds(e.seeds if e else 0))
    return Draft(row, e.p_greater, e.p_less, needed=lambda m: seeds_to_decide(e, 2 * m),
                 hidden=lambda m: image_noise_hides(e, 2 * m))


def _decay_note(rows: list[dict[str, Any]], c: PairClaim, p: Pairing) -> str:
    """Claim 1 is the paper's comparison only when both methods end with the same decay (§4.3)."""
    if not p.seeds or not p.keys or "weight_decay" not in rows[0]:
        return ""
    a, b = ({runs_of(rows, m, "weight_decay").values[s][p.keys[0]] for s in p.seeds} for m in (c.method, c.baseline))
    if all(math.isclose(x, y, rel_tol=1e-6) for x in a for y in b):
        return ""
    show = ", ".join(f"{x:.3g}" for x in sorted(a)), ", ".join(f"{y:.3g}" for y in sorted(b))
    return (f"the last-round decays differ ({c.method} {show[0]}, {c.baseline} {show[1]}): not the "
            "paper's comparison at the same decay.")


# ---- claim 5: the best of ours against each baseline, every round after the first -----------------


@dataclass
class Candidate:
    """One candidate against one baseline: its pairing and the evidence at each compared round."""

    name: str
    pairing: Pairing
    rounds: list[tuple[Key, Evidence]]

    @property
    def testable(self) -> bool:
        return bool(self.rounds) and len(self.pairing.seeds) >= MIN_SEEDS

    @property
    def p_greater(self) -> float:  # above at every round: the weakest round decides (intersection-union)
        return max(e.p_greater for _, e in self.rounds) if self.testable else 1.0

    @property
    def p_less(self) -> float:  # below at some round: Bonferroni over the rounds
        return min(1.0, len(self.rounds) * min(e.p_less for _, e in self.rounds)) if self.testable else 1.0


def _headline(rows: list[dict[str, Any]], sweep: dict[str, Any]) -> list[Draft]:
    present = {m: runs_of(rows, m, "accuracy", per_image=True) for m in BEST_CANDIDATES}
    present = {m: r for m, r in present.items() if r.values}
    drafts = []
    for baseline in BASELINES:
        b = runs_of(rows, baseline, "accuracy", per_image=True)
        if not present or not b.values:
            continue
        candidates = []
        for name, a in present.items():
            p = pair(a, b, (name, baseline), after_first)
            evidence = [(k, pairing.evidence(a, b, p.seeds, k)) for k in p.keys] if p.seeds else []
            candidates.append(Candidate(name, p, evidence))
        drafts.append(_headline_draft(candidates, baseline, sweep))
    return drafts


def _headline_draft(candidates: list[Candidate], baseline: str, sweep: dict[str, Any]) -> Draft:
    k = len(candidates)
    p_greater = min(1.0, k * min(c.p_greater for c in candidates))
    p_less = max(c.p_less for c in candidates)
    contrary = p_less < p_greater
    # shown: the candidate that decides the row (the least contrary one when all are contrary)
    best = (max(candidates, key=lambda c: c.p_less) if contrary
            else min(candidates, key=lambda c: c.p_greater))  # max and min keep the first of equals
    shown = None
    if best.rounds:
        pick = (lambda r: r[1].p_less) if contrary else (lambda r: -r[1].p_greater)
        shown = min(best.rounds, key=pick)
    details = tuple({"candidate": c.name, "round": key[0], "n_labeled": key[1], "mean_difference": e.mean,
                     "ci_low": e.interval()[0], "ci_high": e.interval()[1], "p_greater": e.p_greater,
                     "p_less": e.p_less} for c in candidates for key, e in c.rounds)
    keys = best.pairing.keys
    where = ""
    if shown and len(keys) > 1:
        where = f", round {shown[0][0]}, its {'most contrary' if contrary else 'weakest'} round"
    tested = ", ".join(c.name for c in candidates)
    notes = [f"tested every candidate ({tested}) at every round after the first; shown: {best.name}{where}.",
             ahead_note(best.pairing), dropped_note(best.pairing.dropped)]
    if not keys:
        notes.append("no round after the first that every paired seed reached.")
    text = f"best of ours ({best.name}) ≥ {baseline}: accuracy at every round after the first"
    e = shown[1] if shown else None
    images = bool(e and e.images)
    row = ClaimRow(5, _point_text(text, sweep), "§4.2–4.4 (headline)", ACCURACY, best.name, baseline, sweep,
                   tuple(k[0] for k in keys), tuple(k[1] for k in keys), *_shown(e), tuple(best.pairing.seeds),
                   tuple(best.pairing.dropped), INCONCLUSIVE, " ".join(n for n in notes if n), details,
                   test=f"every round, best of {k} · paired t (seeds{' × test images' if images else ''})")
    if not any(c.testable for c in candidates):
        return Draft(row, blocked=_few_seeds(len(best.pairing.seeds)) if keys else "no round to compare")

    def needed(m: int) -> int | None:
        up = [seeds_to_decide(e, 2 * k * m) if e.mean > 0 else None for _, e in best.rounds]
        support = max(up) if up and None not in up else None
        down = []
        for c in candidates:
            options = [seeds_to_decide(e, 2 * len(c.rounds) * m) for _, e in c.rounds if e.mean < 0]
            options = [n for n in options if n is not None]
            down.append(min(options) if options else None)
        contradict = max(down) if down and None not in down else None
        return min((n for n in (support, contradict) if n is not None), default=None)

    def hidden(m: int) -> bool:
        return e is not None and image_noise_hides(e, 2 * k * m)

    return Draft(row, p_greater, p_less, needed=needed, hidden=hidden)


# ---- claim 6: Table 1, the best decay falls as N grows -----------------------------------------


def _sweep_claims(rows: list[dict[str, Any]]) -> list[Draft]:
    """For sweeps of `initial` x `weight_decay`: round 0 of each sweep point is one training on N random
    labels with one decay, a cell of Table 1."""
    groups: dict[tuple[str, str], dict[tuple[int, float], dict[str, Any]]] = {}
    for r in rows:
        sweep = json.loads(r.get("sweep_json") or "{}")
        if r["round"] != 0 or "initial" not in sweep or "weight_decay" not in sweep:
            continue
        other = {k: v for k, v in sweep.items() if k not in ("initial", "weight_decay")}
        cell = groups.setdefault((r["method"], json.dumps(other)), {}).setdefault(
            (r["n_labeled"], float(sweep["weight_decay"])), {"decay": r["weight_decay"], "accuracy": {}, "correct": {}})
        cell["accuracy"][r["seed"]] = r["accuracy"]
        right = pairing.correct_of(r)
        if right is not None:
            cell["correct"][r["seed"]] = right
    return [_argmax_claim(method, json.loads(other), cells) for (method, other), cells in groups.items()]


def contrast_weights(ns: list[int], decays: list[float]) -> dict[tuple[int, float], float]:
    """The decay-by-N interaction: per adjacent N (N1 < N2) and adjacent decays (hi > lo), the gain of
    the smaller decay over the larger at N2 minus that at N1, averaged. Positive when the optimum moves
    to smaller decays as N grows (a concave accuracy curve in log λ shifted left); 0 in expectation when
    the decay does not matter, or matters the same way at every N."""
    weights: dict[tuple[int, float], float] = {}
    pairs = (len(ns) - 1) * (len(decays) - 1)
    for n1, n2 in zip(ns, ns[1:], strict=False):
        for hi, lo in zip(decays, decays[1:], strict=False):
            for cell, w in (((n2, lo), 1), ((n2, hi), -1), ((n1, lo), -1), ((n1, hi), 1)):
                weights[cell] = weights.get(cell, 0.0) + w / pairs
    return weights


def _argmax_claim(method: str, sweep: dict[str, Any], cells: dict[tuple[int, float], dict[str, Any]]) -> Draft:
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
    used = [(n, wd) for n in ns for wd in common]
    all_seeds = sorted({s for cell in cells.values() for s in cell["accuracy"]})
    seeds = [s for s in all_seeds if all(s in cells[c]["accuracy"] for c in used)]
    e, blocked = None, ""
    if len(ns) < 2 or len(common) < 2:
        blocked = "needs at least two labeled counts that share at least two decays"
    elif thin := [c for c in used if len(cells[c]["accuracy"]) < MIN_SEEDS]:
        n, wd = thin[0]
        blocked = (f"cell N={n} λ={wd:g} has {len(cells[(n, wd)]['accuracy'])} seed; a verdict needs at least "
                   f"{MIN_SEEDS} per cell")
    else:
        weights = contrast_weights(ns, common)
        per_seed = [sum(w * cells[c]["accuracy"][s] for c, w in weights.items()) for s in seeds]
        e = paired_test(per_seed, _contrast_images(cells, weights, seeds)) if seeds else None
        if e is None or e.seeds < MIN_SEEDS:
            blocked = _few_seeds(len(seeds)).replace("paired seed", "seed in every cell").replace(
                "both methods at a common round", "a run in every cell")
    if edge:
        notes.append(f"the argmax is at an end of the decay grid for N = {', '.join(map(str, edge))}: "
                     "the best decay may lie outside it.")
    row = ClaimRow(6, _point_text(f"the accuracy-maximising decay does not increase with N ({method})", sweep),
                   "§4.1, Table 1", BEST_DECAY, method, "", sweep, (0,), tuple(ns), *_shown(e), tuple(seeds),
                   tuple(s for s in all_seeds if s not in seeds), INCONCLUSIVE, " ".join(notes), tuple(details),
                   test=f"decay × N contrast · paired t (seeds{' × test images' if e and e.images else ''})")
    if blocked:
        return Draft(row, blocked=blocked)
    return _simple_draft(row, e)


def _contrast_images(cells: dict[tuple[int, float], dict[str, Any]], weights: dict[tuple[int, float], float],
                     seeds: list[int]) -> np.ndarray | None:
    rows = []
    for s in seeds:
        parts = [(w, cells[c]["correct"].get(s)) for c, w in weights.items()]
        if any(p is None for _, p in parts) or len({len(p) for _, p in parts}) != 1:
            return None
        rows.append(sum(w * p.astype(float) for w, p in parts))
    return np.stack(rows) if rows else None


# ---- the family's correction and the verdicts -----------------------------------------------------


def finish(drafts: list[Draft]) -> list[ClaimRow]:
    """Holm over each family (one claim's rows: its sweep points, baselines and variants), then each
    row's verdict and reason."""
    families: dict[int, list[Draft]] = {}
    for d in drafts:
        families.setdefault(d.row.claim, []).append(d)
    done: dict[int, ClaimRow] = {}
    for members in families.values():
        tested = [d for d in members if not d.blocked]
        raw = [two_sided(d.p_greater, d.p_less) for d in tested]
        m = len(members)
        adjusted = holm(raw + [1.0] * (m - len(tested)))[:len(tested)]  # a blocked row still counts
        for d, p_raw, p in zip(tested, raw, adjusted, strict=True):
            v = verdict(p, d.p_greater, d.p_less)
            needed = d.needed(m)
            done[id(d)] = dataclasses.replace(
                d.row, verdict=v, p_value=p, p_unadjusted=p_raw, family=m, seeds_needed=needed,
                reason="" if v != INCONCLUSIVE else _reason(d, p, p_raw, m, needed))
        for d in members:
            if d.blocked:
                done[id(d)] = dataclasses.replace(d.row, family=m, reason=d.blocked + ".")
    return sorted((done[id(d)] for d in drafts), key=lambda r: r.claim)


def _reason(d: Draft, p: float, p_raw: float, m: int, needed: int | None) -> str:
    said = f"p = {format_p(p)}" + (f" after Holm over {m} rows ({format_p(p_raw)} alone)" if m > 1 else "")
    said += f" > {ALPHA:g}"
    if needed is not None:
        return f"{said}; about {needed} seeds would decide it at this spread."
    if d.hidden(m):
        return f"{said}; no number of seeds would: the test set's own noise is as large as the effect."
    if d.row.mean_difference == 0:
        return f"{said}; no difference to decide."
    return f"{said}; the rounds point different ways: more seeds would not decide it."


def format_p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# ---- all claims of an experiment -----------------------------------------------------------------


def _point(row: dict[str, Any]) -> str:
    return json.dumps(json.loads(row.get("sweep_json") or "{}"), sort_keys=True)


def _by_point(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    points: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        points.setdefault(_point(r), []).append(r)
    return points


def evaluate(rows: Iterable[dict[str, Any]], layer_rows: Iterable[dict[str, Any]] = (),
             settings: dict[str, dict[str, Any]] | None = None) -> list[ClaimRow]:
    """Every claim that one experiment's runs test, by claim number, then sweep point in run order.
    `rows` as `Store.result_rows(test_correct=True)` yields them; `layer_rows` (`Store.layer_rows`,
    the paper's layer) add claim 4's paper-layer variant; `settings` (`Store.method_settings`) claim 7."""
    rows = [dict(r) for r in rows]
    beyond = tuple(PairClaim(7, m, b, ACCURACY, BEYOND_SECTION, f" (acquisition {a})")
                   for m, b, a in acquisition_pairs(settings or {}))
    layers = _by_point(dict(r) for r in layer_rows)
    drafts: list[Draft] = []
    for point, point_rows in _by_point(rows).items():
        sweep = json.loads(point)
        for c in PAIR_CLAIMS + beyond:
            source = layers.get(point, []) if c.metric == LAYER else point_rows
            draft = _pair_claim(c, source, sweep) if source else None
            if draft is not None:
                drafts.append(draft)
        drafts += _headline(point_rows, sweep)
    drafts += _sweep_claims(rows)
    return finish(drafts)


def experiment_claims(store: Store, experiment: str) -> list[ClaimRow]:
    """`evaluate` over one experiment of the store."""
    rows = list(store.result_rows(experiment, test_correct=True))
    layer_rows: list[dict[str, Any]] = []
    if {WS, WS_INIT} <= {r["method"] for r in rows}:
        layer_rows = store.layer_rows(experiment, PAPER_LAYER)
    return evaluate(rows, layer_rows, store.method_settings(experiment, SETTING_KEYS))


def claim_for_pair(rows: Iterable[dict[str, Any]], method_a: str, method_b: str,
                   sweep: dict[str, Any] | None = None, metric: str = ACCURACY) -> ClaimRow | None:
    """The claim that two overlaid methods test (in either order), for the dashboard's compare mode,
    with the verdict `altui claims` gives (the family is the whole experiment's).

    `rows`: the experiment's, as `Store.result_rows` yields them (with `paper_layer` and
    `paper_layer_effective` where the caller read the paper's layer, for claim 4's family). `sweep`: the
    sweep point; None when the rows hold a single one (else the pair is ambiguous and None is
    returned). `metric`: accuracy (claims 1, 2, 3 and 5; claim 5 only when one of the two is the
    candidate it shows) or effective_channels (claim 4). None when no claim compares the two.
    """
    claims = pair_claims(rows, sweep)
    return None if claims is None else claims.get((frozenset((method_a, method_b)), metric))


def pair_claims(rows: Iterable[dict[str, Any]], sweep: dict[str, Any] | None = None,
                ) -> dict[tuple[frozenset[str], str], ClaimRow] | None:
    """Every two-method claim at one sweep point, keyed by ({method, baseline}, metric): the claims
    are evaluated once for any number of compared pairs. None when `sweep` is None and the rows hold
    several sweep points."""
    rows = list(rows)
    layer_rows = [{**r, "layer": r["paper_layer"], "effective": r["paper_layer_effective"]} for r in rows
                  if r.get("paper_layer_effective") is not None]
    points = _by_point(rows)
    if sweep is None:
        if len(points) != 1:
            return None
        sweep = json.loads(next(iter(points)))
    claims: dict[tuple[frozenset[str], str], ClaimRow] = {}
    for c in evaluate(rows, layer_rows):
        if c.sweep == sweep and c.baseline:
            claims.setdefault((frozenset((c.method, c.baseline)), c.metric), c)
    return claims
