"""The claims check: which of the paper's claims an experiment's runs support, from paired seeds.

Stores built by hand with known per-seed differences (and, where it matters, per-image correctness)
give each verdict, checked against scipy's own one-sample t test; a real tiny digits experiment goes
through `altui run`, `altui report` and `altui claims`. The error rates are in test_calibration.py.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as sp
from support import cli

from altui.al.sink import CorrectImages
from altui.results import claims
from altui.store import Store

LAYER = "blocks.0.0.1"  # cnn5's paper layer (Figure 5)


def round_row(t: int, n_labeled: int, accuracy: float, effective: int, decay: float,
              right: np.ndarray | None = None) -> dict[str, Any]:
    """`right`: which test images the round's model got right (then `accuracy` is their mean)."""
    bits = {} if right is None else {"test_images": len(right), "test_correct": CorrectImages.of(right).text()}
    return {
        "round": t, "n_labeled": n_labeled, "accuracy": accuracy, "test_loss": 0.1, "weight_decay": decay,
        "lr": 0.01, "effective_channels": effective, "total_channels": 224, "conv_l2": 3.0, "train_seconds": 1.0,
        "acquire_seconds": 0.1, "pick_mean_score": 0.5, "pick_class_counts": "[1]", "gamma_bins": "[0, 1]",
        "gamma_counts": "[3]", **bits,
    }


def add_runs(store: Store, experiment: str, runs: list[dict[str, Any]]) -> None:
    """Each run: method, seed, accuracy per round; optional sweep, initial (100), budget (100),
    effective (all layers, per round), layer (the paper layer's effective channels), decay per round,
    right (per round: which test images were right; accuracy is then their mean)."""
    specs = [{"name": f"{experiment}/{r['method']}/{json.dumps(r.get('sweep', {}))}/s{r['seed']}",
              "method": r["method"], "seed": r["seed"], "sweep": r.get("sweep", {}), "config": {"model": "cnn5"}}
             for r in runs]
    ids = store.enqueue(experiment, "experiments.toml", {"name": experiment}, specs)
    for run_id, r in zip(ids, runs, strict=True):
        initial, budget = r.get("initial", 100), r.get("budget", 100)
        for t, acc in enumerate(r["accuracy"]):
            right = r["right"][t] if "right" in r else None
            acc = float(right.mean()) if right is not None else acc
            effective = r.get("effective", [200] * 9)[t]
            layer = r.get("layer", [30] * 9)[t]
            decay = r.get("decay", [0.02 * initial / (initial + budget * k) for k in range(9)])[t]
            store.add_round(run_id, round_row(t, initial + t * budget, acc, effective, decay, right),
                            [{"layer": LAYER, "channels": 32, "effective": layer},
                             {"layer": "blocks.1.0.1", "channels": 64, "effective": effective - layer}], [])


def runs_of(method: str, accuracies: dict[int, list[float]], **extra: Any) -> list[dict[str, Any]]:
    return [{"method": method, "seed": s, "accuracy": a, **extra} for s, a in accuracies.items()]


