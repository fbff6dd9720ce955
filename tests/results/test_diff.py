"""`altui diff RUN_A RUN_B`: a user trains two runs and asks what differs between them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from support import cli

from altui.al.presets import resolve
from altui.execution import runner
from altui.results.diff import diff_lines, diff_runs
from altui.store import Store

SETTINGS = dict(dataset="digits", model="cnn5", device="cpu", rounds=2, initial=40, budget=40, epochs=3,
                milestones=(2,), seed=0, pool_subset=400)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """WS+init on 1 thread and WS+init+KD1 (alpha 0.9) on 2, one seed, trained by the real engine."""
    db = tmp_path_factory.mktemp("diff") / "altui.db"
    threads = torch.get_num_threads()
    specs = [{"name": "pair/WS+init/s0", "method": "WS+init", "seed": 0,
              "config": resolve("WS+init", dict(SETTINGS)).to_dict()},
             {"name": "pair/WS+init+KD1/s0", "method": "WS+init+KD1", "seed": 0,
              "config": resolve("WS+init+KD1", dict(SETTINGS), {"kd_alpha": 0.9, "threads": 2}).to_dict()}]
    try:
        with Store(db) as store:
            for run_id in store.enqueue("pair", "experiments.toml", {"name": "pair"}, specs):
                store.claim("cpu", run_id)
                assert runner.execute(db, run_id) == "done"
    finally:
        torch.set_num_threads(threads)
    return db


def test_diff_names_what_differs_and_shows_both_runs_per_round(two_runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    result = cli(two_runs, "diff", "pair/WS+init/s0", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == ["A: #1 pair/WS+init/s0 (done)", "B: #2 pair/WS+init+KD1/s0 (done)"]
    text = result.stdout
    # the settings that differ, and only those: the method, its distillation, and the threads setting
    assert "settings that differ:" in text
    for line in ("method    A WS+init  B WS+init+KD1", "distill   A none  B kd1", "kd_alpha  A 0.5  B 0.9",
                 "threads   A 1  B 2"):
        assert f"  {line}" in lines, line
    assert not any(line.lstrip().startswith(("seed ", "epochs ", "dataset ")) for line in lines)
    # the provenance that differs: threads, as recorded by each run's process
    assert "provenance that differs:" in text and "  threads  A 1  B 2" in lines
    # per round, A beside B; from round 1 on, the previous round's model is each run's teacher
    with Store(two_runs) as store:
        a, b = (store.rounds(i) for i in (1, 2))
        teacher_a, teacher_b = (store.teacher(i)[0] for i in (1, 2))
    table = cells(lines)
    assert table[0]["accuracy A"] == f"{a[0]['accuracy']:.4f}" and table[1]["accuracy B"] == f"{b[1]['accuracy']:.4f}"
    assert table[1]["λ_t A"] == f"{a[1]['weight_decay']:.4g}"
    assert table[1]["channels B"] == str(b[1]["effective_channels"])
    assert table[1]["teacher picks A"] == f"{teacher_a['teacher_picks_accuracy']:.3f}"
    assert table[1]["fit picks B"] == f"{teacher_b['student_picks_fit']:.3f}"
    assert (table[1]["T A"], table[1]["T B"]) == ("1", "6")  # confidence at T: 1 without KD, KD1's T = 6
    assert "teacher picks A" not in table[0]  # round 0 has no teacher: no row of dashes


def cells(lines: list[str]) -> dict[int, dict[str, str]]:
    """Round -> column -> cell, from the tables of `altui diff` (columns two spaces apart)."""
    table: dict[int, dict[str, str]] = {}
    header: list[str] = []
    for line in lines:
        if line.startswith("round "):
            header = re.split(r"\s{2,}", line.strip())
        elif header and line[:1].isdigit():
            values = line.split()
            table.setdefault(int(values[0]), {}).update(zip(header[1:], values[1:], strict=True))
        elif not line:
            header = []
    return table


def test_diff_json_holds_the_same_and_the_dashboard_gets_lines_of_its_width(two_runs: Path) -> None:
    result = cli(two_runs, "diff", "1", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {d["key"]: (d["a"], d["b"]) for d in data["provenance"]} == {"threads": (1, 2)}
    assert {"key": "kd_alpha", "a": 0.5, "b": 0.9} in data["settings"]
    assert [r["round"] for r in data["rounds"]] == [0, 1]
    assert data["rounds"][0]["b"]["teacher_picks_accuracy"] is None  # round 0 has no teacher
    assert 0 <= data["rounds"][1]["b"]["teacher_picks_accuracy"] <= 1
    with Store(two_runs) as store:
        diff = diff_runs(store, 1, "pair/WS+init+KD1/s0")
        assert diff.as_dict() == data
    lines = diff_lines(diff, 60)  # a narrow panel: the metrics wrap into more tables, none wider
    tables = [line for line in lines if line.startswith("round ")]
    assert len(tables) > 2 and all(len(line) <= 60 for line in lines if line.startswith(("round ", "0 ", "1 ")))
    assert len(diff_lines(diff, 400)) < len(lines)


def test_diff_of_a_run_that_does_not_exist_names_it(two_runs: Path) -> None:
    result = cli(two_runs, "diff", "1", "nope")
    assert result.exit_code == 1 and "no run 'nope'" in result.stderr
