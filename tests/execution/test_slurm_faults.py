"""Faults on the head while real Slurm jobs report (the local cluster of slurm_cluster.py): the store
held locked past its busy timeout, the store's disk full, a torn read of an events line. The head
reads each batch again until it is stored, so every run ends with each of its rounds recorded once,
its first attempt, and the picks of an undisturbed run with the same seed."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from slurm_cluster import LocalSlurm
from slurm_helpers import CPU_JOBS, assert_complete, messages, picks, running_on_node, start, wait_finished, wait_for
from worker_helpers import SLOW, altui, fill_disk, ok, stop_store_worker, write_spec

from altui.execution import events
from altui.execution.executors.slurm.head import SlurmWorker
from altui.execution.executors.slurm.jobs import SlurmJobs
from altui.execution.executors.slurm.options import SlurmOptions
from altui.store import Store, run_folder

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
NAMES = ["a/Entropy+init/s0", "b/Entropy+init/s0"]


def queue_two(db: Path, env: dict[str, str], tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "exp.toml", {"a": SLOW, "b": SLOW})  # the same settings: the same picks
    ok(altui(db, env, "queue", str(spec)))


def assert_all_once(db: Path) -> None:
    for name in NAMES:
        run = assert_complete(db, name, 4, 3)
        assert run["attempt"] == 1, run
        assert not any("not an event" in m for m in messages(db, name))
    assert picks(db, NAMES[0]) == picks(db, NAMES[1])


def test_the_store_locked_for_45_s_while_jobs_report_loses_no_round(
    db: Path, env: dict[str, str], cluster: LocalSlurm, tmp_path: Path
) -> None:
    queue_two(db, env, tmp_path)
    start(db, env, *CPU_JOBS)
    wait_for(db, cluster, "round 1 of a", running_on_node(db, NAMES[0], 1), every=0.1)
    holder = sqlite3.connect(db, timeout=60)  # another program holding the write lock
    holder.execute("BEGIN IMMEDIATE")
    time.sleep(45)  # the jobs report rounds (and end) meanwhile; the head's 30 s busy timeout expires
    holder.rollback()
    holder.close()
    wait_finished(db, cluster, NAMES)
    assert "database is locked" in (db.parent / "worker.log").read_text()
    assert_all_once(db)


def test_a_full_disk_under_the_store_during_ingest_loses_no_round(
    db: Path, env: dict[str, str], cluster: LocalSlurm, tmp_path: Path
) -> None:
    """The store's folder is a small tmpfs; the run folders (where the jobs write) are elsewhere,
    bind-mounted into it: only the head meets the full disk."""
    mounts: list[Path] = []

    def mount(*args: str) -> None:
        done = subprocess.run(["mount", *args], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"mount {' '.join(args)}: {done.stderr}")
        mounts.insert(0, Path(args[-1]))

    try:
        mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", str(db.parent))
        queue_two(db, env, tmp_path)
        with Store(db) as store:
            ids = [r["id"] for r in store.runs()]
        for run_id in ids:
            (tmp_path / "nodes" / str(run_id)).mkdir(parents=True)
            run_folder(db, run_id).mkdir(parents=True)
            mount("--bind", str(tmp_path / "nodes" / str(run_id)), str(run_folder(db, run_id)))
        start(db, env, *CPU_JOBS)
        wait_for(db, cluster, "round 1 of a", running_on_node(db, NAMES[0], 1), every=0.1)
        filler = db.parent / "filler"
        fill_disk(filler)  # every byte of the disk: not even a log line fits
        time.sleep(25)  # the jobs report rounds (and end) meanwhile
        filler.unlink()
        wait_finished(db, cluster, NAMES)
        log = (db.parent / "worker.log").read_text()
        assert f"the disk of {db.parent} is full" in log and "disk space is back" in log, log[-3000:]
        assert_all_once(db)
        with Store(db) as store:
            assert "worker_disk_full" not in store.settings()
    finally:
        stop_store_worker(db)
        cluster.cancel_all()
        for m in mounts:
            subprocess.run(["umount", "-l", str(m)], check=False)


class TornReads(io.RawIOBase):
    """An events file as NFS may show it: the first time each round's line is read, its first half
    reads as zeros (a client can see a file's new length, and later pages, before all its bytes)."""

    torn: set[bytes] = set()

    def __init__(self, f: Any):
        self.f = f

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        lines = data.splitlines(keepends=True)
        for i, line in enumerate(lines):
            if b'"type":"round"' in line and line.endswith(b"\n") and line not in self.torn:
                self.torn.add(line)
                lines[i] = b"\0" * (len(line) // 2) + line[len(line) // 2:]
                break
        return b"".join(lines)

    def close(self) -> None:
        self.f.close()


class TornOs:
    """events.py's `os`, whose files opened for reading (the head opens the events file with os.open,
    without following a link, then os.fdopen) read through TornReads; the rest is the real os."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = os.fdopen(fd, mode, *args, **kwargs)
        return TornReads(f) if mode == "rb" else f


def test_a_torn_line_is_read_again_until_whole(db: Path, env: dict[str, str], cluster: LocalSlurm,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    queue_two(db, env, tmp_path)
    for key in ("SLURM_CONF", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "PYTHONUNBUFFERED"):
        monkeypatch.setenv(key, env[key])  # sbatch, and the jobs it exports this environment to
    monkeypatch.setattr(events, "os", TornOs())
    options = SlurmOptions(gpus_per_job=0, cpus_per_job=1, time="20")
    errors: list[BaseException] = []
    with Store(db) as store:
        head = SlurmWorker(store, SlurmJobs(db, options))  # in this process: its reads are torn

        def serve() -> None:
            try:
                head.serve()
            except BaseException as e:  # noqa: BLE001 (reported by the test)
                errors.append(e)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            wait_finished(db, cluster, NAMES)
        finally:
            head.stopping = True
            thread.join(timeout=60)
    assert not errors, errors
    assert len(TornReads.torn) >= 8, "every round's line was torn once"
    assert_all_once(db)


