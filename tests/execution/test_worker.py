"""The worker with real processes on the CPU: detaching, slots, kill -9 and resume, cancel, retry,
failures. Runs are tiny `digits` runs; the slow ones have more epochs so that there is time to kill
them in the middle of a round."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from worker_helpers import ALTUI, BASE, SLOW, altui, kill9, ok, write_spec

from altui.al.presets import resolve
from altui.execution.daemon import lock_holder, worker_status
from altui.execution.executors.local import LocalExecutor, is_runner
from altui.execution.slots import (
    Slot,
    WorkerError,
    auto_slots,
    make_slots,
    parse_gpus,
    parse_slots,
    plan_slots,
)
from altui.store import Store

TIMEOUT = 120.0  # seconds for a run to finish; generous, for a loaded machine


# ---- processes and the store ---------------------------------------------------------------------


def runs(db: Path) -> dict[str, dict[str, Any]]:
    with Store(db) as store:
        return {r["name"]: r for r in store.runs()}


def diagnostics(db: Path) -> str:
    table = "\n".join(f"  {r['id']} {n}: {r['status']} rounds {r['rounds_done']} attempt {r['attempt']} "
                      f"pid {r['pid']} error {(r['error'] or '')[-300:]!r}" for n, r in runs(db).items())
    log = db.parent / "worker.log"
    tail = log.read_text()[-2000:] if log.exists() else "(no worker.log)"
    return f"runs:\n{table}\nworker.log:\n{tail}"


def wait_for(db: Path, what: str, predicate: Callable[[], Any], timeout: float = TIMEOUT,
             every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{diagnostics(db)}")


def wait_finished(db: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    def finished() -> dict[str, dict[str, Any]] | None:
        rows = runs(db)
        return rows if all(rows[n]["status"] in ("done", "failed", "cancelled") for n in names) else None

    return wait_for(db, f"{names} to finish", finished)


def start(db: Path, env: dict[str, str], *options: str) -> int:
    out = ok(altui(db, env, "worker", "start", *options))
    assert "worker started" in out, out
    return worker_status(db)["pid"]


def wait_round(db: Path, name: str, round_: int) -> dict[str, Any]:
    """Wait until `round_` is the run's last recorded round; returns the run (with its pid)."""
    with Store(db) as store:
        run_id = store.resolve([name])[0]
        wait_for(db, f"{name} to record round {round_}", lambda: store.last_round(run_id) >= round_,
                 every=0.05)
        run = store.run(run_id)
        assert run["pid"] and store.last_round(run_id) == round_, f"{name} went past round {round_}"
    return run


def store_round(db: Path, run_id: int) -> int:
    with Store(db) as store:
        return store.last_round(run_id)


def assert_complete(db: Path, name: str, rounds: int) -> dict[str, Any]:
    """Done, with every round recorded exactly once (the store's key would refuse a second)."""
    with Store(db) as store:
        run = store.run(store.resolve([name])[0])
        recorded = [r["round"] for r in store.rounds(run["id"])]
    assert run["status"] == "done", f"{name}: {run['status']}\n{run['error']}"
    assert recorded == list(range(rounds)), f"{name} recorded rounds {recorded}"
    return run


def picks(db: Path, name: str) -> list[tuple[int, int]]:
    with Store(db) as store:
        return [(p["round"], p["pool_index"]) for p in store.picks(store.resolve([name])[0])]


def messages(db: Path, name: str) -> list[str]:
    with Store(db) as store:
        return [e["message"] for e in store.events(store.resolve([name])[0], limit=10_000)]


def enqueue(db: Path, name: str, **fields: Any) -> int:
    """A run queued directly through the store (settings the spec file would refuse)."""
    config = resolve("Random", {**{k: v for k, v in BASE.items() if k != "seeds"}, "seed": 0, **fields})
    with Store(db) as store:
        return store.enqueue(name, "test", {}, [
            {"name": name, "method": "Random", "seed": 0, "config": config.to_dict()}
        ])[0]


# ---- slots and executor, no processes ------------------------------------------------------------


