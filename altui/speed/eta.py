"""ETAs of runs: the training images a run needs, and when each run of the queue ends at the speeds
measured (altui.speed.speeds: per device and workload, from this store's runs, else from `altui
estimate`'s cache). No torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from altui.al.config import RunConfig

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


def queued_row(cfg: RunConfig) -> dict[str, Any]:
    """A run of `cfg` not queued yet, as a `Store.runs` row: for the estimate of what queueing adds."""
    return {"status": "queued", "rounds_total": cfg.rounds, "epochs_total": cfg.epochs, "initial": cfg.initial,
            "budget": cfg.budget, "model": cfg.model, "dataset": cfg.dataset, "batch_size": cfg.batch_size,
            "compile": cfg.compile, "distill": cfg.distill, "spec_json": json.dumps(cfg.to_dict())}


class Speeds(Protocol):
    """What ETAs run at (altui.speed.speeds.Speeds)."""

    def seconds_left(self, run: dict[str, Any], now: datetime | None = None) -> float | None: ...


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


def estimate(configs: list[RunConfig], speeds: Speeds, parallel: int = 1) -> Estimate:
    """Training images and time of `configs`, not queued yet, at `speeds` (altui.speed.speeds),
    `parallel` runs at once."""
    images = sum(train_images(c) for c in configs)
    times = [speeds.seconds_left(queued_row(c)) for c in configs]
    if not configs or None in times:
        return Estimate(len(configs), images, None if configs else 0.0, None if configs else 0.0)
    seconds = sum(t for t in times if t is not None)
    return Estimate(len(configs), images, seconds, seconds / max(1, min(parallel, len(configs))))


def pending_in_slurm(run: dict[str, Any]) -> bool:
    """Queued with a Slurm job: submitted, waiting for Slurm to start it (runs.slurm_reason says why)."""
    return run["status"] == "queued" and bool(run.get("slurm_job_id"))


def queue_finish(runs: list[dict[str, Any]], speeds: Speeds, slots: int = 1,
                 now: datetime | None = None) -> dict[int, float | None]:
    """Seconds from now until each queued or running run is done (`Store.runs` rows), when the
    worker runs the queue in its order (oldest id first) on `slots` slots at `speeds`.
    None where that depends on a time not measured yet, or on when Slurm starts a pending job (its
    ETA waits for Slurm, and so do the runs behind it on its place). Done, failed and cancelled runs
    are left out."""
    import heapq

    finish: dict[int, float | None] = {}
    free: list[float] = []  # when each slot is free; inf: not known
    for run in runs:
        if run["status"] == "running":
            left = speeds.seconds_left(run, now)
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
        need = speeds.seconds_left(run)
        end = math.inf if need is None else start + need
        finish[run["id"]] = None if math.isinf(end) else end
        heapq.heappush(free, end)
    return finish
