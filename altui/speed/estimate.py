"""How long runs take: the training images a run needs, and time from measured speeds.

Two sources of speed:
- `Store.measured_throughput()`: training images/s per (model, batch size) that runs on this store
  really achieved (their epochs rows); `estimate()` and `seconds_left()` use it for ETAs of runs.
- the throughput cache (`altui estimate`): short measurements of this machine's device per (device,
  model, input, batch, compile, augmentation, slots), taken once and kept in the store's `throughput`
  table. `plan()` turns them into whole-run times: training (with the KD teacher and the LL module
  where a round has them), test evaluation and acquisition, the per-round and per-epoch bookkeeping,
  and the warm-up (compiling) of each run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from altui.al.catalog import DATASET_INFO, DatasetInfo
from altui.al.config import RunConfig

if TYPE_CHECKING:
    from altui.store import Store

# ---- training images, and ETAs from the epochs runs recorded ----------------------------------------


def config_of(run: dict[str, Any]) -> RunConfig:
    """The RunConfig of a `runs` row (its spec_json)."""
    return RunConfig.from_dict(json.loads(run["spec_json"]))


def train_images(cfg: RunConfig) -> int:
    """Images a whole run trains on: epochs x N_t, summed over its rounds."""
    return sum(cfg.epochs * cfg.n_labeled(t) for t in range(cfg.rounds))


def remaining_images(cfg: RunConfig, rounds_done: int, epoch: int | None = None) -> int:
    """Training images still ahead of a run that has recorded `rounds_done` rounds and is `epoch`
    epochs into the next one."""
    if rounds_done >= cfg.rounds:
        return 0
    current = cfg.n_labeled(rounds_done) * (cfg.epochs - min(epoch or 0, cfg.epochs))
    later = sum(cfg.epochs * cfg.n_labeled(t) for t in range(rounds_done + 1, cfg.rounds))
    return current + later


def throughput_key(cfg: RunConfig) -> tuple[str, int]:
    """What a measured throughput applies to: the model and its batch size."""
    return cfg.model, cfg.batch_size


def seconds_left(run: dict[str, Any], throughput: dict[tuple[str, int], float]) -> float | None:
    """Seconds a queued or running run still needs at the measured throughput (images/s) of its model
    and batch size; None when nothing has been measured for them yet. Done, failed and cancelled
    runs need none."""
    if run["status"] not in ("queued", "running"):
        return 0.0
    cfg = config_of(run)
    speed = throughput.get(throughput_key(cfg))
    if not speed:
        return None
    epoch = run.get("epoch") if run["status"] == "running" else 0
    return remaining_images(cfg, run.get("rounds_done") or 0, epoch) / speed


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


# ---- whole runs from the throughput cache ------------------------------------------------------------

# Measured kinds: images/s of training (plain, with a KD teacher, with the LL module, both) and of
# scoring; the others are seconds (warmup per run, last per epoch's last batch, round, epoch).
RATE_KINDS = ("train", "train_kd", "train_ll", "train_kd_ll", "score")


def train_variant(cfg: RunConfig, round_: int) -> str:
    """Which measured training speed a run's round trains at."""
    kd = cfg.distill != "none" and round_ > 0
    return "train" + ("_kd" if kd else "") + ("_ll" if cfg.acquisition == "ll" else "")


@dataclass(frozen=True)
class Shape:
    """What a run's data set looks like, for the estimate."""

    channels: int
    size: int
    classes: int
    pool: int
    test: int
    augment: bool


def data_shape(cfg: RunConfig) -> Shape:
    """The data set's shape: from the catalog, or by loading a user's npz / image folder."""
    info: DatasetInfo | None = DATASET_INFO.get(cfg.dataset)
    if info is None:
        from altui.al.data import load_dataset

        ds = load_dataset(cfg.dataset, cfg.data_root, download=False, path=cfg.extra.get("path"))
        info = DatasetInfo(ds.x.shape[1], ds.x.shape[2], ds.classes, ds.x.shape[0], ds.augment, ds.x_test.shape[0])
    augment = info.augment if cfg.augment is None else cfg.augment
    return Shape(info.channels, info.size, info.classes, info.pool, info.test, augment)


def workload_key(cfg: RunConfig, shape: Shape, device_type: str) -> tuple[str, str, int, bool, bool]:
    """(model, input, batch, compile, augment): a key of the throughput cache, without device and slots."""
    return (cfg.model, f"{shape.channels}x{shape.size}x{shape.size}", cfg.batch_size,
            cfg.compile_on(device_type), shape.augment)


def needed_kinds(cfg: RunConfig) -> set[str]:
    """The measurements a run's estimate uses."""
    return {train_variant(cfg, t) for t in range(cfg.rounds)} | {"warmup", "last", "score", "round", "epoch"}


