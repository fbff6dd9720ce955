"""Claim 7, beyond the paper: does WS+init+KD improve over the same acquisition without it, for every
acquisition of the experiment? A store built by hand with known per-seed differences, read through
`altui claims`, against scipy's paired t test and Holm."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from scipy import stats as sp
from support import cli

from altui.results.acquisition_pairs import acquisition_pairs
from altui.store import Store

FIXED = {"wd_schedule": "fixed", "init": "warm", "distill": "none"}
OURS = {"wd_schedule": "inverse", "init": "fresh", "distill": "kd1"}
METHODS = {  # method: its settings
    "Entropy": {"acquisition": "entropy", **FIXED}, "WS+init+KD1": {"acquisition": "entropy", **OURS},
    "BADGE": {"acquisition": "badge", **FIXED}, "BADGE+WS+init+KD1": {"acquisition": "badge", **OURS},
    "BALD": {"acquisition": "bald", **FIXED}, "BALD+WS+init+KD1": {"acquisition": "bald", **OURS},
}
BASE = {0: 0.80, 1: 0.82, 2: 0.79, 3: 0.81}  # each fixed-decay method's last-round accuracy per seed
GAIN = {"entropy": [0.010, 0.012, 0.008, 0.011], "badge": [0.030, 0.028, 0.033, 0.031],
        "bald": [0.010, -0.015, 0.005, -0.002]}


def round_row(t: int, accuracy: float) -> dict[str, Any]:
    return {"round": t, "n_labeled": 50 * (t + 1), "accuracy": accuracy, "test_loss": 0.1, "weight_decay": 0.01,
            "lr": 0.01, "effective_channels": 200, "total_channels": 224, "conv_l2": 3.0, "train_seconds": 1.0,
            "acquire_seconds": 0.1, "pick_mean_score": 0.5, "pick_class_counts": "[1]", "gamma_bins": "[0, 1]",
            "gamma_counts": "[3]"}


def store_with(tmp_path: Path, methods: dict[str, dict[str, str]]) -> Path:
    """Each method at each seed: two rounds; the last is BASE, plus its acquisition's GAIN for ours."""
    db = tmp_path / "altui.db"
    runs = [{"name": f"acq/{m}/s{s}", "method": m, "seed": s, "sweep": {}, "config": {"model": "cnn5", **cfg}}
            for m, cfg in methods.items() for s in BASE]
    with Store(db) as store:
        ids = store.enqueue("acq", "experiments.toml", {"name": "acq"}, runs)
        for run_id, r in zip(ids, runs, strict=True):
            cfg, s = r["config"], r["seed"]
            last = BASE[s] + (GAIN[cfg["acquisition"]][s] if cfg["distill"] == "kd1" else 0.0)
            for t, acc in enumerate([0.6, last]):
                store.add_round(run_id, round_row(t, acc), [], [])
    return db


def claims_json(db: Path) -> list[dict[str, Any]]:
    result = cli(db, "claims", "acq", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_each_acquisition_is_compared_with_and_without_ws_init_kd(tmp_path: Path):
    rows = [r for r in claims_json(store_with(tmp_path, METHODS)) if r["claim"] == 7]
    assert [(r["method"], r["baseline"]) for r in rows] == [
        ("WS+init+KD1", "Entropy"), ("BADGE+WS+init+KD1", "BADGE"), ("BALD+WS+init+KD1", "BALD")]
    raw = {}
    for r, acquisition in zip(rows, ("entropy", "badge", "bald"), strict=True):
        d = GAIN[acquisition]
        t = sp.ttest_1samp(d, 0.0)
        assert r["mean_difference"] == pytest.approx(statistics.fmean(d))
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(tuple(t.confidence_interval(0.95)))
        assert r["p_unadjusted"] == pytest.approx(t.pvalue) and r["test"] == "paired t (seeds)"
        assert r["family"] == 3 and r["seeds"] == [0, 1, 2, 3] and r["rounds"] == [1]
        assert f"(acquisition {acquisition})" in r["text"]
        raw[acquisition] = t.pvalue
    order = sorted(raw, key=raw.get)
    adjusted, running = {}, 0.0
    for i, a in enumerate(order):
        running = max(running, min(1.0, (3 - i) * raw[a]))
        adjusted[a] = running
    by = {a: r for r, a in zip(rows, ("entropy", "badge", "bald"), strict=True)}
    for a in raw:
        assert by[a]["p_value"] == pytest.approx(adjusted[a])
    assert by["badge"]["verdict"] == "supported" and by["entropy"]["verdict"] == "supported"
    assert by["bald"]["verdict"] == "inconclusive" and "after Holm over 3 rows" in by["bald"]["reason"]


def test_the_markdown_table_shows_claim_7(tmp_path: Path):
    result = cli(store_with(tmp_path, METHODS), "claims", "acq")
    assert result.exit_code == 0, result.output
    assert "| 7 | BADGE+WS+init+KD1 ≥ BADGE: accuracy at the last round (acquisition badge) |" in result.stdout


def test_an_entropy_only_experiment_keeps_the_papers_claims(tmp_path: Path):
    entropy_only = {m: METHODS[m] for m in ("Entropy", "WS+init+KD1")}
    assert all(r["claim"] != 7 for r in claims_json(store_with(tmp_path, entropy_only)))
    assert acquisition_pairs(entropy_only) == []


def test_pairs_need_the_same_acquisition_and_a_fixed_decay_without_distillation():
    settings = {
        "CoreSet": {"acquisition": "coreset", **FIXED},
        "CoreSet+init": {"acquisition": "coreset", **FIXED, "init": "fresh"},
        "CoreSet+WS+init": {"acquisition": "coreset", **OURS, "distill": "none"},  # no KD: not ours
        "CoreSet+WS+same+KD2": {"acquisition": "coreset", **OURS, "init": "same", "distill": "kd2"},
        "BADGE+WS+init+KD1": {"acquisition": "badge", **OURS},  # no BADGE without it
        "WS+KD1": {"acquisition": "coreset", **OURS, "init": "warm"},  # warm: not +init
    }
    assert acquisition_pairs(settings) == [("CoreSet+WS+same+KD2", "CoreSet", "coreset"),
                                           ("CoreSet+WS+same+KD2", "CoreSet+init", "coreset")]
