"""The paper's Figure 5 from the store: every batch norm's |gamma| is recorded each round, and
`altui plot --metric gamma` (and the report) draws the paper layer's histogram with its mean/10 line
and the count of channels below it, the same count as the `channels` row."""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support import cli
from torch import nn

from altui.al.models import PAPER_LAYER, build_model
from altui.al.presets import resolve
from altui.al.probes import count_effective, probe
from altui.al.sink import RoundResult
from altui.execution import runner
from altui.results import figure5, gamma
from altui.store import Store

TINY = """
[[experiment]]
name = "tiny"
dataset = "digits"
model = "cnn5"
methods = ["WS", "WS+init", "Entropy+init"]
rounds = 3
initial = 20
budget = 20
epochs = 1
milestones = [1]
pool_subset = 100
device = "cpu"
"""


@pytest.fixture(scope="module")
def digits_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real runs of the paper's Figure-5 methods on digits: three rounds of one epoch each."""
    folder = tmp_path_factory.mktemp("figure5")
    (folder / "tiny.toml").write_text(TINY)
    db = folder / "altui.db"
    result = cli(db, "run", str(folder / "tiny.toml"), "tiny")
    assert result.exit_code == 0, result.output
    return db


def layer_rows(store: Store, run_id: int, table: str) -> dict[int, list[dict]]:
    rows: dict[int, list[dict]] = {}
    for row in store.gammas(run_id) if table == "gammas" else store.channels(run_id):
        rows.setdefault(row["round"], []).append(row)
    return rows


def test_every_round_stores_each_batch_norms_gamma_and_they_add_up(digits_db: Path) -> None:
    with Store(digits_db) as store:
        runs = store.runs(experiment="tiny")
        assert [r["method"] for r in runs] == ["WS", "WS+init", "Entropy+init"]
        for run in runs:
            rounds = store.rounds(run["id"])
            gammas, channels = layer_rows(store, run["id"], "gammas"), layer_rows(store, run["id"], "channels")
            assert sorted(gammas) == [r["round"] for r in rounds] == [0, 1, 2]
            for r in rounds:
                g, c = gammas[r["round"]], channels[r["round"]]
                assert [x["layer"] for x in g] == [x["layer"] for x in c]  # every batch norm, in network order
                values = [json.loads(x["abs_gamma"]) for x in g]
                assert [len(v) for v in values] == [x["channels"] for x in c] == [32, 64, 64, 64]
                assert sum(len(v) for v in values) == r["total_channels"] == 224
                # the rows recompute the effective channels exactly
                recomputed = [count_effective(torch.tensor(v, dtype=torch.float32)) for v in values]
                assert recomputed == [x["effective"] for x in c]
                assert sum(recomputed) == r["effective_channels"]
                assert all(v >= 0 for layer in values for v in layer)


def test_the_figure_5_count_is_the_channels_row_of_the_paper_layer(digits_db: Path) -> None:
    with Store(digits_db) as store:
        for run in store.runs(experiment="tiny"):
            column = gamma.run_gamma(store, run["id"], rounds=[0, 1, 2])
            assert column.layer == PAPER_LAYER["cnn5"] == "blocks.0.0.1"
            rows = {c["round"]: c for c in store.channels(run["id"]) if c["layer"] == column.layer}
            labeled = {r["round"]: r["n_labeled"] for r in store.rounds(run["id"])}
            for p in column.panels:
                assert p.below == rows[p.round]["channels"] - rows[p.round]["effective"]
                assert p.channels == 32 == sum(p.counts)
                assert p.n_labeled == labeled[p.round]
                a = gamma.abs_gamma(store.gammas(run["id"], column.layer)[p.round]["abs_gamma"])
                assert p.threshold == pytest.approx(float(a.mean()) / 10, rel=1e-6)
                assert p.edges[0] == 0 and p.edges[-1] == pytest.approx(float(a.max()))