def claims_json(db: Path, experiment: str) -> list[dict[str, Any]]:
    result = cli(db, "claims", experiment, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def find(rows: list[dict[str, Any]], claim: int, method: str, baseline: str = "", metric: str = "accuracy",
         sweep: dict[str, Any] | None = None) -> dict[str, Any]:
    (row,) = [r for r in rows if r["claim"] == claim and r["method"] == method and r["baseline"] == baseline
              and r["metric"] == metric and r["sweep"] == (sweep or {})]
    return row


def t_test(differences: list[float]) -> tuple[float, float, float]:
    """docs/export.md's statistic without test images, computed another way: scipy's one-sample t test
    (two-sided p) and its 95% interval."""
    result = sp.ttest_1samp(differences, 0.0)
    interval = result.confidence_interval(0.95)
    return float(result.pvalue), float(interval.low), float(interval.high)


def assert_statistic(row: dict[str, Any], differences: list[float], family: int = 1) -> None:
    """The row's mean, interval and p are the paired t test's over `differences` (Holm over a family
    whose other rows are less significant: this row's p times the family's size)."""
    p, low, high = t_test(differences)
    assert row["mean_difference"] == pytest.approx(statistics.fmean(differences))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
    assert row["p_unadjusted"] == pytest.approx(p) and row["family"] == family
    assert row["test"] == "paired t (seeds)"


def fewest_seeds(mean: float, sd: float, family: int = 1) -> int:
    """The smallest n at which a t test of this mean and SD decides at 5% after a family's Bonferroni."""
    return next(n for n in range(2, 1000) if family * 2 * sp.t.sf(abs(mean) / (sd / n ** 0.5), n - 1) <= 0.05)


# ---- verdicts from known differences -------------------------------------------------------------

ENTROPY_INIT = {0: [0.80, 0.85, 0.900], 1: [0.81, 0.86, 0.910], 2: [0.79, 0.84, 0.905]}
CLAIM1 = [0.010, 0.020, 0.015]  # WS+init - Entropy+init at the last round, per seed
KD1 = [-0.020, -0.021, -0.019]  # WS+init+KD1 - WS+init
KD2 = [0.020, -0.020, 0.010]  # WS+init+KD2 - WS+init
WS = [0.050, 0.040]  # WS+init - WS; WS has seeds 0 and 1 only


def last_shifted(base: dict[int, list[float]], differences: list[float]) -> dict[int, list[float]]:
    """Runs equal to `base` in the early rounds, `base` + the difference at the last."""
    return {s: [*base[s][:-1], base[s][-1] + d] for s, d in zip(base, differences, strict=False)}


@pytest.fixture
def verdicts_db(tmp_path: Path) -> Path:
    ws_init = last_shifted(ENTROPY_INIT, CLAIM1)
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "k100", [
            *runs_of("Entropy+init", ENTROPY_INIT),
            *runs_of("WS+init", ws_init),
            *runs_of("WS+init+KD1", last_shifted(ws_init, KD1)),
            *runs_of("WS+init+KD2", last_shifted(ws_init, KD2)),
            *runs_of("WS", last_shifted(ws_init, [-d for d in WS])),
        ])
    return tmp_path / "altui.db"


def test_known_differences_give_each_verdict(verdicts_db: Path) -> None:
    rows = claims_json(verdicts_db, "k100")
    one = find(rows, 1, "WS+init", "Entropy+init")
    assert one["verdict"] == "supported" and one["ci_low"] > 0 and one["p_value"] < 0.05
    assert one["rounds"] == [2] and one["n_labeled"] == [300] and one["seeds"] == [0, 1, 2]
    assert_statistic(one, CLAIM1)
    assert one["reason"] == "" and one["seeds_needed"] == fewest_seeds(0.015, 0.005) == 3
    kd1 = find(rows, 2, "WS+init+KD1", "WS+init")  # claim 2 has two rows: Holm over both
    assert kd1["verdict"] == "contradicted" and kd1["ci_high"] < 0
    assert_statistic(kd1, KD1, family=2)
    assert kd1["p_value"] == pytest.approx(2 * kd1["p_unadjusted"])
    kd2 = find(rows, 2, "WS+init+KD2", "WS+init")
    assert kd2["verdict"] == "inconclusive" and kd2["ci_low"] < 0 < kd2["ci_high"]
    assert_statistic(kd2, KD2, family=2)
    assert kd2["reason"].startswith(f"p = {kd2['p_value']:.3f} after Holm over 2 rows ({kd2['p_unadjusted']:.3f} "
                                    "alone) > 0.05; about ")
    three = find(rows, 3, "WS+init", "WS")  # two seeds are enough for a test, not for this one
    p, _, _ = t_test(WS)
    assert three["verdict"] == "inconclusive" and three["p_value"] == pytest.approx(p) and p > 0.05
    assert three["seeds"] == [0, 1] and three["dropped_seeds"] == [2]
    needed = fewest_seeds(0.045, statistics.stdev(WS))
    assert three["seeds_needed"] == needed == 3
    assert three["reason"] == f"p = {p:.3f} > 0.05; about 3 seeds would decide it at this spread."
    assert "seed 2 (no WS round)" in three["note"]
    assert "no per-image results for these rounds" in three["note"]
    assert [r["claim"] for r in rows] == [1, 2, 2, 3, 4, 4]  # no Random, Entropy or LL: no claim 5

    text = cli(verdicts_db, "claims", "k100").stdout
    p, low, high = t_test(CLAIM1)
    assert (f"| 1 | WS+init ≥ Entropy+init: accuracy at the last round (same last-round decay) | §4.2–4.4 | "
            f"2 (300 labels) | +1.50 pp [{100 * low:+.2f}, {100 * high:+.2f}] | paired t (seeds) | {p:.3f} | 3 | 3 "
            "| **supported** |") in text
    assert "| 3 | WS+init ≥ WS: accuracy at the last round | §5.1 | 2 (300 labels) | +4.50 pp" in text
    assert f"| {p:.3f} | 2 (1 dropped) | 3 | **inconclusive** |".replace(f"{p:.3f}", f"{three['p_value']:.3f}") in text
    assert f"- Claim 3 (WS+init ≥ WS: accuracy at the last round): {three['reason']} unpaired, left out" in text


