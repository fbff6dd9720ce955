"""Summary, export, plots and the reproduction report, on stores filled with hand-made rows."""

from __future__ import annotations

import csv
import inspect
import io
import json
import random
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import cli

from altui.results import export, plotting, stats, summary
from altui.store import Store

# Hand-made accuracies: experiment -> method -> seed -> accuracy per round.
K500 = {
    "Random": {0: [0.950, 0.970, 0.980], 1: [0.940, 0.975, 0.981], 2: [0.960, 0.965, 0.979]},
    "WS+init+KD1": {0: [0.962, 0.981, 0.9925], 1: [0.958, 0.979, 0.9931], 2: [0.966, 0.983, 0.9929]},
    "Entropy": {0: [0.949, 0.972, 0.990], 1: [0.951, 0.968]},  # seed 1 stopped after two rounds
}
K500_LABELS = [500, 1500, 2500]  # rounds 0, 2 and 4 of the paper's K = 500
TABLE1 = {  # (initial, weight_decay) -> accuracy, one seed, one round
    (200, 0.2): 0.9123, (500, 0.2): 0.9401, (200, 0.1): 0.9250, (500, 0.1): 0.9577,
}


def round_row(round_: int, n_labeled: int, accuracy: float, **over: Any) -> dict[str, Any]:
    row = {
        "round": round_, "n_labeled": n_labeled, "accuracy": accuracy, "test_loss": 0.1,
        "weight_decay": 0.02 * 500 / n_labeled, "lr": 0.01, "effective_channels": 100 + 10 * round_,
        "total_channels": 224, "conv_l2": 3.0, "train_seconds": 1.0, "acquire_seconds": 0.1,
        "pick_mean_score": 0.5, "pick_class_counts": "[1, 2]", "gamma_bins": "[0, 1]", "gamma_counts": "[3]",
    }
    return {**row, **over}


def add_experiment(store: Store, name: str, runs: list[dict[str, Any]],
                   spec: dict | None = None) -> list[int]:
    specs = [{"name": f"{name}/{r['method']}/{json.dumps(r.get('sweep', {}))}/s{r['seed']}", "config": {},
              **r} for r in runs]
    return store.enqueue(name, "experiments.toml", spec or {"name": name}, specs)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "altui.db"
    with Store(path) as store:
        runs = [{"method": m, "seed": s} for s in range(3) for m in K500 if s in K500[m]]
        ids = add_experiment(store, "mnist-k500", runs, {"name": "mnist-k500", "rounds": 3, "budget": 500})
        for run_id, run in zip(ids, runs, strict=True):
            for t, acc in enumerate(K500[run["method"]][run["seed"]]):
                store.add_round(run_id, round_row(t, K500_LABELS[t], acc),
                                [{"layer": "bn1", "channels": 32, "effective": 30}],
                                [{"pool_index": 7 + t, "score": 0.9}])
        runs = [{"method": "Random", "seed": 0, "sweep": {"initial": n, "weight_decay": wd}}
                for n, wd in TABLE1]
        ids = add_experiment(store, "table1-mnist", runs, {"name": "table1-mnist", "rounds": 1})
        for run_id, acc, (n, _) in zip(ids, TABLE1.values(), TABLE1, strict=True):
            store.add_round(run_id, round_row(0, n, acc), [], [])
    return path


def k500_values(method: str, t: int) -> list[float]:
    return [accs[t] for _, accs in sorted(K500[method].items()) if len(accs) > t]


def independent_bootstrap(values: list[float]) -> tuple[float, float]:
    """The documented protocol, computed another way: resample indices with numpy's default_rng(0),
    average each resample in Python, take the 2.5th and 97.5th percentiles."""
    rng = np.random.default_rng(stats.BOOTSTRAP_SEED)
    picks = rng.integers(0, len(values), size=(1000, len(values)))
    means = [statistics.fmean(values[i] for i in row) for row in picks]
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


# ---- summary -----------------------------------------------------------------------------------


def test_summary_intervals_match_an_independent_bootstrap(db: Path) -> None:
    with Store(db) as store:
        rows = list(store.result_rows("mnist-k500"))
    cells = summary.summarize(rows)
    assert len(cells) == 3 * 3
    for cell in cells:
        t = K500_LABELS.index(cell.n_labeled)
        values = k500_values(cell.method, t)
        low, high = independent_bootstrap(values)
        assert cell.experiment == "mnist-k500" and cell.sweep == {}
        assert cell.seeds == len(values)
        assert cell.mean == pytest.approx(statistics.fmean(values))
        assert (cell.ci_low, cell.ci_high) == (pytest.approx(low), pytest.approx(high))
        assert cell.ci_low <= cell.mean <= cell.ci_high
    entropy = {c.n_labeled: c.seeds for c in cells if c.method == "Entropy"}
    assert entropy == {500: 2, 1500: 2, 2500: 1}
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)  # the interval takes values in seed order, not row order
    assert sorted(summary.summarize(shuffled), key=str) == sorted(cells, key=str)


