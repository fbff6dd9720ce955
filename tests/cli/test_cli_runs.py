"""The runs commands' conventions as a script or a shell sees them: --version, -h, completion,
`ls` (table, --json, exit codes), and cancel / retry by experiment and status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import cli
from typer.testing import CliRunner

from altui.al.presets import resolve
from altui.cli import app
from altui.store import Store

FIELDS = dict(dataset="digits", model="cnn5", rounds=2, initial=20, budget=20, epochs=2)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Two experiments: `a` with a done run (one round in), a running one on Slurm and a queued one;
    `b` with a failed run and a queued one that Slurm holds pending."""
    path = tmp_path / "altui.db"
    config = resolve("Random", FIELDS).to_dict()
    with Store(path) as store:
        a = store.enqueue("a", "f", {}, [{"name": f"a/Random/s{i}", "method": "Random", "seed": i, "config": config}
                                         for i in range(3)])
        b = store.enqueue("b", "f", {}, [{"name": f"b/Random/s{i}", "method": "Random", "seed": i, "config": config}
                                         for i in range(2)])
        store.claim("cpu", a[0])
        store.add_round(a[0], dict(round=0, n_labeled=20, accuracy=0.61, test_loss=1.0, weight_decay=0.01, lr=0.1,
                                   effective_channels=200, total_channels=224, conv_l2=3.0, train_seconds=1.0,
                                   acquire_seconds=0.1, pick_mean_score=None, pick_class_counts="[]",
                                   gamma_bins="[0, 1]", gamma_counts="[224]"), [], [])
        store.finish(a[0], "done")
        store.claim("cpu", a[1])
        store.add_epoch(a[1], dict(round=0, epoch=1, train_loss=1.0, train_accuracy=0.5, lr=0.1,
                                   images_per_second=10.0))
        store.claim("cpu", b[0])
        store.finish(b[0], "failed", "boom")
        store.db.conn.execute("UPDATE runs SET slurm_job_id = '77', node = 'n1' WHERE id = ?", (a[1],))
        store.db.conn.execute("UPDATE runs SET slurm_job_id = '78', slurm_reason = 'Priority' WHERE id = ?", (b[1],))
        store.db.conn.commit()
    return path


