"""The paper's settings as the shipped experiments.toml and the presets give them: lambda_0 from the
paper's invariant lambda_0 * N_0, three seeds for Table 1, LL's own recipe, and Random+init."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from altui.al import loop
from altui.al.config import RunConfig
from altui.al.presets import resolve
from altui.al.sink import ListSink
from altui.cli import app
from altui.results.paper_numbers import FIGURES
from altui.spec import load_spec, parse_spec
from altui.store import Store

SHIPPED = Path(__file__).resolve().parents[2] / "experiments.toml"


@pytest.fixture(scope="module")
def shipped():
    return load_spec(SHIPPED)


def lambda_0(experiment) -> float:
    """The experiment's lambda_0: what the WS methods start from (the file's `weight_decay`)."""
    ws = [r.config for r in experiment.runs if r.config.wd_schedule == "inverse"]
    assert ws, f"{experiment.name} has no WS method"
    return ws[0].weight_decay


def test_lambda_0_times_n_0_is_the_same_across_each_figures_budgets(shipped):
    """Eq. 10: the paper's stated values keep lambda_0 * N_0 fixed per model (MNIST 0.02 x 500 = 10,
    ResNet18 0.008 x 1000 = 8, DenseNet100 0.003 x 1000 = 0.012 x 250 = 3); the budgets the text leaves
    open follow it."""
    products: dict[tuple[str, str], dict[str, float]] = {}
    for experiment in shipped.experiments:
        if not FIGURES.get(experiment.name, "").startswith("Fig."):
            continue  # the demo and the tables (Table 1 sweeps fixed decays)
        config = experiment.runs[0].config
        products.setdefault((config.dataset, config.model), {})[experiment.name] = (
            lambda_0(experiment) * config.initial)
    assert set(products) == {("mnist", "cnn5"), ("cifar10", "resnet18"), ("cifar10", "densenet100"),
                             ("cifar100", "resnet18"), ("cifar100", "densenet100")}
    expected = {"cnn5": 10.0, "resnet18": 8.0, "densenet100": 3.0}
    for (_, model), by_experiment in products.items():
        for name, product in by_experiment.items():
            assert product == pytest.approx(expected[model]), f"{name}: lambda_0 * N_0 = {product}"
    assert len(products[("mnist", "cnn5")]) == 2 and len(products[("cifar10", "resnet18")]) == 2
    assert len(products[("cifar10", "densenet100")]) == 2


def test_the_derived_and_stated_lambda_0_values(shipped):
    assert lambda_0(shipped.get("mnist-k200")) == 0.05
    assert lambda_0(shipped.get("mnist-k500")) == 0.02
    assert lambda_0(shipped.get("cifar10-resnet18-k250")) == 0.032
    assert lambda_0(shipped.get("cifar10-resnet18-k1000")) == 0.008
    assert lambda_0(shipped.get("cifar10-densenet100-k250")) == 0.012
    # the fixed-decay methods end where WS ends: lambda_0 * N_0 / N_{R-1}
    k250 = {r.method: r.config for r in shipped.get("cifar10-resnet18-k250").runs if r.seed == 0}
    assert k250["Entropy+init"].weight_decay == pytest.approx(0.032 * 250 / 2500)
    text = SHIPPED.read_text()
    assert "weight_decay = 0.05  # derived: lambda_0 * N_0 = 10" in text
    assert "weight_decay = 0.032  # derived: lambda_0 * N_0 = 8" in text


def test_table_1_runs_three_seeds(shipped):
    for name in ("table1-mnist", "table1-cifar10"):
        runs = shipped.get(name).runs
        assert sorted({r.seed for r in runs}) == [0, 1, 2]
        assert len(runs) == 6 * 8 * 3


# ---- LL's recipe ------------------------------------------------------------------------------


def ll_config(**experiment: object) -> RunConfig:
    """The LL run of a one-experiment file with these extra keys, resolved as the spec does."""
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in experiment.items())
    text = textwrap.dedent("""\
        [[experiment]]
        name = "x"
        dataset = "cifar10"
        model = "resnet18"
        methods = ["LL", "WS+init"]
        rounds = 10
        initial = 1000
        budget = 1000
        """) + extra
    (ll,) = [r.config for r in parse_spec(text).experiments[0].runs if r.method == "LL"]
    return ll


def test_a_queued_ll_run_resolves_to_yoo_and_kweons_recipe(shipped, tmp_path):
    db = tmp_path / "altui.db"
    result = CliRunner().invoke(app, ["--db", str(db), "queue", str(SHIPPED), "cifar10-resnet18-k1000"])
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        runs = {r["method"]: RunConfig.from_dict(json.loads(r["spec_json"]))
                for r in store.runs(experiment="cifar10-resnet18-k1000") if r["seed"] == 0}
    ll, ws = runs["LL"], runs["WS+init"]
    assert (ll.epochs, ll.milestones, ll.ll_stop_epoch, ll.ll_stop) == (200, (160,), 120, 120)
    assert (ll.acquisition, ll.init, ll.weight_decay) == ("ll", "warm", 5e-4)
    assert (ll.lr, ll.batch_size) == (0.1, 128)  # the model's, which are also Yoo & Kweon's
    assert (ws.epochs, ws.milestones) == (350, (150, 250))  # the other methods keep the paper's recipe
    # every LL run of the shipped file gets it (DenseNet100 and CIFAR-100 too)
    for experiment in shipped.experiments:
        for run in experiment.runs:
            if run.method == "LL":
                assert (run.config.epochs, run.config.milestones, run.config.ll_stop) == (200, (160,), 120)


def test_epochs_and_milestones_are_one_schedule_for_ll():
    assert (lambda c: (c.epochs, c.milestones, c.ll_stop))(ll_config()) == (200, (160,), 120)
    # the experiment sets epochs: LL trains on the experiment's schedule, detaching at 0.6 * epochs
    only_epochs = ll_config(epochs=100)
    assert (only_epochs.epochs, only_epochs.milestones, only_epochs.ll_stop) == (100, (150, 250), 60)
    both = ll_config(epochs=100, milestones=[50])
    assert (both.epochs, both.milestones, both.ll_stop) == (100, (50,), 60)
    # milestones alone: never LL's 200 epochs with milestones written for another length
    only_milestones = ll_config(milestones=[100])
    assert (only_milestones.epochs, only_milestones.milestones, only_milestones.ll_stop) == (350, (100,), 210)
    # an explicit ll_stop_epoch always wins
    assert ll_config(ll_stop_epoch=90).ll_stop == 90 and ll_config(ll_stop_epoch=90).epochs == 200


def test_a_method_table_ll_stop_epoch_wins_and_a_sweep_over_epochs_drops_the_recipe():
    text = textwrap.dedent("""\
        [[experiment]]
        name = "x"
        dataset = "cifar10"
        model = "resnet18"
        methods = [{ name = "LL-early", preset = "LL", ll_stop_epoch = 80 }]

        [[experiment]]
        name = "y"
        dataset = "cifar10"
        model = "resnet18"
        methods = ["LL"]
        epochs = [20, 40]
        """)
    x, y = parse_spec(text).experiments
    assert (x.runs[0].config.epochs, x.runs[0].config.ll_stop) == (200, 80)
    assert [(r.config.epochs, r.config.ll_stop) for r in y.runs] == [(20, 12), (40, 24)]


def test_random_init_is_random_acquisition_from_a_fresh_init():
    text = textwrap.dedent("""\
        [[experiment]]
        name = "x"
        dataset = "mnist"
        model = "cnn5"
        methods = ["Random", "Random+init"]
        rounds = 5
        initial = 500
        budget = 500
        """)
    warm, fresh = (r.config for r in parse_spec(text).experiments[0].runs)
    assert (warm.acquisition, warm.init) == ("random", "warm")
    assert (fresh.acquisition, fresh.init, fresh.distill) == ("random", "fresh", "none")
    assert fresh.wd_schedule == "fixed" and fresh.weight_decay == pytest.approx(0.004) == warm.weight_decay


def test_random_and_random_init_pick_the_same_labels_from_different_starts(monkeypatch):
    """Random acquisition does not look at the model: both presets label the same images, and only
    the start of each round differs (warm: the previous round's model; +init: a new draw)."""
    starts: list[dict] = []
    original = loop.train_round

    def spy(cfg, t, model, *args, **kwargs):
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        return original(cfg, t, model, *args, **kwargs)

    monkeypatch.setattr(loop, "train_round", spy)
    fields = dict(dataset="digits", model="cnn5", rounds=2, initial=20, budget=20, epochs=1, milestones=[1],
                  device="cpu")
    sinks = {}
    for preset in ("Random", "Random+init"):
        starts.clear()
        sinks[preset] = ListSink()
        loop.run(resolve(preset, fields), sinks[preset])
        trained = sinks[preset].states[0].model
        same = all(torch.equal(starts[1][k], trained[k]) for k in trained)
        assert same == (preset == "Random"), preset
    assert [r.picks for r in sinks["Random"].rounds] == [r.picks for r in sinks["Random+init"].rounds]
