"""`altui estimate`: whole-run time from measured speeds, cached in the store; and run ETAs.

Timings are never asserted (they depend on the machine and its load); the arithmetic is, on made-up
speeds, and the command is run for real on digits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from altui.al.presets import resolve
from altui.spec import load_spec
from altui.speed.eta import Estimate, estimate, queued_row, train_images
from altui.speed.plan import Shape, cached_estimate, data_shape, plan, run_seconds, wall_time, with_slots, workload_key
from altui.speed.speeds import Speeds
from altui.store import Store

ROOT = Path(__file__).resolve().parents[2]
DIGITS = Shape(channels=1, size=28, classes=10, pool=1347, test=450, augment=False)
SPEEDS = {"train": 400.0, "train_kd": 300.0, "warmup": 2.0, "last": 0.06, "score": 1000.0, "round": 0.5,
          "epoch": 0.01}


def digits(preset: str = "WS+init", **fields):
    return resolve(preset, {"dataset": "digits", "model": "cnn5", "rounds": 3, "initial": 50, "budget": 50,
                            "epochs": 10, "milestones": [5], "device": "cpu", **fields})


def test_a_run_takes_training_evaluation_acquisition_and_bookkeeping():
    cfg = digits()  # N_t = 50, 100, 150 in batches of 32: 1, 3 and 4 whole batches and a last one each
    assert data_shape(cfg) == DIGITS
    seconds = run_seconds(cfg, DIGITS, SPEEDS)
    training = 10 * (32 + 96 + 128) / 400 + 3 * 10 * (0.06 + 0.01)
    evaluation = 3 * 450 / 1000
    acquisition = ((1347 - 50) + (1347 - 100)) / 1000  # nothing after the last round
    assert seconds == pytest.approx(2.0 + training + evaluation + acquisition + 3 * 0.5)
    whole = digits(initial=64, budget=64)  # whole batches only: no last batch to pay
    assert run_seconds(whole, DIGITS, SPEEDS) == pytest.approx(
        2.0 + 10 * (64 + 128 + 192) / 400 + 3 * 10 * 0.01 + 3 * 450 / 1000
        + ((1347 - 64) + (1347 - 128)) / 1000 + 3 * 0.5)


def test_distillation_trains_at_its_own_speed_from_round_1():
    kd, plain = digits("WS+init+KD1"), digits("WS+init")
    slower = 400 / 300
    extra = 10 * (96 + 128) * (1 / 300 - 1 / 400) + 2 * 10 * 0.06 * (slower - 1)
    assert run_seconds(kd, DIGITS, SPEEDS) - run_seconds(plain, DIGITS, SPEEDS) == pytest.approx(extra)


def test_runs_fill_slots_in_queue_order_and_slots_slow_each_run_down():
    assert wall_time([10, 10, 10, 10], 1) == 40
    assert wall_time([10, 10, 10, 10], 2) == 20
    assert wall_time([30, 10, 10, 10], 2) == 30
    key = workload_key(digits(), DIGITS, "cpu")
    cache = {(*key, 1): dict(SPEEDS), (*key, 2): {"train": 250.0}}
    slowed = with_slots(cache, 2)[key]
    assert slowed["train"] == 250.0 and slowed["score"] == pytest.approx(1000 / 1.6)
    assert slowed["round"] == pytest.approx(0.5 * 1.6)
    assert with_slots(cache, 3) == {}  # three processes were never measured: no estimate


def test_plan_sums_device_time_and_spreads_wall_time():
    configs = [digits(seed=s) for s in range(4)]
    key = workload_key(configs[0], DIGITS, "cpu")
    one = run_seconds(configs[0], DIGITS, SPEEDS)
    result = plan(configs, [DIGITS] * 4, {key: SPEEDS}, "cpu: test", "cpu", gpus=2, slots=1)
    assert result.runs == 4 and result.train_images == 4 * train_images(configs[0])
    assert result.device_seconds == pytest.approx(4 * one) and result.wall_seconds == pytest.approx(2 * one)
    assert result.gpu_hours == pytest.approx(4 * one / 3600)
    missing = plan(configs, [DIGITS] * 4, {}, "cpu: test", "cpu")
    assert missing.wall_seconds is None and missing.train_images == result.train_images


def test_run_etas_from_recorded_epochs_still_work():
    cfg = digits()
    run = {**queued_row(cfg), "status": "running", "rounds_done": 1, "epoch": 4}
    speeds = Speeds({(None, ("cnn5", "digits", 32, False, False)): 100.0})
    assert speeds.seconds_left(run) == pytest.approx((100 * 6 + 150 * 10) / 100)
    assert Speeds().seconds_left(run) is None
    assert estimate([cfg], speeds, 1) == Estimate(1, 3000, 30.0, 30.0)


def altui(db: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "altui", "--db", str(db), *args], capture_output=True, text=True,
                          env=env, timeout=900)


@pytest.mark.slow
def test_estimate_measures_once_caches_in_the_store_and_prints_json(tmp_path):
    experiments = tmp_path / "experiments.toml"
    experiments.write_text(
        '[[experiment]]\nname = "tiny"\ndataset = "digits"\nmodel = "cnn5"\nmethods = ["Random", "WS+init+KD1"]\n'
        "seeds = [0, 1]\nrounds = 2\ninitial = 40\nbudget = 40\nepochs = 3\nmilestones = [2]\ndevice = \"cpu\"\n"
    )
    db = tmp_path / "runs" / "altui.db"
    # Before anything is queued: a read-only command measures, says it keeps nothing, creates nothing.
    before = altui(db, "estimate", str(experiments), "tiny", "--device", "cpu", "--seconds", "0.1")
    assert before.returncode == 0 and "measuring train" in before.stderr, before.stderr
    assert f"measured now and not kept: there is no store at {db}" in before.stdout.replace("\n", "")
    assert not (tmp_path / "runs").exists()
    Store(db).close()  # what `altui queue` does first
    first = altui(db, "estimate", str(experiments), "tiny", "--json", "--device", "cpu", "--seconds", "0.2")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["runs"] == 4 and result["train_images"] == 4 * 3 * (40 + 80)
    assert result["device"].startswith("cpu: ") and result["wall_seconds"] > 0
    assert result["gpus"] == 1 and result["slots"] == 1 and len(result["run_seconds"]) == 4
    assert "measuring train" in first.stderr and "measuring train_kd" in first.stderr
    with Store(db) as store:
        kinds = {r["kind"] for r in store.throughput(result["device"])}
        # what the dashboard shows before queueing: the same estimate, from the cache alone
        configs = [r.config for r in load_spec(experiments).get("tiny").runs]
        cached = cached_estimate(store, configs)
    assert kinds == {"train", "train_kd", "warmup", "last", "score", "round", "epoch"}
    assert cached.wall_seconds == pytest.approx(result["wall_seconds"]) and cached.device == result["device"]
    again = altui(db, "estimate", str(experiments), "tiny", "--device", "cpu", "--gpus", "2")
    assert again.returncode == 0 and "measuring" not in again.stderr, again.stderr
    assert "tiny: 4 runs, 1,440 training images" in again.stdout and "2 device(s) x 1 slot(s)" in again.stdout
    unknown = altui(db, "estimate", str(experiments), "nope")
    assert unknown.returncode == 1 and "nope" in unknown.stderr
