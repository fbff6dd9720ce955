"""experiments.toml: a researcher's file loads, expands into the paper's runs, and every mistake in it
is reported at once with its line, its key path and what is allowed."""

from __future__ import annotations

import dataclasses
import pickle
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

from altui.al.config import ConfigError, RunConfig
from altui.spec import SpecError, SpecIssue, load_spec, parse_spec
from altui.spec.decay import derivation
from altui.spec.keys import FIELD_KINDS, METHOD_FIELDS
from altui.spec.positions import scan_positions

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "experiments.toml"


@pytest.fixture(scope="module")
def shipped():
    return load_spec(SHIPPED)


# --- the shipped file ----------------------------------------------------------------------------


def test_the_shipped_file_loads_without_issues(shipped):
    names = [e.name for e in shipped.experiments]
    assert names[0] == "digits-demo"
    for name in ("mnist-k200", "mnist-k500", "cifar10-resnet18-k1000", "cifar10-resnet18-k250",
                 "cifar10-densenet100-k1000", "cifar10-densenet100-k250", "cifar100-resnet18-k1000",
                 "cifar100-densenet100-k1000", "table1-mnist", "table1-cifar10", "table2-alpha"):
        assert name in names
    assert shipped.path == str(SHIPPED)


def test_the_digits_demo_is_four_short_runs(shipped):
    demo = shipped.get("digits-demo")
    assert [r.name for r in demo.runs] == [
        "digits-demo/Random/s0", "digits-demo/Entropy+init/s0", "digits-demo/WS+init/s0",
        "digits-demo/WS+init+KD1/s0",
    ]
    random, entropy_init, ws_init, kd1 = (r.config for r in demo.runs)
    assert (random.acquisition, random.init) == ("random", "warm")
    assert (entropy_init.acquisition, entropy_init.init) == ("entropy", "fresh")
    assert entropy_init.wd_schedule == "fixed"
    assert (ws_init.wd_schedule, ws_init.init, ws_init.distill) == ("inverse", "fresh", "none")
    assert (kd1.wd_schedule, kd1.distill) == ("inverse", "kd1")
    for c in (random, entropy_init, ws_init, kd1):
        assert (c.dataset, c.model, c.rounds, c.initial, c.budget) == ("digits", "cnn5", 4, 50, 50)
        assert (c.epochs, c.milestones, c.data_root, c.device) == (30, (20,), "data", "auto")
    header = SHIPPED.read_text().splitlines().index('name = "digits-demo"')  # 0-based: the line above
    assert demo.line == header
    assert demo.table["methods"] == ["Random", "Entropy+init", "WS+init", "WS+init+KD1"]


def test_table1_mnist_is_a_grid_of_labels_and_fixed_decays_over_three_seeds(shipped):
    runs = shipped.get("table1-mnist").runs
    assert len(runs) == 6 * 8 * 3
    names = [r.name for r in runs]
    assert names[0] == "table1-mnist/Random/initial=200,weight_decay=0.2/s0"
    assert "table1-mnist/Random/initial=1000,weight_decay=0.004/s1" in names
    assert names[-1] == "table1-mnist/Random/initial=10000,weight_decay=0.001/s2"
    assert len(set(names)) == len(names)
    assert [r.seed for r in runs] == [s for s in (0, 1, 2) for _ in range(6 * 8)]
    for run in runs:
        assert run.config.rounds == 1
        # one round: Random's fixed decay is the swept value itself
        assert run.config.initial == run.sweep["initial"]
        assert run.config.weight_decay == pytest.approx(run.sweep["weight_decay"])
        assert list(run.sweep) == ["initial", "weight_decay"]
    assert len(shipped.get("table1-cifar10").runs) == 48 * 3


def test_table2_sweeps_alpha_over_five_seeds(shipped):
    runs = shipped.get("table2-alpha").runs
    assert len(runs) == 3 * 5
    assert {(r.config.kd_alpha, r.seed) for r in runs} == {(a, s) for a in (0.1, 0.5, 0.9) for s in range(5)}
    assert runs[0].name == "table2-alpha/WS+init+KD1/kd_alpha=0.1/s0"
    assert all(r.config.distill == "kd1" and r.config.epochs == 350 for r in runs)


