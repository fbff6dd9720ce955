"""The claims check: which of the paper's claims an experiment's runs support, from paired seeds.

Stores built by hand with known per-seed differences give each verdict; a real tiny digits experiment
goes through `altui run`, `altui report` and `altui claims`.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import cli

from altui.results import claims, stats
from altui.store import Store

LAYER = "blocks.0.0.1"  # cnn5's paper layer (Figure 5)


def round_row(t: int, n_labeled: int, accuracy: float, effective: int, decay: float) -> dict[str, Any]:
    return {
        "round": t, "n_labeled": n_labeled, "accuracy": accuracy, "test_loss": 0.1, "weight_decay": decay,
        "lr": 0.01, "effective_channels": effective, "total_channels": 224, "conv_l2": 3.0, "train_seconds": 1.0,
        "acquire_seconds": 0.1, "pick_mean_score": 0.5, "pick_class_counts": "[1]", "gamma_bins": "[0, 1]",
        "gamma_counts": "[3]",
    }


def add_runs(store: Store, experiment: str, runs: list[dict[str, Any]]) -> None:
    """Each run: method, seed, accuracy per round; optional sweep, initial (100), budget (100),
    effective (all layers, per round), layer (the paper layer's effective channels), decay per round."""
    specs = [{"name": f"{experiment}/{r['method']}/{json.dumps(r.get('sweep', {}))}/s{r['seed']}",
              "method": r["method"], "seed": r["seed"], "sweep": r.get("sweep", {}), "config": {"model": "cnn5"}}
             for r in runs]
    ids = store.enqueue(experiment, "experiments.toml", {"name": experiment}, specs)
    for run_id, r in zip(ids, runs, strict=True):
        initial, budget = r.get("initial", 100), r.get("budget", 100)
        for t, acc in enumerate(r["accuracy"]):
            effective = r.get("effective", [200] * 9)[t]
            layer = r.get("layer", [30] * 9)[t]
            decay = r.get("decay", [0.02 * initial / (initial + budget * k) for k in range(9)])[t]
            store.add_round(run_id, round_row(t, initial + t * budget, acc, effective, decay),
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


def independent_bootstrap(values: list[float]) -> tuple[float, float]:
    """docs/export.md's protocol computed another way: default_rng(0), 1000 x n indices, Python means."""
    picks = np.random.default_rng(0).integers(0, len(values), size=(1000, len(values)))
    means = [statistics.fmean(values[i] for i in row) for row in picks]
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def assert_statistic(row: dict[str, Any], differences: list[float]) -> None:
    assert row["mean_difference"] == pytest.approx(statistics.fmean(differences))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(independent_bootstrap(differences))


# ---- verdicts from known differences -------------------------------------------------------------

ENTROPY_INIT = {0: [0.80, 0.85, 0.900], 1: [0.81, 0.86, 0.910], 2: [0.79, 0.84, 0.905]}
CLAIM1 = [0.010, 0.020, 0.015]  # WS+init - Entropy+init at the last round, per seed
KD1 = [-0.020, -0.010, -0.030]  # WS+init+KD1 - WS+init
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
    assert one["verdict"] == "supported" and one["ci_low"] > 0
    assert one["rounds"] == [2] and one["n_labeled"] == [300] and one["seeds"] == [0, 1, 2]
    assert_statistic(one, CLAIM1)
    kd1 = find(rows, 2, "WS+init+KD1", "WS+init")
    assert kd1["verdict"] == "contradicted" and kd1["ci_high"] < 0
    assert_statistic(kd1, KD1)
    kd2 = find(rows, 2, "WS+init+KD2", "WS+init")
    assert kd2["verdict"] == "inconclusive" and kd2["ci_low"] < 0 < kd2["ci_high"]
    assert_statistic(kd2, KD2)
    three = find(rows, 3, "WS+init", "WS")  # both pairs favour WS+init, but two seeds give no verdict
    assert three["verdict"] == "inconclusive" and three["ci_low"] > 0
    assert three["seeds"] == [0, 1] and three["dropped_seeds"] == [2]
    assert "seed 2 (no WS round)" in three["note"]
    assert [r["claim"] for r in rows] == [1, 2, 2, 3, 4, 4]  # no Random, Entropy or LL: no claim 5

    text = cli(verdicts_db, "claims", "k100").stdout
    low, high = independent_bootstrap(CLAIM1)
    assert (f"| 1 | WS+init ≥ Entropy+init: accuracy at the last round (same last-round decay) | §4.2–4.4 | "
            f"2 (300 labels) | +1.50 pp [{100 * low:+.2f}, {100 * high:+.2f}] | 3 | **supported** |") in text
    assert "| 3 | WS+init ≥ WS: accuracy at the last round | §5.1 | 2 (300 labels) | +4.50 pp" in text
    assert "| 2 (1 dropped) | **inconclusive** |" in text


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
    assert_statistic(every, [80.0, 76.0, 72.0])
    paper = find(rows, 4, "WS+init", "WS", "paper_layer_effective")
    assert paper["text"].startswith(f"WS+init ≥ WS: effective channels of the paper's layer {LAYER}")
    assert_statistic(paper, [-2.0, 0.0, 2.0])
    assert paper["verdict"] == "inconclusive"
    assert find(rows, 3, "WS+init", "WS")["mean_difference"] == 0  # same accuracies
    text = cli(tmp_path / "altui.db", "claims", "channels").stdout
    assert "| +76.0 [+72.0, +80.0] | 3 | **supported** |" in text


# ---- pairing -------------------------------------------------------------------------------------


def test_unpaired_seeds_are_dropped_and_counted(tmp_path: Path) -> None:
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "gaps", [
            *runs_of("WS+init", {0: [0.8, 0.91], 1: [0.8, 0.92], 2: [0.8, 0.93], 3: [0.8, 0.90]}),
            # seed 2 stopped after round 0; seed 4 has no WS+init run, seed 3 no Entropy+init run
            *runs_of("Entropy+init", {0: [0.8, 0.90], 1: [0.8, 0.90], 2: [0.8], 4: [0.8, 0.95]}),
        ])
    (row,) = claims_json(tmp_path / "altui.db", "gaps")
    assert row["seeds"] == [0, 1] and row["dropped_seeds"] == [2, 3, 4]
    assert_statistic(row, [0.01, 0.02])
    assert row["verdict"] == "inconclusive"  # two pairs are fewer than three
    assert row["note"] == ("unpaired, left out: seed 2 (Entropy+init has no round 1); seed 3 (no Entropy+init "
                           "round); seed 4 (no WS+init round).")
    text = cli(tmp_path / "altui.db", "claims", "gaps").stdout
    assert "| 2 (3 dropped) | **inconclusive** |" in text
    assert ("- Claim 1 (WS+init ≥ Entropy+init: accuracy at the last round (same last-round decay)): unpaired, "
            "left out: seed 2 (Entropy+init has no round 1); seed 3") in text


def test_methods_with_fewer_rounds_are_compared_at_the_last_round_both_reached(tmp_path: Path) -> None:
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "short", [
            *runs_of("WS+init", {s: [0.7, 0.8 + s / 100, 0.9, 0.95] for s in range(3)}),
            *runs_of("Entropy+init", {s: [0.7, 0.79] for s in range(3)}),
        ])
    (row,) = claims_json(tmp_path / "altui.db", "short")
    assert row["rounds"] == [1] and row["n_labeled"] == [200] and row["dropped_seeds"] == []
    assert_statistic(row, [0.01, 0.02, 0.03])
    assert row["verdict"] == "supported"


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
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "alpha", [
            *runs_of("WS+init", ws_init, sweep={"kd_alpha": 0.1}),
            *runs_of("WS+init+KD1", last_shifted(ws_init, [0.01, 0.02, 0.03]), sweep={"kd_alpha": 0.1}),
            *runs_of("WS+init", ws_init, sweep={"kd_alpha": 0.9}),
            *runs_of("WS+init+KD1", last_shifted(ws_init, [-0.01, -0.02, -0.03]), sweep={"kd_alpha": 0.9}),
        ])
    rows = claims_json(tmp_path / "altui.db", "alpha")
    low = find(rows, 2, "WS+init+KD1", "WS+init", sweep={"kd_alpha": 0.1})
    high = find(rows, 2, "WS+init+KD1", "WS+init", sweep={"kd_alpha": 0.9})
    assert (low["verdict"], high["verdict"]) == ("supported", "contradicted")
    assert_statistic(low, [0.01, 0.02, 0.03])
    assert low["text"].endswith("[kd_alpha=0.1]") and low["seeds"] == [0, 1, 2]

    with Store(tmp_path / "altui.db") as store:
        result = list(store.result_rows("alpha"))
    assert claims.claim_for_pair(result, "WS+init", "WS+init+KD1") is None  # which sweep point?
    pair = claims.claim_for_pair(result, "WS+init", "WS+init+KD1", sweep={"kd_alpha": 0.9})
    assert pair is not None and pair.as_dict() == high