def scored_images(cfg: RunConfig, shape: Shape, round_: int) -> int:
    """Pool images the acquisition after `round_` scores (none after the last round, none for random)."""
    if round_ == cfg.rounds - 1 or cfg.acquisition == "random":
        return 0
    unlabeled = shape.pool - cfg.n_labeled(round_)
    subset = cfg.pool_subset or (cfg.ll_subset if cfg.acquisition == "ll" else 0)
    return min(unlabeled, subset) if subset else unlabeled


def run_seconds(cfg: RunConfig, shape: Shape, m: dict[str, float]) -> float:
    """One run's seconds from measurements `m` (kind -> images/s or seconds): training (whole
    batches at the round's speed, and each epoch's last, partial batch), test evaluation,
    acquisition, per-round and per-epoch bookkeeping, and the run's warm-up."""
    total = m.get("warmup", 0.0)
    for t in range(cfg.rounds):
        speed = m[train_variant(cfg, t)]
        whole, rest = divmod(cfg.n_labeled(t), cfg.batch_size)
        last = m["last"] * m["train"] / speed if rest else 0.0  # the plain step's, scaled to this variant
        total += cfg.epochs * (whole * cfg.batch_size / speed + last + m["epoch"])
        total += (shape.test + scored_images(cfg, shape, t)) / m["score"] + m["round"]
    return total


def wall_time(seconds: Iterable[float], lanes: int) -> float:
    """When the last run ends if runs start in queue order on the first free of `lanes` slots (what
    the worker does)."""
    free = [0.0] * max(1, lanes)
    for s in seconds:
        i = free.index(min(free))
        free[i] += s
    return max(free)


def plan(configs: list[RunConfig], shapes: list[Shape], measurements: dict[tuple, dict[str, float]],
         device: str, device_type: str, gpus: int = 1, slots: int = 1) -> Estimate:
    """Whole-run estimate of `configs` (queue order) on `gpus` devices with `slots` runs at once on
    each, from `measurements` per workload_key (taken with that many slots busy)."""
    per_run = []
    for cfg, shape in zip(configs, shapes, strict=True):
        m = measurements.get(workload_key(cfg, shape, device_type))
        if m is None or not needed_kinds(cfg) <= set(m):
            return Estimate(len(configs), sum(map(train_images, configs)), None, None, device, gpus, slots)
        per_run.append(run_seconds(cfg, shape, m))
    return Estimate(
        runs=len(configs), train_images=sum(map(train_images, configs)),
        device_seconds=sum(per_run) / slots, wall_seconds=wall_time(per_run, gpus * slots),
        device=device, gpus=gpus, slots=slots, run_seconds=tuple(per_run),
    )


Cache = dict[tuple, dict[str, float]]  # (model, input, batch, compile, augment, slots) -> {kind: value}


def cached(store: Store, device: str, torch_version: str) -> Cache:
    """The throughput cache of one device and torch version."""
    out: Cache = {}
    for r in store.throughput(device, torch_version):
        key = (r["model"], r["input"], r["batch"], bool(r["compile"]), bool(r["augment"]), r["slots"])
        out.setdefault(key, {})[r["kind"]] = r["value"]
    return out


def with_slots(cache: Cache, slots: int) -> dict[tuple, dict[str, float]]:
    """Measurements per workload_key as they are with `slots` runs at once on the device: every rate
    divided, every time multiplied, by the slowdown of training measured with that many processes.
    A workload whose concurrent training was not measured is left out."""
    out = {}
    for (*key, s), values in cache.items():
        if s != 1:
            continue
        if slots > 1:
            shared = cache.get((*key, slots), {}).get("train")
            if not shared or "train" not in values:
                continue
            slowdown = values["train"] / shared
            values = {k: (v / slowdown if k in RATE_KINDS else v * slowdown) for k, v in values.items()}
        out[tuple(key)] = values
    return out


