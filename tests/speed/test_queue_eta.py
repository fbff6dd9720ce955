"""When the queue will be done: the worker's order and slots over altui.speed.eta's per-run time."""

from __future__ import annotations

import pytest

from altui.al.presets import resolve
from altui.speed.eta import known_throughput, queue_finish
from altui.store import Store

FIELDS = dict(dataset="digits", model="cnn5", rounds=2, initial=20, budget=20, epochs=2)  # 120 images a run
SPEED = {("cnn5", 32): 10.0}  # images/s: 12 s a run


def queued_store(tmp_path, n: int) -> Store:
    store = Store(tmp_path / "altui.db")
    config = resolve("Random", FIELDS).to_dict()
    store.enqueue("exp", "f", {}, [{"name": f"r{i}", "method": "Random", "seed": i, "config": config}
                                   for i in range(n)])
    return store


def test_queued_runs_finish_in_queue_order_on_the_free_slots(tmp_path):
    with queued_store(tmp_path, 4) as store:
        first = store.claim("cpu")["id"]
        store.add_epoch(first, {"round": 0, "epoch": 1, "train_loss": 1.0, "train_accuracy": 0.1, "lr": 0.1,
                                "images_per_second": 10.0})  # 20 of its 120 images done: 10 s left
        runs = store.runs()
    one = queue_finish(runs, SPEED, slots=1)
    assert one == pytest.approx({1: 10.0, 2: 22.0, 3: 34.0, 4: 46.0})
    two = queue_finish(runs, SPEED, slots=2)  # run 2 starts at once on the idle slot
    assert two == pytest.approx({1: 10.0, 2: 12.0, 3: 22.0, 4: 24.0})


def test_an_unmeasured_model_makes_the_runs_behind_it_unknown(tmp_path):
    with queued_store(tmp_path, 2) as store:
        runs = store.runs()
    assert queue_finish(runs, {}, slots=1) == {1: None, 2: None}
    with Store(tmp_path / "altui.db") as store:
        store.cancel([1])
        runs = store.runs()
    assert queue_finish(runs, SPEED, slots=1) == {2: pytest.approx(12.0)}  # cancelled runs wait for nothing


def test_a_run_pending_in_slurm_has_no_eta_and_holds_its_place(tmp_path):
    with queued_store(tmp_path, 3) as store:
        store.claim("slurm", 1)
        store.slurm_submitted(1, "42")
        store.slurm_state(1, "42", None, "Resources")
        runs = store.runs()
    assert queue_finish(runs, SPEED, slots=2) == {1: None, 2: pytest.approx(12.0), 3: pytest.approx(24.0)}
    assert queue_finish(runs, SPEED, slots=1) == {1: None, 2: None, 3: None}  # all wait for Slurm


def test_before_any_run_trains_etas_come_from_altui_estimate_s_measurement(tmp_path):
    def cache(device: str, rate: float, at: str) -> dict:
        return {"measured_at": at, "device": device, "model": "cnn5", "input": "1x8x8", "batch": 32, "compile": 0,
                "augment": 0, "slots": 1, "kind": "train", "value": rate, "torch_version": "t"}

    with queued_store(tmp_path, 2) as store:
        assert known_throughput(store) == {}
        store.save_throughput([cache("cuda:0 old card", 99.0, "2026-01-01T00:00:00")])
        store.save_throughput([cache("cpu here", 12.0, "2026-02-01T00:00:00")])  # the device measured last counts
        assert known_throughput(store) == {("cnn5", 32): 12.0}
        assert queue_finish(store.runs(), known_throughput(store)) == pytest.approx({1: 10.0, 2: 20.0})
        run = store.claim("cpu")["id"]  # then what runs here really achieve wins
        store.add_epoch(run, {"round": 0, "epoch": 1, "train_loss": 1.0, "train_accuracy": 0.1, "lr": 0.1,
                              "images_per_second": 10.0})
        assert known_throughput(store) == {("cnn5", 32): pytest.approx(10.0)}


def test_an_eta_of_2_to_the_64_rounds_is_computed_at_once_and_matches_the_sum(tmp_path):
    """A run planned (through a store written elsewhere) with 2**64 rounds: its ETA is a closed form,
    not a sum over every round; for 5 rounds it is the sum."""
    from altui.speed.eta import labels_sum, remaining_images

    huge = resolve("Random", FIELDS)
    huge = type(huge).from_dict({**huge.to_dict(), "rounds": 2**64})
    assert remaining_images(huge, 3, 1) == 1 * (20 + 3 * 20) + 2 * labels_sum(20, 20, 4, 2**64)
    small = type(huge).from_dict({**huge.to_dict(), "rounds": 5})
    assert remaining_images(small, 1, 1) == 40 * 1 + sum(2 * (20 + 20 * t) for t in range(2, 5))
    with queued_store(tmp_path, 1) as store:
        store.db.conn.execute("UPDATE runs SET spec_json = json_set(spec_json, '$.rounds', 100000)")
        store.db.conn.commit()
        runs = store.runs()
    assert queue_finish(runs, SPEED, slots=1) == {1: pytest.approx(2 * labels_sum(20, 20, 0, 100_000) / 10.0)}