def test_a_single_seed_has_a_degenerate_interval() -> None:
    rows = [{"experiment": "e", "method": "m", "sweep_json": "{}", "seed": 3, "n_labeled": 10,
             "accuracy": 0.5}]
    (cell,) = summary.summarize(rows)
    assert (cell.mean, cell.ci_low, cell.ci_high, cell.seeds) == (0.5, 0.5, 0.5, 1)
    assert summary.format_cell(cell) == "50.00"


def test_export_summary_csv_and_json_have_the_documented_columns(db: Path) -> None:
    result = cli(db, "export", "--format", "csv", "--table", "summary")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == summary.SUMMARY_COLUMNS
    assert len(rows) == 9 + len(TABLE1)
    first = rows[0]
    values = k500_values("Random", 0)
    assert (first["experiment"], first["method"], first["sweep"], first["n_labeled"]) == (
        "mnist-k500", "Random", "{}", "500")
    assert float(first["mean"]) == pytest.approx(statistics.fmean(values))
    assert (float(first["ci_low"]), float(first["ci_high"])) == pytest.approx(independent_bootstrap(values))
    assert first["seeds"] == "3"
    table1 = [r for r in rows if r["experiment"] == "table1-mnist"]
    assert json.loads(table1[0]["sweep"]) == {"initial": 200, "weight_decay": 0.2}

    result = cli(db, "export", "-f", "json", "--experiment", "table1-mnist")
    data = json.loads(result.stdout)
    assert [tuple(d) for d in data] == [summary.SUMMARY_COLUMNS] * len(TABLE1)
    assert {(d["sweep"]["initial"], d["sweep"]["weight_decay"]): d["mean"] for d in data} == TABLE1

    lines = cli(db, "export", "-f", "jsonl", "--experiment", "mnist-k500").stdout.splitlines()
    assert len(lines) == 9 and json.loads(lines[-1])["method"] == "Entropy"


