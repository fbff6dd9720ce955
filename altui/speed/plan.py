"""Whole-run times planned from the throughput cache, without torch.

The throughput cache (`altui estimate`, altui.speed.estimate): short measurements of this machine's device
per (device, model, input, batch, compile, augmentation, slots), taken once and kept in the store's
`throughput` table. `plan()` turns them into whole-run times: training (with the KD teacher and the LL
module where a round has them), test evaluation and acquisition, the per-round and per-epoch bookkeeping,
and the warm-up (compiling) of each run. `cached_estimate()` plans from the cache alone, for the dashboard.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from altui.al.catalog import DATASET_INFO, DatasetInfo
from altui.al.config import RunConfig
from altui.speed.eta import Estimate, train_images

if TYPE_CHECKING:
    from altui.store import Store

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