# ---- claim 5: the headline -----------------------------------------------------------------------


def offset(curve: list[float], step: float) -> dict[int, list[float]]:
    return {s: [v + step * s for v in curve] for s in range(3)}


def test_the_best_method_against_each_baseline_at_every_round_after_the_first(tmp_path: Path) -> None:
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "headline", [
            *runs_of("WS+init", offset([0.75, 0.84, 0.88], 0.01)),
            *runs_of("WS+init+KD1", offset([0.65, 0.85, 0.89], 0.012)),  # worse at round 0: not compared
            *runs_of("Random", offset([0.70, 0.80, 0.85], 0.01)),
            *runs_of("Entropy", offset([0.72, 0.83, 0.90], 0.01)),
            *runs_of("LL", {s: [0.6, 0.7, 0.8] for s in range(2)}),
        ])
    rows = claims_json(tmp_path / "altui.db", "headline")
    random = find(rows, 5, "WS+init+KD1", "Random")
    assert random["verdict"] == "supported" and random["rounds"] == [1, 2] and random["n_labeled"] == [200, 300]
    assert "best: WS+init+KD1, the highest mean accuracy at round 2 of WS+init+KD1 90.20%, WS+init 89.00%" in (
        random["note"])
    assert [d["round"] for d in random["details"]] == [1, 2]
    assert_statistic(random, [0.04, 0.042, 0.044])  # round 2, the weaker one, is shown
    assert "shown: round 2, the weakest of rounds 1–2." in random["note"]
    entropy = find(rows, 5, "WS+init+KD1", "Entropy")
    assert [d["verdict"] for d in entropy["details"]] == ["supported", "contradicted"]
    assert entropy["verdict"] == "contradicted"
    assert_statistic(entropy, [-0.01, -0.008, -0.006])
    ll = find(rows, 5, "WS+init+KD1", "LL")
    assert ll["verdict"] == "inconclusive" and ll["dropped_seeds"] == [2]
    assert not any(r["baseline"] == "WS+init" and r["claim"] == 5 for r in rows)

    with Store(tmp_path / "altui.db") as store:
        result = list(store.result_rows("headline"))
    assert claims.claim_for_pair(result, "Entropy", "WS+init+KD1").as_dict() == entropy
    assert claims.claim_for_pair(result, "Entropy", "WS+init") is None  # WS+init is not the best here
    assert claims.claim_for_pair(result, "Random", "LL") is None


