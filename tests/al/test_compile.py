"""Compiled training (torch.compile with inductor, on the CPU here) means what eager training means.

Same seed, same data: every epoch's train loss agrees within TOLERANCE, the rounds pick the same
samples, and a run compiles each variant of its step once: a later round, whose last batch has
another size, compiles nothing. Compiling takes a while on a small CPU; the runs are kept tiny.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from torch._dynamo.utils import counters

from altui.al import loop, train
from altui.al.presets import resolve
from altui.al.sink import ListSink

# Relative difference allowed between a compiled and an eager epoch loss. Inductor fuses and reorders
# float32 arithmetic (differences of ~1e-7 in a step) and SGD carries them on; these runs (lr 0.001)
# stayed within 2e-4 on the CPU (docs/benchmarks.md). A large lr on a few samples amplifies any
# rounding (eager runs on 1 and 2 threads drift apart as much), so the runs here train gently.
TOLERANCE = 1e-3

TINY = dict(dataset="digits", model="cnn5", device="cpu", pool_subset=300, batch_size=8, epochs=3, lr=0.001,
            milestones=[2])


class GraphCountingSink(ListSink):
    """Also records how many graphs dynamo had compiled when each round ended."""

    def __init__(self) -> None:
        super().__init__()
        self.graphs: list[int] = []

    def round_done(self, result, state) -> None:  # noqa: ANN001
        super().round_done(result, state)
        self.graphs.append(counters["stats"]["unique_graphs"])


def run(preset: str, compile: bool, **fields) -> GraphCountingSink:  # noqa: A002
    sink = GraphCountingSink()
    loop.run(resolve(preset, {**TINY, **fields, "compile": compile}), sink)
    return sink


def assert_same_training(eager: ListSink, compiled: ListSink) -> int:
    """Every epoch's loss agrees within TOLERANCE, in each round trained on the same labeled list;
    every round picks the same samples. Returns the rounds compared.

    Scores that differ by float rounding only can swap places within the top K (the same samples,
    in another order); a later round then sees its batches in another order, and its losses are no
    longer the same computation, so they are not compared."""
    assert len(eager.epochs) == len(compiled.epochs) > 0
    assert eager.rounds[0].picks == compiled.rounds[0].picks  # round 0's picks, in the same order
    diverged = [t + 1 for t, (a, b) in enumerate(zip(eager.states, compiled.states, strict=True))
                if a.labeled != b.labeled]  # round t + 1 trains on another list
    same = min([*diverged, len(eager.rounds)])
    for a, b in zip(eager.rounds, compiled.rounds, strict=True):
        assert set(a.picks) == set(b.picks), f"round {a.round} picked other samples"
        if a.round < same:  # a round trained on another order is another computation (3 images apart seen)
            assert b.accuracy == pytest.approx(a.accuracy, abs=2 / 450)  # two of digits' 450 test images
    compared = [(a, b) for a, b in zip(eager.epochs, compiled.epochs, strict=True) if a.round < same]
    for a, b in compared:
        assert (a.round, a.epoch) == (b.round, b.epoch)
        assert b.train_loss == pytest.approx(a.train_loss, rel=TOLERANCE), (a.round, a.epoch)
    return same


@pytest.mark.slow
def test_entropy_run_compiled_picks_the_same_round0_samples_as_eager():
    """WS+init on digits: batches of 8 from 16 and 24 labels, so only full batches here."""
    fields = dict(rounds=2, initial=16, budget=8)
    eager, compiled = run("WS+init", False, **fields), run("WS+init", True, **fields)
    assert assert_same_training(eager, compiled) == 2
    assert len(compiled.rounds[0].picks) == 8
    assert not [m for level, m in compiled.logs if level == "warning"], compiled.logs


@pytest.mark.slow
def test_distillation_and_learning_loss_compiled_agree_and_later_rounds_never_recompile():
    """KD2 with Learning Loss: the teacher's forward, the loss module and the kd2 mask are compiled.
    N_t = 16, 27, 38 with batches of 8: round 0 has full batches only, rounds 1 and 2 end with 3 and
    6 images. Round 1 compiles the teacher's variant (full and last batch); round 2 compiles
    nothing, though its last batch has another size."""
    fields = dict(rounds=3, initial=16, budget=11, acquisition="ll", ll_stop_epoch=0, ll_subset=200)
    eager = run("WS+init+KD2", False, **fields)
    compiled = run("WS+init+KD2", True, **fields)
    assert assert_same_training(eager, compiled) >= 2  # rounds 0 and 1 at least, with and without teacher
    assert compiled.graphs[2] == compiled.graphs[1], "round 2 compiled again"
    assert compiled.graphs[1] > compiled.graphs[0] > 0  # the teacher's variant, once


def test_a_failing_compiler_is_logged_once_and_training_goes_on_eagerly(monkeypatch):
    """Compilation that raises (say, no C++ compiler) changes nothing but a warning: the step was
    tried on copies first, so the run's modules are untouched and train as eager ones do."""

    def broken(device_type: str, full: bool):  # noqa: ANN202
        def fail(*args):  # noqa: ANN002, ANN202
            raise RuntimeError("InductorError: no working C++ compiler")
        return fail

    monkeypatch.setattr(train, "compiled_function", broken)
    monkeypatch.setattr(train, "_compile_error", None)
    monkeypatch.setattr(train, "_checked", set())
    fields = dict(rounds=2, initial=20, budget=10)
    compiled = run("WS+init", True, **fields)
    eager = run("WS+init", False, **fields)
    warnings = [m for level, m in compiled.logs if level == "warning"]
    assert len(warnings) == 1 and "torch.compile failed" in warnings[0] and "no working C++ compiler" in warnings[0]
    assert [e.train_loss for e in compiled.epochs] == [e.train_loss for e in eager.epochs]
    assert [r.picks for r in compiled.rounds] == [r.picks for r in eager.rounds]


STEP_SCRIPT = """
import os, torch
from torch._dynamo.utils import counters
from altui.al import train
from altui.al.config import RunConfig
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10))
x, y = torch.randn(4, 1, 4, 4), torch.randint(0, 10, (4,))
one = torch.tensor(1.0)
loss = train.TrainStep(True, "cpu")(RunConfig(batch_size=4), model, None, None, x, y, None, one, False)[0]
loss.backward()
print(os.environ["TORCHINDUCTOR_CACHE_DIR"], counters["inductor"]["fxgraph_cache_hit"])
"""


@pytest.mark.slow
def test_inductor_keeps_its_kernels_on_disk_across_processes(tmp_path):
    """Compiled kernels go to the user's cache folder, which outlives the process (and a reboot,
    unlike inductor's default in /tmp): a second process compiling the same step is served from it."""
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)

    def compile_in_a_new_process() -> tuple[str, int]:
        done = subprocess.run([sys.executable, "-c", STEP_SCRIPT], env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        folder, hits = done.stdout.split()[-2:]
        return folder, int(hits)

    folder, hits = compile_in_a_new_process()
    assert folder == str(tmp_path / "altui" / "inductor") and hits == 0
    assert any(name.startswith("fxgraph") for name in os.listdir(folder)), os.listdir(folder)
    again, hits = compile_in_a_new_process()
    assert again == folder and hits > 0


def test_compile_auto_is_on_for_cuda_and_off_for_the_cpu():
    cfg = resolve("WS+init", {**TINY})
    assert cfg.compile == "auto"
    assert cfg.compile_on("cuda") and not cfg.compile_on("cpu")
    assert resolve("WS+init", {**TINY, "compile": True}).compile_on("cpu")
    assert not resolve("WS+init", {**TINY, "compile": False}).compile_on("cuda")