def test_a_one_seed_pair_gives_no_verdict_and_says_why(tmp_path: Path) -> None:
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "one", [*runs_of("WS+init", {0: [0.8, 0.95]}), *runs_of("Entropy+init", {0: [0.8, 0.5]})])
    (row,) = claims_json(tmp_path / "altui.db", "one")
    assert row["verdict"] == "inconclusive" and row["p_value"] is None and row["seeds_needed"] is None
    assert row["reason"] == "1 paired seed: a verdict needs at least 2."
    assert row["mean_difference"] == pytest.approx(0.45)


def test_effective_channels_all_layers_and_the_paper_layer(tmp_path: Path) -> None:
    accuracy = {s: [0.8, 0.9] for s in range(3)}
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "channels", [
            *({"method": "WS+init", "seed": s, "accuracy": accuracy[s], "effective": [150, 200 + s],
               "layer": [20, 28 + s]} for s in range(3)),
            *({"method": "WS", "seed": s, "accuracy": accuracy[s], "effective": [150, 120 + 5 * s],
               "layer": [20, 30 - s]} for s in range(3)),
        ])
    rows = claims_json(tmp_path / "altui.db", "channels")
    every = find(rows, 4, "WS+init", "WS", "effective_channels")
    assert every["verdict"] == "supported" and every["rounds"] == [1]
    assert_statistic(every, [80.0, 76.0, 72.0], family=2)  # both layers' rows are claim 4's family
    paper = find(rows, 4, "WS+init", "WS", "paper_layer_effective")
    assert paper["text"].startswith(f"WS+init ≥ WS: effective channels of the paper's layer {LAYER}")
    assert_statistic(paper, [-2.0, 0.0, 2.0], family=2)
    assert paper["verdict"] == "inconclusive" and paper["reason"] == (
        "p = 1.000 after Holm over 2 rows (1.000 alone) > 0.05; no difference to decide.")
    assert find(rows, 3, "WS+init", "WS")["mean_difference"] == 0  # same accuracies
    text = cli(tmp_path / "altui.db", "claims", "channels").stdout
    _, low, high = t_test([80.0, 76.0, 72.0])
    assert f"| +76.0 [{low:+.1f}, {high:+.1f}] | paired t (seeds) |" in text


# ---- the test set's own noise ----------------------------------------------------------------------


def images(seed: int, wrong: int, extra: int = 0, n: int = 450) -> np.ndarray:
    """A model's right answers on `n` test images: `wrong` wrong ones drawn by `seed`, and then the
    first `extra` of those made right again (the same images for every seed whose `wrong` sets share
    them: images 0..9 are wrong for every model)."""
    right = np.ones(n, dtype=bool)
    right[:10] = False
    right[10 + np.random.default_rng(seed).choice(n - 10, wrong - 10, replace=False)] = False
    right[:extra] = True
    return right


