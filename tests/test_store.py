"""The store as users meet it: its documented schema, queueing, and rounds recorded once."""

from __future__ import annotations

import sqlite3

import pytest

from altui.al.presets import resolve
from altui.store import Store, StoreError


def config() -> dict:
    return resolve("Random", dict(dataset="digits", model="cnn5", rounds=2, initial=20, budget=20, epochs=1)).to_dict()


def queue(store: Store, *names: str) -> list[int]:
    runs = [{"name": n, "method": "Random", "seed": 0, "config": config()} for n in names]
    return store.enqueue("exp", "experiments.toml", {"name": "exp"}, runs)


def round_row(t: int) -> dict:
    return dict(round=t, n_labeled=20 * (t + 1), accuracy=0.5, test_loss=1.0, weight_decay=0.01, lr=0.01,
                effective_channels=200, total_channels=224, conv_l2=3.0, train_seconds=1.0,
                acquire_seconds=0.1, pick_mean_score=None, pick_class_counts="[]", gamma_bins="[0, 1]",
                gamma_counts="[224]")


def test_connections_use_wal_and_a_busy_timeout(tmp_path):
    with Store(tmp_path / "altui.db") as store:
        assert store.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.db.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert store.schema_version == 4


def test_a_version_1_store_is_migrated_and_keeps_its_runs(tmp_path):
    """A store written before the Slurm columns and the gammas table opens with both added."""
    from sqlite_utils import Database

    from altui.store import migrations

    path = tmp_path / "altui.db"
    old = Database(path)
    migrations.apply(old, stop_before="m002_slurm")
    old["experiments"].insert({"name": "exp", "file": "f", "spec_json": "{}", "created_at": "t"})
    assert [m.name for m in migrations.applied(old)] == ["m001_initial"]
    old.close()
    with Store(path) as store:
        assert [r["name"] for r in store._rows("SELECT name FROM experiments")] == ["exp"]
        assert store.schema_version == 4
        queue(store, "exp/Random/s0")
        assert {"slurm_job_id", "node"} <= {c.name for c in store.db["runs"].columns}
        assert store.run(1)["slurm_job_id"] is None
        assert store.gammas(1) == []


def test_a_version_3_store_gains_the_throughput_cache(tmp_path):
    """m004 adds the `throughput` table that `altui estimate` keeps its measurements in; a
    measurement taken again replaces the earlier one of the same key."""
    from sqlite_utils import Database

    from altui.store import migrations

    path = tmp_path / "altui.db"
    old = Database(path)
    migrations.apply(old, stop_before="m004_throughput")
    old.close()
    with Store(path) as store:
        assert store.schema_version == 4
        key = dict(device="cpu: X, 2 threads", model="cnn5", input="1x28x28", batch=32, compile=0, augment=0,
                   slots=1, kind="train", torch_version="2.14.1")
        store.save_throughput([{**key, "value": 400.0}, {**key, "kind": "score", "value": 1200.0}])
        store.save_throughput([{**key, "value": 450.0}])
        rows = store.throughput("cpu: X, 2 threads", "2.14.1")
        assert sorted((r["kind"], r["value"]) for r in rows) == [("score", 1200.0), ("train", 450.0)]
        assert all(r["measured_at"] for r in rows)
        assert store.throughput("cpu: X, 2 threads", "2.15.0") == []


def test_reopening_a_store_keeps_its_runs_and_applies_no_migration_twice(tmp_path):
    with Store(tmp_path / "altui.db") as store:
        queue(store, "exp/Random/s0")
    with Store(tmp_path / "altui.db") as store:
        assert [r["name"] for r in store.runs()] == ["exp/Random/s0"]
        assert store.schema_version == 4


def test_queueing_twice_adds_only_new_runs(tmp_path):
    with Store(tmp_path / "altui.db") as store:
        assert len(queue(store, "exp/Random/s0", "exp/Random/s1")) == 2
        assert queue(store, "exp/Random/s0", "exp/Random/s1") == []
        assert len(queue(store, "exp/Random/s1", "exp/Random/s2")) == 1
        assert [r["status"] for r in store.runs()] == ["queued"] * 3


def test_claim_takes_the_oldest_queued_run_and_respects_pause(tmp_path):
    with Store(tmp_path / "altui.db") as store:
        first, second = queue(store, "a", "b")
        store.set_paused(True)
        assert store.claim("cpu") is None
        store.set_paused(False)
        claimed = store.claim("cpu")
        assert claimed["id"] == first and claimed["status"] == "running" and claimed["attempt"] == 1
        assert store.claim("cpu", run_id=first) is None  # already running
        assert store.claim("cpu")["id"] == second
        assert store.claim("cpu") is None


def test_a_round_is_recorded_once_with_its_rows_together(tmp_path):
    with Store(tmp_path / "altui.db") as store:
        (rid,) = queue(store, "a")
        channels = [{"layer": "bn1", "channels": 32, "effective": 30}]
        picks = [{"pool_index": 5, "score": 0.9}, {"pool_index": 7, "score": 0.8}]
        store.add_round(rid, round_row(0), channels, picks)
        with pytest.raises(StoreError, match="already recorded"):
            store.add_round(rid, round_row(0), channels, picks)
        # a failing round (duplicate pick) leaves nothing behind: all of its rows or none
        with pytest.raises(sqlite3.IntegrityError):
            store.add_round(rid, round_row(1), channels, picks + [picks[0]])
        assert [r["round"] for r in store.rounds(rid)] == [0]
        assert len(store.channels(rid)) == 1 and len(store.picks(rid)) == 2
        assert store.last_round(rid) == 0


def test_cancel_and_retry_move_runs_between_states(tmp_path):
    with Store(tmp_path / "altui.db") as store:
        a, b = queue(store, "a", "b")
        store.claim("cpu", run_id=a)
        assert store.cancel([a, b]) == [a, b]
        assert {r["status"] for r in store.runs()} == {"cancelled"}
        assert store.retry([a]) == [a]
        assert store.run(a)["status"] == "queued" and store.run(a)["attempt"] == 0
        assert store.resolve(["b", str(a)]) == [b, a]
        with pytest.raises(StoreError, match="no run 'zzz'"):
            store.resolve(["zzz"])

