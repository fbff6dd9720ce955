"""A run's numbers depend on its settings, its seed and what it records as provenance (threads, torch,
device, ...): with all of them equal, two runs are identical (docs/method.md)."""

from __future__ import annotations

import pytest
import torch

from altui.al import loop
from altui.al.config import ConfigError
from altui.al.presets import resolve
from altui.al.sink import ListSink

TINY = dict(dataset="digits", model="cnn5", rounds=3, initial=20, budget=20, epochs=3, milestones=[2],
            device="cpu", pool_subset=300, seed=5)


def run(threads: int) -> ListSink:
    sink = ListSink()
    loop.run(resolve("WS+init", {**TINY, "threads": threads}), sink)
    return sink


@pytest.fixture
def keep_threads():  # noqa: ANN201
    """A run sets the process's threads; the tests after this one keep theirs."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_and_same_threads_give_the_same_picks_and_accuracies(threads: int, keep_threads: None) -> None:
    torch.set_num_threads(3 - threads)  # the process starts with another count: the setting wins
    a = run(threads)
    torch.set_num_threads(3 - threads)
    b = run(threads)
    assert [r.picks for r in a.rounds] == [r.picks for r in b.rounds] and len(a.rounds) == 3
    assert [r.accuracy for r in a.rounds] == [r.accuracy for r in b.rounds]
    assert [e.train_loss for e in a.epochs] == [e.train_loss for e in b.epochs]
    # what each recorded: the same, and what the run ran with
    p = a.provenance
    assert p is not None and p == b.provenance
    assert (p["torch_version"], p["cuda_version"], p["threads"], p["compiled"]) == (
        torch.__version__, torch.version.cuda, threads, 0)  # compile "auto" is off on the CPU
    assert p["device_name"].startswith("cpu: ") and len(p["device_name"]) > 5
    assert p["deterministic"] == "algorithms=off cudnn.benchmark=off cudnn.deterministic=off"
    assert p["altui_version"] not in ("", None)


def test_threads_zero_keeps_the_process_default_and_a_negative_count_is_refused(keep_threads: None) -> None:
    torch.set_num_threads(2)
    sink = ListSink()
    loop.run(resolve("WS+init", {**TINY, "threads": 0, "rounds": 1, "epochs": 1, "milestones": [1]}), sink)
    assert sink.provenance is not None and sink.provenance["threads"] == 2
    with pytest.raises(ConfigError, match="threads"):
        resolve("WS+init", {**TINY, "threads": -1}).validate()
