"""The dashboard, driven by Textual's Pilot: on a store written by the real runner (values, keys,
plots), and snapshots of its screens on a fixed hand-made store."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.pilot import Pilot
from typer.testing import CliRunner

import altui.store.connection
from altui.al.presets import resolve
from altui.cli import app as cli_app
from altui.execution import runner
from altui.spec import load_spec
from altui.speed.eta import estimate
from altui.speed.plan import cached_estimate, data_shape, needed_kinds, workload_key
from altui.store import Store
from altui.tui.app import AltuiApp, create_app
from altui.tui.format import duration, short_names
from altui.tui.runs_view import BASE, View
from altui.tui.screens.confirm import ConfirmScreen
from altui.tui.screens.diff import DiffScreen
from altui.tui.screens.keys import KeysScreen
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
batch_size = 16
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
        assert snapshot.speeds.rates and all(rate > 0 for rate in snapshot.speeds.rates.values())
        left = snapshot.speeds.seconds_left(snapshot.runs[2])
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
        expected = estimate(configs, app.snapshot.speeds, 1).wall_seconds
        assert f"estimated {duration(expected)} on 1 slot (the speed of earlier runs here; 240 training images)" in text
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
        # toy-b's batch size never ran here: once `altui estimate` has measured its runs on this machine,
        # the dashboard says its figure
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


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_keys_screen_lists_altui_s_keys_first_and_the_palette_offers_every_action(
        dash, size: tuple[int, int]) -> None:
    app, _, _ = dash

    async def script(pilot: Pilot) -> None:
        await pilot.press("question_mark")  # every key, full screen
        assert isinstance(app.screen, KeysScreen)
        widget = app.screen.query_one("#keys-text")
        lines = [strip.text.rstrip() for strip in widget.render_lines(widget.region.reset_offset)]
        assert lines[0].startswith("altui keys") and lines[2] == "main screen"  # altui's own first
        visible = lines[: size[1] - 1]
        for key, what in (("a", "queue the marked experiments"), ("c", "cancel the marked runs"),
                          ("r", "retry the marked runs"), ("R", "retry every failed run"), ("/", "show the runs"),
                          ("m", "plots: one experiment's method means")):
            assert any(line.split()[:1] == [key] and what in line for line in visible), (key, visible)
        text = " ".join(" ".join(lines).split())  # descriptions wrap under their own column
        for what in ("mark the run", "add the run's curves", "the next run (as down)", "quit the dashboard",
                     "pause or resume the queue", "the experiments pane <-> the runs table"):
            assert what in text
        assert "mark mark" not in text and text.index("everywhere") < text.index(" also ")
        assert all(len(line) <= size[0] for line in visible)
        await pilot.press("question_mark")
        assert not isinstance(app.screen, KeysScreen)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Queue", "Cancel", "Retry", "Retry failed", "Filter", "Hide done", "Means", "Next plot", "Clear",
                "Experiments", "Mark", "Mark shown", "Plot", "Open", "Sort", "Reverse", "Quit", "Pause", "Worker",
                "Keys", "Export summary (CSV)", "Report (Markdown)", "Screenshot"} <= titles
        assert "Cursor up" not in titles  # a table's own cursor keys are not actions
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"hide done")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.query_one(RunsTable).view.hide_finished)

    drive(app, script, size=size)


def test_palette_screenshot_export_and_report_write_into_the_store_s_folder(dash) -> None:
    app, db, _ = dash

    async def script(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: app.snapshot is not None)
        app.deliver_screenshot()
        await wait_for(pilot, lambda: "Saved screenshot" in last_notice(app))
        assert list(db.parent.glob("*.svg"))
        assert app.shown_experiment() == "tiny"  # the cursor run's
        app.action_export_summary()
        await wait_for(pilot, lambda: "wrote" in last_notice(app))
        csv = db.parent / "exports" / "tiny-summary.csv"
        assert last_notice(app) == f"wrote {len(csv.read_text().splitlines()) - 1} rows to {csv}"
        assert csv.read_text().startswith("experiment,")
        app.action_write_report()
        await wait_for(pilot, lambda: "reports" in last_notice(app))
        assert (db.parent / "reports" / "tiny.md").read_text().startswith("# ")

    drive(app, script)


def test_filter_sort_and_hidden_runs_are_kept_across_reopenings(dash) -> None:
    app, db, toml = dash

    async def first(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("h", "s", "S", "j")  # hide done, sort by the next column, reversed; j moves down
        await wait_for(pilot, lambda: "dashboard_view" in Store(db).settings())

    drive(app, first)
    with Store(db) as store:
        saved = json.loads(store.settings()["dashboard_view"])
    assert saved["hide_finished"] is True and saved["reverse"] is True and saved["sort"] != "id"
    again = create_app(db, toml, poll_seconds=0.1, start_worker_on_queue=False)

    async def second(pilot: Pilot) -> None:
        table = again.screen.query_one(RunsTable)
        await wait_for(pilot, lambda: table.view.hide_finished)
        assert (table.view.sort, table.view.reverse) == (saved["sort"], True)
        assert "hiding done, cancelled (h)" in str(again.screen.query_one("#context-view").render())

    drive(again, second)


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
        await pilot.press("t")  # the teacher diagnostics: round 1's teacher is round 0's model
        with Store(db) as store:
            teacher = store.teacher(run_id)
        assert picks.series["teacher: new picks"] == ([1], [round(100 * teacher[0]["teacher_picks_accuracy"], 1)])
        assert set(picks.series) == {"teacher: test", "teacher: new picks", "student fit: new picks"}
        await pilot.press("t")
        assert "round 0" in picks.series
        await pilot.press("c")  # a done run: nothing to cancel, nothing asked
        assert isinstance(app.screen, RunScreen) and "nothing to cancel" in last_notice(app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, KeysScreen) and app.screen.sections[0][0] == "run view"
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


def paired_store(tmp_path: Path, methods: dict[str, float], seeds: int = 3) -> Path:
    """A finished experiment "pair": each method's accuracy is 0.5 + 0.1 per round + 0.01 per seed +
    its bonus, so that every seed agrees on the differences."""
    db = tmp_path / "altui.db"
    with Store(db) as store:
        specs = [run_spec(f"pair/{m}/s{seed}", m, seed, TINY) for m in methods for seed in range(seeds)]
        ids = store.enqueue("pair", "experiments.toml", TINY, specs)
        for run_id, spec in zip(ids, specs, strict=True):
            store.claim("cpu", run_id)
            for t in range(2):
                acc = 0.5 + 0.1 * t + 0.01 * spec["seed"] + methods[spec["method"]]
                store.add_round(run_id, {
                    "round": t, "n_labeled": 20 + 20 * t, "accuracy": acc, "test_loss": 1 - acc, "weight_decay": 0.01,
                    "lr": 0.01, "effective_channels": 224, "total_channels": 224, "conv_l2": 1.0,
                    "train_seconds": 1.0, "acquire_seconds": 0.1, "pick_mean_score": 0.5, "pick_class_counts": "[1]",
                    "gamma_bins": "[0, 1]", "gamma_counts": "[224]"}, [], [])
            store.finish(run_id, "done")
    return db


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_overlaid_methods_show_the_paper_s_claims_verdict_first(tmp_path: Path, size: tuple[int, int]) -> None:
    # WS+init beats Entropy+init by 2 points and WS by 1 on every seed: claims 1 and 3 hold
    db = paired_store(tmp_path, {"Entropy+init": 0.0, "WS+init": 0.02, "WS": 0.01})
    app = create_app(db, tmp_path / "experiments.toml", poll_seconds=0.1, start_worker_on_queue=False)

    async def script(pilot: Pilot) -> None:
        line = app.screen.query_one("#claim-line")
        assert not line.display  # one run plotted: nothing compared
        await pilot.press("m")  # the experiment's method means: its three methods overlaid
        await pilot.pause()
        lines = str(line.render()).split("\n")
        assert lines == [
            "supported (p <0.001, 3 seeds) · WS+init − Entropy+init accuracy +2.00 pp [+2.00, +2.00] · "
            "claim 1, §4.2–4.4, round 1 (40 labels)",
            "supported (p <0.001, 3 seeds) · WS+init − WS accuracy +1.00 pp [+1.00, +1.00] · "
            "claim 3, §5.1, round 1 (40 labels)",
            "no claim of the paper: Entropy+init vs WS"]
        # on screen a line each; a narrow screen cuts the detail at the end, never the verdict
        rows = [strip.text.rstrip() for strip in line.render_lines(line.region.reset_offset)]
        assert len(rows) == line.region.height == 3
        for row, whole in zip(rows, lines, strict=True):
            shown = row.strip().rstrip("…")
            assert whole.startswith(shown) and len(row) <= size[0]
            verdict = whole.split(" · ")[0]
            assert shown.startswith(verdict)  # the verdict and its evidence, whole
        if size[0] == 80:
            assert any(row.endswith("…") for row in rows)  # the detail was cut, not the verdict

    drive(app, script, size=size)


def test_compared_runs_whose_curves_share_every_cell_are_flagged(tmp_path: Path) -> None:
    """Two runs 0.1 points apart draw into the same cells at 80x24: the legend says which one lies under
    which, instead of showing a marker that is nowhere on the plot."""
    db = paired_store(tmp_path, {"Entropy+init": 0.0, "WS+init": 0.001}, seeds=1)
    app = create_app(db, tmp_path / "experiments.toml", poll_seconds=0.1, start_worker_on_queue=False)

    async def script(pilot: Pilot) -> None:
        await pilot.press("o", "down", "o")  # plot both runs
        plot = app.screen.query_one("#plot-accuracy", PlotWidget)
        await wait_for(pilot, lambda: len(plot.series) == 2 and plot.hidden)
        first, second = plot.series
        assert plot.hidden == {first: second}
        assert f"{first} under {second.split()[0]}" in plot.legend

    drive(app, script, size=(80, 24))


def test_compare_mode_says_when_the_compared_runs_ran_differently(tmp_path: Path) -> None:
    """WS+init's runs ran with 2 threads, Entropy+init's with 1: the compare footer says so under the
    claim, naming the runs, since the difference may come from that alone."""
    db = paired_store(tmp_path, {"Entropy+init": 0.0, "WS+init": 0.02}, seeds=2)
    with Store(db) as store:
        store.db.conn.execute("UPDATE runs SET torch_version = '2.14.1', threads = "
                              "CASE method WHEN 'WS+init' THEN 2 ELSE 1 END")
        store.db.conn.commit()
    app = create_app(db, tmp_path / "experiments.toml", poll_seconds=0.1, start_worker_on_queue=False)

    async def script(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("m")
        await pilot.pause()
        lines = str(app.screen.query_one("#claim-line").render()).split("\n")
        assert lines[0].startswith("supported") and "WS+init − Entropy+init" in lines[0]
        assert lines[-1] == "⚠ the runs ran differently: threads: 1 (#1, #2), 2 (#3, #4)"

    drive(app, script, size=(80, 24))


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_two_marked_runs_side_by_side(tmp_path: Path, size: tuple[int, int]) -> None:
    """d on two marked runs: what differs in their settings, then both runs' rounds; with one marked
    it says what to do."""
    db = paired_store(tmp_path, {"Entropy+init": 0.0, "WS+init": 0.02}, seeds=1)
    app = create_app(db, tmp_path / "experiments.toml", poll_seconds=0.1, start_worker_on_queue=False)

    async def script(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("space", "d")
        assert last_notice(app) == "mark two runs (space) to see what differs between them (1 marked)"
        await pilot.press("down", "space", "d")
        await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen))
        await pilot.pause()
        text = str(app.screen.query_one("#diff-text").render())
        assert text.startswith("#1 vs #2")
        assert "A: #1 pair/Entropy+init/s0 (done)" in text and "B: #2 pair/WS+init/s0 (done)" in text
        assert "settings that differ:" in text and "method" in text
        assert "0.5000" in text and "0.5200" in text  # round 0's accuracies, A beside B
        assert all(len(line) <= size[0] for line in text.splitlines())
        await pilot.press("escape")
        assert not isinstance(app.screen, DiffScreen)

    drive(app, script, size=size)


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


# ---- failures in sight ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", **SIZES)
def test_a_failed_run_says_why_on_the_main_screen_and_R_retries_it(fixed_app: AltuiApp, size: tuple[int, int]) -> None:
    """#4 failed (out of memory): with the cursor on it, the context line gives the reason whole at
    80x24; the status line counts the failure with the key that retries it; R asks, then queues it."""
    app = fixed_app

    async def script(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: app.snapshot is not None)
        status = app.screen.query_one("#status")
        assert "1✗ R:retry" in str(status.render()) and str(status.render()).rstrip().endswith("10:30:00")
        await pilot.press("down", "down", "down")
        assert app.screen.runs_table.highlighted_id == 4
        context = str(app.screen.query_one("#context-run").render())
        assert "#4 digits-demo/Entropy+init/s0 · failed: RuntimeError: out of memory" in context
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        asked = " ".join(str(w.render()) for w in app.screen.query("Static"))
        assert "Retry every failed run?" in asked and "#4 digits-demo/Entropy+init/s0" in asked
        await pilot.press("y")
        await wait_for(pilot, lambda: next(r for r in app.snapshot.runs if r["id"] == 4)["status"] == "queued")
        assert "R:retry" not in str(status.render())

    drive(app, script, size=size)


def test_a_run_that_fails_while_the_dashboard_is_open_is_notified_with_its_reason(dash) -> None:
    app, db, _ = dash

    async def script(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: app.snapshot is not None)
        running = next(r["id"] for r in app.snapshot.runs if r["status"] == "running")
        with Store(db) as store:
            store.finish(running, "failed", "Traceback (most recent call last):\nValueError: loss is nan at epoch 3")
        await wait_for(pilot, lambda: "loss is nan" in last_notice(app))
        assert last_notice(app).startswith(f"#{running} tiny/Entropy/s0: ValueError: loss is nan at epoch 3")
        assert "R retries" in last_notice(app)

    drive(app, script)


def test_demo_says_its_runs_failed_and_retries_them_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A demo whose runs all failed (say, a broken torch install): `altui demo` again says so with the
    reason and the command; `altui demo --retry` queues them again."""
    import altui.execution.daemon as daemon
    import altui.tui.app as tui_app

    monkeypatch.chdir(tmp_path)
    Path("experiments.toml").write_text((Path(__file__).resolve().parents[2] / "experiments.toml").read_text())
    monkeypatch.setattr(tui_app, "run_ui", lambda db, file: None)  # no terminal here
    monkeypatch.setattr(tui_app, "require_terminal", lambda: None)
    monkeypatch.setattr(daemon, "worker_status", lambda db: {"pid": 4242})  # as if a worker ran
    first = CliRunner().invoke(cli_app, ["demo"])
    assert first.exit_code == 0, first.output
    with Store(Path("runs/altui.db")) as store:
        ids = [r["id"] for r in store.runs()]
        for run_id in ids:
            store.claim("cpu", run_id)
            store.finish(run_id, "failed", "Traceback (most recent call last):\nImportError: libtorch_cuda.so: "
                         "cannot open shared object file")
    again = CliRunner().invoke(cli_app, ["demo"])
    assert again.exit_code == 0, again.output
    assert "digits-demo: queued 0 new run(s), 4 already in runs/altui.db" in again.stdout
    assert (f"4 of them failed (#{ids[-1]}: ImportError: libtorch_cuda.so: cannot open shared object file); "
            f"`altui demo --retry` queues them again, `altui logs {ids[-1]}` shows the whole error") in " ".join(
                again.stdout.split())  # wrapped at the terminal's width
    retried = CliRunner().invoke(cli_app, ["demo", "--retry"])
    assert retried.exit_code == 0 and "4 failed run(s) queued again" in retried.stdout
    with Store(Path("runs/altui.db")) as store:
        assert {r["status"] for r in store.runs()} == {"queued"}


