"""The dashboard, driven by Textual's Pilot: on a store written by the real runner (values, keys,
plots), and snapshots of its screens on a fixed hand-made store."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from rich.console import Console
from textual.command import CommandPalette
from textual.pilot import Pilot
from typer.testing import CliRunner

import altui.store.connection
from altui.al.presets import resolve
from altui.cli import app as cli_app
from altui.execution import runner
from altui.spec import load_spec
from altui.speed.eta import estimate, seconds_left
from altui.speed.plan import cached_estimate, data_shape, needed_kinds, workload_key
from altui.store import Store
from altui.tui.app import AltuiApp, create_app
from altui.tui.format import duration, short_names
from altui.tui.runs_view import BASE, View
from altui.tui.screens.confirm import ConfirmScreen
from altui.tui.screens.run import RunScreen
from altui.tui.widgets.experiments import ExperimentsPane
from altui.tui.widgets.plot import PlotWidget
from altui.tui.widgets.runs_table import RunsTable

TINY = dict(dataset="digits", model="cnn5", device="cpu", rounds=2, initial=20, budget=20, epochs=2)
TINY_TOML = """\
[[experiment]]
name = "toy-a"
dataset = "digits"
model = "cnn5"
methods = ["Random", "WS+init"]
seeds = [0]
rounds = 2
initial = 20
budget = 20
epochs = 2
device = "cpu"

[[experiment]]
name = "toy-b"
dataset = "digits"
model = "cnn5"
methods = ["Entropy"]
seeds = [0, 1]
rounds = 2
initial = 20
budget = 20
epochs = 2
device = "cpu"
"""


def run_spec(name: str, method: str, seed: int, fields: dict) -> dict:
    config = resolve(method, {**fields, "seed": seed}).to_dict()
    return {"name": name, "method": method, "seed": seed, "config": config}


def copy_db(src: Path, dst: Path) -> Path:
    """A consistent copy of a WAL database (its -wal file included)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