def test_a_count_below_mean_over_ten_goes_from_the_model_to_the_figure(tmp_path: Path) -> None:
    """Channels squeezed to near zero (what weight decay does to a warm-started model) are counted below
    the red line; the count goes through the runner's own rows and equals the channels row."""
    model = build_model("cnn5", 1, 10, 28)
    first = model.get_submodule(PAPER_LAYER["cnn5"])
    assert isinstance(first, nn.BatchNorm2d)
    with torch.no_grad():
        g = torch.linspace(0.2, 1.0, 32)
        g[:5] = torch.tensor([0.0, 1e-4, -2e-3, 0.01, -0.02])  # |gamma| well below mean / 10 (about 0.055)
        first.weight.copy_(g)
    result = RoundResult(0, 20, 0.5, 1.0, 0.02, 0.01, 1.0, 0.1, probe(model), [3, 4], [0.9, 0.8], [1] * 10)
    db = tmp_path / "altui.db"
    cfg = resolve("WS", dict(dataset="digits", model="cnn5", rounds=1, initial=20, budget=20, epochs=1))
    with Store(db) as store:
        (run_id,) = store.enqueue("hand", "x.toml", {"name": "hand"},
                                  [{"name": "hand/WS/s0", "method": "WS", "seed": 0, "config": cfg.to_dict()}])
        store.add_round(run_id, runner.round_row(result), runner.channel_rows(result), runner.pick_rows(result),
                        runner.gamma_rows(result))
        (p,) = gamma.run_gamma(store, run_id).panels
        (row,) = [c for c in store.channels(run_id) if c["layer"] == PAPER_LAYER["cnn5"]]
    assert p.below == 5 == row["channels"] - row["effective"]
    assert p.threshold == pytest.approx(float(g.abs().mean()) / 10, rel=1e-6)
    assert sum(p.counts[:1]) >= 5  # they sit in the first bin, left of the line
    text = cli(db, "plot", "hand/WS/s0", "--metric", "gamma").stdout
    assert f"5/32 below {p.threshold:.2g}" in text and "WS(0.02) s0" in text


def test_plot_gamma_draws_figure_5_in_the_terminal(digits_db: Path) -> None:
    result = cli(digits_db, "plot", "tiny/WS+init/s0", "--metric", "gamma")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "\x1b[" not in text  # plain characters when stdout is not a terminal
    assert text.startswith("Figure 5: |γ| of batch norm 'blocks.0.0.1' (cnn5's paper layer)\n"
                           "red line: mean |γ| / 10; number: channels below it")
    assert "WS+init(0.02) s0" in text
    for round_, labels in ((0, 20), (1, 40), (2, 60)):  # the first, the middle and the last round
        assert f"round {round_}, {labels} labels" in text
    with Store(digits_db) as store:
        run_id = store.resolve(["tiny/WS+init/s0"])[0]
        rows = [c for c in store.channels(run_id) if c["layer"] == "blocks.0.0.1"]
        thresholds = [p.threshold for p in gamma.run_gamma(store, run_id).panels]
    for row, t in zip(rows, thresholds, strict=True):
        assert f"{row['channels'] - row['effective']}/32 below {t:.2g}" in text
    assert "│" in text and "█" in text  # the line and the bins
    # several runs: one column each, their labels in the header
    several = cli(digits_db, "plot", "1", "2", "3", "--metric", "gamma").stdout
    (header,) = [line for line in several.splitlines() if "WS(0.02) s0" in line]
    assert header.index("WS(0.02) s0") < header.index("WS+init(0.02) s0") < header.index("Entropy+init(0.00667) s0")