def measure_missing(store: Store, configs: list[RunConfig], shapes: list[Shape], device_spec: str = "auto",
                    slots: int = 1, seconds: float = 1.0, remeasure: bool = False,
                    log: Callable[[str], None] = lambda _: None) -> tuple[str, str]:
    """Measure on this machine's device what the cache lacks for `configs` (everything with
    `remeasure`) and store it. Returns (device name, device type)."""
    import torch

    from altui.al.loop import resolve_device
    from altui.speed.measure import Workload, concurrent_train_rates, device_name, overheads, score_rate, train_rate

    dev = resolve_device(device_spec)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = device_name(dev)
    cache = {} if remeasure else cached(store, name, torch.__version__)
    needed: dict[tuple, set[str]] = {}
    first: dict[tuple, tuple[RunConfig, Shape]] = {}
    for cfg, shape in zip(configs, shapes, strict=True):
        key = workload_key(cfg, shape, dev.type)
        needed.setdefault(key, set()).update(needed_kinds(cfg))
        first.setdefault(key, (cfg, shape))
    for key, kinds in needed.items():
        cfg, shape = first[key]
        model, _, batch, compiled, augment = key
        w = Workload(model, shape.channels, shape.size, shape.classes, batch, compiled, augment)
        have = cache.get((*key, 1), {})
        missing = kinds - set(have)
        if missing & {"warmup", "last"}:  # measured with plain training
            missing = (missing - {"warmup", "last"}) | {"train"}
        what = f"{model} {w.input} batch {batch}{', compiled' if compiled else ''} on {name}"
        values: dict[str, float] = {}
        for kind in sorted(missing):
            log(f"measuring {kind}: {what}")
            if kind.startswith("train"):
                values[kind], warmup, last = train_rate(w, dev, kind, seconds)
                if kind == "train":
                    values["warmup"], values["last"] = warmup, last
            elif kind == "score":
                values["score"] = score_rate(w, dev, cfg.eval_batch(dev.type), seconds)
            elif kind in ("round", "epoch") and "round" not in values:
                values["round"], values["epoch"] = overheads(w, dev, Path(store.path).parent)
        base = {"device": name, "model": model, "input": w.input, "batch": batch, "compile": int(compiled),
                "augment": int(augment), "torch_version": torch.__version__}
        rows = [{**base, "slots": 1, "kind": k, "value": v} for k, v in values.items()]
        if slots > 1 and "train" not in cache.get((*key, slots), {}):
            log(f"measuring train with {slots} processes at once: {what}")
            rates = concurrent_train_rates(w, dev, slots, max(2.0, 2 * seconds))
            rows.append({**base, "slots": slots, "kind": "train", "value": sum(rates) / len(rates)})
        if rows:
            store.save_throughput(rows)
    return name, dev.type


def estimate_runs(store: Store, configs: list[RunConfig], device: str = "auto", gpus: int = 1, slots: int = 1,
                  seconds: float = 1.0, remeasure: bool = False,
                  log: Callable[[str], None] = lambda _: None) -> Estimate:
    """`altui estimate`: measure what the store's cache lacks, then plan (cached_estimate: the
    cache alone)."""
    import torch

    shapes = [data_shape(c) for c in configs]
    name, device_type = measure_missing(store, configs, shapes, device, slots, seconds, remeasure, log)
    measurements = with_slots(cached(store, name, torch.__version__), slots)
    return plan(configs, shapes, measurements, name, device_type, gpus, slots)


def cached_estimate(store: Store, configs: list[RunConfig], gpus: int = 1, slots: int = 1,
                    device: str | None = None) -> Estimate:
    """What `altui estimate` prints, from the store's cache alone: no measuring and no torch, for the
    dashboard. device: a device name of the cache; None: the one measured last (with the torch
    version it was measured with). Times are None where the cache lacks a workload."""
    rows = store.throughput(device)
    shapes = [data_shape(c) for c in configs]
    if not rows:
        return plan(configs, shapes, {}, device or "", "cpu", gpus, slots)
    last = rows[-1]  # ordered by measured_at
    name, version = last["device"], last["torch_version"]
    device_type = "cpu" if name.startswith("cpu") else "cuda"
    return plan(configs, shapes, with_slots(cached(store, name, version), slots), name, device_type, gpus, slots)


def known_throughput(store: Store) -> dict[tuple[str, int], float]:
    """Training images/s per (model, batch size) for ETAs: what runs on this store achieved
    (Store.measured_throughput), and where none has run yet, `altui estimate`'s measurement of the
    device measured last (one run at a time)."""
    rows = store.throughput()
    latest = rows[-1]["device"] if rows else None
    cached = {(r["model"], r["batch"]): r["value"] for r in rows
              if r["device"] == latest and r["kind"] == "train" and r["slots"] == 1}
    return {**cached, **store.measured_throughput()}


def queue_finish(runs: list[dict[str, Any]], throughput: dict[tuple[str, int], float],
                 slots: int = 1) -> dict[int, float | None]:
    """Seconds from now until each queued or running run is done (`Store.runs` rows), when the
    worker runs the queue in its order (oldest id first) on `slots` slots at the measured throughput.
    None where that depends on a time not measured yet. Done, failed and cancelled runs are left out."""
    import heapq

    finish: dict[int, float | None] = {}
    free: list[float] = []  # when each slot is free; inf: not known
    for run in runs:
        if run["status"] == "running":
            left = seconds_left(run, throughput)
            finish[run["id"]] = left
            free.append(math.inf if left is None else left)
    free += [0.0] * max(0, slots - len(free))
    heapq.heapify(free)
    for run in sorted((r for r in runs if r["status"] == "queued"), key=lambda r: r["id"]):
        start = heapq.heappop(free)
        need = seconds_left(run, throughput)
        end = math.inf if need is None else start + need
        finish[run["id"]] = None if math.isinf(end) else end
        heapq.heappush(free, end)
    return finish
