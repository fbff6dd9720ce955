"""Slurm's time limit on the real local cluster (slurm_cluster.py): a run whose work takes longer than
one job's limit goes on in the next job without using an attempt, each job stopped by its limit
shows TIMEOUT, and the run ends with the picks of a run that had the time it needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from slurm_cluster import LocalSlurm
from slurm_helpers import assert_complete, job_state, messages, picks, start, submissions, wait_finished
from worker_helpers import altui, ok, write_spec

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
# About a minute of training over 8 rounds (round t: ~1 + 1.4 t s here), more than a 1-minute job
# leaves after start-up and the stop signal; no round is longer than that.
# A one-minute job trains ~25 s after start-up and before the stop signal; a cycle (job, stop, resubmit)
# takes ~90 s on two busy cores, hence the generous timeouts.
LONG = {"rounds": 8, "budget": 40, "epochs": 20, "milestones": [10]}


def test_a_run_longer_than_its_jobs_time_limit_finishes_at_its_first_attempt(
    db: Path, env: dict[str, str], cluster: LocalSlurm, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "exp.toml", {"limited": LONG, "ref": LONG})
    spec.write_text(spec.read_text() + '\n[experiment.slurm]\ntime = 20\n')  # ref: time enough for one job
    ok(altui(db, env, "queue", str(spec)))
    start(db, env, "--executor", "slurm", "--cpus-per-job", "1", "--time", "1", "--max-attempts", "1")
    rows = wait_finished(db, cluster, ["limited/Entropy+init/s0", "ref/Entropy+init/s0"], timeout=900)

    ref = assert_complete(db, "ref/Entropy+init/s0", 8, 20, budget=40)
    run = assert_complete(db, "limited/Entropy+init/s0", 8, 20, budget=40)
    assert run["attempt"] == 1 and rows["limited/Entropy+init/s0"]["status"] == "done", run
    assert len(submissions(db, ref["id"])) == 1
    jobs = submissions(db, run["id"])
    assert len(jobs) >= 2, f"the work fits in one job of a minute: {jobs}"
    log = messages(db, "limited/Entropy+init/s0")
    for job in jobs[:-1]:
        assert job_state(cluster, job) == "TIMEOUT"
        assert any(m.startswith(f"its Slurm job {job} was stopped by its time limit (TIMEOUT")
                   and "no attempt used" in m for m in log), log
    assert any("stopped (the job's time limit is near: SIGUSR2)" in m for m in log), log
    assert job_state(cluster, jobs[-1]) == "COMPLETED"
    assert picks(db, "limited/Entropy+init/s0") == picks(db, "ref/Entropy+init/s0")


def test_a_round_longer_than_a_job_goes_on_from_the_epoch_it_was_saved_at(
    db: Path, env: dict[str, str], cluster: LocalSlurm, tmp_path: Path
) -> None:
    """Each round trains for tens of seconds, more than a 1-minute job leaves after start-up and the
    stop signal: each job saves the round in progress every 15 s (a quarter of its limit) and the next
    job goes on from there, with the picks of a run that had the time it needed."""
    huge = {"rounds": 2, "epochs": 450, "milestones": [300]}  # rounds of ~30 and ~60 s: several jobs
    spec = write_spec(tmp_path / "exp.toml", {"huge": huge, "whole": huge})
    spec.write_text(spec.read_text() + '\n[experiment.slurm]\ntime = 20\n')  # whole: one job is enough
    ok(altui(db, env, "queue", str(spec)))
    start(db, env, "--executor", "slurm", "--cpus-per-job", "1", "--time", "1", "--max-attempts", "1")
    rows = wait_finished(db, cluster, ["huge/Entropy+init/s0", "whole/Entropy+init/s0"], timeout=1200)
    run = assert_complete(db, "huge/Entropy+init/s0", 2, 450)
    assert run["attempt"] == 1 and rows["huge/Entropy+init/s0"]["status"] == "done", run
    jobs = submissions(db, run["id"])
    assert len(jobs) >= 2, f"the work fits in one job of a minute: {jobs}"
    log = messages(db, "huge/Entropy+init/s0")
    assert any(re.match(r"round [01]: resuming after epoch \d+ of 450$", m) for m in log), log  # not redone
    assert picks(db, "huge/Entropy+init/s0") == picks(db, "whole/Entropy+init/s0")
    assert_complete(db, "whole/Entropy+init/s0", 2, 450)