def test_a_few_test_images_that_every_seed_favours_are_not_a_finding(tmp_path: Path) -> None:
    """WS+init gets the same 3 hard test images right in every seed and is otherwise the same model:
    every seed says +0.67 pp, and a t test over seeds alone would call it certain. Another test set
    of 450 images would not have those 3: the verdict is inconclusive, and no number of seeds helps."""
    base = {s: [images(10 + s, 60), images(20 + s, 40)] for s in range(5)}
    ws_init = {s: [base[s][0], base[s][1] | images(20 + s, 40, extra=3)] for s in range(5)}
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "few", [
            *({"method": "Entropy+init", "seed": s, "accuracy": [0, 0], "right": base[s]} for s in range(5)),
            *({"method": "WS+init", "seed": s, "accuracy": [0, 0], "right": ws_init[s]} for s in range(5)),
        ])
    (row,) = claims_json(tmp_path / "altui.db", "few")
    assert row["mean_difference"] == pytest.approx(3 / 450)
    assert row["test"] == "paired t (seeds × test images)" and row["verdict"] == "inconclusive"
    per_image = np.stack([ws_init[s][1].astype(float) - base[s][1] for s in range(5)]).mean(axis=0)
    se = (per_image.var(ddof=1) / 450) ** 0.5  # the seeds agree exactly: all of it is the test set's
    assert row["ci_high"] - row["mean_difference"] == pytest.approx(sp.t.ppf(0.975, 449) * se)
    assert row["seeds_needed"] is None
    assert row["reason"].endswith("no number of seeds would: the test set's own noise is as large as the effect.")
    assert sp.ttest_1samp([3 / 450 + 1e-9 * s for s in range(5)], 0).pvalue < 1e-6  # what seeds alone say


def test_a_difference_on_many_images_is_supported_with_the_images(tmp_path: Path) -> None:
    """The same, with 40 images instead of 3: beyond the test set's noise, as every seed agrees."""
    base = {s: [images(10 + s, 90), images(20 + s, 90)] for s in range(3)}
    ws_init = {s: [base[s][0], images(20 + s, 90, extra=40)] for s in range(3)}
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "many", [
            *({"method": "Entropy+init", "seed": s, "accuracy": [0, 0], "right": base[s]} for s in range(3)),
            *({"method": "WS+init", "seed": s, "accuracy": [0, 0], "right": ws_init[s]} for s in range(3)),
        ])
    (row,) = claims_json(tmp_path / "altui.db", "many")
    assert row["test"] == "paired t (seeds × test images)"
    assert row["verdict"] == "supported" and row["ci_low"] > 0 and "no per-image results" not in row["note"]


# ---- pairing -------------------------------------------------------------------------------------


def test_unpaired_seeds_are_dropped_and_a_seed_ahead_drops_no_one(tmp_path: Path) -> None:
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "gaps", [
            *runs_of("WS+init", {0: [0.8, 0.91], 1: [0.81, 0.92], 2: [0.79, 0.93], 3: [0.8, 0.90]}),
            # seed 2 is still at round 0; seed 4 has no WS+init run, seed 3 no Entropy+init run
            *runs_of("Entropy+init", {0: [0.78, 0.90], 1: [0.8, 0.90], 2: [0.8], 4: [0.8, 0.95]}),
        ])
    (row,) = claims_json(tmp_path / "altui.db", "gaps")
    assert row["seeds"] == [0, 1, 2] and row["dropped_seeds"] == [3, 4]
    assert row["rounds"] == [0] and row["n_labeled"] == [100]  # the latest round every paired seed reached
    assert_statistic(row, [0.02, 0.01, -0.01])
    assert row["note"].startswith(
        "compared at round 0, the latest that every paired seed reached (seeds 0, 1 further on). unpaired, left "
        "out: seed 3 (no Entropy+init round); seed 4 (no WS+init round).")
    text = cli(tmp_path / "altui.db", "claims", "gaps").stdout
    assert "| 3 (2 dropped) |" in text
    assert ("- Claim 1 (WS+init ≥ Entropy+init: accuracy at the last round (same last-round decay)): p = ") in text