async def wait_for(pilot: Pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the dashboard")
        await pilot.pause(0.05)


def drive(app: AltuiApp, script: Callable[[Pilot], Awaitable[None]], size: tuple[int, int] = (160, 48)):
    """Run `script` against the app once its first snapshot is on screen."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: app.snapshot is not None)
            await pilot.pause()
            await script(pilot)

    asyncio.run(main())


def cell(table: RunsTable, run_id: int, column: str) -> str:
    """A cell as the user reads it (each has a leading space that parts it from the one before)."""
    return str(table.get_cell(str(run_id), column))[1:]


# ---- pure parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [8, 10, 13, 16, 20, 30])
def test_experiment_short_names_are_unique_and_fit(width: int) -> None:
    names = [e.name for e in load_spec(Path(__file__).parents[2] / "experiments.toml").experiments]
    names += ["resnet-a", "resnext-a", "a" * 20 + "1", "a" * 20 + "2"]
    short = short_names(names, width)
    assert len(set(short.values())) == len(names)  # never two experiments alike
    assert all(len(s) <= width for s in short.values())
    assert all(short[n] == n for n in names if len(n) <= width)
    if width == 13:  # the runs table's at 80 columns
        assert short["cifar10-resnet18-k1000"] == "c10-r18-k1000" and short["cifar10-resnet18-k250"] == "c10-r18-k250"


# ---- a store written by the real runner --------------------------------------------------------


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two tiny digits runs done by the runner, one marked running (an epoch in), one queued."""
    db = tmp_path_factory.mktemp("real") / "altui.db"
    with Store(db) as store:
        ids = store.enqueue("tiny", "experiments.toml", TINY, [
            run_spec("tiny/WS+init+KD1/s0", "WS+init+KD1", 0, TINY),
            run_spec("tiny/Random/s0", "Random", 0, TINY),
            run_spec("tiny/Entropy/s0", "Entropy", 0, TINY),
            run_spec("tiny/WS+init/s1", "WS+init", 1, TINY),
        ])
        for run_id in ids[:2]:
            store.claim("cpu", run_id)
            assert runner.execute(db, run_id) == "done"
        store.claim("cpu", ids[2])
        store.add_epoch(ids[2], {"round": 0, "epoch": 1, "train_loss": 2.3, "train_accuracy": 0.1, "lr": 0.01,
                                 "images_per_second": 100.0})
        runs = {r["id"]: r for r in store.runs()}
        rounds = {i: store.rounds(i) for i in ids}
    return {"db": db, "ids": ids, "runs": runs, "rounds": rounds}


@pytest.fixture
def dash(real_store: dict, tmp_path: Path) -> Iterator[tuple[AltuiApp, Path, Path]]:
    """A dashboard on a copy of the real store, with a tiny experiments.toml."""
    db = copy_db(real_store["db"], tmp_path / "altui.db")
    toml = tmp_path / "experiments.toml"
    toml.write_text(TINY_TOML)
    yield create_app(db, toml, poll_seconds=0.1, start_worker_on_queue=False), db, toml


def test_runs_table_shows_finished_running_and_queued_runs(real_store: dict, dash) -> None:
    app, _, _ = dash
    done, done2, running, queued = real_store["ids"]

    async def script(pilot: Pilot) -> None:
        table = app.screen.query_one(RunsTable)
        assert table.row_count == 4
        last = real_store["rounds"][done][-1]
        assert cell(table, done, "id") == f"✓ {done}"  # status symbol, no mark
        assert cell(table, done, "status") == "done"
        assert cell(table, done, "experiment") == "tiny"
        assert cell(table, done, "method") == "WS+init+KD1"
        assert cell(table, done, "round") == "2/2"
        assert cell(table, done, "labeled") == str(last["n_labeled"]) == "40"
        assert cell(table, done, "accuracy") == f"{last['accuracy']:.4f}"
        assert cell(table, done, "lambda") == f"{last['weight_decay']:.3g}" == "0.01"
        assert cell(table, done, "channels") == f"{last['effective_channels']}/{last['total_channels']}"
        assert cell(table, done, "epochs") == cell(table, done, "eta") == ""
        assert cell(table, done2, "lambda") == f"{real_store['rounds'][done2][-1]['weight_decay']:.3g}"
        assert cell(table, running, "id") == f"▶ {running}"
        assert cell(table, running, "round") == "0/2"
        assert cell(table, running, "epochs") == "███░░░ 1/2"
        assert cell(table, running, "accuracy") == ""
        # the ETA from the throughput measured on this store: its epochs ran at 100 images/s
        snapshot = app.snapshot
        assert snapshot.throughput[("cnn5", 32)] > 0
        left = seconds_left(snapshot.runs[2], snapshot.throughput)
        assert cell(table, running, "eta") == f"██·· {duration(left)}"  # half its round's epochs done
        assert cell(table, queued, "id") == f"… {queued}"
        assert cell(table, queued, "elapsed") == ""
        assert cell(table, queued, "eta") == f"     {duration(snapshot.eta[queued])}"  # its wait included
        assert snapshot.eta[queued] > left
        status = str(app.screen.query_one("#status").render())
        assert f"ETA {duration(snapshot.eta[queued])}" in status  # the queue's
        context = str(app.screen.query_one("#context-run").render())
        assert context.startswith(f"#{done} tiny/WS+init+KD1/s0 · done · round 2/2")

    drive(app, script, size=(200, 50))


def confirmation(app: AltuiApp) -> str:
    assert isinstance(app.screen, ConfirmScreen), f"no confirmation: {app.screen}"
    return app.screen.text


def test_queueing_asks_first_with_the_run_count_and_the_estimated_time(dash) -> None:
    app, db, toml = dash

    def experiments_in_store() -> set[str]:
        with Store(db) as store:
            return {r["experiment"] for r in store.runs()}

    async def script(pilot: Pilot) -> None:
        pane = app.screen.query_one(ExperimentsPane)
        assert [(name, count) for name, count, _ in pane.rows] == [
            ("", "2/4"), ("toy-a", "0/2"), ("toy-b", "0/2"), ("tiny", "2/4")]  # "all", the file's, the store's
        await pilot.press("a")  # "all" is highlighted: nothing to queue yet, the pane opens
        assert not isinstance(app.screen, ConfirmScreen) and pane.table.has_focus
        await pilot.press("down", "a")  # toy-a
        text = confirmation(app)
        assert "Queue 2 runs of toy-a?" in text and "toy-a: 2 new runs" in text
        configs = [r.config for r in load_spec(toml).get("toy-a").runs]
        expected = estimate(configs, app.snapshot.throughput, 1).wall_seconds
        assert f"estimated {duration(expected)} on 1 slot (the throughput of earlier runs; 240 training images)" in text
        await pilot.press("n")  # no: nothing is written
        await pilot.pause(0.3)
        assert experiments_in_store() == {"tiny"}
        await pilot.press("enter")  # enter on an experiment asks the same
        assert "Queue 2 runs of toy-a?" in confirmation(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: "toy-a" in experiments_in_store() and len(app.snapshot.runs) == 6)
        with Store(db) as store:
            assert {r["name"] for r in store.runs(experiment="toy-a", status="queued")} == {
                "toy-a/Random/s0", "toy-a/WS+init/s0"}
        await pilot.press("a")
        await wait_for(pilot, lambda: "nothing to queue" in last_notice(app))
        # once `altui estimate` has measured toy-b's runs on this machine, the dashboard says its figure
        toy_b = [r.config for r in load_spec(toml).get("toy-b").runs]
        measure_in_cache(db, toy_b)
        with Store(db) as store:
            measured = cached_estimate(store, toy_b).wall_seconds
        # space marks experiments; `a` queues the marked ones
        await pilot.press("down", "space", "a")
        text = confirmation(app)
        assert "Queue 2 runs of toy-b?" in text
        assert f"estimated {duration(measured)} on 1 slot (altui estimate, cpu (test);" in text
        await pilot.press("y")
        await wait_for(pilot, lambda: "toy-b" in experiments_in_store())
        await wait_for(pilot, lambda: pane.rows[2][:2] == ("toy-b", "0/2"))

    drive(app, script)


def measure_in_cache(db: Path, configs: list) -> None:
    """What `altui estimate` would have measured for `configs` on a device called "cpu (test)"."""
    values = {"train": 400.0, "train_kd": 300.0, "train_ll": 350.0, "train_kd_ll": 250.0, "score": 5000.0,
              "warmup": 0.5, "last": 0.02, "round": 0.3, "epoch": 0.01}
    rows = []
    for cfg in configs:
        shape = data_shape(cfg)
        model, inp, batch, compiled, augment = workload_key(cfg, shape, "cpu")
        rows += [{"device": "cpu (test)", "model": model, "input": inp, "batch": batch, "compile": int(compiled),
                  "augment": int(augment), "slots": 1, "kind": kind, "value": values[kind],
                  "torch_version": "test"} for kind in needed_kinds(cfg)]
    with Store(db) as store:
        store.save_throughput(rows)


def last_notice(app: AltuiApp) -> str:
    notes = list(app._notifications)
    return notes[-1].message if notes else ""


def test_cancel_with_marks_asks_first_and_names_the_marked_runs(real_store: dict, dash) -> None:
    app, db, _ = dash
    done, _, running, queued = real_store["ids"]

    def status(run_id: int) -> str:
        with Store(db) as store:
            return store.run(run_id)["status"]

    async def script(pilot: Pilot) -> None:
        table = app.screen.query_one(RunsTable)
        table.move_cursor(row=table.get_row_index(str(queued)))
        await pilot.press("c")  # no marks: the cursor's run, said so
        text = confirmation(app)
        assert f"Cancel run #{queued} (the cursor row)?" in text and f"#{queued} tiny/WS+init/s1 · queued" in text
        await pilot.press("escape")
        await pilot.pause(0.3)
        assert status(queued) == "queued"
        # marks for acting, plotted runs for comparing: `o` plots, it does not choose what c cancels
        table.move_cursor(row=table.get_row_index(str(done)))
        await pilot.press("o")
        table.move_cursor(row=table.get_row_index(str(running)))
        await pilot.press("space", "down", "space")
        assert table.marked == {running, queued} and table.plotted == [done]
        assert cell(table, running, "id") == f"▶●{running}"
        await pilot.press("c")
        text = confirmation(app)
        assert "Cancel the 2 marked runs?" in text
        assert f"#{running} tiny/Entropy/s0 · running (round 0 is ███░░░ 1/2 in)" in text
        assert f"#{queued} tiny/WS+init/s1 · queued" in text and f"#{done} " not in text
        await pilot.press("y")
        await wait_for(pilot, lambda: status(running) == status(queued) == "cancelled")
        assert status(done) == "done" and not table.marked and table.plotted == [done]
        await wait_for(pilot, lambda: cell(table, queued, "id") == f"⊘ {queued}")
        # retry: the cursor's run; a done run cannot be, and nothing is asked
        table.move_cursor(row=table.get_row_index(str(done)))
        await pilot.press("r")
        assert not isinstance(app.screen, ConfirmScreen) and "nothing to retry" in last_notice(app)
        table.move_cursor(row=table.get_row_index(str(queued)))
        await pilot.press("r")
        assert f"Retry run #{queued} (the cursor row)?" in confirmation(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: status(queued) == "queued")

    drive(app, script)


def test_bulk_cancel_and_retry_by_experiment_and_status(real_store: dict, dash) -> None:
    app, db, _ = dash
    ids = real_store["ids"]

    def statuses() -> list[str]:
        with Store(db) as store:
            return [store.run(i)["status"] for i in ids]

    async def script(pilot: Pilot) -> None:
        table = app.screen.query_one(RunsTable)
        pane = app.screen.query_one(ExperimentsPane)
        await pilot.press("tab", "down", "down", "down")  # the pane: all, toy-a, toy-b, tiny
        assert pane.table.highlighted_name == "tiny" and table.view.experiment == "tiny"
        await pilot.press("c")  # in the pane: the experiment's queued and running runs
        text = confirmation(app)
        assert "Cancel the queued or running runs of tiny?" in text
        assert f"#{ids[2]} tiny/Entropy/s0 · running" in text and f"#{ids[3]} tiny/WS+init/s1 · queued" in text
        await pilot.press("y")
        await wait_for(pilot, lambda: statuses() == ["done", "done", "cancelled", "cancelled"])
        # by status: filter on it, mark every run shown, retry them
        await pilot.press("tab", "slash", *"cancelled", "enter")
        await wait_for(pilot, lambda: [r["id"] for r in table.shown] == ids[2:])
        await pilot.press("asterisk", "r")
        text = confirmation(app)
        assert "Retry the 2 marked runs?" in text and f"#{ids[2]} " in text and f"#{ids[3]} " in text
        await pilot.press("y")
        await wait_for(pilot, lambda: statuses() == ["done", "done", "queued", "queued"])

    drive(app, script, size=(80, 24))


def test_escape_clears_marks_then_plotted_runs_then_filters(real_store: dict, dash) -> None:
    app, _, _ = dash

    async def script(pilot: Pilot) -> None:
        table = app.screen.query_one(RunsTable)
        await pilot.press("h", "space", "o")
        assert table.marked and table.plotted and table.view.hide_finished
        await pilot.press("escape")
        assert not table.marked and table.plotted
        await pilot.press("escape")
        assert not table.plotted and table.view.hide_finished
        await pilot.press("escape")
        assert table.view == View()

    drive(app, script)


def test_filter_sort_and_hide(real_store: dict, dash) -> None:
    app, _, _ = dash
    done, done2, running, queued = real_store["ids"]

    async def script(pilot: Pilot) -> None:
        table = app.screen.query_one(RunsTable)

        def shown() -> list[int]:
            return [r["id"] for r in table.shown]

        assert shown() == [done, done2, running, queued]
        await pilot.press("slash", *"ws", "q")  # typed into the filter: `q` does not quit here
        assert app.is_running and table.view.text == "wsq" and shown() == []
        await pilot.press("backspace")
        assert shown() == [done, queued]  # WS+init+KD1, WS+init
        await pilot.press("enter")
        assert table.has_focus and "/ws" in str(app.screen.query_one("#context-view").render())
        await pilot.press("slash", "backspace", "backspace", *"running")
        assert shown() == [running]  # by status
        await pilot.press("escape")  # clears the filter box
        assert shown() == [done, done2, running, queued]
        await pilot.press("h")  # done and cancelled runs hidden
        assert shown() == [running, queued]
        await pilot.press("h", "s")  # sort by the next column: status
        assert table.view.sort == "status" and shown() == [running, queued, done, done2]
        await pilot.press("S")
        assert shown() == [done2, done, queued, running]
        # a header click sorts by its column, a second click reverses
        acc = table.columns_shown.index("accuracy")
        x = sum(column.width for column in list(table.columns.values())[:acc]) + 2
        await pilot.click(RunsTable, offset=(x, 0))
        assert table.view.sort == "accuracy" and not table.view.reverse
        accuracies = [real_store["rounds"][i][-1]["accuracy"] for i in (done, done2)]
        assert shown()[:2] == ([done, done2] if accuracies[0] <= accuracies[1] else [done2, done])
        assert shown()[2:] == [running, queued]  # no accuracy yet: last either way
        await pilot.click(RunsTable, offset=(x, 0))
        assert table.view.reverse and shown()[2:] == [running, queued]
        assert "sort acc▼" in str(app.screen.query_one("#context-view").render())

    drive(app, script)


def test_plots_show_the_highlighted_then_plotted_runs_then_method_means(real_store: dict, dash) -> None:
    app, _, _ = dash
    first, second = real_store["ids"][:2]
    r1, r2 = real_store["rounds"][first], real_store["rounds"][second]

    def percent(rows: list[dict]) -> list:
        return pytest.approx([100 * r["accuracy"] for r in rows])

    async def script(pilot: Pilot) -> None:
        acc = app.screen.query_one("#plot-accuracy", PlotWidget)
        wd = app.screen.query_one("#plot-lambda", PlotWidget)
        ch = app.screen.query_one("#plot-channels", PlotWidget)
        plots = app.screen.query_one("#plots")
        label1, label2 = f"#{first} WS+init+KD1 s0", f"#{second} Random s0"
        assert list(acc.series) == [label1]  # the highlighted run
        assert acc.series[label1] == ([20.0, 40.0], percent(r1))
        assert wd.series == {label1: ([0.0, 1.0], [0.02, 0.01])}  # inverse schedule: lambda_0 N_0 / N_t
        assert ch.series[label1] == ([0.0, 1.0], [r["effective_channels"] for r in r1])
        assert f"#{first} tiny/WS+init+KD1/s0" in plots.border_title
        await pilot.press("space", "down", "space")  # marks are for acting: the plot follows the cursor
        assert list(acc.series) == [label2]
        await pilot.press("escape", "up", "o", "down", "o")  # two plotted runs, overlaid
        assert list(acc.series) == [label1, label2] and plots.border_title == f"plotted: #{first} #{second}"
        assert acc.series[label2] == ([20.0, 40.0], percent(r2))
        assert wd.series[label2][1] == [r["weight_decay"] for r in r2] == [0.01, 0.01]  # fixed decay
        assert acc.legend == [label1, label2]
        await pilot.press("m")  # the experiment's methods: their mean over seeds (one seed here)
        assert set(acc.series) == {"WS+init+KD1", "Random"}
        assert acc.series["Random"] == ([20.0, 40.0], percent(r2))
        assert acc.bands["Random"][1] == acc.bands["Random"][2] == acc.series["Random"][1]
        assert plots.border_title == "tiny — mean ± 95% CI over 1 seed"
        await pilot.press("m")
        assert list(acc.series) == [label1, label2]

    drive(app, script, size=(120, 40))


@pytest.mark.parametrize("key", ["q", "ctrl+q"])
def test_quit_keys_leave_the_runs_going_and_say_so(dash, key: str) -> None:
    app, _, _ = dash

    async def script(pilot: Pilot) -> None:
        await pilot.press(key)
        await pilot.pause(0.2)
        assert not pilot.app.is_running

    drive(app, script)
    assert app.return_code == 0
    assert app.quit_notice == "altui: the dashboard closed; 1 queued run(s) wait for a worker: `altui worker start`"


def test_pause_worker_and_next_plot_keys(dash, monkeypatch: pytest.MonkeyPatch) -> None:
    app, db, _ = dash
    started = []
    monkeypatch.setattr(app.backend, "start_worker", lambda: started.append(1) or "started a worker")

    async def script(pilot: Pilot) -> None:
        await pilot.press("p")
        await wait_for(pilot, lambda: app.snapshot.paused)
        assert "queue paused" in str(app.screen.query_one("#status").render())
        with Store(db) as store:
            assert store.paused()
        await pilot.press("p")
        await wait_for(pilot, lambda: not app.snapshot.paused)
        await pilot.press("w")
        await wait_for(pilot, lambda: started == [1])
        plots = app.screen.query_one("#plots")
        assert plots.border_title.startswith("accuracy % vs labels")  # one plot at a time below 120 columns
        await pilot.press("g")
        assert plots.border_title.startswith("λ_t vs round") and app.screen.query_one("#plot-lambda").display
        await pilot.press("g", "g")
        assert plots.border_title.startswith("accuracy % vs labels")

    drive(app, script, size=(80, 24))


def test_keys_panel_and_command_palette_offer_every_action(dash) -> None:
    app, _, _ = dash

    async def script(pilot: Pilot) -> None:
        await pilot.press("question_mark")  # Textual's key panel, from the bindings
        assert app.screen.query("HelpPanel")
        console = Console(width=120, record=True, file=io.StringIO())
        console.print(app.screen.query_one("KeyPanel BindingsTable").render_bindings_table())
        keys = console.export_text()
        for description in ("queue", "cancel", "retry", "filter", "mark", "plot", "means", "quit", "pause"):
            assert description in keys
        await pilot.press("question_mark")
        assert not app.screen.query("HelpPanel")
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Queue", "Cancel", "Retry", "Filter", "Hide done", "Means", "Next plot", "Clear", "Experiments",
                "Mark", "Mark shown", "Plot", "Open", "Sort", "Reverse", "Quit", "Pause", "Worker", "Keys"} <= titles
        assert "Cursor up" not in titles  # a table's own cursor keys are not actions
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"hide done")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.query_one(RunsTable).view.hide_finished)

    drive(app, script)