def test_fixed_decay_methods_end_where_ws_ends(shipped):
    """Section 4.2: lambda_0 = 0.02 for WS; Entropy(0.004) = 0.02 * 500 / 2500 over five rounds of 500."""
    by_method = {r.method: r.config for r in shipped.get("mnist-k500").runs if r.seed == 0}
    assert by_method["Entropy"].weight_decay == pytest.approx(0.004)
    assert by_method["Random"].weight_decay == pytest.approx(0.004)
    assert by_method["WS+init"].weight_decay == pytest.approx(0.02)
    k200 = {r.method: r.config for r in shipped.get("mnist-k200").runs if r.seed == 0}
    assert k200["WS+init"].weight_decay == pytest.approx(0.05)  # lambda_0 * N_0 = 10 as at K = 500
    assert k200["Entropy"].weight_decay == pytest.approx(0.01)  # 0.05 * 200 / 1000
    cifar = {r.method: r.config for r in shipped.get("cifar10-resnet18-k1000").runs if r.seed == 0}
    assert cifar["Entropy+init"].weight_decay == pytest.approx(0.0008)
    assert cifar["Entropy(0.0001)"].weight_decay == pytest.approx(0.0001)
    assert cifar["LL"].weight_decay == pytest.approx(5e-4)
    assert cifar["LL"].acquisition == "ll"


def test_paper_experiments_have_five_seeds_and_their_recipes(shipped):
    mnist = shipped.get("mnist-k500")
    assert len(mnist.runs) == 7 * 5
    assert {r.seed for r in mnist.runs} == set(range(5))
    dense = shipped.get("cifar10-densenet100-k250").runs[0].config
    assert (dense.epochs, dense.milestones, dense.batch_size, dense.rounds, dense.budget) == (
        300, (150, 225), 64, 10, 250)
    assert dense.weight_decay == pytest.approx(0.0012)  # "Random (0.0012)"


# --- precedence and names ------------------------------------------------------------------------


def test_precedence_defaults_then_experiment_then_method_table():
    spec = parse_spec(textwrap.dedent("""\
        [defaults]
        epochs = 7
        kd_alpha = 0.2
        lr = 0.5

        [[experiment]]
        name = "p"
        dataset = "digits"
        model = "cnn5"
        seeds = 2
        kd_alpha = 0.3
        methods = ["WS+init+KD1", { name = "mine", preset = "WS+init+KD1", kd_alpha = 0.9, weight_decay = 1 }]
        """))
    runs = {(r.method, r.seed): r.config for r in spec.get("p").runs}
    names = [r.name for r in spec.get("p").runs]
    assert names == ["p/WS+init+KD1/s0", "p/mine/s0", "p/WS+init+KD1/s1", "p/mine/s1"]  # seed-major
    preset, mine = runs["WS+init+KD1", 1], runs["mine", 1]
    assert (preset.epochs, preset.lr, preset.kd_alpha) == (7, 0.5, 0.3)  # defaults < experiment
    assert preset.batch_size == 32 and preset.weight_decay == 0.02  # the digits recipe
    assert (mine.kd_alpha, mine.weight_decay, mine.distill) == (0.9, 1.0, "kd1")  # < method table
    assert isinstance(mine.weight_decay, float) and preset.seed == 1