def test_methods_with_fewer_rounds_are_compared_at_the_last_round_both_reached(tmp_path: Path) -> None:
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "short", [
            *runs_of("WS+init", {s: [0.7, 0.8 + s / 100, 0.9, 0.95] for s in range(3)}),
            *runs_of("Entropy+init", {s: [0.7, 0.79] for s in range(3)}),
        ])
    (row,) = claims_json(tmp_path / "altui.db", "short")
    assert row["rounds"] == [1] and row["n_labeled"] == [200] and row["dropped_seeds"] == []
    assert_statistic(row, [0.01, 0.02, 0.03])
    assert row["verdict"] == "inconclusive" and row["seeds_needed"] == fewest_seeds(0.02, 0.01) == 4
    assert "compared at round" not in row["note"]  # no seed is further on


def test_claim_1_says_when_the_last_round_decays_differ(tmp_path: Path) -> None:
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "decays", [
            *runs_of("WS+init", {s: [0.7, 0.8] for s in range(3)}, decay=[0.02, 0.01]),
            *runs_of("Entropy+init", {s: [0.7, 0.8] for s in range(3)}, decay=[0.0001, 0.0001]),
        ])
    (row,) = claims_json(tmp_path / "altui.db", "decays")
    assert "last-round decays differ (WS+init 0.01, Entropy+init 0.0001)" in row["note"]


def test_runs_are_compared_only_at_their_own_sweep_point(tmp_path: Path) -> None:
    ws_init = {s: [0.7, 0.85 + s / 100] for s in range(3)}
    up, down = [0.010, 0.012, 0.014], [-0.010, -0.012, -0.014]
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "alpha", [
            *runs_of("WS+init", ws_init, sweep={"kd_alpha": 0.1}),
            *runs_of("WS+init+KD1", last_shifted(ws_init, up), sweep={"kd_alpha": 0.1}),
            *runs_of("WS+init", ws_init, sweep={"kd_alpha": 0.9}),
            *runs_of("WS+init+KD1", last_shifted(ws_init, down), sweep={"kd_alpha": 0.9}),
        ])
    rows = claims_json(tmp_path / "altui.db", "alpha")
    low = find(rows, 2, "WS+init+KD1", "WS+init", sweep={"kd_alpha": 0.1})
    high = find(rows, 2, "WS+init+KD1", "WS+init", sweep={"kd_alpha": 0.9})
    assert (low["verdict"], high["verdict"]) == ("supported", "contradicted")
    assert_statistic(low, up, family=2)  # the sweep points are one family
    assert low["text"].endswith("[kd_alpha=0.1]") and low["seeds"] == [0, 1, 2]

    with Store(tmp_path / "altui.db") as store:
        result = list(store.result_rows("alpha"))
    assert claims.claim_for_pair(result, "WS+init", "WS+init+KD1") is None  # which sweep point?
    pair = claims.claim_for_pair(result, "WS+init", "WS+init+KD1", sweep={"kd_alpha": 0.9})
    assert pair is not None and pair.as_dict() == high  # the same verdict as `altui claims`, same family


# ---- claim 5: the headline -----------------------------------------------------------------------


def offset(curve: list[float], step: float) -> dict[int, list[float]]:
    return {s: [v + step * s for v in curve] for s in range(3)}