def test_at_80_columns_the_results_fit_without_scrolling_sideways(real_store: dict, dash) -> None:
    app, _, _ = dash

    async def script(pilot: Pilot) -> None:
        table = app.screen.query_one(RunsTable)
        assert set(BASE) <= set(table.columns_shown)
        assert table.virtual_size.width <= table.size.width  # nothing to scroll to
        assert not app.screen.query_one(ExperimentsPane).display  # the pane opens on tab
        await pilot.press("tab")
        assert app.screen.query_one(ExperimentsPane).display
        await pilot.press("tab")
        assert not app.screen.query_one(ExperimentsPane).display and table.has_focus
        plot = app.screen.query_one("#plot-accuracy", PlotWidget)
        rows = str(plot.render()).split("└")[0].splitlines()
        assert len([line for line in rows if "┤" in line or "│" in line]) >= 8  # data rows

    drive(app, script, size=(80, 24))


def test_slurm_runs_show_pending_and_their_job_and_node(real_store: dict, dash) -> None:
    app, db, _ = dash
    _, _, running, queued = real_store["ids"]
    with Store(db) as store:
        store.db.conn.execute("UPDATE runs SET slurm_job_id = '4242', node = 'node3' WHERE id = ?", (running,))
        store.db.conn.execute("UPDATE runs SET slurm_job_id = '4243', slurm_reason = 'Priority' WHERE id = ?",
                              (queued,))
        store.db.conn.commit()

    async def script(pilot: Pilot) -> None:
        table = app.screen.query_one(RunsTable)
        assert cell(table, queued, "status") == "queued·pd" and cell(table, queued, "id") == f"◌ {queued}"
        assert "job" in table.columns_shown  # shown first of the extra columns once a run has a job
        assert cell(table, running, "job") == "4242@node3" and cell(table, queued, "job") == "4243 (Priority)"
        table.move_cursor(row=table.get_row_index(str(queued)))
        await pilot.pause()
        assert "job 4243 (Priority)" in str(app.screen.query_one("#context-run").render())
        table.move_cursor(row=table.get_row_index(str(running)))
        await pilot.pause()
        assert "job 4242@node3" in str(app.screen.query_one("#context-run").render())
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail is not None)
        assert "· running · job 4242@node3" in str(app.screen.query_one("#status").render())

    drive(app, script)