def test_version_help_and_shell_completion(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"altui {version('altui')}"
    short, long = CliRunner().invoke(app, ["-h"]), CliRunner().invoke(app, ["--help"])
    assert short.exit_code == 0 and short.stdout == long.stdout and "--install-completion" in short.stdout
    assert "--json" in CliRunner().invoke(app, ["ls", "-h"]).stdout
    altui = Path(sys.executable).parent / "altui"  # the installed command, as a shell runs it
    shown = subprocess.run([str(altui), "--show-completion", "bash"], capture_output=True, text=True, cwd=tmp_path,
                           # the shell named, not detected from the process tree (CI runs under no shell)
                           env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "_altui_completion()" in shown.stdout and "complete -o default -F _altui_completion altui" in shown.stdout
    assert not (tmp_path / "runs").exists()


def test_ls_json_lists_every_run_with_its_numbers_eta_and_slurm_job(db: Path) -> None:
    result = cli(db, "ls", "--json")
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)
    assert [r["name"] for r in runs] == ["a/Random/s0", "a/Random/s1", "a/Random/s2", "b/Random/s0", "b/Random/s1"]
    done, running, queued, failed, pending = runs
    assert set(done) == {"id", "name", "experiment", "method", "seed", "status", "round", "rounds", "accuracy",
                         "weight_decay", "effective_channels", "eta_seconds", "slurm_job_id", "node", "slurm_reason"}
    assert done == {"id": 1, "name": "a/Random/s0", "experiment": "a", "method": "Random", "seed": 0,
                    "status": "done", "round": 1, "rounds": 2, "accuracy": 0.61, "weight_decay": 0.01,
                    "effective_channels": 200, "eta_seconds": 0.0, "slurm_job_id": None, "node": None,
                    "slurm_reason": None}
    # 10 images/s measured; the running run has 20 of its round's 40 images (2 epochs of 20) done
    assert running["eta_seconds"] == pytest.approx((20 + 2 * 40) / 10.0)
    assert (running["slurm_job_id"], running["node"]) == ("77", "n1")
    assert queued["eta_seconds"] == pytest.approx(running["eta_seconds"] + 120 / 10.0)  # after it, on one slot
    assert failed["status"] == "failed" and failed["eta_seconds"] == 0.0
    assert pending["status"] == "queued" and pending["slurm_job_id"] == "78" and pending["node"] is None
    assert pending["slurm_reason"] == "Priority" and running["slurm_reason"] is None
    only = json.loads(cli(db, "ls", "--json", "--experiment", "b", "--status", "queued").stdout)
    assert [r["name"] for r in only] == ["b/Random/s1"]


def test_ls_table_shows_pending_slurm_runs_and_their_job_and_node(db: Path) -> None:
    result = cli(db, "ls")
    assert result.exit_code == 0
    lines = {line.split()[1]: line.split() for line in result.stdout.splitlines()[1:]}
    assert result.stdout.splitlines()[0].split()[-2:] == ["job", "node"]
    assert lines["a/Random/s1"][2] == "running" and lines["a/Random/s1"][-2:] == ["77", "n1"]
    assert lines["b/Random/s1"][2] == "queued·pd" and lines["b/Random/s1"][-3:] == ["78", "pending:", "Priority"]
    assert lines["a/Random/s1"][-4] == "10s"  # the ETA


@pytest.mark.parametrize("args, message", [
    (["--experiment", "nope"], "no experiment 'nope'"),
    (["--status", "bogus"], "unknown status 'bogus'; allowed: queued, running, done, failed, cancelled"),
])
def test_ls_rejects_an_unknown_experiment_or_status(db: Path, args: list[str], message: str) -> None:
    result = cli(db, "ls", *args)
    assert result.exit_code == 1 and message in result.stderr


def test_cancel_and_retry_by_experiment_and_status(db: Path) -> None:
    result = cli(db, "cancel", "--experiment", "a")  # its queued and running runs; the done one stays
    assert result.exit_code == 0, result.output
    cancelled, scancel, other = result.stdout.splitlines()
    assert (cancelled, other) == ("2 a/Random/s1: cancelled", "3 a/Random/s2: cancelled")
    # the running run's Slurm job (77) is scancelled at once; no cluster knows it here
    assert scancel.startswith("2 a/Random/s1: scancel of Slurm job 77 failed (") and "worker retries" in scancel
    result = cli(db, "retry", "--status", "failed")  # every experiment's failed runs
    assert result.stdout.splitlines() == ["4 b/Random/s0: queued again"]
    result = cli(db, "retry", "--experiment", "a", "--status", "cancelled")
    assert result.stdout.splitlines() == ["2 a/Random/s1: queued again", "3 a/Random/s2: queued again"]
    result = cli(db, "cancel", "--experiment", "b", "--status", "running")
    assert result.exit_code == 0 and result.stdout.strip() == "no running runs of b: nothing to cancel"
    with Store(db) as store:
        assert [r["status"] for r in store.runs()] == ["done", "queued", "queued", "queued", "queued"]


@pytest.mark.parametrize("args, message", [
    (["cancel"], "give run ids or names, or --experiment NAME and/or --status STATUS"),
    (["cancel", "1", "--experiment", "a"], "not both"),
    (["cancel", "--status", "done"], "cancel --status 'done': allowed: queued, running"),
    (["retry", "--status", "running"], "retry --status 'running': allowed: failed, cancelled"),
    (["retry", "--experiment", "nope"], "no experiment 'nope'"),
])
def test_bulk_changes_reject_bad_input_and_change_nothing(db: Path, args: list[str], message: str) -> None:
    with Store(db) as store:
        before = [r["status"] for r in store.runs()]
    result = cli(db, *args)
    assert result.exit_code == 1 and message in result.stderr
    with Store(db) as store:
        assert [r["status"] for r in store.runs()] == before


def test_ls_prints_at_most_limit_rows_and_counts_the_rest(db: Path) -> None:
    """`altui ls` at scale: a default of 100 rows, --limit N, and --limit 0 for all; --json lists all."""
    shown = CliRunner().invoke(app, ["--db", str(db), "ls", "--limit", "2"])
    assert shown.exit_code == 0, shown.output
    assert "a/Random/s0" in shown.output and "a/Random/s1" in shown.output and "b/Random/s0" not in shown.output
    assert "3 more run(s) not shown (2 of 5); --limit 0 lists all" in shown.output
    every = CliRunner().invoke(app, ["--db", str(db), "ls", "--limit", "0"])
    assert "b/Random/s1" in every.output and "not shown" not in every.output
    assert len(json.loads(CliRunner().invoke(app, ["--db", str(db), "ls", "--json"]).output)) == 5
    assert len(json.loads(CliRunner().invoke(app, ["--db", str(db), "ls", "--json", "--limit", "1"]).output)) == 1
    refused = CliRunner().invoke(app, ["--db", str(db), "ls", "--limit", "-1"])
    assert refused.exit_code == 2 and "Traceback" not in refused.output