def test_a_method_table_without_preset_is_built_from_its_fields():
    spec = parse_spec(textwrap.dedent("""\
        [[experiment]]
        name = "custom"
        dataset = "npz"
        path = "/data/my.npz"
        model = "cnn5"
        methods = [
            { name = "my-kd", acquisition = "margin", wd_schedule = "exact", init = "same", distill = "kd2" },
        ]
        milestones = [[10], [5, 8]]
        """))
    runs = spec.get("custom").runs
    assert [r.name for r in runs] == ["custom/my-kd/milestones=10/s0", "custom/my-kd/milestones=5-8/s0"]
    c = runs[1].config
    assert (c.acquisition, c.wd_schedule, c.init, c.distill) == ("margin", "exact", "same", "kd2")
    assert c.milestones == (5, 8) and c.extra == {"path": "/data/my.npz"}
    assert runs[1].sweep == {"milestones": [5, 8]}
    assert spec.get("custom").table["path"] == "/data/my.npz"


def test_get_an_unknown_experiment_lists_the_names(shipped):
    with pytest.raises(SpecError) as e:
        shipped.get("digit-demo")
    assert "did you mean 'digits-demo'?" in str(e.value) and "table2-alpha" in str(e.value)


def test_every_run_setting_has_a_toml_type():
    names = {f.name for f in dataclasses.fields(RunConfig)} - {"seed", "extra"}
    assert set(FIELD_KINDS) == names
    assert set(METHOD_FIELDS) <= names


def test_the_scanner_finds_headers_keys_and_array_elements():
    text = textwrap.dedent("""\
        [defaults]
        epochs = 3  # a comment with [brackets] and "quotes"

        [[experiment]]
        name = "a"
        methods = [
            "Random",   # first
            { name = "x, y", preset = "WS" },
        ]
        [[experiment]]
        seeds = [[1, 2], 3]
        """)
    p = scan_positions(text)
    assert p["defaults"] == (1, 1) and p["defaults.epochs"] == (2, 1)
    assert p["experiment[0]"] == (4, 1) and p["experiment[0].name"] == (5, 1)
    assert p["experiment[0].methods[0]"] == (7, 5) and p["experiment[0].methods[1]"] == (8, 5)
    assert p["experiment[0].methods[1].preset"] == (8, 22)
    assert "experiment[0].methods[2]" not in p
    assert p["experiment[1]"] == (10, 1) and p["experiment[1].seeds[1]"] == (11, 18)


# --- malformed files -----------------------------------------------------------------------------


class Expect(NamedTuple):
    line: int | None
    key: str
    fragment: str


HEAD = """\
[[experiment]]
name = "demo"
dataset = "digits"
model = "cnn5"
methods = ["Random"]
"""  # lines 1-5

E = "experiment[0]"
BAD_INPUTS = REPO / "tests" / "cli" / "bad_inputs"  # each case's file; test_bad_inputs.py runs them through the CLI