def test_validation_errors_show_with_their_line_and_the_file_is_reloaded(dash) -> None:
    app, _, toml = dash
    broken = TINY_TOML.replace("rounds = 2", 'rounds = "two"', 1)
    line = broken.splitlines().index('rounds = "two"') + 1

    async def script(pilot: Pilot) -> None:
        pane = app.screen.query_one(ExperimentsPane)
        assert not pane.state.issues
        toml.write_text(broken)
        await wait_for(pilot, lambda: bool(pane.state.issues))
        text = str(pane.query_one("#experiments-issues").render())
        assert f"line {line}: " in text and "rounds" in text
        assert [name for name, _, _ in pane.rows] == ["", "tiny"]  # only what the store holds
        toml.write_text(TINY_TOML.replace('name = "toy-b"', 'name = "toy-c"'))  # fixed: reloaded
        await wait_for(pilot, lambda: [name for name, _, _ in pane.rows] == ["", "toy-a", "toy-c", "tiny"])
        assert not pane.query_one("#experiments-issues").display

    drive(app, script)


def test_run_view_shows_channels_histograms_and_log(real_store: dict, dash) -> None:
    app, db, _ = dash
    run_id = real_store["ids"][0]
    rounds = real_store["rounds"][run_id]

    async def script(pilot: Pilot) -> None:
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail is not None)
        screen = app.screen
        assert screen.run_id == run_id
        channels = screen.query_one("#channels")
        assert channels.row_count == 4  # cnn5's four batch-norm layers
        assert str(channels.get_row_at(0)[1]) == "32"
        layers = screen.query_one("#plot-layers", PlotWidget)
        assert len(layers.series) == 4 and all(x == [0, 1] for x, _ in layers.series.values())
        gamma = screen.query_one("#plot-gamma", PlotWidget)
        assert gamma.series["round 1"][1] == json.loads(rounds[1]["gamma_counts"])
        await pilot.press("left")
        assert gamma.series["round 0"][1] == json.loads(rounds[0]["gamma_counts"])
        picks = screen.query_one("#plot-picks", PlotWidget)
        assert picks.series["round 0"][1] == json.loads(rounds[0]["pick_class_counts"])
        assert "round 1: accuracy" in str(screen.query_one("#log-text").render())
        await pilot.press("c")  # a done run: nothing to cancel, nothing asked
        assert isinstance(app.screen, RunScreen) and "nothing to cancel" in last_notice(app)
        await pilot.press("question_mark")
        assert screen.query("HelpPanel")
        await pilot.press("question_mark", "escape")
        assert not isinstance(app.screen, RunScreen)
        assert app.backend.detail_run is None

    drive(app, script)


