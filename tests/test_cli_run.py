"""`altui run`, `validate` and `ls` as a researcher uses them: from experiments.toml to the store."""

from __future__ import annotations

import json
import os
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
from altui.store import Store

ROOT = Path(__file__).resolve().parent.parent
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


def test_ctrl_c_cancels_the_run_keeps_its_rounds_and_a_second_run_resumes(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY.format(epochs=6))
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