def test_export_raw_tables_filter_by_experiment(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "rounds.csv"
    result = cli(db, "export", "-t", "rounds", "--experiment", "mnist-k500", "-o", str(out))
    assert result.exit_code == 0, result.output
    with out.open(newline="") as fp:
        rows = list(csv.DictReader(fp))
    assert len(rows) == sum(len(a) for m in K500.values() for a in m.values())
    assert {"run_id", "round", "n_labeled", "accuracy", "effective_channels"} <= set(rows[0])

    runs = json.loads(cli(db, "export", "-t", "runs", "-f", "json", "--experiment", "table1-mnist").stdout)
    assert len(runs) == len(TABLE1) and {r["method"] for r in runs} == {"Random"}
    picks = [json.loads(line) for line in cli(db, "export", "-t", "picks", "-f", "jsonl").stdout.splitlines()]
    assert len(picks) == sum(len(a) for m in K500.values() for a in m.values())
    assert set(picks[0]) == {"run_id", "round", "pool_index", "score"}
    channels = cli(db, "export", "-t", "channels", "-f", "md").stdout
    assert "| run_id | round | layer | channels | effective |" in channels


def test_export_rejects_unknown_choices(db: Path) -> None:
    for args in (["-f", "xml"], ["-t", "events"], ["--experiment", "nope"]):
        result = cli(db, "export", *args)
        assert result.exit_code == 1
        assert "error" in result.stderr


# ---- paper-style tables ------------------------------------------------------------------------


def test_markdown_table_cells_and_best_of_column(db: Path) -> None:
    text = cli(db, "export", "-f", "md", "--experiment", "mnist-k500").stdout
    lines = text.splitlines()
    assert "### mnist-k500" in lines
    assert "| Method | 500 | 1500 | 2500 |" in lines
    cells = [line.split(" | ") for line in lines if line.startswith("| ")]
    rows = {c[0].strip("| "): c[1:] for c in cells}
    ws = rows["WS+init+KD1"]
    values = k500_values("WS+init+KD1", 0)
    low, high = independent_bootstrap(values)
    assert ws[0] == f"**{100 * statistics.fmean(values):.2f} ± {100 * (high - low) / 2:.2f}**"
    assert all(cell.startswith("**") for cell in ws)  # WS+init+KD1 is best in every column
    assert not any("**" in cell for cell in rows["Random"] + rows["Entropy"])
    assert rows["Entropy"][2].rstrip(" |") == "99.00"  # one seed at 2500 labels: the value alone

    ranged = cli(db, "export", "-f", "md", "--experiment", "mnist-k500", "--interval", "range").stdout
    assert f"{100 * statistics.fmean(values):.2f} [{100 * low:.2f}, {100 * high:.2f}]" in ranged


def test_table1_folds_the_initial_sweep_into_columns(db: Path) -> None:
    text = cli(db, "export", "-f", "latex", "--experiment", "table1-mnist").stdout
    assert r"Method & 200 & 500 \\" in text
    assert r"Random (weight\_decay=0.2) & 91.23 & 94.01 \\" in text
    assert r"Random (weight\_decay=0.1) & \textbf{92.50} & \textbf{95.77} \\" in text
    assert text.count(r"\textbf") == 2
    assert r"\begin{tabular}{lrr}" in text and r"\end{tabular}" in text


def test_multi_round_sweep_points_stay_apart() -> None:
    cells = [summary.SummaryRow("e", "Random", {"initial": i}, n, 0.5, 0.5, 0.5, 1)
             for i, ns in ((200, (200, 400)), (300, (300, 500))) for n in ns]
    columns, grid = summary.table_grid(cells)
    assert columns == [200, 300, 400, 500]
    assert list(grid) == ["Random (initial=200)", "Random (initial=300)"]


def test_latex_marks_the_best_mean_and_escapes_labels() -> None:
    cells = [summary.SummaryRow("e", "A_1", {}, 10, 0.5, 0.4, 0.6, 5),
             summary.SummaryRow("e", "B&2", {}, 10, 0.7, 0.65, 0.75, 5)]
    text = summary.latex_table(cells)
    assert r"A\_1 & 50.00 $\pm$ 10.00 \\" in text
    assert r"B\&2 & \textbf{70.00 $\pm$ 5.00} \\" in text


# ---- plots -------------------------------------------------------------------------------------


def test_experiment_series_are_means_and_intervals_in_percent(db: Path) -> None:
    with Store(db) as store:
        series = plotting.experiment_series(store.result_rows("mnist-k500"), "accuracy")
        channels = plotting.experiment_series(store.result_rows("mnist-k500"), "effective_channels")
        table1 = plotting.experiment_series(store.result_rows("table1-mnist"), "accuracy")
    assert list(series) == ["Random", "WS+init+KD1", "Entropy"]
    xs, ys, lo, hi = series["Random"]
    assert xs == [500.0, 1500.0, 2500.0]
    assert ys == pytest.approx([100 * statistics.fmean(k500_values("Random", t)) for t in range(3)])
    low, high = independent_bootstrap(k500_values("Random", 0))
    assert (lo[0], hi[0]) == (pytest.approx(100 * low), pytest.approx(100 * high))
    assert channels["Random"].xs == [0.0, 1.0, 2.0] and channels["Random"].ys == [100.0, 110.0, 120.0]
    assert table1["Random (weight_decay=0.1)"].xs == [200.0, 500.0]
    assert table1["Random (weight_decay=0.1)"].ys == pytest.approx([92.50, 95.77])


def test_run_series_is_the_run_curve(db: Path) -> None:
    with Store(db) as store:
        run_id = store.runs(experiment="mnist-k500")[0]["id"]
        series = plotting.run_series(store.result_rows(run_id=run_id), "weight_decay")
    ((name, s),) = series.items()
    assert name.startswith("mnist-k500/Random")
    assert s.xs == [0.0, 1.0, 2.0] and s.ys == pytest.approx([0.02, 0.02 / 3, 0.004]) and s.lo is None


def test_plot_in_the_terminal(db: Path) -> None:
    result = cli(db, "plot", "mnist-k500")
    assert result.exit_code == 0, result.output
    assert "WS+init+KD1" in result.stdout and "labeled images" in result.stdout
    assert "\x1b[" not in result.stdout  # no colour codes when stdout is not a terminal
    result = cli(db, "plot", "1", "--metric", "effective_channels")
    assert result.exit_code == 0 and "mnist-k500/Random" in result.stdout
    assert cli(db, "plot", "nothing").exit_code == 1


def test_plot_out_png(db: Path, tmp_path: Path) -> None:
    png = tmp_path / "fig.png"
    result = cli(db, "plot", "mnist-k500", "--out", str(png))
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_out_without_matplotlib(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    result = cli(db, "plot", "mnist-k500", "--out", str(tmp_path / "fig.png"))
    assert result.exit_code == 1
    assert "pip install 'altui[report]'" in result.stderr
    assert not (tmp_path / "fig.png").exists()


def plotext_row(value: float, axis: plotting.Axis, rows: int) -> int:
    """The row (0 = bottom) on which plotext draws `value`: its own mapping, not ours."""
    from plotext._utility import get_matrix_data

    return get_matrix_data([value], axis.lim, rows)[0]


@pytest.mark.parametrize("values, rows, integer", [
    ([0.55, 0.86], 8, False), ([0.02, 0.01, 0.00667, 0.005], 8, False), ([171, 224], 8, True),
    ([224, 224], 8, True), ([0.005], 6, False), ([21.6, 74.0], 12, False), ([0, 3], 40, True),
])
def test_every_tick_label_sits_on_the_row_that_shows_its_value(values, rows, integer) -> None:
    axis = plotting.value_axis(values, rows, integer=integer)
    spans = rows - 1
    per_row = (axis.lim[1] - axis.lim[0]) / spans
    assert axis.lim[0] <= min(values) and axis.lim[1] >= max(values)
    assert 1 <= len(axis.ticks) == len(set(plotext_row(t, axis, rows) for t in axis.ticks))
    for tick, label in zip(axis.ticks, axis.labels, strict=True):
        row = plotext_row(tick, axis, rows)
        assert axis.lim[0] + row * per_row == pytest.approx(tick)  # the row stands exactly for its label
        assert float(label) == pytest.approx(tick)
        if integer:
            assert label.isdigit()
    if len(set(values)) > 1:  # nice numbers: 1, 2, 2.5 or 5 times a power of ten apart
        step = axis.ticks[1] - axis.ticks[0]
        assert f"{step / 10 ** np.floor(np.log10(step)):.6g}" in {"1", "2", "2.5", "5"}
    for v in values:  # every point is drawn within half a row of its value
        assert abs(axis.lim[0] + plotext_row(v, axis, rows) * per_row - v) <= per_row / 2 + 1e-12


def test_the_text_chart_draws_a_value_on_its_labelled_row_and_notes_identical_curves() -> None:
    series = {"Random": plotting.Series([0, 1, 2, 3], [224, 224, 224, 224]),
              "Random+init": plotting.Series([0, 1, 2, 3], [224, 224, 224, 224]),
              "WS+init": plotting.Series([0, 1, 2, 3], [224, 200, 180, 171])}
    text = plotting.render_text(series, "channels", "round", "effective channels", width=60, height=16,
                                color=False)
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith("220┤") or line.startswith("224┤"))
    assert "x" in row  # Random+init's marker, drawn over Random's, on the row labelled with its value
    assert "x Random+init = Random" in lines and "• Random" in lines and "+ WS+init" in lines
    x_labels = lines[lines.index(next(line for line in lines if "└" in line)) + 1].split()
    assert x_labels == ["0", "1", "2", "3"]  # rounds: integer ticks only


# ---- report ------------------------------------------------------------------------------------


def test_report_puts_the_paper_numbers_beside_ours(db: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # text charts in the report
    result = cli(db, "report", "table1-mnist")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("# Reproduction report: table1-mnist")
    assert '"rounds": 1' in text  # settings
    assert "| Random (weight_decay=0.2) | 91.23 | 94.01 |" in text
    assert "Table 1 (a)" in text
    assert "| WD 0.2 | 92.37 / 91.23 | 94.86 / 94.01 | 95.64 / – |" in text
    assert "| WD 0.1 | 92.46 / 92.50 | 95.75 / 95.77 |" in text
    assert "| WD 0.001 | 89.67 / – |" in text
    assert "```text" in text  # the plotext chart, as matplotlib is missing


def test_report_file_with_figures_and_quotes(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "k500.md"
    result = cli(db, "report", "mnist-k500", "-o", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    for metric in ("accuracy", "weight_decay", "effective_channels"):
        assert f"(k500-{metric}.png)" in text
        assert (tmp_path / f"k500-{metric}.png").read_bytes()[:4] == b"\x89PNG"
    ws = summary.format_cell(summary.SummaryRow("", "", {}, 0, statistics.fmean(k500_values("WS+init+KD1", 2)),
                                              *independent_bootstrap(k500_values("WS+init+KD1", 2)), 3))
    assert f"| WS+init+KD1 | §4.2, Fig. 1 (K = 500), 2,500 labels | 2500 | 99.27 | {ws} | 3 |" in text
    assert "| Entropy(0.004) | §4.2, Fig. 1 (K = 500), 2,500 labels | 2500 | 99.12 | 99.00 | 1 |" in text
    assert "| WS+init+KD2 | §4.2, Fig. 1 (K = 500), 2,500 labels | 2500 | 99.29 | – | 0 |" in text


# ---- streaming export ------------------------------------------------------------------------


@pytest.fixture
def big_db(tmp_path: Path) -> Path:
    path = tmp_path / "big.db"
    with Store(path) as store:
        ids = add_experiment(store, "big", [{"method": f"M{i % 4}", "seed": i} for i in range(200)])
        rows = (round_row(t, 100 * (t + 1), 0.5 + t / 100, run_id=run_id, recorded_at="2025-01-01")
                for run_id in ids for t in range(20))
        with store.db.conn:  # one transaction
            store.db["rounds"].insert_all(rows, batch_size=1000)
    return path


class Recorder(io.StringIO):
    """Notes how many rows the exporter had pulled each time it wrote."""

    def __init__(self, pulled: list[int]):
        super().__init__()
        self.pulled, self.at_write = pulled, []

    def write(self, text: str) -> int:
        self.at_write.append(self.pulled[0])
        return super().write(text)


def counting(rows: Iterator[dict[str, Any]], pulled: list[int]) -> Iterator[dict[str, Any]]:
    for row in rows:
        pulled[0] += 1
        yield row


def test_export_streams_from_the_cursor(big_db: Path) -> None:
    with Store(big_db) as store:
        rows = export.iter_rows(store, "rounds")
        assert isinstance(rows, Iterator) and inspect.isgenerator(rows)
        assert next(rows)["run_id"] == 1  # rows come one at a time from the cursor
        rows.close()
        for writer in ("csv", "json", "jsonl"):
            pulled = [0]
            fp = Recorder(pulled)
            source = counting(export.iter_rows(store, "rounds", "big"), pulled)
            if writer == "csv":
                count = export.write_csv(source, store.export_columns("rounds"), fp)
            else:
                count = getattr(export, f"write_{writer}")(source, fp)
            assert count == 200 * 20
            assert fp.at_write[2] < 10  # written while reading: the table never sits whole in memory
    result = cli(big_db, "export", "-t", "rounds", "-f", "json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 200 * 20
    assert len(cli(big_db, "export", "-t", "rounds").stdout.splitlines()) == 200 * 20 + 1


def test_a_curve_hidden_under_a_later_one_is_flagged_in_the_legend() -> None:
    """Two runs 0.1 pp apart share every cell of a small chart: the first one's marker shows nowhere,
    and the legend says which curve it lies under; a curve apart from the others is not flagged."""
    series = {"#2 Entropy+init s0": plotting.Series([0, 1, 2, 3], [70.0, 80.0, 85.0, 88.0]),
              "#3 Entropy s0": plotting.Series([0, 1, 2, 3], [70.1, 80.1, 85.05, 88.02]),
              "#4 WS s0": plotting.Series([0, 1, 2, 3], [60.0, 70.0, 75.0, 78.0])}
    text = plotting.render_text(series, width=60, height=16, color=False)
    chart, legend = text.splitlines()[:-3], text.splitlines()[-3:]
    assert not any("•" in line for line in chart)
    assert legend == ["• #2 Entropy+init s0 under #3", "x #3 Entropy s0", "+ #4 WS s0"]
    apart = dict(series, **{"#3 Entropy s0": plotting.Series([0, 1, 2, 3], [73.0, 83.0, 88.0, 91.0])})
    text = plotting.render_text(apart, width=60, height=16, color=False)
    assert "• #2 Entropy+init s0" in text.splitlines() and "under" not in text


def test_report_settings_say_where_lambda_0_comes_from(tmp_path: Path) -> None:
    """The experiment as queued from the shipped file: its λ_0 is inferred, and the report says from what."""
    from altui.spec import load_spec

    db = tmp_path / "altui.db"
    table = load_spec(Path(__file__).parents[2] / "experiments.toml").get("mnist-k500").table
    with Store(db) as store:
        (run_id,) = add_experiment(store, "mnist-k500", [{"method": "WS+init", "seed": 0}], table)
        store.add_round(run_id, round_row(0, 500, 0.95), [], [])
    text = cli(db, "report", "mnist-k500").stdout
    settings = text.split("## Settings\n", 1)[1]
    assert settings.lstrip().startswith("λ_0 = 0.02 (λ_0·N_0 = 10): inferred: §4.2 states Entropy(0.004) at 2,500 "
                                        "labels (K = 500, five rounds), and no WS value for MNIST")