def test_run_view_switches_between_all_layers_and_the_paper_s_figure_5_layer(real_store: dict, dash) -> None:
    app, db, _ = dash
    run_id = real_store["ids"][0]  # cnn5: the paper layer is its first batch norm
    with Store(db) as store:
        gammas = {g["round"]: json.loads(g["abs_gamma"]) for g in store.gammas(run_id, "blocks.0.0.1")}
        counted = {c["round"]: c for c in store.channels(run_id) if c["layer"] == "blocks.0.0.1"}

    async def script(pilot: Pilot) -> None:
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail is not None)
        layers = app.screen.query_one("#plot-layers", PlotWidget)
        gamma = app.screen.query_one("#plot-gamma", PlotWidget)
        assert layers.title == "effective channels: all 4 layers · l: paper layer" and len(layers.series) == 4
        assert gamma.title.startswith("|γ|, all layers, round 1") and not gamma.vlines
        await pilot.press("l")
        assert layers.title == "effective channels: paper layer blocks.0.0.1 (Figure 5) · l: all layers"
        assert layers.series == {"blocks.0.0.1": ([0, 1], [counted[0]["effective"], counted[1]["effective"]])}
        below = counted[1]["channels"] - counted[1]["effective"]
        assert gamma.title == f"round 1: {below}/32 below mean/10 · |γ| of paper layer blocks.0.0.1  ←/→"
        ((label, line),) = gamma.vlines.items()
        assert line == pytest.approx(sum(gammas[1]) / len(gammas[1]) / 10, rel=1e-5)
        assert label == f"mean/10 = {line:.3g}" and label in gamma.legend
        assert sum(gamma.series["round 1"][1]) == 32  # every channel of the layer in the histogram
        await pilot.press("left")  # the same view of round 0
        assert gamma.title.startswith(f"round 0: {counted[0]['channels'] - counted[0]['effective']}/32 below")
        await pilot.press("l")
        assert len(layers.series) == 4 and gamma.title.startswith("|γ|, all layers, round 0")

    drive(app, script)


