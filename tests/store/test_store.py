"""The store as users meet it: its documented schema, queueing, and rounds recorded once."""

from __future__ import annotations

import sqlite3
import time

import pytest

from altui.al.presets import resolve
from altui.store import Store, StoreError, migrations


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
        assert store.schema_version == len(migrations._migrations)


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
        assert store.schema_version == len(migrations._migrations)
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
        assert store.schema_version == len(migrations._migrations)
        key = dict(device="cpu: X, 2 threads", model="cnn5", input="1x28x28", batch=32, compile=0, augment=0,
                   slots=1, kind="train", torch_version="2.14.1")
        store.save_throughput([{**key, "value": 400.0}, {**key, "kind": "score", "value": 1200.0}])
        store.save_throughput([{**key, "value": 450.0}])
        rows = store.throughput("cpu: X, 2 threads", "2.14.1")
        assert sorted((r["kind"], r["value"]) for r in rows) == [("score", 1200.0), ("train", 450.0)]
        assert all(r["measured_at"] for r in rows)
        assert store.throughput("cpu: X, 2 threads", "2.15.0") == []


def test_a_version_4_store_keeps_its_rounds_and_says_they_have_no_per_image_results(tmp_path):
    """m005 adds `rounds.test_images` and `rounds.test_correct`; rounds recorded before are NULL there,
    the claims say that their statistic is over seeds only, and new rounds carry their bitsets."""
    from sqlite_utils import Database

    from altui.al.sink import CorrectImages
    from altui.results import claims
    from altui.store import migrations

    path = tmp_path / "altui.db"
    old = Database(path)
    migrations.apply(old, stop_before="m005_test_correct")
    old["experiments"].insert({"id": 1, "name": "exp", "file": "f", "spec_json": "{}", "created_at": "t"})
    for run_id, (method, seed) in enumerate([(m, s) for m in ("WS+init", "Entropy+init") for s in range(3)], 1):
        old["runs"].insert({"id": run_id, "experiment_id": 1, "name": f"exp/{method}/s{seed}", "method": method,
                            "seed": seed, "created_at": "t", "spec_json": '{"model": "cnn5"}'})
        old["rounds"].insert({**round_row(0), "run_id": run_id, "accuracy": 0.8 + 0.01 * seed, "recorded_at": "t"})
    old.close()
    with Store(path) as store:
        assert store.schema_version == len(migrations._migrations)
        assert [(r["test_images"], r["test_correct"]) for r in store.rounds(1)] == [(None, None)]
        (row,) = claims.experiment_claims(store, "exp")
        assert row.test == "paired t (seeds)" and "no per-image results for these rounds" in row.note
        right = CorrectImages.of([True, False, True] * 150)
        store.add_round(1, {**round_row(1), "test_images": right.images, "test_correct": right.text()}, [], [])
        (recorded,) = [r for r in store.result_rows("exp", test_correct=True) if r["round"] == 1]
        assert CorrectImages.parse(recorded["test_images"], recorded["test_correct"]).array().tolist() == (
            [True, False, True] * 150)


def test_a_version_5_store_gains_the_slurm_reason_of_its_pending_runs(tmp_path):
    """m006 adds `runs.slurm_reason`: set while a run's job is pending, cleared once it runs."""
    from sqlite_utils import Database

    from altui.store import migrations

    path = tmp_path / "altui.db"
    old = Database(path)
    migrations.apply(old, stop_before="m006_slurm_reason")
    old.close()
    with Store(path) as store:
        (run_id,) = queue(store, "exp/Random/s0")
        store.claim("slurm", run_id)
        store.slurm_submitted(run_id, "5")
        assert store.slurm_state(run_id, "5", None, "Priority") and store.run(run_id)["slurm_reason"] == "Priority"
        assert not store.slurm_state(run_id, "5", None, "Priority"), "no change"
        assert store.slurm_state(run_id, "5", None, "Resources") and store.run(run_id)["slurm_reason"] == "Resources"
        assert store.slurm_state(run_id, "5", "n1", "None") and store.run(run_id)["slurm_reason"] is None


def test_reopening_a_store_keeps_its_runs_and_applies_no_migration_twice(tmp_path):
    with Store(tmp_path / "altui.db") as store:
        queue(store, "exp/Random/s0")
    with Store(tmp_path / "altui.db") as store:
        assert [r["name"] for r in store.runs()] == ["exp/Random/s0"]
        assert store.schema_version == len(migrations._migrations)


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



# ---- opening: read-only commands, foreign and damaged files -----------------------------------------


