"""`altui estimate`: measure on this machine's device what the throughput cache lacks
(altui.speed.measure, torch), then plan whole-run times from the cache (altui.speed.plan).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from altui.al.config import RunConfig
from altui.speed.plan import Shape, cached, data_shape, needed_kinds, plan, with_slots, workload_key

if TYPE_CHECKING:
    from altui.speed.eta import Estimate
    from altui.store import Store


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