def test_two_methods_overlaid_show_the_paper_s_claim_about_them(tmp_path: Path) -> None:
    db = tmp_path / "altui.db"
    with Store(db) as store:  # WS+init beats Entropy+init by 2 points on every seed: claim 1 holds
        specs = [run_spec(f"pair/{m}/s{seed}", m, seed, TINY) for m in ("Entropy+init", "WS+init") for seed in range(3)]
        ids = store.enqueue("pair", "experiments.toml", TINY, specs)
        for run_id, spec in zip(ids, specs, strict=True):
            store.claim("cpu", run_id)
            bonus = 0.02 if spec["method"] == "WS+init" else 0.0
            for t in range(2):
                acc = 0.5 + 0.1 * t + 0.01 * spec["seed"] + bonus
                store.add_round(run_id, {
                    "round": t, "n_labeled": 20 + 20 * t, "accuracy": acc, "test_loss": 1 - acc, "weight_decay": 0.01,
                    "lr": 0.01, "effective_channels": 224, "total_channels": 224, "conv_l2": 1.0,
                    "train_seconds": 1.0, "acquire_seconds": 0.1, "pick_mean_score": 0.5, "pick_class_counts": "[1]",
                    "gamma_bins": "[0, 1]", "gamma_counts": "[224]"}, [], [])
            store.finish(run_id, "done")
    app = create_app(db, tmp_path / "experiments.toml", poll_seconds=0.1, start_worker_on_queue=False)

    async def script(pilot: Pilot) -> None:
        line = app.screen.query_one("#claim-line")
        assert not line.display  # one run plotted: nothing compared
        await pilot.press("m")  # the experiment's method means: its two methods overlaid
        await pilot.pause()
        text = str(line.render())
        assert line.display and text.startswith("claim 1, §4.2–4.4: WS+init − Entropy+init accuracy +2.00 pp")
        assert text.endswith("round 1 (40 labels), 3 seeds, p <0.001: supported")

    drive(app, script)