def test_plot_gamma_writes_the_paper_style_figure(digits_db: Path, tmp_path: Path) -> None:
    png = tmp_path / "fig5.png"
    result = cli(digits_db, "plot", "tiny", "--metric", "gamma", "--out", str(png))  # the experiment's runs
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = tmp_path / "two.svg"
    assert cli(digits_db, "plot", "1", "tiny/Entropy+init/s0", "--metric", "gamma", "--out", str(svg)).exit_code == 0
    assert "<svg" in svg.read_text()[:400]
    with Store(digits_db) as store:
        columns = [gamma.run_gamma(store, i) for i in gamma.target_runs(store, ["tiny"])]
    assert [c.method for c in columns] == ["WS", "WS+init", "Entropy+init"]
    fig = figure5.build_figure(columns)
    grid = sorted(fig.axes, key=lambda ax: (ax.get_subplotspec().colspan.start, ax.get_subplotspec().rowspan.start))
    axes = [ax for ax in grid if ax.get_visible()]  # down the first run's column, then the next
    assert len(axes) == 9
    assert [ax.get_title() for ax in axes[:3]] == ["(a) round 0, 20 labels", "(b) round 1, 40 labels",
                                                   "(c) round 2, 60 labels"]
    for ax, p in zip(axes, [p for c in columns for p in c.panels], strict=True):
        (line,) = ax.lines
        assert line.get_color() == "red" and line.get_xdata()[0] == pytest.approx(p.threshold)
        assert ax.texts[-1].get_text() == str(p.below)  # the count, in the panel
    assert [ax.texts[0].get_text() for ax in axes[::3]] == [c.label for c in columns]  # column headers
    assert "cnn5's paper layer" in fig.get_suptitle()


def test_plot_gamma_refuses_what_it_cannot_draw(digits_db: Path, tmp_path: Path) -> None:
    many = cli(digits_db, "plot", "1", "2")  # curves take one target
    assert many.exit_code == 1 and "several runs side by side are for --metric gamma" in many.stderr
    bad = cli(digits_db, "plot", "1", "--metric", "gama")
    assert bad.exit_code == 1 and "allowed: accuracy, weight_decay, effective_channels, gamma" in bad.stderr
    txt = cli(digits_db, "plot", "1", "--metric", "gamma", "--out", str(tmp_path / "f.txt"))
    assert txt.exit_code == 1 and "allowed: a .png, .svg or .pdf file" in txt.stderr
    with Store(digits_db) as store:  # an experiment without the paper's methods
        store.enqueue("other", "x.toml", {"name": "other"}, [{"name": "other/Random/s0", "method": "Random",
                                                              "seed": 0, "config": {"model": "cnn5"}}])
    none = cli(digits_db, "plot", "other", "--metric", "gamma")
    assert none.exit_code == 1 and "has no WS, WS+init, Entropy+init run with a recorded round" in none.stderr
    queued = cli(digits_db, "plot", "other/Random/s0", "--metric", "gamma")
    assert queued.exit_code == 1 and "run other/Random/s0: no round is recorded yet" in queued.stderr


