"""When the queue will be done: the worker's order and slots over altui.speed.eta's per-run time."""

from __future__ import annotations

import pytest

from altui.al.presets import resolve
from altui.speed.eta import queue_finish
from altui.speed.plan import data_shape, run_seconds, workload_key
from altui.speed.speeds import Speeds, known_speeds
from altui.store import Store

FIELDS = dict(dataset="digits", model="cnn5", rounds=2, initial=20, budget=20, epochs=2)  # 120 images a run
DIGITS = ("cnn5", "digits", 32, False, False)  # the runs' workload: model, data set, batch size, compiled, distilled
SPEED = Speeds({(None, DIGITS): 10.0})  # images/s on a device not recorded: 12 s a run


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
    assert queue_finish(runs, Speeds(), slots=1) == {1: None, 2: None}
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


def record_round(store: Store, run_id: int, round_: int, n: int, seconds: float) -> None:
    store.add_round(run_id, {"round": round_, "n_labeled": n, "accuracy": 0.5, "test_loss": 1.0, "weight_decay": 0.01,
                             "lr": 0.1, "effective_channels": 1, "total_channels": 1, "conv_l2": 1.0,
                             "train_seconds": seconds, "acquire_seconds": 0.0, "pick_mean_score": None,
                             "pick_class_counts": "[]", "gamma_bins": "[0, 1]", "gamma_counts": "[1]"}, [], [])


def test_speeds_of_unlike_devices_and_workloads_are_never_mixed(tmp_path):
    """Before any run: `altui estimate`'s plan for the device it measured last (not an older card's);
    then what runs on this store achieved there, over their whole rounds; a run on another device
    changes the ETAs of its own workload there only, and the queue goes on at this device's speed."""
    cfg = resolve("Random", FIELDS)

    def measured(speed: float) -> dict[str, float]:
        return {"train": speed, "score": 1000.0, "warmup": 3.0, "last": 0.5, "round": 0.1, "epoch": 0.01}

    def cache(device: str, speed: float, at: str) -> list[dict]:
        model, shape, batch, compiled, augment = workload_key(cfg, data_shape(cfg), "cpu")
        return [{"measured_at": at, "device": device, "model": model, "input": shape, "batch": batch,
                 "compile": int(compiled), "augment": int(augment), "slots": 1, "kind": kind, "value": value,
                 "torch_version": "t"} for kind, value in measured(speed).items()]

    with queued_store(tmp_path, 3) as store:
        assert queue_finish(store.runs(), known_speeds(store)) == {1: None, 2: None, 3: None}
        store.save_throughput(cache("cuda:0 old card", 99.0, "2026-01-01T00:00:00"))
        store.save_throughput(cache("cpu: here", 12.0, "2026-02-01T00:00:00"))
        speeds = known_speeds(store)
        assert speeds.here == "cpu: here"
        one = run_seconds(cfg, data_shape(cfg), measured(12.0))  # the whole run as `altui estimate` plans it
        assert one != pytest.approx(run_seconds(cfg, data_shape(cfg), measured(99.0)))
        assert queue_finish(store.runs(), speeds) == pytest.approx({1: one, 2: 2 * one, 3: 3 * one})

        run = store.claim("cpu")["id"]  # then what runs here really achieve wins: 40 images in 8 s
        store.db.conn.execute("UPDATE runs SET device_name = 'cpu: here', compiled = 0 WHERE id = ?", (run,))
        store.db.conn.commit()
        record_round(store, run, 0, 20, 8.0)
        speeds = known_speeds(store)
        assert speeds.rates == {("cpu: here", DIGITS): pytest.approx(5.0)}
        assert queue_finish(store.runs(), speeds) == pytest.approx({1: 16.0, 2: 40.0, 3: 64.0})

        other = store.claim("cpu")["id"]  # a run elsewhere, ten times faster: its own ETA only
        store.db.conn.execute("UPDATE runs SET device_name = 'NVIDIA X', compiled = 0, started_at = '2026-01-01' "
                              "WHERE id = ?", (other,))
        store.db.conn.commit()
        record_round(store, other, 0, 20, 0.8)
        speeds = known_speeds(store)
        assert speeds.here == "cpu: here"  # the queue's device: the last run started (run 1)
        # run 2 has 80 images left at its own 50 images/s; run 3 starts on the first free slot at 5
        assert queue_finish(store.runs(), speeds) == pytest.approx({1: 16.0, 2: 1.6, 3: 1.6 + 120 / 5.0})


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


def test_a_multi_gpu_or_slurm_worker_s_queue_estimate_spreads_over_its_devices(tmp_path):
    """The queue dialog's estimate for a worker of 2 GPUs with 2 runs each: 2 devices of 2 slots (the
    cache measured 1 and 2 runs at once); a Slurm worker's 4 jobs: 4 devices of one run. It used to
    take every slot as runs on one device, which the cache never measured: no estimate at all."""
    from dataclasses import replace

    from altui.tui.backend import Backend, worker_layout

    assert worker_layout(None) == (1, 1)
    assert worker_layout({"executor": "local", "slots": ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]}) == (2, 2)
    assert worker_layout({"executor": "slurm", "slots": ["slurm"] * 4}) == (4, 1)

    toml = tmp_path / "experiments.toml"
    toml.write_text('[[experiment]]\nname = "e"\ndataset = "digits"\nmodel = "cnn5"\nmethods = ["Random"]\n'
                    'seeds = [0, 1, 2, 3]\nrounds = 2\ninitial = 20\nbudget = 20\nepochs = 2\ndevice = "cuda"\n')
    cfg = resolve("Random", {**FIELDS, "device": "cuda"})
    model, shape, batch, compiled, augment = workload_key(cfg, data_shape(cfg), "cuda")
    values = {"train": 100.0, "score": 1000.0, "warmup": 1.0, "last": 0.1, "round": 0.1, "epoch": 0.01}
    rows = [{"device": "GPU X", "model": model, "input": shape, "batch": batch, "compile": int(compiled),
             "augment": int(augment), "slots": slots, "kind": kind, "value": value / (1.5 if slots == 2 else 1),
             "torch_version": "t"}
            for kind, value in values.items() for slots in (1, 2) if slots == 1 or kind == "train"]
    with Store(tmp_path / "altui.db") as store:
        store.save_throughput(rows)
    backend = Backend(tmp_path / "altui.db", toml, start_worker_on_queue=False)
    snapshot = backend.snapshot()
    one = run_seconds(cfg, data_shape(cfg), values)
    for worker, lanes in (({"executor": "local", "slots": ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]}, 4),
                          ({"executor": "slurm", "slots": ["slurm"] * 4}, 4), (None, 1)):
        plan = backend.plan_queue(["e"], replace(snapshot, worker=worker))
        assert plan.estimate.wall_seconds is not None, worker
        per_run = one * (1.5 if worker and worker["executor"] == "local" else 1)  # 2 runs share a GPU: 1.5x slower
        assert plan.estimate.wall_seconds == pytest.approx(4 * per_run / lanes, rel=1e-6), worker
