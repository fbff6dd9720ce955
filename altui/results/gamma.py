"""The paper's Figure 5 as data: one batch-norm layer's |gamma| at a few rounds of a run.

Section 5.1 draws the |gamma| histogram of one layer (ResNet18: the first batch norm of the first
residual block) at three points of a run, with a line at the layer's mean |gamma| / 10 and the number
of channels below it. The values come from the store's `gammas` rows; the count is `count_effective`'s,
so it is channels - effective of that layer's `channels` row. Pure functions over rows, and a few
readers of a store, so that the CLI, the report and the dashboard show the same numbers.
figure5.py draws them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from altui.al.catalog import PAPER_LAYER
from altui.al.probes import count_effective, histogram
from altui.store import Store

PAPER_METHODS = ("WS", "WS+init", "Entropy+init")  # the runs Figure 5 compares, in its order
BINS = 20


class GammaError(ValueError):
    """A run has no |gamma| to draw; the message says which run and why."""


def abs_gamma(text: str) -> Tensor:
    """A `gammas` row's `abs_gamma` (a JSON array) as float32; null (a value that was not finite)
    reads back as NaN."""
    return torch.tensor([math.nan if v is None else v for v in json.loads(text)], dtype=torch.float32)


def threshold(a: Tensor) -> float:
    """The layer's mean |gamma| / 10, computed as `count_effective` computes it (float32)."""
    return float(a.mean() / 10)


def below_threshold(a: Tensor) -> int:
    """Channels below the line: those `count_effective` does not count (channels - effective)."""
    return a.numel() - count_effective(a)


@dataclass(frozen=True)
class Panel:
    """One sub-figure: a layer's |gamma| after one round."""

    round: int
    n_labeled: int | None
    channels: int
    below: int  # channels under mean/10 (ineffective)
    threshold: float  # mean |gamma| / 10
    edges: tuple[float, ...]  # bins + 1, from 0 to the largest |gamma|
    counts: tuple[int, ...]


def panel(round_: int, abs_gamma_json: str, n_labeled: int | None = None, bins: int = BINS) -> Panel:
    a = abs_gamma(abs_gamma_json)
    edges, counts = histogram(a, bins)
    return Panel(round_, n_labeled, a.numel(), below_threshold(a), threshold(a), tuple(edges), tuple(counts))


def figure_rounds(rounds: Iterable[int]) -> list[int]:
    """The first, a middle and the last of the recorded rounds (fewer when fewer are recorded)."""
    ordered = sorted(rounds)
    if not ordered:
        return []
    return list(dict.fromkeys([ordered[0], ordered[(len(ordered) - 1) // 2], ordered[-1]]))


def paper_layer(model: str) -> str:
    """The batch norm whose |gamma| the paper draws, for a model."""
    if model not in PAPER_LAYER:
        raise GammaError(f"model {model!r} names no paper layer; known: {', '.join(PAPER_LAYER)}")
    return PAPER_LAYER[model]


@dataclass(frozen=True)
class RunGamma:
    """One column of the figure: a run's panels, first round on top."""

    run_id: int
    run: str
    method: str
    seed: int
    weight_decay: float  # as the paper labels a method: lambda_0 of WS, the decay of a fixed method
    model: str
    layer: str
    panels: tuple[Panel, ...]

    @property
    def label(self) -> str:
        """The paper's way, "WS+init(0.008)", and the seed."""
        method = self.method if "(" in self.method else f"{self.method}({self.weight_decay:.3g})"
        return f"{method} s{self.seed}"


def run_gamma(store: Store, run_id: int, rounds: Sequence[int] | None = None, bins: int = BINS) -> RunGamma:
    """A run's |gamma| of its model's paper layer at `rounds` (default: the first, a middle and the
    last recorded round)."""
    run = store.run(run_id)
    if run is None:
        raise GammaError(f"no run {run_id} in {store.path}")
    config = json.loads(run["spec_json"])
    model = config.get("model", "")
    layer = paper_layer(model)
    rows = {r["round"]: r for r in store.gammas(run_id, layer)}
    if not rows:
        recorded = store.last_round(run_id) + 1
        why = ("no round is recorded yet" if not recorded else
               f"its {recorded} recorded round(s) have no |γ| rows for layer {layer!r} "
               "(recorded before altui stored them?)")
        raise GammaError(f"run {run['name']}: {why}")
    wanted = figure_rounds(rows) if rounds is None else list(rounds)
    missing = [r for r in wanted if r not in rows]
    if missing:
        raise GammaError(f"run {run['name']}: no |γ| of layer {layer!r} for round(s) {missing}; "
                         f"recorded: {sorted(rows)}")
    labeled = {r["round"]: r["n_labeled"] for r in store.rounds(run_id)}
    panels = tuple(panel(t, rows[t]["abs_gamma"], labeled.get(t), bins) for t in wanted)
    return RunGamma(run_id, run["name"], run["method"], run["seed"], float(config.get("weight_decay", math.nan)),
                    model, layer, panels)


def paper_runs(store: Store, experiment: str) -> list[int]:
    """Figure 5's runs in an experiment: of each of WS, WS+init and Entropy+init, the run with the
    lowest seed that has a recorded round."""
    runs = store.runs(experiment=experiment)
    chosen = []
    for method in PAPER_METHODS:
        done = [r for r in runs if r["method"] == method and r["rounds_done"]]
        if done:
            chosen.append(min(done, key=lambda r: (r["seed"], r["id"]))["id"])
    return chosen


def target_runs(store: Store, targets: Sequence[str]) -> list[int]:
    """Run ids from targets: an experiment's name stands for its Figure-5 runs (`paper_runs`), else
    a run id or name (an unknown one is a StoreError that names it)."""
    ids: list[int] = []
    for target in targets:
        if store.experiment(target) is not None:
            found = paper_runs(store, target)
            if not found:
                raise GammaError(f"experiment {target!r} has no {', '.join(PAPER_METHODS)} run with a recorded "
                                 "round; give run ids or names")
            ids += found
        else:
            ids += store.resolve([target])
    return list(dict.fromkeys(ids))