def test_plot_gamma_without_matplotlib(digits_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = cli(digits_db, "plot", "1", "--metric", "gamma", "--out", str(tmp_path / "f.png"))
    assert result.exit_code == 1 and "pip install 'altui[report]'" in result.stderr


def test_the_report_includes_figure_5(digits_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "tiny.md"
    assert cli(digits_db, "report", "tiny", "-o", str(out)).exit_code == 0
    text = out.read_text()
    assert "### Effective channels of the paper's layer (Figure 5)" in text
    assert "(tiny-gamma.png)" in text and (tmp_path / "tiny-gamma.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # text charts instead
    plain = cli(digits_db, "report", "tiny").stdout
    section = plain[plain.index("(Figure 5)"):]
    assert "```text\nFigure 5: |γ| of batch norm 'blocks.0.0.1'" in section
    assert "Entropy+init(0.00667) s0" in section


# ---- ResNet18 ---------------------------------------------------------------------------------


def test_a_resnet18_run_stores_every_batch_norms_gamma_each_round(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8)  # the smallest input ResNet18 takes
    np.savez(tmp_path / "tiny.npz", x=x, y=np.arange(40) % 4, x_test=x[:8], y_test=np.arange(8) % 4)
    (tmp_path / "r.toml").write_text(f"""
[[experiment]]
name = "r18"
dataset = "npz"
path = "{tmp_path / 'tiny.npz'}"
model = "resnet18"
methods = ["WS"]
rounds = 2
initial = 8
budget = 8
epochs = 1
batch_size = 8
device = "cpu"
""")
    db = tmp_path / "altui.db"
    result = cli(db, "run", str(tmp_path / "r.toml"), "r18")
    assert result.exit_code == 0, result.output
    batch_norms = [(name, m.num_features) for name, m in build_model("resnet18", 3, 4, 8).named_modules()
                   if isinstance(m, nn.BatchNorm2d)]
    assert len(batch_norms) == 20 and sum(n for _, n in batch_norms) == 4800
    with Store(db) as store:
        (run,) = store.runs(experiment="r18")
        rounds = store.rounds(run["id"])
        assert [r["round"] for r in rounds] == [0, 1]
        gammas = layer_rows(store, run["id"], "gammas")
        for r in rounds:
            stored = [(g["layer"], len(json.loads(g["abs_gamma"]))) for g in gammas[r["round"]]]
            assert stored == batch_norms
            assert r["total_channels"] == 4800
            values = [v for g in gammas[r["round"]] for v in json.loads(g["abs_gamma"])]
            assert all(math.isfinite(v) and v >= 0 for v in values)
    text = cli(db, "plot", "r18/WS/s0", "--metric", "gamma").stdout
    assert "batch norm 'stages.0.0.conv1.1' (resnet18's paper layer)" in text
    assert "round 0, 8 labels" in text and "round 1, 16 labels" in text and "/64 below" in text


def test_one_runs_figure_5_keeps_its_title_whole_and_its_panels_on_one_scale(digits_db: Path, tmp_path: Path) -> None:
    png = tmp_path / "one.png"
    assert cli(digits_db, "plot", "tiny/WS+init/s0", "--metric", "gamma", "--out", str(png)).exit_code == 0
    with Store(digits_db) as store:
        (column,) = [gamma.run_gamma(store, i) for i in gamma.target_runs(store, ["tiny/WS+init/s0"])]
    fig = figure5.build_figure([column])
    fig.canvas.draw()
    title = fig._suptitle.get_window_extent()
    assert fig.bbox.x0 <= title.x0 and title.x1 <= fig.bbox.x1  # the caption is not clipped
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 3
    # the paper's Figure 5 compares rounds on shared axes: one |γ| range and one count range
    assert len({ax.get_xlim() for ax in axes}) == 1 and len({ax.get_ylim() for ax in axes}) == 1
    top = max(p.edges[-1] for p in column.panels)
    assert axes[0].get_xlim()[1] >= top


def test_figure_5_in_the_terminal_has_nice_ticks_on_one_scale() -> None:
    """Two rounds whose largest |γ| differ (0.88 and 0.41): both panels draw 0 .. 0.88 with nice ticks."""
    def panel(round_: int, values: list[float]) -> gamma.Panel:
        return gamma.panel(round_, json.dumps(values), n_labeled=20 * (round_ + 1))

    rng = np.random.default_rng(0)
    column = gamma.RunGamma(1, "r", "WS", 0, 0.02, "cnn5", "blocks.0.0.1", (
        panel(0, [0.88, *rng.uniform(0.02, 0.88, 31).round(4)]),
        panel(1, [0.41, *rng.uniform(0.0, 0.41, 31).round(4)])))
    text = figure5.render_text([column], width=80, row_height=14, color=False)
    axis_lines = [line for line in text.splitlines() if line.strip() and set(line.strip()) <= set("0123456789. ")
                  and "." in line]
    assert len(axis_lines) == 2, text
    for line in axis_lines:  # x tick labels: 1, 2, 2.5 or 5 times a power of ten, evenly spaced, alike
        values = [float(v) for v in line.split()]
        steps = {round(b - a, 9) for a, b in itertools.pairwise(values)}
        assert len(steps) == 1, line
        (step,) = steps
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5)), line
        assert values[-1] <= 0.88 < values[-1] + step  # the axis ends at the largest |γ| of any round
    assert axis_lines[0] == axis_lines[1]
