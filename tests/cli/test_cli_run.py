"""`altui run`, `validate` and `ls` as a researcher uses them: from experiments.toml to the store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from altui.al.config import RunConfig
from altui.al.loop import initial_labeled
from altui.al.schedule import weight_decay_at
from altui.cli import app
from altui.store import Store, run_folder

ROOT = Path(__file__).resolve().parents[2]
ALTUI = [sys.executable, "-c", "from altui.cli import main; main()"]
TINY = """
[[experiment]]
name = "tiny"
dataset = "digits"
model = "cnn5"
methods = ["Entropy+init"]
rounds = 3
initial = 20
budget = 20
epochs = {epochs}
milestones = [1]
pool_subset = 300
device = "cpu"
"""


@pytest.mark.slow
def test_running_the_demo_fills_the_store_with_every_round(tmp_path):
    db = tmp_path / "altui.db"
    result = CliRunner().invoke(app, ["--db", str(db), "run", str(ROOT / "experiments.toml"), "digits-demo"])
    assert result.exit_code == 0, result.output
    assert "digits-demo: finished" in result.output
    with Store(db) as store:
        runs = store.runs(experiment="digits-demo")
        assert [r["method"] for r in runs] == ["Random", "Entropy+init", "WS+init", "WS+init+KD1"]
        for run in runs:
            cfg = RunConfig.from_dict(json.loads(run["spec_json"]))
            assert run["status"] == "done"
            rounds = store.rounds(run["id"])
            assert [r["round"] for r in rounds] == list(range(cfg.rounds))
            labeled = set(initial_labeled(cfg.seed, 1347, cfg.initial).tolist())
            for r in rounds:
                assert r["n_labeled"] == cfg.n_labeled(r["round"]) == len(labeled)
                assert r["weight_decay"] == weight_decay_at(cfg, r["round"])
                assert 0.0 < r["accuracy"] <= 1.0
                assert 0 < r["effective_channels"] <= r["total_channels"] == 224
                layers = [c for c in store.channels(run["id"]) if c["round"] == r["round"]]
                assert [c["channels"] for c in layers] == [32, 64, 64, 64]
                assert sum(c["effective"] for c in layers) == r["effective_channels"]
                picks = [p["pool_index"] for p in store.picks(run["id"]) if p["round"] == r["round"]]
                if r["round"] < cfg.rounds - 1:
                    assert len(picks) == len(set(picks)) == cfg.budget
                    assert not labeled & set(picks), "a pick was already labeled"
                    labeled |= set(picks)
                else:
                    assert picks == []
            epochs = store.epochs(run["id"])
            assert len(epochs) == cfg.rounds * cfg.epochs
        ls = CliRunner().invoke(app, ["--db", str(db), "ls"])
        assert "digits-demo/WS+init+KD1/s0" in ls.output and "4/4" in ls.output


def test_validate_lists_runs_and_rejects_a_broken_file_without_touching_the_store(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(ROOT / "experiments.toml")])
    assert ok.exit_code == 0 and "digits-demo: 4 runs" in ok.output and "table1-mnist: 144 runs" in ok.output
    assert "mnist-k500: 35 runs\n  λ_0 = 0.02 (λ_0·N_0 = 10): inferred: §4.2 states Entropy(0.004)" in ok.output

    db = tmp_path / "altui.db"
    good = tmp_path / "good.toml"
    good.write_text(TINY.format(epochs=1))
    assert runner.invoke(app, ["--db", str(db), "run", str(good), "tiny"]).exit_code == 0
    before = db.read_bytes()

    bad = tmp_path / "bad.toml"
    methods = 'methods = ["Entropy+init"]'
    bad.write_text(TINY.format(epochs=1).replace(methods, methods + "\nbugdet = 3"))
    for args in (["validate", str(bad)], ["--db", str(db), "run", str(bad), "tiny"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        assert f"{bad}:7:1" in result.output and "bugdet" in result.output and "budget" in result.output
    assert db.read_bytes() == before


def test_an_unknown_experiment_name_lists_the_file_s_experiments(tmp_path):
    result = CliRunner().invoke(app, ["--db", str(tmp_path / "a.db"), "run", str(ROOT / "experiments.toml"), "nope"])
    assert result.exit_code == 1 and "digits-demo" in result.output


def test_a_data_set_that_cannot_be_loaded_is_said_once_and_its_other_runs_wait(tmp_path):
    """Offline, without MNIST's files: the first run fails saying which files to put where; the five
    others would fail alike, so they are not run (and not failed): one line says so."""
    experiments = tmp_path / "experiments.toml"
    experiments.write_text('[[experiment]]\nname = "m"\ndataset = "mnist"\nmodel = "cnn5"\nmethods = ["Random", '
                           f'"Entropy"]\nseeds = [0, 1, 2]\nrounds = 2\ninitial = 20\nbudget = 20\nepochs = 1\n'
                           f'download = false\ndata_root = "{tmp_path / "data"}"\ndevice = "cpu"\n')
    db = tmp_path / "altui.db"
    result = subprocess.run([*ALTUI, "--db", str(db), "run", str(experiments), "m"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 1, result.stderr
    assert result.stdout.count("could not load the data set") == 1, result.stdout
    assert "5 more run(s) need mnist, which could not be loaded: left queued, not run" in result.stdout
    assert "m: finished (1 failed, 5 not run)" in result.stdout
    with Store(db) as store:
        assert [r["status"] for r in store.runs()] == ["failed"] + ["queued"] * 5


@pytest.mark.slow
def test_ctrl_c_cancels_the_run_keeps_its_rounds_and_a_second_run_resumes(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY.format(epochs=20))  # rounds long enough that Ctrl-C lands before the last ends
    db = tmp_path / "altui.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*ALTUI, "--db", str(db), "run", str(spec), "tiny"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        with Store(db) as store:
            runs = store.runs()
            if runs and runs[0]["rounds_done"] >= 1:
                break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("round 0 was never recorded")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    with Store(db) as store:
        (run,) = store.runs()
        assert run["status"] == "cancelled" and run["rounds_done"] >= 1
        kept = run["rounds_done"]

    again = subprocess.run([*ALTUI, "--db", str(db), "run", str(spec), "tiny"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    with Store(db) as store:
        (run,) = store.runs()
        assert run["status"] == "done"
        assert [r["round"] for r in store.rounds(run["id"])] == [0, 1, 2]
        events = [e["message"] for e in store.events(run["id"])]
        assert any(f"resuming at round {kept}" in m for m in events), events


# ---- stopping a foreground run ----------------------------------------------------------------------


def start_run(tmp_path: Path, epochs: int, rounds: int, *, nohup: bool) -> tuple[subprocess.Popen, Path, Path]:
    """`altui run` in the background of a shell; `nohup` as `nohup altui run ... &` starts it: SIGHUP and
    SIGINT ignored (a background job of a non-interactive shell ignores SIGINT)."""
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY.format(epochs=epochs).replace("rounds = 3", f"rounds = {rounds}"))
    db = tmp_path / "altui.db"

    def ignore() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = subprocess.Popen([*ALTUI, "--db", str(db), "run", str(spec), "tiny"], cwd=tmp_path,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=ignore if nohup else None)
    deadline = time.time() + 300  # generous: a loaded machine
    while time.time() < deadline:
        if db.exists():
            with Store(db) as store:
                runs = store.runs()
                if runs and runs[0]["rounds_done"] >= 1:
                    return proc, spec, db
        time.sleep(0.2)
    proc.kill()
    pytest.fail("round 0 was never recorded")


@pytest.mark.slow
def test_a_cancel_from_another_shell_stops_a_nohup_foreground_run(tmp_path):
    proc, _, db = start_run(tmp_path, epochs=4, rounds=20, nohup=True)  # long: it must not end by itself

    cancel = subprocess.run([*ALTUI, "--db", str(db), "cancel", "1"], capture_output=True, text=True, timeout=60)
    out, _ = proc.communicate(timeout=60)  # within a heartbeat, not after the remaining rounds

    assert "cancelled" in cancel.stdout
    assert proc.returncode == 1, out
    assert "tiny/Entropy+init/s0: cancelled; completed rounds are kept" in out
    with Store(db) as store:
        (run,) = store.runs()
        assert run["status"] == "cancelled", "the end of the run overwrote the cancel"
        assert 1 <= run["rounds_done"] < 20
        assert any("stopped (cancelled): cancelled" in e["message"] for e in store.events(run["id"]))


@pytest.mark.slow
def test_a_hangup_sends_a_foreground_run_back_to_the_queue_and_a_rerun_finishes_it(tmp_path):
    """Closing the tmux window (or the SSH session) that runs `altui run` sends SIGHUP."""
    proc, spec, db = start_run(tmp_path, epochs=16, rounds=3, nohup=False)

    proc.send_signal(signal.SIGHUP)
    out, _ = proc.communicate(timeout=60)

    assert proc.returncode == 128 + signal.SIGHUP, out
    with Store(db) as store:
        (run,) = store.runs()
        assert (run["status"], run["attempt"]) == ("queued", 0), "left running, or its attempt used up"
        assert 1 <= run["rounds_done"] < 3
    again = subprocess.run([*ALTUI, "--db", str(db), "run", str(spec), "tiny"], capture_output=True, text=True,
                           timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    with Store(db) as store:
        (run,) = store.runs()
        assert run["status"] == "done" and [r["round"] for r in store.rounds(run["id"])] == [0, 1, 2]


def test_a_foreground_run_that_died_without_a_word_is_resumed_by_the_next_altui_run(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY.format(epochs=1))
    db = tmp_path / "altui.db"
    runner = CliRunner()
    assert runner.invoke(app, ["--db", str(db), "queue", str(spec)]).exit_code == 0
    with Store(db) as store, store.db.conn:  # what kill -9 of `altui run` leaves: running, no pid, an old beat
        store.claim("foreground", run_id=1)
        store.db.conn.execute("UPDATE runs SET heartbeat_at = '2020-01-01T00:00:00.000+00:00'")

    result = runner.invoke(app, ["--db", str(db), "run", str(spec), "tiny"])

    assert result.exit_code == 0, result.output
    with Store(db) as store:
        (run,) = store.runs()
        assert run["status"] == "done" and run["rounds_done"] == 3
        assert any("its foreground process is gone" in e["message"] for e in store.events(1))


# ---- exit codes, names, and a run whose checkpoint is gone ------------------------------------------


@pytest.mark.slow
def test_a_run_whose_checkpoint_is_gone_fails_with_exit_1_until_retried_from_scratch(tmp_path):
    proc, spec, db = start_run(tmp_path, epochs=16, rounds=3, nohup=False)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: cancelled, its recorded rounds kept
    proc.communicate(timeout=60)
    shutil.rmtree(run_folder(db, 1))  # the user cleans up its folder, checkpoint and all
    with Store(db) as store:
        last = store.last_round(1)
    runner = CliRunner()

    failed = runner.invoke(app, ["--db", str(db), "run", str(spec), "tiny"])

    assert failed.exit_code == 1 and last in (0, 1)
    assert (f"tiny/Entropy+init/s0: failed: run 1 recorded round {last} but its checkpoint "
            f"{run_folder(db, 1)}/round-{last}.pt is missing; `altui retry --from-scratch 1` restarts the run at "
            "round 0") in failed.output
    restarted = runner.invoke(app, ["--db", str(db), "retry", "--from-scratch", "1"])
    assert "1 tiny/Entropy+init/s0: queued again from round 0 (its recorded rounds are deleted)" in restarted.output
    with Store(db) as store:
        assert store.rounds(1) == [] and store.epochs(1) == [] and store.picks(1) == []
        assert store.channels(1) == [] and store.gammas(1) == []
    again = runner.invoke(app, ["--db", str(db), "run", str(spec), "tiny"])
    assert again.exit_code == 0, again.output
    with Store(db) as store:
        assert [r["round"] for r in store.rounds(1)] == [0, 1, 2] and store.run(1)["status"] == "done"
        assert len(store.epochs(1)) == 3 * 16


def test_ls_prints_names_as_text_never_as_markup_or_escape_sequences(tmp_path):
    """A store written before names were checked may hold such names; they print harmlessly."""
    from altui.al.presets import resolve

    db = tmp_path / "altui.db"
    config = resolve("Random", dict(dataset="digits", model="cnn5", rounds=1, initial=10, budget=10)).to_dict()
    with Store(db) as store:
        store.enqueue("e", "f.toml", {}, [
            {"name": "e/[bold]x/s0", "method": "[bold]x", "seed": 0, "config": config},
            {"name": "e/a\x1b]0;pwned\x07/s0", "method": "a\x1b]0;pwned\x07", "seed": 0, "config": config}])

    result = CliRunner().invoke(app, ["--db", str(db), "ls"])

    assert result.exit_code == 0
    assert "e/[bold]x/s0" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "e/a\\x1b]0;pwned\\x07/s0" in result.output


@pytest.mark.slow
def test_the_issue_s_repro_lr_inf_is_refused_and_the_store_stays_readable(tmp_path):
    (tmp_path / "inf.toml").write_text('[[experiment]]\nname="x"\ndataset="digits"\nmodel="cnn5"\n'
                                       'methods=["Random"]\nlr=inf\n')
    spec = tmp_path / "good.toml"
    spec.write_text(TINY.format(epochs=1))
    assert subprocess.run([*ALTUI, "--db", "p.db", "queue", str(spec)], cwd=tmp_path).returncode == 0

    queued = subprocess.run([*ALTUI, "--db", "p.db", "queue", "inf.toml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    listed = subprocess.run([*ALTUI, "--db", "p.db", "ls"], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert queued.returncode == 1
    assert queued.stderr.splitlines()[0] == "inf.toml:6:1: experiment[0].lr: inf is not finite; allowed: a number > 0"
    assert "Traceback" not in queued.stderr
    assert listed.returncode == 0 and "tiny/Entropy+init/s0" in listed.stdout, listed.stderr
