"""A store deleted, then replaced by a new one at its path, under a running worker: the worker notices
(its file's device and inode), says so in worker.log and to `altui worker status`, and claims nothing
from the new store; `worker status` never creates a store where the old one was."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from worker_helpers import altui, ok, write_spec

from altui.store import Store


def wait_for_log(db: Path, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = (db.parent / "worker.log").read_text(errors="replace")
        if text in log:
            return log
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in worker.log within {timeout} s:\n{log}")


@pytest.mark.slow
def test_a_worker_whose_store_is_deleted_and_replaced_claims_nothing_and_says_so(
    db: Path, env: dict[str, str], tmp_path: Path
) -> None:
    Store(db).close()
    ok(altui(db, env, "worker", "start", "--gpus", "cpu"))
    pid = int((db.parent / "worker.lock").read_text().split()[0])
    for path in db.parent.glob(f"{db.name}*"):  # `rm runs/altui.db*`
        if path.is_file():
            path.unlink()

    wait_for_log(db, f"the store {db} was deleted while this worker served it: it claims no more runs")
    status = altui(db, env, "worker", "status")
    assert status.returncode != 0 and "Traceback" not in status.stderr + status.stdout, status
    assert f"worker pid {pid} serves no store: the store {db} was deleted" in status.stdout, status
    assert f"no store at {db}" in status.stderr + status.stdout, status
    assert not db.exists(), "`worker status` created a store"

    ok(altui(db, env, "queue", str(write_spec(tmp_path / "exp.toml", {"one": {"methods": ["Random"]}}))))
    time.sleep(3)  # six ticks of the worker
    with Store(db, create=False) as store:
        assert [r["status"] for r in store.runs()] == ["queued"], "the worker claimed from a store it never opened"
    status = ok(altui(db, env, "worker", "status"))
    assert f"worker pid {pid} serves no store" in status and "no other worker is running" in status, status
    assert "1 queued" in status, status
    log = (db.parent / "worker.log").read_text(errors="replace")
    assert "FOREIGN KEY" not in log and "Traceback" not in log, log
    assert "worker stopped" in ok(altui(db, env, "worker", "stop"))
