"""Runs that ran differently (threads, torch, device, ...) are named before any comparison."""

from __future__ import annotations

from pathlib import Path

from support import cli

from altui.results.provenance import provenance_differences
from altui.store import Store

PROVENANCE = dict(torch_version="2.14.1", cuda_version=None, device_name="cpu: x86_64", threads=1,
                  deterministic="algorithms=off cudnn.benchmark=off cudnn.deterministic=off", compiled=0,
                  altui_version="0.1.0")


def round_row(t: int, accuracy: float) -> dict:
    return dict(round=t, n_labeled=50 * (t + 1), accuracy=accuracy, test_loss=0.5, weight_decay=0.01, lr=0.01,
                effective_channels=200, total_channels=224, conv_l2=3.0, train_seconds=1.0,
                acquire_seconds=0.1, pick_mean_score=None, pick_class_counts="[]", gamma_bins="[0, 1]",
                gamma_counts="[224]")


def store_with_threads(db: Path, kd_threads: int) -> None:
    """WS+init and WS+init+KD1 over three seeds; the KD1 runs ran with `kd_threads` threads."""
    with Store(db) as store:
        runs = [{"name": f"exp/{m}/s{s}", "method": m, "seed": s, "config": {}}
                for m in ("WS+init", "WS+init+KD1") for s in range(3)]
        ids = store.enqueue("exp", "experiments.toml", {"name": "exp"}, runs)
        for run_id, run in zip(ids, runs, strict=True):
            store.set_provenance(run_id, {**PROVENANCE, "threads": kd_threads if "KD1" in run["method"] else 1})
            for t in range(2):
                store.add_round(run_id, round_row(t, 0.8 + 0.05 * t + 0.01 * run["seed"]), [], [])


def test_claims_names_a_threads_difference(tmp_path: Path) -> None:
    db = tmp_path / "altui.db"
    store_with_threads(db, kd_threads=2)
    result = cli(db, "claims", "exp")
    assert result.exit_code == 0
    assert "differ in provenance" in result.stdout and "threads: 1 (#1, #2, #3), 2 (#4, #5, #6)" in result.stdout
    assert "warning:" in result.stderr and "threads" in result.stderr
    report = cli(db, "report", "exp").stdout
    assert "threads: 1 (#1, #2, #3), 2 (#4, #5, #6)" in report


def test_runs_that_ran_alike_get_no_warning(tmp_path: Path) -> None:
    db = tmp_path / "altui.db"
    store_with_threads(db, kd_threads=1)
    result = cli(db, "claims", "exp")
    assert result.exit_code == 0 and "provenance" not in result.stdout and "warning" not in result.stderr


def test_a_resumed_attempt_that_runs_differently_says_what_changed(tmp_path: Path) -> None:
    with Store(tmp_path / "altui.db") as store:
        run_id = store.enqueue("exp", "experiments.toml", {"name": "exp"},
                               [{"name": "exp/WS+init/s0", "method": "WS+init", "seed": 0, "config": {}}])[0]
        assert store.set_provenance(run_id, PROVENANCE) == []  # the first attempt: nothing to compare
        assert store.set_provenance(run_id, PROVENANCE) == []
        assert store.set_provenance(run_id, {**PROVENANCE, "threads": 4, "device_name": "cpu: other"}) == [
            "device_name cpu: x86_64 -> cpu: other", "threads 1 -> 4"]
        assert store.run(run_id)["threads"] == 4  # the run's columns say what its last attempt ran with


def test_provenance_differences_is_empty_for_runs_alike_and_skips_runs_recorded_before() -> None:
    a = {"id": 1, **PROVENANCE}
    old = {"id": 3, **{k: None for k in PROVENANCE}}  # recorded before altui recorded provenance
    assert provenance_differences([a, {**a, "id": 2}, old]) == []
    assert provenance_differences([a, {**a, "id": 2, "compiled": 1, "cuda_version": "12.8"}]) == [
        "cuda_version: none (#1), 12.8 (#2)", "compiled: off (#1), on (#2)"]