def test_gpus_and_slots() -> None:
    assert parse_gpus("auto") is None
    assert parse_gpus("cpu") == []
    assert parse_gpus("0, 2") == ["0", "2"]
    with pytest.raises(WorkerError):
        parse_gpus("0,x")
    assert [s.label for s in make_slots("cpu", 2)] == ["cpu", "cpu"]
    slots = make_slots("1,3", 2)
    assert [s.label for s in slots] == ["cuda:1", "cuda:1", "cuda:3", "cuda:3"]
    assert {s.device for s in slots} == {"cuda"}
    executor = LocalExecutor(Path("/tmp/x.db"), cpu_slots=2)
    assert executor.env(Slot(0, "3"))["CUDA_VISIBLE_DEVICES"] == "3"
    assert executor.env(Slot(0, None))["CUDA_VISIBLE_DEVICES"] == ""


def test_auto_slots_follow_the_model_the_free_memory_and_the_cores() -> None:
    assert auto_slots(75.0, ["cnn5"], 16)[0] == 16  # launch-bound: many small runs per GPU
    assert auto_slots(75.0, ["cnn5"], 6)[0] == 6  # one core per run
    assert auto_slots(75.0, ["resnet18", "cnn5"], 16)[0] == 3  # the heaviest queued model decides
    assert auto_slots(9.0, ["resnet18"], 16)[0] == 2  # 90% of 9 GiB holds two 4 GiB runs
    assert auto_slots(2.0, ["densenet100"], 16)[0] == 1  # never fewer than one
    n, why = auto_slots(None, [], 16)  # empty queue, memory unknown: the heaviest model
    assert n == 2 and why.startswith("densenet100") and "free memory unknown" in why


def test_what_cannot_work_is_refused_with_its_range() -> None:
    """A GPU that is not there, a million slots, digits of another script (issue 23)."""
    from altui.execution.slots import check_gpus

    check_gpus(["1"], visible=["0", "1"])
    with pytest.raises(WorkerError, match="--gpus 0,7: no GPU 7 on this machine; its GPUs are 0, 1"):
        check_gpus(["0", "7"], visible=["0", "1"])
    with pytest.raises(WorkerError, match="it has no GPU that CUDA can use"):
        check_gpus(["0"], visible=[])
    for bad in ("1000000", "65", "٣"):
        with pytest.raises(WorkerError, match="an integer >= 1 and at most 64"):
            parse_slots(bad)
    with pytest.raises(WorkerError, match="distinct GPU ids"):
        parse_gpus("٣")


def test_slots_per_gpu_auto_or_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_slots("auto") == "auto" and parse_slots("3") == 3 and parse_slots(2) == 2
    for bad in ("0", "-1", "many", "1.5"):
        with pytest.raises(WorkerError, match="allowed: auto, or an integer >= 1"):
            parse_slots(bad)
    slots, choice = plan_slots("cpu", "auto")
    assert [s.label for s in slots] == ["cpu"] and choice.startswith("auto: 1 on the CPU")
    monkeypatch.setattr("altui.execution.slots.gpu_free_gib", lambda ids: {"0": 70.0, "1": 9.0})
    monkeypatch.setattr("altui.execution.slots.available_cores", lambda: 16)
    slots, choice = plan_slots("0,1", "auto", ["resnet18"])
    assert [s.label for s in slots] == ["cuda:0"] * 3 + ["cuda:1"] * 2
    assert "cuda:0 3 (resnet18" in choice and "cuda:1 2 (resnet18" in choice
    assert [s.label for s in make_slots("0,1", 1)] == ["cuda:0", "cuda:1"]


# ---- the worker with real processes --------------------------------------------------------------


@pytest.mark.slow
def test_second_start_says_running_and_stop_stops(db: Path, env: dict[str, str]) -> None:
    pid = start(db, env, "--gpus", "cpu")
    again = altui(db, env, "worker", "start")
    assert again.returncode == 0 and f"already running for {db} (pid {pid})" in again.stdout, again
    status = ok(altui(db, env, "worker", "status"))
    assert f"worker pid {pid}" in status and "slots: cpu (auto: 1 on the CPU" in status, status
    assert "worker stopped" in ok(altui(db, env, "worker", "stop"))
    assert worker_status(db) is None and not is_alive(pid)
    assert "no worker is running" in ok(altui(db, env, "worker", "stop"))


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/cmdline").read_bytes() != b""  # a zombie has no command line