def test_the_best_method_against_each_baseline_at_every_round_after_the_first(tmp_path: Path) -> None:
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "headline", [
            *runs_of("WS+init", offset([0.75, 0.81, 0.86], 0.013)),  # above Random, less clearly
            *runs_of("WS+init+KD1", offset([0.65, 0.85, 0.89], 0.012)),  # worse at round 0: not compared
            *runs_of("Random", offset([0.70, 0.80, 0.85], 0.01)),
            *runs_of("Entropy", offset([0.72, 0.83, 0.91], 0.01)),
            *runs_of("LL", {s: [0.6, 0.7, 0.8] for s in range(2)}),
        ])
    rows = claims_json(tmp_path / "altui.db", "headline")
    assert [(r["method"], r["baseline"]) for r in rows if r["claim"] == 5] == [
        ("WS+init+KD1", "Random"), ("WS+init+KD1", "Entropy"), ("WS+init+KD1", "LL")]
    random = find(rows, 5, "WS+init+KD1", "Random")
    assert random["verdict"] == "supported" and random["rounds"] == [1, 2] and random["n_labeled"] == [200, 300]
    assert random["family"] == 3 and random["test"] == "every round, best of 2 · paired t (seeds)"
    assert [(d["candidate"], d["round"]) for d in random["details"]] == [
        ("WS+init+KD1", 1), ("WS+init+KD1", 2), ("WS+init", 1), ("WS+init", 2)]
    # the row's p: both rounds must hold (the weaker decides), best of 2 candidates, both directions
    kd1_weakest = max(d["p_greater"] for d in random["details"] if d["candidate"] == "WS+init+KD1")
    ws_weakest = max(d["p_greater"] for d in random["details"] if d["candidate"] == "WS+init")
    assert random["p_unadjusted"] == pytest.approx(2 * 2 * min(kd1_weakest, ws_weakest))
    shown = [0.04, 0.042, 0.044]  # KD1 - Random at round 2, the weaker round, is shown
    p, low, high = t_test(shown)
    assert (random["mean_difference"], random["ci_low"], random["ci_high"]) == pytest.approx(
        (statistics.fmean(shown), low, high))
    assert "shown: WS+init+KD1, round 2, its weakest round." in random["note"]
    entropy = find(rows, 5, "WS+init+KD1", "Entropy")  # both candidates fall below Entropy at round 2
    assert entropy["verdict"] == "contradicted" and entropy["mean_difference"] < 0
    assert "round 2, its most contrary round" in entropy["note"]
    ll = find(rows, 5, "WS+init+KD1", "LL")
    assert ll["verdict"] == "inconclusive" and ll["dropped_seeds"] == [2] and ll["seeds"] == [0, 1]
    assert ll["reason"].startswith("p = ")
    assert not any(r["baseline"] == "WS+init" and r["claim"] == 5 for r in rows)

    with Store(tmp_path / "altui.db") as store:
        result = list(store.result_rows("headline"))
    assert claims.claim_for_pair(result, "Entropy", "WS+init+KD1").as_dict() == entropy
    assert claims.claim_for_pair(result, "Entropy", "WS+init") is None  # WS+init is not the one shown here
    assert claims.claim_for_pair(result, "Random", "LL") is None


def test_one_contrary_round_of_many_does_not_contradict_by_chance(tmp_path: Path) -> None:
    """Every round is a test: a round that leans the other way within the noise contradicts nothing,
    and a candidate that holds everywhere is not hidden by one that does not."""
    rng = np.random.default_rng(5)
    curve = [0.6, 0.7, 0.75, 0.8, 0.82, 0.84]
    random = {s: [v + rng.normal(0, 0.01) for v in curve] for s in range(4)}
    ws_init = {s: [v + 0.03 + rng.normal(0, 0.002) for v in random[s]] for s in range(4)}  # clearly above
    kd1 = {s: [v + rng.normal(0, 0.01) for v in random[s]] for s in range(4)}  # the same as Random
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "rounds", [*runs_of("Random", random), *runs_of("WS+init", ws_init),
                                   *runs_of("WS+init+KD1", kd1)])
    row = find(claims_json(tmp_path / "altui.db", "rounds"), 5, "WS+init", "Random")
    assert row["method"] == "WS+init" and row["verdict"] == "supported" and row["rounds"] == [1, 2, 3, 4, 5]


# ---- claim 6: Table 1's argmax --------------------------------------------------------------------