def test_read_only_opens_create_nothing(tmp_path):
    from typer.testing import CliRunner

    from altui.cli import app

    missing = tmp_path / "runs" / "altui.db"
    with pytest.raises(StoreError, match=f"no store at {missing}: nothing was queued there yet"):
        Store(missing, create=False)
    listed = CliRunner().invoke(app, ["--db", str(missing), "ls"])
    assert listed.exit_code == 0 and f"no runs in {missing}" in listed.output
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def read_only_folder(tmp_path):
    """A store folder that cannot be written (as root, modes do not stop writes: a read-only bind mount)."""
    import os
    import subprocess

    folder = tmp_path / "runs"
    folder.mkdir()
    with Store(folder / "altui.db") as store:
        queue(store, "exp/Random/s0")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "--bind", folder, folder], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"running as root without mount rights, a folder cannot be made read-only: {mounted.stderr!r}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", folder], check=True)
        yield folder
    finally:
        subprocess.run(["umount", folder], check=True)


def test_a_store_in_a_read_only_folder_is_listed_and_refuses_writes_in_one_line(read_only_folder):
    from typer.testing import CliRunner

    from altui.cli import app

    db = read_only_folder / "altui.db"
    with Store(db, create=False) as store:
        assert store.read_only and [r["name"] for r in store.runs()] == ["exp/Random/s0"]
    listed = CliRunner().invoke(app, ["--db", str(db), "ls"])
    assert listed.exit_code == 0 and "exp/Random/s0" in listed.output

    cancelled = CliRunner().invoke(app, ["--db", str(db), "cancel", "1"])
    assert cancelled.exit_code == 1 and isinstance(cancelled.exception, SystemExit)  # no traceback
    assert len(cancelled.output.splitlines()) == 1
    assert cancelled.output.startswith(f"error: the store {db} cannot be written (attempt to write a readonly "
                                       "database)")


def test_a_cancel_is_never_overwritten_by_the_end_of_the_run(tmp_path):
    with Store(tmp_path / "altui.db") as store:
        a, b = queue(store, "a", "b")
        store.claim("cpu", run_id=a)
        store.cancel([a])
        assert store.finish(a, "done") == "cancelled"  # the last round ended just after the cancel
        assert store.finish(a, "queued") == "cancelled"  # its worker stopped meanwhile
        assert store.run(a)["status"] == "cancelled"
        store.claim("cpu", run_id=b)
        assert store.finish(b, "done") == "done"


def test_numbers_that_json_cannot_hold_are_refused_before_anything_is_written(tmp_path):
    with Store(tmp_path / "altui.db") as store:
        bad = {**config(), "lr": float("inf")}
        with pytest.raises(StoreError, match="run 'a': its settings holds a number that is not finite"):
            store.enqueue("exp", "f.toml", {}, [{"name": "a", "method": "Random", "seed": 0, "config": bad}])
        assert store.runs() == [] and store._rows("SELECT * FROM experiments") == []


def test_restart_deletes_what_a_run_recorded_and_queues_it_at_round_0(tmp_path):
    with Store(tmp_path / "altui.db") as store:
        a, b = queue(store, "a", "b")
        for rid in (a, b):
            store.add_round(rid, round_row(0), [{"layer": "bn1", "channels": 32, "effective": 30}],
                            [{"pool_index": 5, "score": 0.9}], [{"layer": "bn1", "abs_gamma": "[1.0]"}])
            store.add_epoch(rid, {"round": 0, "epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "lr": 0.1,
                                  "images_per_second": 100.0})
        store.make_run_dir(a)
        (store.run_dir(a) / "round-0.pt").write_bytes(b"x")
        store.claim("cpu", run_id=a)
        assert store.restart([a, b]) == []  # running or queued: nothing to restart
        store.finish(a, "failed", "its checkpoint is missing")

        assert store.restart([a]) == [a]

        assert store.run(a)["status"] == "queued" and store.run(a)["attempt"] == 0 and store.run(a)["error"] is None
        assert store.rounds(a) == store.epochs(a) == store.channels(a) == store.picks(a) == store.gammas(a) == []
        assert not (store.run_dir(a) / "round-0.pt").exists()
        assert len(store.rounds(b)) == 1 and len(store.epochs(b)) == 1 and len(store.gammas(b)) == 1
        assert "restarted from scratch" in store.events(a)[-1]["message"]


def test_a_store_that_an_older_altui_filled_with_infinity_is_listed_again(tmp_path):
    """Before numbers were checked, `lr = inf` wrote `Infinity` into spec_json and json_extract failed on
    every listing. Such a run lists (its totals unknown) and fails with a message when it runs."""
    from altui.execution import runner

    with Store(tmp_path / "altui.db") as store, store.db.conn:
        (rid,) = queue(store, "a")
        store.db.conn.execute("UPDATE runs SET spec_json = replace(spec_json, '\"lr\": 0.01', '\"lr\": Infinity')")
    with Store(tmp_path / "altui.db") as store:
        (run,) = store.runs()
        assert "Infinity" in run["spec_json"] and run["rounds_total"] is None
        store.claim("cpu", run_id=rid)
    assert runner.execute(tmp_path / "altui.db", rid) == "failed"
    with Store(tmp_path / "altui.db") as store:
        assert store.run(rid)["error"] == "lr = inf is not finite; allowed: a finite number"