@pytest.mark.slow
def test_detached_worker_outlives_its_session_and_fills_two_slots(
    db: Path, env: dict[str, str], tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "exp.toml", {"one": {}, "two": {"methods": ["Random"]}})
    out = ok(altui(db, env, "queue", str(spec)))
    assert "one: 1 new run(s) (ids 1)" in out and "two: 1 new run(s) (ids 2)" in out, out
    assert "1 already in the store" in ok(altui(db, env, "queue", str(spec), "one"))
    ok(altui(db, env, "pause"))
    # Start it from a session that then hangs up, as an SSH logout does.
    script = f"{ALTUI} --db {db} worker start --slots-per-gpu 2; kill -HUP 0"
    shell = subprocess.run(["setsid", "bash", "-c", script], env=env, capture_output=True, text=True,
                           timeout=60)
    assert "worker started" in shell.stdout, shell
    pid = worker_status(db)["pid"]
    assert is_alive(pid) and os.getsid(pid) == pid, "the worker should lead its own session"
    time.sleep(2)
    assert {r["status"] for r in runs(db).values()} == {"queued"}, "a paused queue starts nothing"
    ok(altui(db, env, "resume"))

    def both_running() -> list[int] | None:
        rows = runs(db).values()
        pids = [r["pid"] for r in rows if r["status"] == "running" and r["pid"]]
        return pids if len(pids) == 2 else None

    for run_pid in wait_for(db, "both runs running at once (two CPU slots)", both_running, every=0.1):
        environ = Path(f"/proc/{run_pid}/environ").read_bytes().split(b"\0")
        assert b"CUDA_VISIBLE_DEVICES=" in environ, "a CPU slot hides every GPU"
    wait_finished(db, ["one/Entropy+init/s0", "two/Random/s0"])
    for name in ("one/Entropy+init/s0", "two/Random/s0"):
        run = assert_complete(db, name, 2)
        assert run["device"] == "cpu" and run["attempt"] == 1
    assert worker_status(db)["slots"] == ["cpu", "cpu"]
    assert is_alive(pid)


@pytest.mark.slow
def test_killed_run_resumes_at_its_round_with_the_same_picks(
    db: Path, env: dict[str, str], tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "exp.toml", {"kill": SLOW, "ref": SLOW})  # same settings, two names
    ok(altui(db, env, "queue", str(spec)))
    start(db, env, "--gpus", "cpu", "--slots-per-gpu", "2")
    run = wait_round(db, "kill/Entropy+init/s0", 1)
    kill9(run["pid"])  # during round 2: round 1 is recorded, round 2 is not
    assert store_round(db, run["id"]) == 1
    wait_finished(db, ["kill/Entropy+init/s0", "ref/Entropy+init/s0"])
    killed = assert_complete(db, "kill/Entropy+init/s0", 4)
    assert_complete(db, "ref/Entropy+init/s0", 4)
    assert killed["attempt"] == 2
    log = messages(db, "kill/Entropy+init/s0")
    assert any("exit code -9; requeued to resume at round 2" in m for m in log), log
    assert any("resuming at round 2" in m for m in log), log
    assert picks(db, "kill/Entropy+init/s0") == picks(db, "ref/Entropy+init/s0")