# ---- claim 6: Table 1's argmax --------------------------------------------------------------------

GOOD = {  # N -> decay -> accuracy: the best decay falls as N grows, with lambda * N = 4 throughout
    100: {0.04: 0.90, 0.02: 0.88, 0.01: 0.85},
    200: {0.04: 0.91, 0.02: 0.93, 0.01: 0.92},
    400: {0.04: 0.92, 0.02: 0.94, 0.01: 0.96},
}
BAD = {100: {0.04: 0.80, 0.02: 0.84, 0.01: 0.86}, 200: {0.04: 0.88, 0.02: 0.90, 0.01: 0.89},
       400: {0.04: 0.95, 0.02: 0.93, 0.01: 0.92}}


def table_runs(table: dict[int, dict[float, float]], seeds: int = 2) -> list[dict[str, Any]]:
    return [{"method": "Random", "seed": s, "sweep": {"initial": n, "weight_decay": wd}, "initial": n,
             "accuracy": [acc + 0.001 * s], "decay": [wd]}
            for s in range(seeds) for n, row in table.items() for wd, acc in row.items()]


def test_the_sweep_claim_reads_the_argmax_decay_per_n(tmp_path: Path) -> None:
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "table-good", table_runs(GOOD))
        add_runs(store, "table-bad", table_runs(BAD))
    (good,) = claims_json(tmp_path / "altui.db", "table-good")
    assert good["claim"] == 6 and good["verdict"] == "supported" and good["method"] == "Random"
    assert [(d["n_labeled"], d["weight_decay"]) for d in good["details"]] == [(100, 0.04), (200, 0.02), (400, 0.01)]
    assert [d["product"] for d in good["details"]] == pytest.approx([4.0, 4.0, 4.0])
    assert [d["accuracy"] for d in good["details"]] == pytest.approx([0.9005, 0.9305, 0.9605])
    assert good["seeds"] == [0, 1] and good["sweep"] == {}

    (bad,) = claims_json(tmp_path / "altui.db", "table-bad")
    assert bad["verdict"] == "contradicted"  # 0.01 at N = 100, then 0.02, 0.04: increasing
    assert [d["weight_decay"] for d in bad["details"]] == [0.01, 0.02, 0.04]
    assert "the argmax is at an end of the decay grid for N = 100, 400" in bad["note"]
    text = cli(tmp_path / "altui.db", "claims", "table-bad").stdout
    assert "| argmax λ by N: 0.01, 0.02, 0.04 | 2 | **contradicted** |" in text
    assert "| 400 | 0.04 | 95.05 | 2 | 16 |" in text