# Every issue of each malformed file in tests/cli/bad_inputs/, in order (the files end in comment lines that
# change no position).
CASES: dict[str, list[Expect]] = {
    "toml-syntax": [
        Expect(6, "", "invalid TOML: Invalid value")],
    "unknown-key": [
        Expect(6, f"{E}.epoch", "did you mean 'epochs'? allowed: name,")],
    "unknown-defaults-key": [
        Expect(2, "defaults.dvice", "did you mean 'device'?")],
    "unknown-method-key": [
        Expect(5, f"{E}.methods[0].kd_alpah", "did you mean 'kd_alpha'? allowed: name, preset, acq")],
    "unknown-table": [
        Expect(1, "default", "did you mean 'defaults'? allowed: defaults, experiment")],
    "string-for-int": [
        Expect(6, f"{E}.rounds", "expected an integer, got '4'")],
    "bool-is-no-int": [
        Expect(6, f"{E}.budget", "expected an integer, got true")],
    "compile-neither-bool-nor-auto": [
        Expect(6, f"{E}.compile", 'expected true, false or "auto", got \'yes\'')],
    "float-for-int": [
        Expect(6, f"{E}.initial", "expected an integer, got 50.0")],
    "budget-below-1": [
        Expect(6, f"{E}.budget", "allowed: an integer >= 1")],
    "rounds-below-1": [
        Expect(6, f"{E}.rounds", "allowed: an integer >= 1")],
    "kd-alpha-in-multiline-methods": [
        Expect(7, f"{E}.methods[1].kd_alpha", "1.5 is out of range; allowed: a number in [0, 1]")],
    "kd-temperature-not-positive": [
        Expect(6, f"{E}.kd_temperature", "allowed: a number in [0.01, 1000]")],
    "negative-weight-decay": [
        Expect(6, f"{E}.weight_decay", "allowed: a number >= 0")],
    "lambda-n-and-weight-decay": [
        Expect(7, f"{E}.lambda_n", "lambda_n (λ_0·N_0) and weight_decay (λ_0, line 6) both give λ_0; allowed: one")],
    "lambda-n-not-positive": [
        Expect(6, f"{E}.lambda_n", "0 is out of range; allowed: a number > 0")],
    "initial-larger-than-pool": [
        Expect(6, f"{E}.initial", "the digits pool; allowed: at most 1347")],
    "rounds-exhaust-the-pool": [
        Expect(8, f"{E}.rounds", "1500 labels, more than the 1347 samples of the digits pool; allowed: rounds <= 26")],
    "unknown-preset": [
        Expect(5, f"{E}.methods[1]", "did you mean 'Entropy+init'? allowed: Random, Random+init, Entropy,")],
    "unknown-preset-in-table": [
        Expect(5, f"{E}.methods[0].preset", "allowed: Random, Random+init, Entropy, Entropy+init, WS")],
    "unknown-dataset": [
        Expect(3, f"{E}.dataset", "did you mean 'cifar10'? allowed: digits, mnist, fashion-mnist")],
    "unknown-model": [
        Expect(4, f"{E}.model", "allowed: cnn5, resnet18, densenet100")],
    "unknown-acquisition": [
        Expect(6, f"{E}.acquisition", "allowed: random, entropy, margin, least-confidence, ll, bald, coreset, badge")],
    "unknown-schedule": [
        Expect(6, f"{E}.wd_schedule", "allowed: fixed, inverse, exact")],
    "unknown-init": [
        Expect(5, f"{E}.methods[0].init", "allowed: fresh, same, warm")],
    "unknown-distill": [
        Expect(6, f"{E}.distill", "allowed: none, kd1, kd2")],
    "unknown-device": [
        Expect(2, "defaults.device", "allowed: auto, cpu, cuda, cuda:N")],
    "duplicate-experiment": [
        Expect(8, "experiment[1].name", "duplicate experiment name 'demo', first used at line 2")],
    "duplicate-method": [
        Expect(5, f"{E}.methods[1]", "duplicate method name 'Random'")],
    "missing-model": [
        Expect(1, f"{E}.model", "missing required key 'model'")],
    "missing-method-name": [
        Expect(5, f"{E}.methods[0].name", "needs a `name` (or a `preset`")],
    "empty-methods": [
        Expect(5, f"{E}.methods", "methods is empty; give at least one of Random, Random+init, Entropy")],
    "npz-without-path": [
        Expect(3, f"{E}.dataset", "needs `path`")],
    "path-without-npz": [
        Expect(6, f"{E}.path", "allowed: path with dataset npz or")],
    "bad-milestones": [
        Expect(6, f"{E}.milestones", "increasing epochs")],
    "bad-seeds": [
        Expect(6, f"{E}.seeds", "list of integers >= 0 or a count")],
    "bad-sweep-element": [
        Expect(6, f"{E}.weight_decay[1]", "-1 is out of range; allowed: a number >= 0")],
    "empty-sweep": [
        Expect(6, f"{E}.initial", "an empty list sweeps nothing")],
    "bad-experiment-name": [
        Expect(2, f"{E}.name", "letters, digits")],
    "exact-schedule-needs-small-decay": [
        Expect(6, f"{E}.wd_schedule", "needs lr * weight_decay < 1")],
    "no-experiment": [
        Expect(None, "experiment", "defines no experiment")],
    "combination-in-one-experiment": [
        Expect(7, f"{E}.methods[1].kd_alpha", "allowed: a number in [0, 1]"),
        Expect(9, f"{E}.epoch", "did you mean 'epochs'?")],
    "combination-across-tables": [
        Expect(2, "defaults.epochs", "expected an integer, got 'many'"),
        Expect(11, "experiment[1].name", "duplicate experiment name 'demo', first used at line 5"),
        Expect(12, "experiment[1].dataset", "did you mean 'svhn'?"),
        Expect(14, "experiment[1].methods[1]", "duplicate method name 'Random'")],
    "combination-missing-and-range": [
        Expect(1, f"{E}.name", "missing required key 'name'"),
        Expect(4, f"{E}.methods", "methods is empty"),
        Expect(5, f"{E}.initial", "allowed: at most 60000"),
        Expect(6, f"{E}.budget", "allowed: an integer >= 1")],
    "lr-inf": [
        Expect(6, f"{E}.lr", "inf is not finite; allowed: a number > 0")],
    "every-float-not-finite": [
        Expect(6, f"{E}.weight_decay", "inf is not finite; allowed: a number >= 0"),
        Expect(7, f"{E}.kd_alpha", "nan is not finite; allowed: a number in [0, 1]"),
        Expect(8, f"{E}.kd_temperature", "inf is not finite; allowed: a number in [0.01, 1000]"),
        Expect(9, f"{E}.lr", "-inf is not finite; allowed: a number > 0"),
        Expect(10, f"{E}.lr_gamma", "nan is not finite; allowed: a number > 0"),
        Expect(11, f"{E}.momentum", "inf is not finite; allowed: a number in [0, 1)"),
        Expect(12, f"{E}.ll_margin", "nan is not finite; allowed: a number >= 0"),
        Expect(13, f"{E}.ll_weight", "inf is not finite; allowed: a number >= 0"),
        Expect(14, f"{E}.mc_dropout", "nan is not finite; allowed: a number in [0, 1)")],
    "method-weight-decay-inf": [
        Expect(5, f"{E}.methods[0].weight_decay", "-inf is not finite; allowed: a number >= 0")],
    "sweep-element-nan": [
        Expect(6, f"{E}.kd_alpha[1]", "nan is not finite; allowed: a number in [0, 1]")],
    "kd-temperature-tiny": [
        Expect(6, f"{E}.kd_temperature", "1e-300 is out of range; allowed: a number in [0.01, 1000]")],
    "seeds-huge": [
        Expect(1, E, "expands to 100,000,000 runs (100,000,000 seeds x 1 sweep point x 1 method); "
                     "allowed: at most 10,000 runs per file")],
    "sweep-160000-runs": [
        Expect(1, E, "expands to 160,000 runs (100 seeds x 1,600 sweep points x 1 method)")],
    "runs-over-the-file-cap": [
        Expect(8, "experiment[1]", "expands to 6,000 runs (6,000 seeds x 1 sweep point x 1 method), 12,000 with "
                                   "the experiments above it")],
    "method-name-escape": [
        Expect(5, f"{E}.methods[0].name", "allowed: printable characters without spaces or '/'")],
    "experiment-name-escape": [
        Expect(2, f"{E}.name", "expected a name of letters, digits and . _ + -")],
    "data-root-bell": [
        Expect(6, f"{E}.data_root", "holds control or other unprintable characters; allowed: printable characters")],
    "pool-subset-below-budget": [
        Expect(7, f"{E}.pool_subset", "pool_subset = 10 is smaller than budget = 50")],
    "ll-subset-below-budget": [
        Expect(7, f"{E}.ll_subset", "ll_subset = 10 is smaller than budget = 50")],
    "slurm-table-bad": [
        Expect(9, f"{E}.slurm.time", "'an hour': allowed: minutes (90)"),
        Expect(10, f"{E}.slurm.gpus", "-1 is not allowed; allowed: an integer >= 0"),
        Expect(11, f"{E}.slurm.args", "'signal=USR1@100': refused: altui asks Slurm for its own signal")],
    # issue 23: deep or huge files, integers out of range
    "nested-arrays-5000-deep": [Expect(6, "", "nesting deeper than 32 levels (arrays and inline tables)")],
    "nested-inline-tables-5000-deep": [Expect(6, "", "nesting deeper than 32 levels")],
    "dotted-key-20000-parts": [Expect(6, "", "a dotted key nested deeper than 32 levels")],
    "name-10000-characters": [Expect(2, f"{E}.name", "letters, digits and . _ + - (at most 100)")],
    "method-name-1000-characters": [Expect(5, f"{E}.methods[0].name", "without spaces or '/', at most 100")],
    "seed-2-to-the-64": [Expect(6, f"{E}.seeds", "seeds up to 4,294,967,295")],
    "rounds-2-to-the-64-npz": [Expect(7, f"{E}.rounds", "allowed: an integer >= 1 and at most 100,000")],
    "epochs-over-a-million": [Expect(6, f"{E}.epochs", "10000000 is out of range"),
                              Expect(7, f"{E}.milestones", "5000000 is out of range")],
    "mc-samples-2-to-the-64": [Expect(6, f"{E}.mc_samples", "allowed: an integer >= 2: BALD's dropout samples and at "
                                                            "most 10,000")],
    "integer-of-5000-digits": [Expect(None, "", "invalid TOML: Exceeds the limit (4300 digits)")],
    "problems-capped-at-20": [Expect(5, f"{E}.methods[0]", "unknown preset 'Rand'")],
    "device-arabic-indic-digit": [Expect(6, f"{E}.device", "allowed: auto, cpu, cuda, cuda:N (N: digits 0-9)")],
}


