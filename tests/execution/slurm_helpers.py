"""Helpers of the Slurm executor's tests (test_slurm.py, test_slurm_faults.py): the store's runs and
events as the tests read them, waiting with diagnostics, and what a finished run must hold. The
cluster itself is conftest.py's `cluster` fixture (slurm_cluster.py)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from slurm_cluster import NODE, LocalSlurm
from worker_helpers import altui, ok

from altui.execution.daemon import worker_status
from altui.store import Store, run_folder

TIMEOUT = 240.0  # seconds for runs to finish: jobs start Python and torch on a loaded 2-core machine
CPU_JOBS = ("--executor", "slurm", "--gpus-per-job", "0", "--cpus-per-job", "1", "--time", "20")


def store_runs(db: Path) -> dict[str, dict[str, Any]]:
    with Store(db) as store:
        return {r["name"]: r for r in store.runs()}


def messages(db: Path, name: str) -> list[str]:
    with Store(db) as store:
        return [e["message"] for e in store.events(store.resolve([name])[0], limit=10_000)]


def diagnostics(db: Path, cluster: LocalSlurm) -> str:
    rows = "\n".join(f"  {r['id']} {n}: {r['status']} rounds {r['rounds_done']} attempt {r['attempt']} "
                     f"job {r['slurm_job_id']} node {r['node']} error {(r['error'] or '')[-300:]!r}"
                     for n, r in store_runs(db).items())
    log = db.parent / "worker.log"
    parts = [f"runs:\n{rows}", f"squeue: {cluster.jobs()}",
             "worker.log:\n" + (log.read_text()[-3000:] if log.exists() else "(none)")]
    for job_log in sorted(db.parent.glob("*/slurm/*_log.out"))[-3:]:
        parts.append(f"{job_log}:\n{job_log.read_text()[-1500:]}")
    return "\n".join(parts)


def job_state(cluster: LocalSlurm, job: str) -> str:
    out = cluster.run("scontrol", "show", "job", "--oneliner", job).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)["JobState"]


def wait_for(db: Path, cluster: LocalSlurm, what: str, predicate: Callable[[], Any],
             timeout: float = TIMEOUT, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{diagnostics(db, cluster)}")


def wait_finished(db: Path, cluster: LocalSlurm, names: list[str],
                  timeout: float = TIMEOUT) -> dict[str, dict[str, Any]]:
    def finished() -> dict[str, dict[str, Any]] | None:
        rows = store_runs(db)
        return rows if all(rows[n]["status"] in ("done", "failed", "cancelled") for n in names) else None

    return wait_for(db, cluster, f"{names} to finish", finished, timeout)


def start(db: Path, env: dict[str, str], *options: str) -> int:
    out = ok(altui(db, env, "worker", "start", *options))
    assert "worker started" in out, out
    return worker_status(db)["pid"]


def assert_complete(db: Path, name: str, rounds: int, epochs: int, budget: int = 20) -> dict[str, Any]:
    """Done, every round recorded once, every epoch once, and each round's log line once."""
    with Store(db) as store:
        run = store.run(store.resolve([name])[0])
        recorded = [r["round"] for r in store.rounds(run["id"])]
        epoch_keys = [(e["round"], e["epoch"]) for e in store.epochs(run["id"])]
        picked = Counter(p["round"] for p in store.picks(run["id"]))
    assert run["status"] == "done", f"{name}: {run['status']}\n{run['error']}"
    assert recorded == list(range(rounds)), f"{name} recorded rounds {recorded}"
    assert epoch_keys == [(r, e) for r in range(rounds) for e in range(1, epochs + 1)], epoch_keys
    assert all(picked[r] == budget for r in range(rounds - 1)) and picked[rounds - 1] == 0, picked
    done_lines = Counter(m for m in messages(db, name) if ": accuracy" in m)  # "round r: accuracy ..."
    assert len(done_lines) == rounds and set(done_lines.values()) == {1}, done_lines
    return run


def picks(db: Path, name: str) -> list[tuple[int, int]]:
    with Store(db) as store:
        return [(p["round"], p["pool_index"]) for p in store.picks(store.resolve([name])[0])]


def submissions(db: Path, run_id: int) -> list[str]:
    """The job ids submitit submitted for a run (one sbatch script each)."""
    return sorted(p.name.split("_")[0] for p in (run_folder(db, run_id) / "slurm").glob("*_submission.sh"))


def running_on_node(db: Path, name: str, rounds_done: int = 0) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        run = store_runs(db)[name]
        ok_ = run["status"] == "running" and run["node"] == NODE and run["rounds_done"] >= rounds_done
        return run if ok_ else None

    return check