def test_a_decay_missing_at_some_n_is_left_out_of_the_argmax(tmp_path: Path) -> None:
    partial = {n: dict(row) for n, row in GOOD.items()}
    partial[100][0.08] = 0.99  # swept only at N = 100: would win there
    with Store(tmp_path / "altui.db") as store:
        add_runs(store, "table-partial", table_runs(partial, seeds=1))
    (row,) = claims_json(tmp_path / "altui.db", "table-partial")
    assert [d["weight_decay"] for d in row["details"]] == [0.04, 0.02, 0.01] and row["verdict"] == "supported"
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
        last = {(r["method"], r["seed"]): r["accuracy"] for r in store.result_rows("digits-claims") if r["round"] == 1}
    for cells, row in zip(table, rows, strict=True):  # the same rows, as Markdown and as JSON
        mean, low, high = (100 * row[k] for k in ("mean_difference", "ci_low", "ci_high"))
        assert cells == [str(row["claim"]), row["text"], row["section"], "1 (40 labels)",
                         f"{mean:+.2f} pp [{low:+.2f}, {high:+.2f}]", "3", f"**{row['verdict']}**"]
        assert row["verdict"] in claims.VERDICTS and row["seeds"] == [0, 1, 2] and row["rounds"] == [1]
        differences = [last[(row["method"], s)] - last[(row["baseline"], s)] for s in range(3)]
        assert_statistic(row, differences)
        assert row["ci_low"] <= row["mean_difference"] <= row["ci_high"]
    assert section.startswith("\n\nPaired over seeds") and f"{stats.BOOTSTRAP_RESAMPLES} bootstrap" in section