@pytest.mark.parametrize("size", **SIZES)
def test_run_view_legends_and_status_line_fit(fixed_app: AltuiApp, size: tuple[int, int]) -> None:
    """The run view at 80x24 and 120x40: each layer's legend entry tells it apart from the others
    (shortened alike where it must be, never cut to a common stem), and the clock stays whole."""
    app = fixed_app

    async def script(pilot: Pilot) -> None:
        await ready("down", "enter")(pilot)
        status = str(app.screen.query_one("#status").render()).rstrip()
        assert status.startswith("#2 digits-demo/WS+init+KD1/s0 · done") and status.endswith("10:30:00")
        layers = app.screen.query_one("#plot-layers", PlotWidget)
        text = str(layers.render())
        entries = re.findall(r"[•x+o] ([a-z]+\.\d\.0\.1)\b", text)  # blocks.N.0.1 or its short form bl.N.0.1
        assert [e.split(".")[1] for e in entries] == ["0", "1", "2", "3"], text
        assert "…" not in "".join(text.splitlines()[1:])  # the legend is whole (the title line may be cut)

    drive(app, script, size=size)


@pytest.mark.parametrize("size", **SIZES)
def test_run_view_shows_the_round_in_progress_live(real_store: dict, dash, size: tuple[int, int]) -> None:
    """A running run's view: its round in progress by epoch (training loss drawn; epoch, accuracy and
    throughput in the title) before the round ends; a loss that is not finite says so."""
    app, db, _ = dash
    running = real_store["ids"][2]

    async def script(pilot: Pilot) -> None:
        await pilot.press("down", "down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail is not None)
        assert app.screen.run_id == running
        live = app.screen.query_one("#plot-picks", PlotWidget)
        await wait_for(pilot, lambda: live.title.startswith("round 0 live"))
        assert live.title == "round 0 live: epoch 1/2 · loss 2.3 · acc 10.0% · 100 img/s"
        assert live.series == {"train loss": ([1], [2.3])}
        with Store(db) as store:
            store.add_epoch(running, {"round": 0, "epoch": 2, "train_loss": float("inf"), "train_accuracy": 0.1,
                                      "lr": 0.01, "images_per_second": 95.0})
        await wait_for(pilot, lambda: "NOT FINITE" in live.title)
        assert live.title == "round 0 live: epoch 2/2 · loss inf · acc 10.0% · 95 img/s · loss NOT FINITE"
        assert live.series == {"train loss": ([1], [2.3])}  # the finite epochs, drawn
        assert str(live.render()).splitlines()[0].startswith("round 0 live: epoch 2/2")

    drive(app, script, size=size)


def test_the_runs_table_keeps_its_columns_while_a_run_s_first_values_arrive(tmp_path: Path) -> None:
    """At 80 columns a run starts, trains its first epochs and records round 0: the table shows the
    same columns all along (widths are reserved for the values to come); when no run is left to run,
    the empty epochs column goes."""
    db = tmp_path / "altui.db"
    with Store(db) as store:
        (run_id,) = store.enqueue("pair", "experiments.toml", TINY, [run_spec("pair/WS/s0", "WS", 0, TINY)])
    app = create_app(db, tmp_path / "experiments.toml", poll_seconds=0.1, start_worker_on_queue=False)

    async def script(pilot: Pilot) -> None:
        table = app.screen.query_one(RunsTable)
        await wait_for(pilot, lambda: table.columns_shown)
        seen = [list(table.columns_shown)]
        with Store(db) as store:
            store.claim("cpu", run_id)
        await wait_for(pilot, lambda: app.snapshot.runs[0]["status"] == "running")
        seen.append(list(table.columns_shown))
        with Store(db) as store:
            store.add_epoch(run_id, {"round": 0, "epoch": 1, "train_loss": 2.0, "train_accuracy": 0.3, "lr": 0.01,
                                     "images_per_second": 50.0})
            store.add_round(run_id, {
                "round": 0, "n_labeled": 20, "accuracy": 0.5123, "test_loss": 1.0, "weight_decay": 0.00667,
                "lr": 0.01, "effective_channels": 224, "total_channels": 224, "conv_l2": 1.0, "train_seconds": 1.0,
                "acquire_seconds": 0.1, "pick_mean_score": 0.5, "pick_class_counts": "[1]", "gamma_bins": "[0, 1]",
                "gamma_counts": "[224]"}, [], [])
        await wait_for(pilot, lambda: app.snapshot.runs[0]["rounds_done"] == 1)
        seen.append(list(table.columns_shown))
        assert seen[0] == seen[1] == seen[2] and "accuracy" in seen[0] and "channels" in seen[0]
        with Store(db) as store:
            store.finish(run_id, "done")
        await wait_for(pilot, lambda: app.snapshot.runs[0]["status"] == "done")
        assert "epochs" not in table.columns_shown

    drive(app, script, size=(80, 24))


def test_queueing_an_experiment_the_file_no_longer_has_says_so(real_store: dict, dash) -> None:
    app, _, _ = dash  # the store's experiment "tiny" is not in this experiments.toml

    async def script(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("tab")
        pane = app.screen.query_one(ExperimentsPane).table
        while pane.highlighted_name != "tiny":
            await pilot.press("down")
        await pilot.press("a")
        assert last_notice(app) == ("tiny is in the store but not in experiments.toml: there is nothing new to queue "
                                    "from it (r retries its failed runs)")
        assert not isinstance(app.screen, ConfirmScreen)

    drive(app, script)