def test_a_worker_waiting_for_disk_space_pauses_the_queue_with_its_reason(tmp_path):
    from typer.testing import CliRunner

    from altui.cli import app

    with Store(tmp_path / "altui.db") as store:
        queue(store, "a")
        store.set_settings({"worker_disk_full": "the disk of runs is full (0.1 MB free)"})
        assert store.paused() and store.claim("cpu") is None  # what the dashboard shows as "queue paused"
        assert store.pause_reason() == "the disk of runs is full (0.1 MB free)"
    resumed = CliRunner().invoke(app, ["--db", str(tmp_path / "altui.db"), "resume"])
    assert "queue resumed, but still paused: the disk of runs is full (0.1 MB free)" in resumed.output
    with Store(tmp_path / "altui.db") as store:
        store.set_settings({"worker_disk_full": None})
        assert not store.paused() and store.pause_reason() is None and store.claim("cpu")["name"] == "a"


def epoch_row(t: int, epoch: int) -> dict:
    return dict(round=t, epoch=epoch, train_loss=1.0, train_accuracy=0.5, lr=0.01, images_per_second=100.0)


def test_a_retried_run_shows_its_new_attempt_s_epochs_not_the_old_ones(tmp_path):
    with Store(tmp_path / "altui.db") as store:
        (rid,) = queue(store, "a")
        store.claim("cpu", run_id=rid)
        store.add_round(rid, round_row(0), [], [])
        for epoch in range(1, 10):  # round 1 gets 9 epochs in, then the run is cancelled
            store.add_epoch(rid, epoch_row(1, epoch))
        assert store.runs()[0]["epoch"] == 9
        store.cancel([rid])
        store.retry([rid])
        assert store.claim("cpu", run_id=rid) is not None  # the new attempt redoes round 1
        assert store.runs()[0]["epoch"] is None
        assert [e["round"] for e in store.epochs(rid)] == []  # round 0's epochs were never written here
        store.add_epoch(rid, epoch_row(1, 1))
        assert store.runs()[0]["epoch"] == 1


def test_a_round_restarted_without_a_new_claim_drops_the_earlier_attempt_s_later_epochs(tmp_path):
    """A Slurm job resubmitted from its checkpoint replays a round's epochs from 1."""
    with Store(tmp_path / "altui.db") as store:
        (rid,) = queue(store, "a")
        store.claim("cpu", run_id=rid)
        for epoch in (1, 2, 3):
            store.add_epoch(rid, epoch_row(0, epoch))
        store.add_epoch(rid, epoch_row(0, 1))
        assert [e["epoch"] for e in store.epochs(rid)] == [1]
        assert store.runs()[0]["epoch"] == 1


def test_select_runs_by_experiment_and_status(tmp_path):
    with Store(tmp_path / "altui.db") as store:
        a, b = queue(store, "a", "b")
        other = store.enqueue("other", "experiments.toml", {}, [
            {"name": "c", "method": "Random", "seed": 0, "config": config()}])[0]
        store.claim("cpu", run_id=a)
        assert store.select_runs("exp") == [a, b]
        assert store.select_runs("exp", ["queued"]) == [b]
        assert store.select_runs(statuses=["queued", "running"]) == [a, b, other]
        assert store.select_runs("nothing") == []
        with pytest.raises(StoreError, match="unknown status 'bogus'; allowed: queued"):
            store.select_runs("exp", ["bogus"])


def test_the_change_token_moves_with_what_the_dashboard_shows_and_not_with_the_heartbeat(tmp_path):
    """Store.change_token (issue 23: the idle dashboard polls it instead of reading every run)."""
    from altui.al.presets import resolve

    config = resolve("Random", dict(dataset="digits", model="cnn5", rounds=2, initial=10, budget=10)).to_dict()
    with Store(tmp_path / "altui.db") as store:
        ids = store.enqueue("e", "f", {}, [{"name": f"r{i}", "method": "Random", "seed": i, "config": config}
                                           for i in range(3)])
        tokens = [store.change_token()]
        store.set_settings({"worker_heartbeat": "later"})
        assert store.change_token() == tokens[-1]
        for change in (lambda: store.claim("cpu", ids[0]), lambda: store.heartbeat(ids[0]),
                       lambda: store.add_epoch(ids[0], dict(round=0, epoch=1, train_loss=1.0, train_accuracy=0.5,
                                                            lr=0.1, images_per_second=5.0)),
                       lambda: store.log(ids[0], "a line"), lambda: store.cancel([ids[1]]),
                       lambda: store.retry([ids[1]]), lambda: store.set_paused(True),
                       lambda: store.finish(ids[0], "failed", "boom")):
            time.sleep(0.002)  # timestamps are in milliseconds
            change()
            assert store.change_token() != tokens[-1]  # (a retry of a cancel may restore an older one)
            tokens.append(store.change_token())