GOOD = {  # N -> decay -> accuracy: the best decay falls as N grows, with lambda * N = 4 throughout
    100: {0.04: 0.90, 0.02: 0.88, 0.01: 0.85},
    200: {0.04: 0.91, 0.02: 0.93, 0.01: 0.92},
    400: {0.04: 0.92, 0.02: 0.94, 0.01: 0.96},
}
BAD = {100: {0.04: 0.80, 0.02: 0.84, 0.01: 0.86}, 200: {0.04: 0.88, 0.02: 0.90, 0.01: 0.89},
       400: {0.04: 0.95, 0.02: 0.93, 0.01: 0.92}}
NOISE = 0.002  # per run, so that seeds differ


def table_runs(table: dict[int, dict[float, float]], seeds: int = 3) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    return [{"method": "Random", "seed": s, "sweep": {"initial": n, "weight_decay": wd}, "initial": n,
             "accuracy": [acc + rng.normal(0, NOISE)], "decay": [wd]}
            for s in range(seeds) for n, row in table.items() for wd, acc in row.items()]


def contrasts(runs: list[dict[str, Any]]) -> list[float]:
    """docs/export.md's claim-6 contrast per seed, written out: for each adjacent pair of N and of
    decays, (smaller - larger decay at the larger N) - (the same at the smaller N), averaged."""
    acc = {(r["seed"], r["initial"], r["sweep"]["weight_decay"]): r["accuracy"][0] for r in runs}
    out = []
    for s in sorted({r["seed"] for r in runs}):
        terms = [(acc[s, n2, lo] - acc[s, n2, hi]) - (acc[s, n1, lo] - acc[s, n1, hi])
                 for n1, n2 in ((100, 200), (200, 400)) for hi, lo in ((0.04, 0.02), (0.02, 0.01))]
        out.append(statistics.fmean(terms))
    return out


def test_the_sweep_claim_tests_the_decay_by_n_contrast_and_reads_the_argmax(tmp_path: Path) -> None:
    good, bad = table_runs(GOOD), table_runs(BAD)
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "table-good", good)
        add_runs(store, "table-bad", bad)
    (row,) = claims_json(tmp_path / "altui.db", "table-good")
    assert row["claim"] == 6 and row["verdict"] == "supported" and row["method"] == "Random"
    assert [(d["n_labeled"], d["weight_decay"]) for d in row["details"]] == [(100, 0.04), (200, 0.02), (400, 0.01)]
    assert [d["product"] for d in row["details"]] == pytest.approx([4.0, 4.0, 4.0])
    assert row["seeds"] == [0, 1, 2] and row["sweep"] == {}
    p, low, high = t_test(contrasts(good))
    assert (row["mean_difference"], row["ci_low"], row["ci_high"], row["p_value"]) == pytest.approx(
        (statistics.fmean(contrasts(good)), low, high, p))
    assert row["test"] == "decay × N contrast · paired t (seeds)"

    (row,) = claims_json(tmp_path / "altui.db", "table-bad")
    assert row["verdict"] == "contradicted"  # 0.01 at N = 100, then 0.02, 0.04: increasing
    assert [d["weight_decay"] for d in row["details"]] == [0.01, 0.02, 0.04]
    assert "the argmax is at an end of the decay grid for N = 100, 400" in row["note"]
    text = cli(tmp_path / "altui.db", "claims", "table-bad").stdout
    assert "| argmax λ by N: 0.01, 0.02, 0.04; contrast -2.2" in text
    assert re.search(r"\| 400 \| 0\.04 \| 9\d\.\d\d \| 3 \| 16 \|", text)


def test_the_sweep_claim_needs_two_seeds_per_cell(tmp_path: Path) -> None:
    partial = {n: dict(row) for n, row in GOOD.items()}
    partial[100][0.08] = 0.99  # swept only at N = 100: would win there
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "table-partial", table_runs(partial, seeds=1))
    (row,) = claims_json(tmp_path / "altui.db", "table-partial")
    assert [d["weight_decay"] for d in row["details"]] == [0.04, 0.02, 0.01]
    assert row["verdict"] == "inconclusive" and row["p_value"] is None
    assert row["reason"] == "cell N=100 λ=0.04 has 1 seed; a verdict needs at least 2 per cell."
    assert "cells left out (their decay is not swept at every N): N=100 λ=0.08." in row["note"]