def test_every_malformed_file_of_the_corpus_is_listed_here():
    def malformed(path: Path) -> bool:  # (the cases that are all comments are about stores, not files)
        text = path.read_text()
        if not text.split("# --- bad input", 1)[0].strip() or "\n# head: " in text:
            return False  # (nor are the Slurm events files, read by the head, not as experiments files)
        try:
            load_spec(path)
        except SpecError:
            return True
        return False

    assert {p.stem for p in BAD_INPUTS.glob("*.toml") if malformed(p)} == set(CASES)


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_file_reports_every_issue_where_it_is(case, tmp_path):
    expected = CASES[case]
    path = tmp_path / f"{case}.toml"
    path.write_text((BAD_INPUTS / f"{case}.toml").read_text())
    with pytest.raises(SpecError) as raised:
        load_spec(path)
    issues = raised.value.issues
    assert len(issues) == len(expected), "\n".join(map(str, issues))
    for issue, want in zip(issues, expected, strict=True):
        assert issue.file == str(path)
        assert (issue.line, issue.key) == (want.line, want.key), str(issue)
        assert want.fragment in issue.message, str(issue)
        assert str(issue) in str(raised.value)


def test_issues_print_as_file_line_column_key_message():
    with pytest.raises(SpecError) as raised:
        parse_spec(HEAD + "\nepoch = 10\n", "exp.toml")
    (issue,) = raised.value.issues
    assert (issue.line, issue.column) == (7, 1)
    assert str(issue).startswith("exp.toml:7:1: experiment[0].epoch: unknown key 'epoch'; did you mean")
    assert str(SpecIssue("f.toml", None, None, "", "empty")) == "f.toml: empty"
    assert pickle.loads(pickle.dumps(raised.value)).issues == raised.value.issues


