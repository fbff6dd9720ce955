"""Why distillation helps or hurts, as a user reads it from the store, the export and the report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from support import cli

from altui.al import loop
from altui.al.presets import resolve
from altui.execution import runner
from altui.store import Store

SETTINGS = dict(dataset="digits", model="cnn5", device="cpu", rounds=2, initial=50, budget=50, epochs=8,
                milestones=(6,), seed=0)
METHODS = {"WS+init": {}, "WS+init+KD1": {"kd_alpha": 0.9, "kd_temperature": 6.0}}


@pytest.fixture(scope="module")
def wrong_teacher_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs whose round 0 trains on shuffled labels, so that round 1's teacher (and the model that
    picks round 1's new images) is wrong; WS+init learns the picks from CE alone, KD1 (alpha 0.9) from
    the wrong teacher too."""
    db = tmp_path_factory.mktemp("teacher") / "altui.db"
    real = loop.train_round

    def shuffled_round_0(cfg, round_, model, data, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if round_ == 0:
            shuffle = torch.randperm(data.y.shape[0], generator=torch.Generator().manual_seed(7))
            data = dataclasses.replace(data, y=data.y[shuffle.to(data.y.device)])
        return real(cfg, round_, model, data, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp, Store(db) as store:
        mp.setattr(loop, "train_round", shuffled_round_0)
        specs = [{"name": f"wrong/{m}/s0", "method": m, "seed": 0,
                  "config": resolve(m, dict(SETTINGS), over).to_dict()} for m, over in METHODS.items()]
        for run_id in store.enqueue("wrong", "experiments.toml", {"name": "wrong"}, specs):
            store.claim("cpu", run_id)
            assert runner.execute(db, run_id) == "done"
    return db


def test_a_wrong_teacher_shows_in_the_teacher_table(wrong_teacher_db: Path) -> None:
    with Store(wrong_teacher_db) as store:
        ce, kd = (store.teacher(store.resolve([f"wrong/{m}/s0"])[0]) for m in METHODS)
        epochs = {m: store.epochs(store.resolve([f"wrong/{m}/s0"])[0]) for m in METHODS}
        runs = [store.run(i) for i in store.resolve([f"wrong/{m}/s0" for m in METHODS])]
    # each run records what can change its numbers: threads is a run setting (default 1), applied
    assert all(r["threads"] == 1 and r["torch_version"] == torch.__version__ and r["compiled"] == 0
               and r["device_name"].startswith("cpu") for r in runs)
    assert [r["round"] for r in ce] == [1] and [r["round"] for r in kd] == [1]  # rounds with a previous model
    ce, kd = ce[0], kd[0]
    # the teacher learned shuffled labels: near chance (10 classes) on the test set and on its picks
    assert kd["teacher_test_accuracy"] < 0.35 and kd["teacher_picks_accuracy"] < 0.35
    assert ce["teacher_picks_accuracy"] == kd["teacher_picks_accuracy"]  # the same model picked the same images
    assert kd["temperature"] == 6.0 and ce["temperature"] == 1.0
    # CE fits the new picks' labels; KD at alpha 0.9 follows the wrong teacher instead
    assert ce["student_picks_fit"] >= 0.85 and ce["student_prev_fit"] >= 0.85
    assert kd["student_picks_fit"] < ce["student_picks_fit"] - 0.2
    assert kd["student_prev_fit"] < ce["student_prev_fit"] - 0.4  # it learned the teacher's shuffled labels
    # the epochs table holds the loss's two parts: the KD term only with a teacher
    last_kd = epochs["WS+init+KD1"][-1]
    assert last_kd["train_kd"] > 0 and last_kd["train_ce"] > 0
    assert all(e["train_kd"] is None for e in epochs["WS+init"]) and epochs["WS+init"][-1]["train_ce"] > 0
    assert all(e["train_kd"] is None for e in epochs["WS+init+KD1"] if e["round"] == 0)


def test_teacher_export_and_the_reports_distillation_section(wrong_teacher_db: Path) -> None:
    rows = json.loads(cli(wrong_teacher_db, "export", "--table", "teacher", "--format", "json").stdout)
    assert len(rows) == 2 and {r["round"] for r in rows} == {1}
    assert {"teacher_picks_accuracy", "student_picks_fit", "teacher_picks_confidence"} <= set(rows[0])
    report = cli(wrong_teacher_db, "report", "wrong").stdout
    section = report.split("## Distillation")[1].split("\n## ")[0]
    assert "| WS+init+KD1 |" in section and "| WS+init |" in section and "teacher new picks" in section
