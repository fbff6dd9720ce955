"""`altui bench --acquisitions`: a row per acquisition with its ratio to entropy, on a tiny pool."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from altui.cli import app
from altui.speed.acquire_bench import ACQUISITIONS, bench_acquisitions
from altui.speed.bench import Case


def test_every_acquisition_gets_a_row_timed_against_entropy():
    rows = bench_acquisitions(Case("cnn5 tiny", "cnn5", 1, 28, 8, augment=False), torch.device("cpu"),
                              pool=64, budget=8, repeats=1)
    assert [r.acquisition for r in rows] == list(ACQUISITIONS)
    assert all(r.seconds > 0 and r.pool == 64 and r.budget == 8 for r in rows)
    assert rows[0].ratio == 1.0 and all(r.entropy_seconds == rows[0].seconds for r in rows)


def test_the_cli_refuses_more_picks_than_the_pool():
    result = CliRunner().invoke(app, ["bench", "--device", "cpu", "--acquisitions", "--pool", "10",
                                      "--budget", "20", "--images", "8", "--repeats", "1", "--no-compiled"])
    assert result.exit_code == 1
    assert "--budget 20 is more than --pool 10" in result.output