# ---- the command ---------------------------------------------------------------------------------


def test_claims_of_an_unknown_experiment_exit_1(verdicts_db: Path) -> None:
    result = cli(verdicts_db, "claims", "nope", "--json")
    assert result.exit_code == 1
    assert "no experiment 'nope'" in result.stderr and result.stdout == ""


def test_an_experiment_without_a_claim_says_so(tmp_path: Path) -> None:
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "solo", runs_of("Random", {0: [0.5, 0.6]}))
    assert claims_json(tmp_path / "altui.db", "solo") == []
    text = cli(tmp_path / "altui.db", "claims", "solo").stdout
    assert "No claim of the paper can be checked here" in text and "methods: Random." in text


# ---- a real experiment ---------------------------------------------------------------------------

DIGITS = """
[[experiment]]
name = "digits-claims"
dataset = "digits"
model = "cnn5"
methods = ["WS+init", "Entropy+init", "WS+init+KD1"]
seeds = 3
rounds = 2
initial = 20
budget = 20
epochs = 1
milestones = [1]
pool_subset = 100
device = "cpu"
"""


def markdown_rows(section: str) -> list[list[str]]:
    """The cells of the Claims table of a report or of `altui claims`."""
    lines = [line for line in section.splitlines() if re.match(r"\| \d \|", line)]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_a_real_digits_experiment_reaches_the_report_and_the_command(tmp_path: Path) -> None:
    spec = tmp_path / "experiments.toml"
    spec.write_text(DIGITS)
    db = tmp_path / "altui.db"
    result = cli(db, "run", str(spec), "digits-claims")
    assert result.exit_code == 0, result.output

    text = cli(db, "report", "digits-claims").stdout
    assert "## Claims" in text
    section = text.split("## Claims", 1)[1].split("\n## ", 1)[0]
    rows = claims_json(db, "digits-claims")
    assert [(r["claim"], r["method"], r["baseline"]) for r in rows] == [
        (1, "WS+init", "Entropy+init"), (2, "WS+init+KD1", "WS+init")]
    table = markdown_rows(section)
    assert len(table) == len(rows)
    with Store(db) as store:
        rounds = [r for r in store.result_rows("digits-claims", test_correct=True) if r["round"] == 1]
    last = {(r["method"], r["seed"]): r["accuracy"] for r in rounds}
    right = {(r["method"], r["seed"]): CorrectImages.parse(r["test_images"], r["test_correct"]).array() for r in rounds}
    assert {len(v) for v in right.values()} == {450}  # digits' test set, one bit per image
    assert all(right[k].mean() == pytest.approx(last[k]) for k in last)  # the bits are the accuracy
    for cells, row in zip(table, rows, strict=True):  # the same rows, as Markdown and as JSON
        mean, low, high = (100 * row[k] for k in ("mean_difference", "ci_low", "ci_high"))
        assert cells == [str(row["claim"]), row["text"], row["section"], "1 (40 labels)",
                         f"{mean:+.2f} pp [{low:+.2f}, {high:+.2f}]", "paired t (seeds × test images)",
                         claims.format_p(row["p_value"]), "3", "–" if row["seeds_needed"] is None
                         else str(row["seeds_needed"]), f"**{row['verdict']}**"]
        assert row["verdict"] in claims.VERDICTS and row["seeds"] == [0, 1, 2] and row["rounds"] == [1]
        differences = [last[(row["method"], s)] - last[(row["baseline"], s)] for s in range(3)]
        assert row["mean_difference"] == pytest.approx(statistics.fmean(differences))
        assert row["ci_low"] <= row["mean_difference"] <= row["ci_high"]
        # never narrower than the seeds alone say: the test set's own noise only widens it
        _, low, high = t_test(differences)
        assert row["ci_low"] <= low + 1e-12 and row["ci_high"] >= high - 1e-12
        assert (row["verdict"] == "inconclusive") == bool(row["reason"])
    assert section.startswith("\n\nPaired over seeds") and "Holm-adjusted" in section
