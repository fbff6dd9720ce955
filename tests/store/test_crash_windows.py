"""Crashes between the steps of the store's multi-step changes leave a state that the next step, or a
second try, handles: a restart that dies part-way leaves the run as it was (never rounds deleted while
the events file that holds them is still there for the Slurm head); a retry is one transaction (a
worker's claim cannot fall in between); an atomic write is the old file or the new one, and durable
(its folder synced) before its caller deletes what it replaces; commits are on disk when they return."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from altui import files
from altui.execution.events import EventsReader, events_path, ingest
from altui.store import Store

ROUND = dict(n_labeled=10, accuracy=0.5, test_loss=1.0, weight_decay=0.01, lr=0.01, effective_channels=30,
             total_channels=32, conv_l2=3.0, train_seconds=1.0, acquire_seconds=0.1, pick_mean_score=None,
             pick_class_counts="[]", gamma_bins="[0, 1]", gamma_counts="[32]")


class Killed(BaseException):
    """The process dies here (nothing after it runs, nothing catches it)."""


def failed_run_with_round_0(store: Store) -> int:
    [run_id] = store.enqueue("e", "e.toml", {}, [{"name": "r", "method": "Random", "seed": 0, "config": {"rounds": 2}}])
    store.claim("slurm", run_id)
    store.add_round(run_id, {"round": 0, **ROUND}, [], [])
    folder = store.make_run_dir(run_id)
    (folder / "round-0.pt").write_bytes(b"checkpoint")
    events_path(folder).write_text(json.dumps({"type": "round", "at": "t", "job": "7", "row": {"round": 0, **ROUND},
                                               "channels": [], "picks": [], "gammas": []}) + "\n")
    store.finish(run_id, "failed", "its checkpoint is damaged")
    return run_id


def test_a_restart_killed_while_it_removes_the_files_leaves_the_run_as_it_was_and_a_second_one_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(tmp_path / "altui.db") as store:
        run_id = failed_run_with_round_0(store)
        unlink = Path.unlink

        def killed_at_the_events_file(path: Path, missing_ok: bool = False) -> None:
            if path.name == "events.jsonl":
                raise Killed
            unlink(path, missing_ok=missing_ok)

        monkeypatch.setattr(Path, "unlink", killed_at_the_events_file)
        with pytest.raises(Killed):
            store.restart([run_id])
        monkeypatch.setattr(Path, "unlink", unlink)

    with Store(tmp_path / "altui.db") as store:  # the next process
        assert store.run(run_id)["status"] == "failed" and store.last_round(run_id) == 0, "rolled back"
        assert store.restart([run_id]) == [run_id]
        assert store.last_round(run_id) == -1 and not events_path(store.run_dir(run_id)).exists()
        assert ingest(store, run_id, EventsReader(events_path(store.run_dir(run_id)), run_id, 2).read()).rounds == 0
        assert store.last_round(run_id) == -1, "the Slurm head finds no old round to ingest again"


def test_a_claim_cannot_fall_between_a_retrys_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "altui.db"
    with Store(db) as store:
        run_id = failed_run_with_round_0(store)
        claimed: list[dict | None] = []
        transition = Store._transition

        def and_a_worker_claims(self: Store, *args: object, **kwargs: object) -> list[int]:
            changed = transition(self, *args, **kwargs)  # the run is queued: a worker polls now
            def claim() -> None:
                with Store(db) as other:
                    claimed.append(other.claim("cpu"))
            worker = threading.Thread(target=claim)
            worker.start()
            worker.join(timeout=1.0)  # it waits for the retry's transaction, however long this takes
            return changed

        monkeypatch.setattr(Store, "_transition", and_a_worker_claims)
        assert store.retry([run_id]) == [run_id]
        deadline = time.monotonic() + 10
        while not claimed and time.monotonic() < deadline:
            time.sleep(0.05)
        run = store.run(run_id)
        assert claimed and claimed[0]["id"] == run_id
        assert run["status"] == "running" and run["attempt"] == 1, "the claim's attempt was not reset"


def test_an_atomic_write_is_the_old_file_or_the_new_one_and_durable_before_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "round-1.pt"
    path.write_bytes(b"old")
    steps: list[str] = []
    fsync, replace, fsync_dir = os.fsync, os.replace, files.fsync_dir
    monkeypatch.setattr(os, "fsync", lambda fd: (steps.append("fsync"), fsync(fd))[1])
    monkeypatch.setattr(files, "fsync_dir", lambda folder: (steps.append(f"fsync {Path(folder).name}/"),
                                                            fsync_dir(folder))[1])

    def killed(*args: object) -> None:
        steps.append("replace")
        raise Killed

    monkeypatch.setattr(os, "replace", killed)  # killed between the file's fsync and its rename
    with pytest.raises(Killed):
        files.write_atomic(path, b"new")
    assert path.read_bytes() == b"old"

    monkeypatch.setattr(os, "replace", lambda a, b: (steps.append("replace"), replace(a, b))[1])
    steps.clear()
    files.write_atomic(path, b"new")
    assert path.read_bytes() == b"new" and not path.with_suffix(".tmp").exists()
    assert steps[:3] == ["fsync", "replace", f"fsync {tmp_path.name}/"], "the rename is durable before it returns"


def test_a_commit_is_on_disk_when_it_returns(tmp_path: Path) -> None:
    with Store(tmp_path / "altui.db") as store:
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