def test_a_plot_notes_identical_curves_and_draws_vertical_lines(dash) -> None:
    app, _, _ = dash

    async def script(pilot: Pilot) -> None:
        plot = app.screen.query_one("#plot-lambda", PlotWidget)
        plot.set_data({"#2 Random s0": ([0, 1], [0.01, 0.01]), "#5 Random s1": ([0, 1], [0.01, 0.01]),
                       "#3 WS s0": ([0, 1], [0.02, 0.01])}, vlines={"mean/10": 0.5})
        assert plot.legend == ["#2 Random s0", "#5 Random s1 = #2", "#3 WS s0", "mean/10"]
        text = str(plot.render())
        assert "x #5 Random s1 = #2" in text and "│ mean/10" in text

    drive(app, script)


def test_a_failing_poll_is_shown_not_raised(dash) -> None:
    app, _, _ = dash

    async def script(pilot: Pilot) -> None:
        real = app.backend.snapshot
        locked = {"now": True}  # until the test has seen the error: a fast poll could clear it unseen

        def broken():
            if locked["now"]:
                raise sqlite3.OperationalError("database is locked")
            return real()

        app.backend.snapshot = broken
        await wait_for(pilot, lambda: app.error is not None)
        assert "database is locked" in str(app.screen.query_one("#status").render())
        locked["now"] = False
        await wait_for(pilot, lambda: app.error is None)  # the next poll works again
        assert app.is_running

    drive(app, script)


def test_an_idle_dashboard_reads_the_store_again_only_when_it_changes(real_store: dict, dash) -> None:
    """Polls of an unchanged store reuse the last read (the clock moves on); a cancel from another
    program is read and shown at the next poll."""
    app, db, _ = dash
    done, done2, running, queued = real_store["ids"]
    reads = []
    real = app.backend._read
    app.backend._read = lambda *args: reads.append(1) or real(*args)

    async def script(pilot: Pilot) -> None:
        await pilot.pause(1.0)  # ~10 polls at 0.1 s
        assert len(reads) <= 1, len(reads)  # (one when the first poll ran before the patch)
        assert app.snapshot.unchanged
        with Store(db) as store:
            store.cancel([queued])
        await wait_for(pilot, lambda: cell(app.screen.query_one(RunsTable), queued, "status").startswith("cancelled"))
        assert not app.snapshot.unchanged or len(reads) >= 1

    drive(app, script)


def test_ui_without_a_terminal_points_to_ls(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["--db", str(tmp_path / "a.db"), "ui"])
    assert result.exit_code == 1
    assert "terminal" in result.output and "altui ls" in result.output


# ---- snapshots on a fixed store -------------------------------------------------------------------

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(minutes=30)
LAYERS = (("blocks.0.0.1", 32), ("blocks.1.0.1", 64), ("blocks.2.0.1", 64), ("blocks.3.0.1", 64))


