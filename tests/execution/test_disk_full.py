"""The disk of the store fills up while a worker's run trains. The worker survives: it pauses the queue
and says why, the run goes back to the queue without using an attempt and leaves no partial
checkpoint, and once there is space again the run resumes and finishes with every round recorded once.

A real full disk is a small tmpfs (mounting needs root). Where mounting is not allowed, a file-size
limit (RLIMIT_FSIZE) on the worker and its runs stands in for it: the same errors, and the limit is
lifted instead of the disk emptied."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from worker_helpers import fill_disk, runner_pids

from altui.store import Store, run_folder

ALTUI = [sys.executable, "-m", "altui"]
TIMEOUT = 300.0  # generous: a loaded machine
SPEC = """
[[experiment]]
name = "disk"
dataset = "digits"
model = "cnn5"
methods = ["Entropy+init"]
rounds = {rounds}
initial = 20
budget = 20
epochs = 2
milestones = [1]
pool_subset = 200
device = "cpu"
"""
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")


def altui(db: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run([*ALTUI, "--db", str(db), *args], env=ENV, capture_output=True, text=True, timeout=120,
                          **kw)


def the_run(db: Path) -> dict[str, Any]:
    with Store(db, create=False) as store:
        (run,) = store.runs()
        return run


def wait_for(what: str, predicate: Callable[[], Any], db: Path) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    log = db.parent / "worker.log"
    pytest.fail(f"timed out waiting for {what}; run: {the_run(db)}\nworker.log:\n"
                f"{log.read_text()[-3000:] if log.exists() else '-'}")


def worker_pid(db: Path) -> int:
    return int((db.parent / "worker.lock").read_text())


@pytest.fixture
def stop_worker() -> Iterator[list[Path]]:
    """Stops the workers of the stores the test registers, and kills their runners."""
    stores: list[Path] = []
    yield stores
    for db in stores:
        altui(db, "worker", "stop")
        for pid in runner_pids(db):
            os.kill(pid, signal.SIGKILL)


def queue(db: Path, rounds: int) -> None:
    spec = db.parent.parent / "disk.toml"
    spec.write_text(SPEC.format(rounds=rounds))
    assert altui(db, "queue", str(spec)).returncode == 0


def assert_paused_without_a_trace(db: Path, pid: int) -> str:
    """The worker lives, says why the queue waits; the run is back in the queue, no attempt used."""
    status = wait_for("`worker status` to say the disk is full",
                      lambda: (out := altui(db, "worker", "status").stdout) and "is full" in out and out, db)
    assert f"worker pid {pid}" in status
    assert f"(paused: the disk of {db.parent} is full" in status and "no run starts until" in status
    run = wait_for("the run to be queued again", lambda: (r := the_run(db))["status"] == "queued" and r, db)
    assert run["attempt"] == 0, "the full disk used up an attempt"
    assert not list(run_folder(db, run["id"]).glob("*.tmp")), "a partial checkpoint was left behind"
    time.sleep(6)  # a check for space later: still paused, nothing started
    assert the_run(db)["status"] == "queued" and worker_pid(db) == pid and not runner_pids(db)
    return status


def assert_finishes(db: Path, pid: int, rounds: int) -> None:
    run = wait_for("the run to finish", lambda: (r := the_run(db))["status"] in ("done", "failed") and r, db)
    assert run["status"] == "done", run["error"]
    with Store(db, create=False) as store:
        assert [r["round"] for r in store.rounds(run["id"])] == list(range(rounds)), "a round lost or recorded twice"
        assert "worker_disk_full" not in store.settings()
    assert run["attempt"] == 1 and worker_pid(db) == pid
    status = altui(db, "worker", "status").stdout
    assert "paused" not in status
    log = (db.parent / "worker.log").read_text()
    assert f"the disk of {db.parent} is full" in log and "disk space is back" in log


@pytest.mark.slow
def test_a_full_tmpfs_pauses_the_worker_and_its_run_finishes_once_space_is_back(tmp_path: Path, stop_worker):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not allowed here ({mounted.stderr.strip()!r}); "
                    "test_a_file_size_limit_... covers the same behaviour")
    try:
        db = disk / "runs" / "altui.db"
        db.parent.mkdir()
        queue(db, rounds=5)
        stop_worker.append(db)
        assert altui(db, "worker", "start", "--gpus", "cpu").returncode == 0
        pid = worker_pid(db)
        wait_for("round 0 to be recorded", lambda: the_run(db)["rounds_done"] >= 1, db)

        filler = disk / "filler"
        fill_disk(filler)  # every byte of the disk: not even a log line fits
        wait_for("the run's process to stop", lambda: not runner_pids(db) and the_run(db)["rounds_done"] < 5, db)
        assert worker_pid(db) == pid and Path(f"/proc/{pid}").exists(), "the worker died"
        os.truncate(filler, filler.stat().st_size - 512 * 1024)  # room for a log line, not for a checkpoint
        assert_paused_without_a_trace(db, pid)

        filler.unlink()
        assert_finishes(db, pid, rounds=5)
    finally:
        altui(disk / "runs" / "altui.db", "worker", "stop")
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_file_size_limit_pauses_the_worker_and_its_run_finishes_once_it_is_lifted(tmp_path: Path, stop_worker):
    """RLIMIT_FSIZE of 1 MB: a checkpoint (1.3 MB) cannot be written, as on a disk with 1 MB free.
    The worker's own probe meets the same limit, so it stays paused until the limit is lifted."""
    db = tmp_path / "runs" / "altui.db"
    db.parent.mkdir()
    queue(db, rounds=2)
    stop_worker.append(db)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, resource.RLIM_INFINITY))

    assert altui(db, "worker", "start", "--gpus", "cpu", preexec_fn=limit).returncode == 0
    pid = worker_pid(db)
    assert_paused_without_a_trace(db, pid)
    assert the_run(db)["rounds_done"] == 0

    resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert_finishes(db, pid, rounds=2)
