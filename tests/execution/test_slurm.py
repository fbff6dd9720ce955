"""The Slurm executor against a real single-node Slurm cluster that these tests start (as root:
munged, slurmctld, slurmd; tests/execution/slurm_cluster.py), with tiny `digits` runs on the CPU: runs finish
through Slurm jobs, a killed job is resubmitted, a killed head re-attaches, a requeued job resumes,
a cancelled run's job is cancelled, bad options are refused. (The events file and the options without
a cluster: tests/execution/test_events.py.)"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from slurm_cluster import NODE, LocalSlurm
from slurm_helpers import (
    CPU_JOBS,
    assert_complete,
    messages,
    picks,
    running_on_node,
    start,
    store_runs,
    submissions,
    wait_finished,
    wait_for,
)
from worker_helpers import SLOW, altui, kill9, ok, write_spec

from altui.execution.daemon import lock_holder, start_worker, worker_status
from altui.store import Store, run_folder

pytestmark = [pytest.mark.slurm, pytest.mark.slow]  # conftest.py's env and db fixtures use the cluster


# ---- through Slurm --------------------------------------------------------------------------------


def test_six_runs_finish_through_slurm_jobs(db: Path, env: dict[str, str], cluster: LocalSlurm,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(tmp_path / "exp.toml", {"six": {"methods": ["Random", "Entropy+init"], "seeds": [0, 1, 2]}})
    ok(altui(db, env, "queue", str(spec)))
    pid = start(db, env, *CPU_JOBS, "--max-jobs", "4")
    status = ok(altui(db, env, "worker", "status"))
    assert f"worker pid {pid}" in status and "executor: slurm, at most 4 jobs, CPU jobs" in status, status

    # While they run, squeue lists altui's jobs: each the job of a run, never more than 4 at once.
    seen: dict[str, str] = {}
    in_flight = []

    def all_done() -> bool:
        jobs = [j for j in cluster.jobs() if j["name"].startswith("altui:")]
        in_flight.append(len(jobs))
        for j in jobs:
            seen[j["id"]] = j["state"]
            assert j["name"].startswith("altui:six/") and j["name"].endswith(("/s0", "/s1", "/s2")), j
        return all(r["status"] == "done" for r in store_runs(db).values())

    wait_for(db, cluster, "six runs done", all_done, every=0.3)
    assert max(in_flight) <= 4, in_flight
    assert "RUNNING" in seen.values(), seen
    rows = store_runs(db)
    assert len(rows) == 6
    assert {r["slurm_job_id"] for r in rows.values()} <= set(seen) | {None} and len(seen) >= 2, (seen, rows)
    for name, run in rows.items():
        assert_complete(db, name, 2, 1)
        assert run["device"] == "slurm" and run["node"] == NODE and run["attempt"] == 1, run
        assert submissions(db, run["id"]) == [run["slurm_job_id"]]
        log = messages(db, name)
        assert f"submitted as Slurm job {run['slurm_job_id']} (attempt 1)" in log, log
        assert f"Slurm job {run['slurm_job_id']} started on {NODE}" in log, log
        assert f"running on {NODE} (Slurm job {run['slurm_job_id']})" in log, log
    listing = ok(altui(db, env, "ls"))  # the CLI reads the ingested rows like any others
    assert listing.count(" done ") == 6 and listing.count(" 2/2 ") == 6, listing

    # The options were saved: a start without any, as the dashboard's `w` makes it, runs the same executor.
    assert "its Slurm jobs go on" in ok(altui(db, env, "worker", "stop"))
    for key in ("SLURM_CONF", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.setenv(key, env[key])
    assert start_worker(db)
    status = ok(altui(db, env, "worker", "status"))
    assert "executor: slurm, at most 4 jobs, CPU jobs, --time 20, --cpus-per-job 1" in status, status


def job_python(db: Path, run_id: int) -> int | None:
    """The pid of the Python process a run's job runs on the node (not srun's)."""
    folder = str(run_folder(db, run_id) / "slurm").encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in args and folder in args and not args[0].endswith(b"srun"):
            return int(proc.name)
    return None


def test_a_job_killed_mid_run_is_resubmitted_and_ends_with_the_same_picks(
    db: Path, env: dict[str, str], cluster: LocalSlurm, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "exp.toml", {"kill": SLOW, "oom": SLOW, "ref": SLOW})  # same settings
    ok(altui(db, env, "queue", str(spec)))
    start(db, env, *CPU_JOBS)
    run = wait_for(db, cluster, "round 1 of the run to kill", running_on_node(db, "kill/Entropy+init/s0", 2),
                   every=0.1)
    killed_job = run["slurm_job_id"]
    cluster.run("scancel", "--signal=KILL", killed_job)
    # And as the out-of-memory killer does: SIGKILL to the job's process, which cannot write a line more.
    oom = wait_for(db, cluster, "round 1 of the other", running_on_node(db, "oom/Entropy+init/s0", 2), every=0.1)
    kill9(wait_for(db, cluster, "its job's Python", lambda: job_python(db, oom["id"]), timeout=10))
    wait_finished(db, cluster, ["kill/Entropy+init/s0", "oom/Entropy+init/s0", "ref/Entropy+init/s0"])

    assert_complete(db, "ref/Entropy+init/s0", 4, 3)
    for name, job in (("kill/Entropy+init/s0", killed_job), ("oom/Entropy+init/s0", oom["slurm_job_id"])):
        run = assert_complete(db, name, 4, 3)
        assert run["attempt"] == 2 and run["slurm_job_id"] != job, run
        assert submissions(db, run["id"]) == sorted([job, run["slurm_job_id"]])
        log = messages(db, name)
        assert any(f"its Slurm job {job} ended before the run did" in m and "requeued to resume at round" in m
                   for m in log), log
        assert any("resuming at round" in m for m in log), log
        assert picks(db, name) == picks(db, "ref/Entropy+init/s0")


def test_a_killed_head_is_replaced_by_one_that_re_attaches_and_runs_nothing_twice(
    db: Path, env: dict[str, str], cluster: LocalSlurm, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "exp.toml", {"a": SLOW, "b": SLOW, "c": {"rounds": 2}})
    ok(altui(db, env, "queue", str(spec)))
    head = start(db, env, *CPU_JOBS, "--max-jobs", "2")
    wait_for(db, cluster, "two runs running", lambda: sum(
        r["status"] == "running" and r["node"] == NODE for r in store_runs(db).values()) == 2)
    kill9(head)
    wait_for(db, cluster, "the lock to be released", lambda: lock_holder(db) is None)
    with Store(db) as store:  # as if the dead head had just claimed the third run, submitting nothing
        claimed = store.claim("slurm")
    assert claimed and claimed["name"] == "c/Entropy+init/s0", claimed
    time.sleep(3)  # the jobs go on without a head, writing their events files
    assert len([j for j in cluster.jobs() if j["name"].startswith("altui:")]) == 2

    start(db, env)  # the saved options
    rows = wait_finished(db, cluster, ["a/Entropy+init/s0", "b/Entropy+init/s0", "c/Entropy+init/s0"])
    for name in ("a/Entropy+init/s0", "b/Entropy+init/s0"):
        run = assert_complete(db, name, 4, 3)
        assert run["attempt"] == 1 and submissions(db, run["id"]) == [run["slurm_job_id"]], run
        assert f"re-attached to Slurm job {run['slurm_job_id']}" in messages(db, name)
    c = assert_complete(db, "c/Entropy+init/s0", 2, 1)
    assert c["attempt"] == 1 and len(submissions(db, c["id"])) == 1, c
    assert any("claimed it and stopped before submitting" in m for m in messages(db, "c/Entropy+init/s0"))
    assert rows["a/Entropy+init/s0"]["rounds_done"] == 4


def test_a_requeued_job_goes_back_to_pending_and_its_run_resumes(
    db: Path, env: dict[str, str], cluster: LocalSlurm, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "exp.toml", {"pre": SLOW})
    ok(altui(db, env, "queue", str(spec)))
    start(db, env, *CPU_JOBS)
    run = wait_for(db, cluster, "round 1", running_on_node(db, "pre/Entropy+init/s0", 2), every=0.1)
    job = run["slurm_job_id"]
    cluster.run("scontrol", "requeue", job)  # what preemption with PreemptMode=REQUEUE does

    def pending() -> dict[str, Any] | None:
        r = store_runs(db)["pre/Entropy+init/s0"]
        return r if r["status"] == "queued" and r["node"] is None else None

    after = wait_for(db, cluster, "the run to show as pending in Slurm", pending, timeout=30, every=0.1)
    assert after["slurm_job_id"] == job, after  # queued with its job: pending in Slurm
    # Slurm holds a requeued job for about two minutes (BeginTime); let it start now.
    cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")
    wait_finished(db, cluster, ["pre/Entropy+init/s0"])

    done = assert_complete(db, "pre/Entropy+init/s0", 4, 3)
    assert done["slurm_job_id"] == job and done["attempt"] == 1, done  # the same job, not a resubmission
    log = messages(db, "pre/Entropy+init/s0")
    assert any(m.startswith(f"pending in Slurm (job {job}") for m in log), log
    assert f"Slurm job {job} started on {NODE} (restart 1)" in log, log
    assert any("resuming at round" in m for m in log), log


def test_cancel_scancels_the_job_and_the_run_stays_cancelled(
    db: Path, env: dict[str, str], cluster: LocalSlurm, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "exp.toml", {"c": SLOW})
    ok(altui(db, env, "queue", str(spec)))
    start(db, env, *CPU_JOBS)
    run = wait_for(db, cluster, "the run to run", running_on_node(db, "c/Entropy+init/s0", 1), every=0.1)
    job = run["slurm_job_id"]
    out = ok(altui(db, env, "cancel", "c/Entropy+init/s0"))
    assert "cancelled" in out and f"Slurm job {job} cancelled (scancel)" in out, out
    wait_for(db, cluster, "the job to leave squeue", lambda: job not in {j["id"] for j in cluster.jobs()},
             timeout=30)
    wait_for(db, cluster, "the head to see the job end",
             lambda: any(f"Slurm job {job} ended" in m for m in messages(db, "c/Entropy+init/s0")), timeout=30)
    after = store_runs(db)["c/Entropy+init/s0"]
    assert after["status"] == "cancelled" and after["slurm_job_id"] == job and after["rounds_done"] >= 1, after
    time.sleep(2)
    assert store_runs(db)["c/Entropy+init/s0"]["status"] == "cancelled"
    assert submissions(db, run["id"]) == [job], "a cancelled run is not resubmitted"


def test_bad_options_are_refused_before_the_worker_starts(db: Path, env: dict[str, str]) -> None:
    for flags, says in [
        (("--time", "soon"), "--time 'soon': allowed: minutes"),
        (("--slurm-arg", "partition=gpu"), "use --partition instead"),
        (("--slurm-arg", "nodes=two"), "nodes takes an integer"),
        (("--mem", "lots"), "--mem 'lots': allowed"),
        (("--partition", "nowhere"), "Slurm refuses jobs with these options"),
        (("--slurm-arg", "signal=USR1@100"), "refused: altui asks Slurm for its own signal"),
        (("--slurm-arg", "array=0-3"), "refused: altui submits one job per run"),
        (("--slurm-arg", "requeue"), "refused: altui decides itself whether a job stopped by its time limit"),
    ]:
        result = altui(db, env, "worker", "start", *CPU_JOBS, *flags)
        assert result.returncode == 1 and says in result.stderr, (flags, result.stderr)
        assert worker_status(db) is None
    result = altui(db, env, "worker", "start", "--executor", "local", "--partition", "gpu")
    assert result.returncode == 1 and "--partition: options of --executor slurm" in result.stderr, result.stderr
    with Store(db) as store:
        assert "slurm_options" not in store.settings(), "refused options are not saved"