def test_a_model_too_big_for_the_images_is_reported(monkeypatch):
    monkeypatch.setitem(__import__("altui.al.catalog", fromlist=["x"]).MODEL_MIN_SIZE, "cnn5", 64)
    with pytest.raises(SpecError) as raised:
        parse_spec(HEAD, "m.toml")
    (issue,) = raised.value.issues
    assert (issue.line, issue.key) == (4, "experiment[0].model")
    assert "at least 64px, digits has 28px; allowed: resnet18, densenet100" in issue.message


def test_compile_takes_auto_true_or_false():
    for value, expected in (('"auto"', "auto"), ("true", True), ("false", False)):
        spec = parse_spec(HEAD + f"compile = {value}\n")
        assert {r.config.compile for r in spec.experiments[0].runs} == {expected}
    assert parse_spec(HEAD).experiments[0].runs[0].config.compile == "auto"


def test_ints_are_fine_where_numbers_are_expected():
    spec = parse_spec(HEAD + "weight_decay = 1\nlr = 1\nkd_alpha = [0, 1]\n")
    configs = [r.config for r in spec.get("demo").runs]
    assert [c.kd_alpha for c in configs] == [0.0, 1.0]
    names = [r.name for r in spec.get("demo").runs]
    assert names == ["demo/Random/kd_alpha=0.0/s0", "demo/Random/kd_alpha=1.0/s0"]


