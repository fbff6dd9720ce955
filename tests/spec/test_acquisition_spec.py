"""experiments.toml: every acquisition in a method table with WS+init+KD1, and BALD's keys checked where they
are written."""

from __future__ import annotations

import textwrap

import pytest

from altui.al.config import ACQUISITIONS
from altui.spec import SpecError, load_spec, parse_spec

HEAD = """
[[experiment]]
name = "acq"
dataset = "digits"
model = "cnn5"
rounds = 3
initial = 50
budget = 50
"""


@pytest.mark.parametrize("acquisition", [a for a in ACQUISITIONS if a != "ll"] + ["ll"])
def test_each_acquisition_parses_in_a_method_table_with_ws_init_kd1(acquisition):
    spec = parse_spec(HEAD + textwrap.dedent(f"""\
        methods = [{{ name = "m", preset = "WS+init+KD1", acquisition = "{acquisition}" }}]
        """))
    cfg = spec.experiments[0].runs[0].config
    assert (cfg.acquisition, cfg.wd_schedule, cfg.init, cfg.distill) == (acquisition, "inverse", "fresh", "kd1")


def test_bald_settings_in_a_method_table_with_any_schedule_init_and_distillation():
    bald_table = ('{ name = "bald-exact-same-kd2", acquisition = "bald", wd_schedule = "exact", init = "same", '
                  'distill = "kd2", mc_samples = 8, mc_dropout = 0.25, mc_dropout_train = true, pool_subset = 400 }')
    spec = parse_spec(HEAD + f'methods = [{bald_table}, "BADGE+WS+init+KD1", "CoreSet"]\n')
    runs = {r.method: r.config for r in spec.experiments[0].runs}
    bald = runs["bald-exact-same-kd2"]
    assert (bald.mc_samples, bald.mc_dropout, bald.mc_dropout_train, bald.pool_subset) == (8, 0.25, True, 400)
    assert (runs["BADGE+WS+init+KD1"].acquisition, runs["CoreSet"].acquisition) == ("badge", "coreset")
    assert runs["CoreSet"].wd_schedule == "fixed" and runs["CoreSet"].init == "warm"


def test_bad_bald_settings_are_reported_at_their_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(HEAD + textwrap.dedent("""\
        methods = [
            { name = "a", acquisition = "bald", mc_dropout = 1.0 },
            { name = "b", acquisition = "bald", mc_samples = 1 },
            { name = "d", acquisition = "badg" },
        ]
        """))
    with pytest.raises(SpecError) as raised:
        load_spec(path)
    text = str(raised.value)
    assert "bad.toml:10:" in text and "methods[0].mc_dropout" in text and "[0, 1)" in text
    assert "bad.toml:11:" in text and "methods[1].mc_samples" in text and ">= 2" in text
    assert "bad.toml:12:" in text and "did you mean 'badge'" in text


def test_bald_without_dropout_is_reported_at_its_method(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(HEAD + 'methods = ["Entropy", { name = "c", acquisition = "bald", mc_dropout = 0 }]\n')
    with pytest.raises(SpecError) as raised:
        load_spec(path)
    assert str(raised.value).startswith(f"{path}:9:")
    assert "methods[1].mc_dropout: method 'c': mc_dropout = 0.0" in str(raised.value)
    assert "allowed: mc_dropout in (0, 1)" in str(raised.value)