def fixed_store(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hand-made rows with timestamps from a fake clock that ticks 13 s a call."""
    ticks = iter(range(10_000))
    monkeypatch.setattr(altui.store.connection, "now", lambda: (T0 + timedelta(seconds=13 * next(ticks))).isoformat())
    fields = {"dataset": "digits", "model": "cnn5", "rounds": 4, "initial": 50, "budget": 50, "epochs": 15}
    with Store(db) as store:
        ids = store.enqueue("digits-demo", "experiments.toml", fields, [
            run_spec("digits-demo/Random/s0", "Random", 0, fields),
            run_spec("digits-demo/WS+init+KD1/s0", "WS+init+KD1", 0, fields),
            run_spec("digits-demo/WS+init+KD1/s1", "WS+init+KD1", 1, fields),
            run_spec("digits-demo/Entropy+init/s0", "Entropy+init", 0, fields),
            run_spec("digits-demo/Random/s1", "Random", 1, fields),
        ])
        curves = {  # accuracy, effective channels per round
            ids[0]: ([0.55, 0.68, 0.75, 0.80], [224, 223, 221, 220], "fixed"),
            ids[1]: ([0.60, 0.74, 0.82, 0.86], [224, 205, 188, 171], "inverse"),
            ids[2]: ([0.58, 0.71], [224, 209], "inverse"),
            ids[3]: ([0.57], [224], "fixed"),
        }
        for run_id, (accs, effs, schedule) in curves.items():
            store.claim("cpu", run_id)
            for r, (acc, eff) in enumerate(zip(accs, effs, strict=True)):
                n = 50 * (r + 1)
                store.log(run_id, f"round {r}: {n} labels")
                gamma = [0] * 10
                gamma[9 - r] = eff
                gamma[0] = 224 - eff
                picks = [(5 + 3 * c + r) % 9 for c in range(10)] if r < 3 else [0] * 10
                row = {
                    "round": r, "n_labeled": n, "accuracy": acc, "test_loss": 1 - acc,
                    "weight_decay": 0.02 * 50 / n if schedule == "inverse" else 0.005, "lr": 0.01,
                    "effective_channels": eff, "total_channels": 224, "conv_l2": 8.0 - r,
                    "train_seconds": 30.0, "acquire_seconds": 2.0, "pick_mean_score": 1.5,
                    "pick_class_counts": json.dumps(picks), "gamma_counts": json.dumps(gamma),
                    "gamma_bins": json.dumps([i / 10 for i in range(11)]),
                }
                layers = [{"layer": name, "channels": ch, "effective": ch - (224 - eff) * ch // 224}
                          for name, ch in LAYERS]
                store.add_round(run_id, row, layers, [])
                store.log(run_id, f"round {r}: accuracy {acc:.4f}, {eff} effective channels")
        for epoch in range(1, 10):
            store.add_epoch(ids[2], {"round": 2, "epoch": epoch, "train_loss": 1.0 / epoch,
                                     "train_accuracy": 0.5, "lr": 0.01, "images_per_second": 900.0})
        store.finish(ids[0], "done")
        store.finish(ids[1], "done")
        store.log(ids[3], "failed: out of memory", "error")
        store.finish(ids[3], "failed", "Traceback (most recent call last):\nRuntimeError: out of memory")


@pytest.fixture
def fixed_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AltuiApp:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    Path("experiments.toml").write_text(TINY_TOML)
    fixed_store(Path("runs/altui.db"), monkeypatch)
    db, toml = Path("runs/altui.db"), Path("experiments.toml")
    yield create_app(db, toml, now=lambda: NOW, start_worker_on_queue=False)
    monkeypatch.undo()
    time.tzset()


def ready(*keys: str) -> Callable[[Pilot], Awaitable[None]]:
    """Wait for the first snapshot, press `keys`, and wait for what they open to be drawn."""

    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press(*keys)
        if "enter" in keys:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail is not None)
        await pilot.pause()

    return run_before


SIZES = dict(argvalues=[(80, 24), (120, 40)], ids=["80x24", "120x40"])


@pytest.mark.parametrize("size", **SIZES)
def test_main_screen_snapshot(fixed_app: AltuiApp, snap_compare, size: tuple[int, int]) -> None:
    """Runs #1 and #2 plotted, #4 marked, the cursor on #4."""
    assert snap_compare(fixed_app, terminal_size=size, run_before=ready("o", "down", "o", "down", "down", "space"))


@pytest.mark.parametrize("size", **SIZES)
def test_main_screen_means_snapshot(fixed_app: AltuiApp, snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(fixed_app, terminal_size=size, run_before=ready("m"))


@pytest.mark.parametrize("size", **SIZES)
def test_run_view_snapshot(fixed_app: AltuiApp, snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(fixed_app, terminal_size=size, run_before=ready("down", "enter"))


def test_method_means_carry_the_bootstrap_band_over_seeds(fixed_app: AltuiApp) -> None:
    async def script(pilot: Pilot) -> None:
        await pilot.press("m")  # the highlighted run's experiment: digits-demo
        acc = pilot.app.screen.query_one("#plot-accuracy", PlotWidget)
        xs, means = acc.series["WS+init+KD1"]  # seeds 0 and 1 at rounds 0-1, seed 0 alone after
        assert xs == [50.0, 100.0, 150.0, 200.0]
        assert means == pytest.approx([59.0, 72.5, 82.0, 86.0])
        _, low, high = acc.bands["WS+init+KD1"]
        assert low[:2] == pytest.approx([58.0, 71.0]) and high[:2] == pytest.approx([60.0, 74.0])
        assert low[2:] == high[2:] == means[2:]  # one seed: no band
        assert acc.series["Entropy+init"] == ([50.0], pytest.approx([57.0]))

    drive(fixed_app, script, size=(80, 24))
