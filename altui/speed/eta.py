"""ETAs of runs from recorded history: the training images a run needs, and time at measured speeds.

`Store.measured_throughput()`: training images/s per (model, batch size) that runs on this store really
achieved (their epochs rows); `estimate()`, `seconds_left()` and `queue_finish()` use it for ETAs of runs,
with `known_throughput()` filling in `altui estimate`'s measurement where none has run yet. No torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from altui.al.config import RunConfig

if TYPE_CHECKING:
    from altui.store import Store

# ---- training images, and ETAs from the epochs runs recorded ----------------------------------------


def config_of(run: dict[str, Any]) -> RunConfig:
    """The RunConfig of a `runs` row (its spec_json)."""
    return RunConfig.from_dict(json.loads(run["spec_json"]))


def labels_sum(initial: int, budget: int, first: int, stop: int) -> int:
    """N_first + ... + N_(stop-1), with N_t = initial + t * budget: in closed form, so that 2**64
    rounds cost no more than 5."""
    count = max(0, stop - first)
    return count * initial + budget * (first + stop - 1) * count // 2


def train_images(cfg: RunConfig) -> int:
    """Images a whole run trains on: epochs x N_t, summed over its rounds."""
    return cfg.epochs * labels_sum(cfg.initial, cfg.budget, 0, cfg.rounds)


def remaining_images(cfg: RunConfig, rounds_done: int, epoch: int | None = None) -> int:
    """Training images still ahead of a run that has recorded `rounds_done` rounds and is `epoch`
    epochs into the next one."""
    return images_left(cfg.rounds, cfg.epochs, cfg.initial, cfg.budget, rounds_done, epoch)


def images_left(rounds: int, epochs: int, initial: int, budget: int, rounds_done: int, epoch: int | None) -> int:
    """remaining_images() of plain numbers (a `Store.runs` row has them: no settings to build)."""
    if rounds_done >= rounds:
        return 0
    current = (initial + rounds_done * budget) * (epochs - min(epoch or 0, epochs))
    return current + epochs * labels_sum(initial, budget, rounds_done + 1, rounds)


def throughput_key(cfg: RunConfig) -> tuple[str, int]:
    """What a measured throughput applies to: the model and its batch size."""
    return cfg.model, cfg.batch_size


_ROW_PLAN = ("rounds_total", "epochs_total", "initial", "budget", "model", "batch_size")


def seconds_left(run: dict[str, Any], throughput: dict[tuple[str, int], float]) -> float | None:
    """Seconds a queued or running run still needs at the measured throughput (images/s) of its model
    and batch size; None when nothing has been measured for them yet. Done, failed and cancelled
    runs need none. A `Store.runs` row carries the settings this needs; another dict is read from
    its spec_json."""
    if run["status"] not in ("queued", "running"):
        return 0.0
    if all(isinstance(run.get(k), int) for k in _ROW_PLAN if k != "model"):
        rounds, epochs, initial, budget, model, batch = (run[k] for k in _ROW_PLAN)
    else:
        cfg = config_of(run)
        rounds, epochs, initial, budget, model, batch = (cfg.rounds, cfg.epochs, cfg.initial, cfg.budget,
                                                         cfg.model, cfg.batch_size)
    speed = throughput.get((model, batch))
    if not speed:
        return None
    epoch = run.get("epoch") if run["status"] == "running" else 0
    return images_left(rounds, epochs, initial, budget, run.get("rounds_done") or 0, epoch) / speed


@dataclass(frozen=True)
class Estimate:
    """What a set of runs will take: their training images, and time at measured speeds."""

    runs: int
    train_images: int
    device_seconds: float | None  # device time: one device running them one after another; None: not measured
    wall_seconds: float | None  # with the runs spread over the devices and slots
    device: str | None = None  # what the speeds were measured on (plan()); None: recorded epochs (estimate())
    gpus: int = 1
    slots: int = 1  # runs at once per device
    run_seconds: tuple[float, ...] = field(default=(), repr=False)  # each run's time, in queue order (plan())

    @property
    def gpu_hours(self) -> float | None:
        return None if self.device_seconds is None else self.device_seconds / 3600

    def to_json(self) -> dict[str, Any]:
        return {"runs": self.runs, "train_images": self.train_images, "wall_seconds": self.wall_seconds,
                "device": self.device, "gpu_hours": self.gpu_hours, "device_seconds": self.device_seconds,
                "gpus": self.gpus, "slots": self.slots, "run_seconds": list(self.run_seconds)}


def estimate(configs: list[RunConfig], throughput: dict[tuple[str, int], float], parallel: int = 1) -> Estimate:
    """Training images and training time of `configs` at `throughput` (images/s per (model, batch
    size), e.g. Store.measured_throughput()), `parallel` runs at once."""
    images = sum(train_images(c) for c in configs)
    speeds = [throughput.get(throughput_key(c)) for c in configs]
    if not configs or not all(speeds):
        return Estimate(len(configs), images, None if configs else 0.0, None if configs else 0.0)
    seconds = sum(train_images(c) / s for c, s in zip(configs, speeds, strict=True))
    return Estimate(len(configs), images, seconds, seconds / max(1, min(parallel, len(configs))))


def known_throughput(store: Store) -> dict[tuple[str, int], float]:
    """Training images/s per (model, batch size) for ETAs: what runs on this store achieved
    (Store.measured_throughput), and where none has run yet, `altui estimate`'s measurement of the
    device measured last (one run at a time)."""
    rows = store.throughput()
    latest = rows[-1]["device"] if rows else None
    cached = {(r["model"], r["batch"]): r["value"] for r in rows
              if r["device"] == latest and r["kind"] == "train" and r["slots"] == 1}
    return {**cached, **store.measured_throughput()}


def pending_in_slurm(run: dict[str, Any]) -> bool:
    """Queued with a Slurm job: submitted, waiting for Slurm to start it (runs.slurm_reason says why)."""
    return run["status"] == "queued" and bool(run.get("slurm_job_id"))


def queue_finish(runs: list[dict[str, Any]], throughput: dict[tuple[str, int], float],
                 slots: int = 1) -> dict[int, float | None]:
    """Seconds from now until each queued or running run is done (`Store.runs` rows), when the
    worker runs the queue in its order (oldest id first) on `slots` slots at the measured throughput.
    None where that depends on a time not measured yet, or on when Slurm starts a pending job (its
    ETA waits for Slurm, and so do the runs behind it on its place). Done, failed and cancelled runs
    are left out."""
    import heapq

    finish: dict[int, float | None] = {}
    free: list[float] = []  # when each slot is free; inf: not known
    for run in runs:
        if run["status"] == "running":
            left = seconds_left(run, throughput)
            finish[run["id"]] = left
            free.append(math.inf if left is None else left)
        elif pending_in_slurm(run):  # it starts when Slurm says (Resources, Priority, ...): not known
            finish[run["id"]] = None
            free.append(math.inf)  # and it holds one of the head's --max-jobs places until then
    free += [0.0] * max(0, slots - len(free))
    heapq.heapify(free)
    for run in sorted((r for r in runs if r["status"] == "queued" and not pending_in_slurm(r)),
                      key=lambda r: r["id"]):
        start = heapq.heappop(free)
        need = seconds_left(run, throughput)
        end = math.inf if need is None else start + need
        finish[run["id"]] = None if math.isinf(end) else end
        heapq.heappush(free, end)
    return finish