@pytest.mark.slow
def test_killed_worker_leaves_its_runs_which_the_next_worker_adopts_or_resumes(
    db: Path, env: dict[str, str], tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "exp.toml", {"orphan": SLOW, "lost": SLOW})
    ok(altui(db, env, "queue", str(spec)))
    worker = start(db, env, "--gpus", "cpu", "--slots-per-gpu", "2")
    orphan = wait_round(db, "orphan/Entropy+init/s0", 0)
    lost = runs(db)["lost/Entropy+init/s0"]
    assert lost["status"] == "running" and lost["pid"], lost
    kill9(worker)
    kill9(lost["pid"])  # as if out of memory while no worker watched
    wait_for(db, "the worker's lock to be released", lambda: lock_holder(db) is None)
    assert is_runner(orphan["pid"], orphan["id"]), "a run outlives its killed worker"

    start(db, env, "--gpus", "cpu", "--slots-per-gpu", "2")
    wait_finished(db, ["orphan/Entropy+init/s0", "lost/Entropy+init/s0"])
    adopted = assert_complete(db, "orphan/Entropy+init/s0", 4)
    resumed = assert_complete(db, "lost/Entropy+init/s0", 4)
    assert adopted["attempt"] == 1 and resumed["attempt"] == 2
    assert any("adopted its live process" in m for m in messages(db, "orphan/Entropy+init/s0"))
    assert any(f"process {lost['pid']} is gone" in m for m in messages(db, "lost/Entropy+init/s0"))
    assert picks(db, "orphan/Entropy+init/s0") == picks(db, "lost/Entropy+init/s0")


@pytest.mark.slow
def test_cancel_stops_a_run_and_retry_resumes_it(db: Path, env: dict[str, str], tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "exp.toml", {"c": SLOW})
    ok(altui(db, env, "queue", str(spec)))
    start(db, env, "--gpus", "cpu")
    run = wait_round(db, "c/Entropy+init/s0", 0)
    assert "cancelled" in ok(altui(db, env, "cancel", "c/Entropy+init/s0"))
    gone = lambda: not is_runner(run["pid"], run["id"])  # noqa: E731
    wait_for(db, "the cancelled run's process to end", gone, timeout=15)
    after = runs(db)["c/Entropy+init/s0"]
    assert after["status"] == "cancelled" and after["rounds_done"] >= 1, after

    assert "queued again" in ok(altui(db, env, "retry", str(run["id"])))
    follow = altui(db, env, "logs", str(run["id"]), "-f", timeout=TIMEOUT)  # returns when the run ends
    assert "resuming at round" in ok(follow) and follow.stdout.rstrip().endswith(": done"), follow.stdout
    assert_complete(db, "c/Entropy+init/s0", 4)


@pytest.mark.slow
def test_failed_run_records_its_error_and_the_queue_goes_on(db: Path, env: dict[str, str]) -> None:
    missing = db.parent / "missing.npz"
    enqueue(db, "bad", dataset="npz", extra={"path": str(missing)})
    enqueue(db, "good", rounds=2)
    start(db, env, "--gpus", "cpu")
    rows = wait_finished(db, ["bad", "good"])
    assert rows["bad"]["status"] == "failed" and rows["bad"]["attempt"] == 1
    assert rows["bad"]["error"].startswith(f"npz: file {missing} not found"), rows["bad"]["error"]
    assert_complete(db, "good", 2)
    assert "failed" in ok(altui(db, env, "logs", "bad"))


@pytest.mark.slow
def test_a_run_that_keeps_crashing_fails_with_its_output(db: Path, env: dict[str, str]) -> None:
    run_id = enqueue(db, "crash", epochs=50)
    start(db, env, "--gpus", "cpu", "--max-attempts", "1")
    pid = wait_for(db, "the run's process", lambda: runs(db)["crash"]["pid"])
    kill9(pid)
    rows = wait_finished(db, ["crash"])
    error = rows["crash"]["error"]
    assert rows["crash"]["status"] == "failed", rows["crash"]
    assert "exit code -9; failed after 1 attempts" in error and f"starting run {run_id}" in error, error


@pytest.mark.slow
def test_a_foreground_worker_with_exit_when_empty_returns_once_the_queue_is_done(
    db: Path, env: dict[str, str], tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "exp.toml", {"empty": {"methods": ["Random", "Entropy+init"]}})
    ok(altui(db, env, "queue", str(spec)))
    out = ok(altui(db, env, "worker", "start", "--gpus", "cpu", "--slots-per-gpu", "2", "--foreground",
                   "--exit-when-empty", timeout=300))
    assert "the queue is done (no run queued or running): the worker stops (--exit-when-empty)" in out, out
    assert {r["status"] for r in runs(db).values()} == {"done"} and lock_holder(db) is None
