"""What Slurm shows of altui's jobs, and how they end, on the real local cluster (slurm_cluster.py):
a job is named after its run and a pending one's reason reaches `altui ls` and `altui logs`; a
failed run's job ends FAILED; an error that would recur (a bad data file, a node whose Python cannot
import altui) fails the run at its first attempt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from slurm_cluster import NODE, LocalSlurm
from slurm_helpers import CPU_JOBS, job_state, messages, start, submissions, wait_finished, wait_for
from worker_helpers import ALTUI, altui, ok, write_spec

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_jobs_are_named_after_their_runs_and_a_pending_reason_shows_in_ls_and_logs(
    db: Path, env: dict[str, str], cluster: LocalSlurm, tmp_path: Path
) -> None:
    blocker = cluster.run("sbatch", "--parsable", "-c", "4", f"--output={tmp_path / 'blocker.out'}",  # every CPU
                          "--wrap", "sleep 600").stdout.strip()
    wait_for(db, cluster, "the blocker to run",
             lambda: any(j["id"] == blocker and j["state"] == "RUNNING" for j in cluster.jobs()), timeout=30)
    spec = write_spec(tmp_path / "exp.toml", {"names": {"rounds": 2}})
    ok(altui(db, env, "queue", str(spec)))
    start(db, env, *CPU_JOBS)

    def reason() -> str | None:
        (row,) = json.loads(ok(altui(db, env, "ls", "--json")))
        return row["slurm_reason"] if row["slurm_reason"] not in (None, "None") else None

    assert wait_for(db, cluster, "a pending reason in ls --json", reason, timeout=60, every=0.5) == "Resources"
    (job,) = [j for j in cluster.jobs() if j["id"] != blocker]
    assert job["name"] == "altui:names/Entropy+init/s0" and job["state"] == "PENDING", job
    listing = ok(altui(db, env, "ls"))
    assert "queued·pd" in listing and "pending: Resources" in listing, listing
    log = ok(altui(db, env, "logs", "names/Entropy+init/s0"))
    assert f"Slurm job {job['id']} (pending: Resources)" in log and f"scontrol show job {job['id']}" in log, log
    assert any(m.startswith(f"pending in Slurm (job {job['id']}, pending: Resources") for m in
               messages(db, "names/Entropy+init/s0"))

    cluster.run("scancel", blocker)
    run = wait_finished(db, cluster, ["names/Entropy+init/s0"])["names/Entropy+init/s0"]
    assert run["status"] == "done" and run["slurm_reason"] is None, run
    (row,) = json.loads(ok(altui(db, env, "ls", "--json")))
    assert row["slurm_reason"] is None and row["node"] == NODE, row
    log = ok(altui(db, env, "logs", "names/Entropy+init/s0"))
    assert f"Slurm job {job['id']} (on {NODE})" in log and f"sacct -j {job['id']}" in log, log
    assert job_state(cluster, job["id"]) == "COMPLETED"


def test_a_bad_data_file_fails_at_the_first_attempt_and_its_job_ends_failed(
    db: Path, env: dict[str, str], cluster: LocalSlurm, tmp_path: Path
) -> None:
    bad = tmp_path / "data.npz"
    bad.write_bytes(b"not an npz archive")
    spec = write_spec(tmp_path / "exp.toml", {"bad": {"dataset": "npz", "path": str(bad)}})
    ok(altui(db, env, "queue", str(spec)))
    start(db, env, *CPU_JOBS)
    run = wait_finished(db, cluster, ["bad/Entropy+init/s0"])["bad/Entropy+init/s0"]
    assert run["status"] == "failed" and run["attempt"] == 1, run
    assert "is not an .npz archive" in run["error"], run["error"]
    assert submissions(db, run["id"]) == [run["slurm_job_id"]], "not retried"
    wait_for(db, cluster, "the job to leave squeue", lambda: not cluster.jobs(), timeout=60)
    assert job_state(cluster, run["slurm_job_id"]) == "FAILED"
    out = cluster.run("scontrol", "show", "job", run["slurm_job_id"]).stdout
    assert "ExitCode=1:0" in out and "JobName=altui:bad/Entropy+init/s0" in out, out


def test_a_node_whose_python_cannot_import_altui_fails_the_run_at_once(
    db: Path, env: dict[str, str], cluster: LocalSlurm, tmp_path: Path
) -> None:
    # The job starts in a folder that holds another altui (`python -m` looks there first), one that
    # needs a package the node's Python lacks.
    shadow = tmp_path / "shadow" / "altui"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("import a_dependency_this_node_lacks\n")
    spec = write_spec(tmp_path / "exp.toml", {"noimport": {"rounds": 2}})
    ok(altui(db, env, "queue", str(spec)))
    start(db, env, *CPU_JOBS, "--slurm-arg", f"setup=cd {shadow.parent}")
    run = wait_finished(db, cluster, ["noimport/Entropy+init/s0"])["noimport/Entropy+init/s0"]
    assert run["status"] == "failed" and run["attempt"] == 1, run
    assert submissions(db, run["id"]) == [run["slurm_job_id"]], "not retried"
    assert ("the node's Python cannot import it: ModuleNotFoundError: No module named "
            "'a_dependency_this_node_lacks'") in run["error"], run["error"]
    log = ok(altui(db, env, "logs", "noimport/Entropy+init/s0"))
    assert "failed without another attempt" in log and "install altui where the compute nodes see it" in log, log
    wait_for(db, cluster, "the job to leave squeue", lambda: not cluster.jobs(), timeout=60)
    assert job_state(cluster, run["slurm_job_id"]) == "FAILED"


def test_an_experiments_slurm_table_reaches_sbatch_and_a_cpu_run_needs_no_gpu_flag(
    db: Path, env: dict[str, str], cluster: LocalSlurm, tmp_path: Path
) -> None:
    """The local cluster has no GPUs: the worker starts with its default of one GPU per job (Slurm
    refuses those here, which it notes), and `device = "cpu"` runs ask for none."""
    spec = write_spec(tmp_path / "exp.toml", {"plain": {"rounds": 2}, "own": {"rounds": 2}})
    spec.write_text(spec.read_text() + '\n[experiment.slurm]\npartition = "debug"\ntime = "0:15:00"\ncpus = 2\n'
                                       'mem = "500M"\nargs = ["mail-type=FAIL", "nice=10"]\n')
    ok(altui(db, env, "queue", str(spec)))
    started = altui(db, env, "worker", "start", "--executor", "slurm", "--time", "20")
    assert started.returncode == 0 and "worker started" in started.stdout, started.stderr
    assert "Slurm refuses jobs with 1 GPU(s) here" in started.stderr and 'device = "cpu"' in started.stderr
    rows = wait_finished(db, cluster, ["plain/Entropy+init/s0", "own/Entropy+init/s0"])
    shown = {}
    for name, run in rows.items():
        assert run["status"] == "done" and run["attempt"] == 1, run
        out = cluster.run("scontrol", "show", "job", "--oneliner", run["slurm_job_id"]).stdout
        shown[name] = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
        assert "gpu" not in out.lower(), out
    own, plain = shown["own/Entropy+init/s0"], shown["plain/Entropy+init/s0"]
    assert (own["Partition"], own["TimeLimit"], own["NumCPUs"], own["MinMemoryNode"], own["MailType"],
            own["Nice"]) == ("debug", "00:15:00", "2", "500M", "FAIL", "10"), own
    assert (plain["TimeLimit"], plain["NumCPUs"], plain["Nice"]) == ("00:20:00", "1", "0"), plain


def test_the_head_runs_as_a_batch_job_and_ends_when_the_queue_is_done(
    db: Path, env: dict[str, str], cluster: LocalSlurm, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "exp.toml", {"batch": {"methods": ["Random", "Entropy+init"]}})
    ok(altui(db, env, "queue", str(spec)))
    head = " ".join([ALTUI, "--db", str(db), "worker", "start", *CPU_JOBS, "--foreground", "--exit-when-empty"])
    out = tmp_path / "head.out"
    job = cluster.run("sbatch", "--parsable", "-c", "1", "--time", "30", "-J", "altui-head", f"--output={out}",
                      "--wrap", head).stdout.strip()
    rows = wait_finished(db, cluster, ["batch/Random/s0", "batch/Entropy+init/s0"])
    assert all(r["status"] == "done" and r["attempt"] == 1 for r in rows.values()), rows
    wait_for(db, cluster, "the head's job to end", lambda: job not in {j["id"] for j in cluster.jobs()}, timeout=60)
    assert job_state(cluster, job) == "COMPLETED"
    text = out.read_text()
    assert "serving" in text and "the queue is done (no run queued or running): the worker stops" in text, text