def test_a_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read the file"):
        load_spec(tmp_path / "nope.toml")


def test_the_documented_example_loads():
    doc = (REPO / "docs" / "configuration.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    spec = parse_spec(example, "configuration.md")
    assert [len(e.runs) for e in spec.experiments] == [5 * 5, 3]


# --- hardening: what used to slip through ----------------------------------------------------------


def test_a_file_that_starts_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes("\ufeff".encode() + HEAD.encode() + b"epochs = 3\n")
    spec = load_spec(path)
    assert spec.get("demo").runs[0].config.epochs == 3
    with pytest.raises(SpecError) as raised:  # positions are those of the text after the mark
        parse_spec("\ufeff" + HEAD + "epoch = 3\n", "bom.toml")
    assert str(raised.value.issues[0]).startswith("bom.toml:6:1: experiment[0].epoch")


def test_a_huge_seed_count_is_refused_before_anything_is_expanded():
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(SpecError, match="expands to 100,000,000 runs"):
        parse_spec(HEAD + "seeds = 100000000\n")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5_000_000, f"validating used {peak:,} bytes"


def test_max_runs_raises_the_cap_for_a_big_sweep():
    text = HEAD + "seeds = 3\nkd_alpha = [0.1, 0.2]\n"  # 6 runs
    with pytest.raises(SpecError, match=r"expands to 6 runs \(3 seeds x 2 sweep points x 1 method\); allowed: at "
                                        r"most 5 runs per file"):
        parse_spec(text, max_runs=5)
    assert len(parse_spec(text, max_runs=6).get("demo").runs) == 6


def test_printable_method_names_with_brackets_are_fine():
    spec = parse_spec(HEAD.replace('["Random"]', '[{ name = "[bold]x", preset = "Random" }, '
                                                 '{ name = "λ-décay", preset = "WS" }]'))
    assert [r.name for r in spec.get("demo").runs] == ["demo/[bold]x/s0", "demo/λ-décay/s0"]


def test_every_float_setting_is_checked_for_finiteness():
    floats = {k for k, kind in FIELD_KINDS.items() if kind == "float"}
    text = (BAD_INPUTS / "every-float-not-finite.toml").read_text()
    with pytest.raises(SpecError) as raised:
        parse_spec(text)
    assert {i.key.removeprefix("experiment[0].") for i in raised.value.issues} == floats
    for key in floats:  # and the run settings refuse them too (a store written by hand, the Python API)
        with pytest.raises(ConfigError, match=f"{key} = inf is not finite"):
            dataclasses.replace(RunConfig(), **{key: float("inf")}).validate()


# --- λ_0 given as lambda_n (λ_0·N_0) -------------------------------------------------------------


def test_lambda_n_gives_each_budget_lambda_0_from_one_invariant():
    """lambda_n = 10 is MNIST's λ_0·N_0: 0.05 at N_0 = 200, 0.02 at 500; swept N_0 follow it."""
    spec = parse_spec(HEAD.replace('["Random"]', '["WS+init", "Entropy"]') + "rounds = 3\nlambda_n = 10\n"
                      "initial = [20, 50]\nbudget = 10\n")
    runs = {r.name: r.config for r in spec.get("demo").runs}
    assert runs["demo/WS+init/initial=20/s0"].weight_decay == pytest.approx(0.5)
    assert runs["demo/WS+init/initial=50/s0"].weight_decay == pytest.approx(0.2)
    # the fixed-decay preset ends where WS ends: λ_0·N_0 / N_{R-1} = 10 / 70
    assert runs["demo/Entropy/initial=50/s0"].weight_decay == pytest.approx(10 / 70)
    assert spec.get("demo").table["lambda_n"] == 10.0 and "weight_decay" not in spec.get("demo").table


def test_lambda_n_and_weight_decay_in_one_table_are_refused_but_an_experiment_replaces_the_defaults():
    with pytest.raises(SpecError) as raised:
        parse_spec("[defaults]\nweight_decay = 0.1\nlambda_n = 3\n\n" + HEAD, "exp.toml")
    (issue,) = raised.value.issues
    assert str(issue).startswith("exp.toml:3:1: defaults.lambda_n: lambda_n (λ_0·N_0) and weight_decay (λ_0, "
                                 "line 2) both give λ_0")
    spec = parse_spec("[defaults]\nweight_decay = 0.1\n\n" + HEAD.replace('["Random"]', '["WS+init"]')
                      + "initial = 40\nlambda_n = 4\n")
    (run,) = spec.get("demo").runs
    assert run.config.weight_decay == pytest.approx(0.1 * 1)  # 4 / 40, the experiment's lambda_n
    spec = parse_spec("[defaults]\nlambda_n = 4\n\n" + HEAD.replace('["Random"]', '["WS+init"]')
                      + "initial = 40\nweight_decay = 0.3\n")
    assert spec.get("demo").runs[0].config.weight_decay == pytest.approx(0.3)


def test_every_shipped_experiment_says_where_its_lambda_0_comes_from(shipped):
    lines = {e.name: derivation(e.table) for e in shipped.experiments}
    assert lines["mnist-k500"].startswith("λ_0 = 0.02 (λ_0·N_0 = 10): inferred: §4.2 states Entropy(0.004) at 2,500")
    assert lines["mnist-k200"].startswith("λ_0 = 0.05 (λ_0·N_0 = 10): inferred: the text gives no decay for K = 200")
    assert "Table 1's best fixed decays for mnist/cnn5 follow λ·N ≈ 20" in lines["mnist-k200"]
    assert lines["cifar10-resnet18-k1000"].startswith("λ_0 = 0.008 (λ_0·N_0 = 8): stated in the paper: §4.3")
    assert lines["cifar10-resnet18-k250"].startswith("λ_0 = 0.032 (λ_0·N_0 = 8): inferred")
    assert lines["cifar10-densenet100-k250"].startswith("λ_0 = 0.012 (λ_0·N_0 = 3): inferred: §4.3 states Random")
    assert lines["table1-mnist"] == "λ_0: swept (each run's weight_decay is in its settings)"
    assert "recipe's default" in lines["digits-demo"]
    assert all(not line.startswith("λ_0 =") or "inferred" in line or "stated" in line or "recipe" in line
               for line in lines.values())
    spec = parse_spec(HEAD + "initial = 40\nlambda_n = 4\n")
    assert derivation(spec.get("demo").table) == "λ_0 = lambda_n / N_0 = 4 / 40 = 0.1: set by the experiment as λ_0·N_0"


def test_the_documented_lambda_n_example_loads():
    text = (REPO / "docs" / "configuration.md").read_text()
    block = text.split('name = "mnist-table1-invariant"', 1)[0].rsplit("```toml", 1)[1]
    block += 'name = "mnist-table1-invariant"' + text.split('name = "mnist-table1-invariant"', 1)[1].split("```", 1)[0]
    runs = {r.name: r.config.weight_decay for r in parse_spec(block).get("mnist-table1-invariant").runs}
    assert runs["mnist-table1-invariant/WS+init/initial=200/s0"] == pytest.approx(0.1)
    assert runs["mnist-table1-invariant/WS+init/initial=500/s0"] == pytest.approx(0.04)
