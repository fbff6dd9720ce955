"""The speeds ETAs run at, never mixing unlike measurements.

A speed applies to one device (its name, as runs record it: "NVIDIA H200", "cpu: AMD EPYC 7B13") and
one workload: model, data set, batch size, compiled or not. Runs on this store give the best figure:
training images per second over their whole rounds (training, test evaluation, acquisition, as
`rounds` records them), and the seconds each run spends outside its rounds (starting, loading data).
Where no run has trained a workload on the device yet, `altui estimate`'s measurement of that device
(the throughput cache, altui.speed.plan) plans whole runs instead. The queue runs on the device of the
store's last run (or, before any, the one `altui estimate` measured last): a queued run's ETA uses
that device's speeds only, and a running run's its own device's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from statistics import median
from typing import TYPE_CHECKING, Any

from altui.al.config import RunConfig
from altui.speed.eta import images_left, train_images
from altui.store.connection import parse_time

if TYPE_CHECKING:
    from altui.store import Store

Workload = tuple[str, str, int, bool, bool]  # model, data set, batch size, compiled, distilled (a teacher's pass)


def compiled_on(compile_setting: Any, device: str | None) -> bool:
    """RunConfig.compile_on for a device name: "auto" compiles on a GPU, not on the CPU."""
    if compile_setting in (None, "auto"):
        return device is not None and not device.startswith("cpu")
    return bool(compile_setting)


def workload(run: dict[str, Any], device: str | None) -> Workload:
    """A `Store.runs` row's workload on `device` (what it recorded when it ran there)."""
    on_its_device = run.get("device_name") == device and run.get("compiled") is not None
    compiled = bool(run["compiled"]) if on_its_device else compiled_on(run.get("compile"), device)
    return run["model"], run["dataset"], run["batch_size"], compiled, run.get("distill", "none") != "none"


def elapsed(run: dict[str, Any], now: datetime | None) -> float:
    """Seconds since a run started (0 without a clock or a start)."""
    started = parse_time(run.get("started_at")) if now is not None else None
    return max(0.0, (now - started).total_seconds()) if started else 0.0


@dataclass(frozen=True)
class Speeds:
    rates: dict[tuple[str | None, Workload], float] = field(default_factory=dict)  # images/s over whole rounds
    # per device: seconds of a run outside its rounds (start, data loading), and the worker's pause between runs
    startup: dict[str | None, float] = field(default_factory=dict)
    here: str | None = None  # the device the queue runs on
    planned: Any = None  # (device, throughput cache with the worker's slots) from altui estimate, or None

    def devices(self, run: dict[str, Any]) -> list[str | None]:
        """Where a run's speed comes from: a running run's own device first, then the queue's."""
        mine = run.get("device_name") if run["status"] == "running" else None
        return list(dict.fromkeys([mine, self.here] if mine else [self.here]))

    def rate(self, run: dict[str, Any], device: str | None) -> float | None:
        """A run's images/s on `device`; a distilling run not measured yet goes at the plain one's."""
        model, dataset, batch, compiled, distilled = workload(run, device)
        return (self.rates.get((device, (model, dataset, batch, compiled, distilled)))
                or self.rates.get((device, (model, dataset, batch, compiled, False))))

    def seconds_left(self, run: dict[str, Any], now: datetime | None = None) -> float | None:
        """Seconds a queued or running run (a `Store.runs` row) still needs at `now` (a running run
        still starting has the rest of its start-up ahead); None when nothing was measured for its
        workload on its device. Done, failed and cancelled runs need none."""
        if run["status"] not in ("queued", "running"):
            return 0.0
        done = run.get("rounds_done") or 0
        epoch = run.get("epoch") if run["status"] == "running" else 0
        images = images_left(run["rounds_total"], run["epochs_total"], run["initial"], run["budget"], done, epoch)
        for device in self.devices(run):
            rate = self.rate(run, device)
            if rate:
                startup = self.startup.get(device, 0.0)
                if run["status"] == "running":  # past its start-up once it trains
                    startup = max(0.0, startup - elapsed(run, now)) if not done and not epoch else 0.0
                return images / rate + startup
        planned = self._planned(run)
        if planned is None:
            return None
        total = train_images(planned[0])
        return planned[1] * (images / total if total else 1.0)

    def _planned(self, run: dict[str, Any]) -> tuple[RunConfig, float] | None:
        """The run's config and whole-run seconds planned from `altui estimate`'s cache, if it has them."""
        if self.planned is None:
            return None
        from altui.speed.plan import data_shape, needed_kinds, run_seconds, workload_key

        device, measurements = self.planned
        if device != self.here and self.here is not None:
            return None  # measured on another device than the one the queue runs on
        cfg = RunConfig.from_dict(json.loads(run["spec_json"]))
        try:
            shape = data_shape(cfg)
        except (OSError, ValueError):  # a user's npz that cannot be read for its shape
            return None
        m = measurements.get(workload_key(cfg, shape, "cpu" if device.startswith("cpu") else "cuda"))
        if m is None or not needed_kinds(cfg) <= set(m):
            return None
        return cfg, run_seconds(cfg, shape, m)


def measured(rows: list[dict[str, Any]]) -> tuple[dict[tuple, float], dict[str | None, float], str | None]:
    """From Store.run_speeds() (in the order the runs started): images/s over whole rounds per
    (device, workload), summed over runs (total images over total seconds); per device the median
    seconds a run spends outside its rounds (runs done at their first attempt with every round) plus
    the worker's median pause before the next run there; the device of the last run started."""
    images: dict[tuple, float] = {}
    seconds: dict[tuple, float] = {}
    outside: dict[str | None, list[float]] = {}
    pauses: dict[str | None, list[float]] = {}
    ends: dict[str | None, datetime] = {}
    for r in rows:
        compiled = bool(r["compiled"]) if r["compiled"] is not None else compiled_on(r["compile"], r["device"])
        key = (r["device"], (r["model"], r["dataset"], r["batch"], compiled, (r["distill"] or "none") != "none"))
        images[key] = images.get(key, 0.0) + r["images"]
        seconds[key] = seconds.get(key, 0.0) + r["seconds"]
        start, end = parse_time(r["started_at"]), parse_time(r["finished_at"])
        if r["device"] in ends and start is not None and 0 < (start - ends[r["device"]]).total_seconds() < 60:
            pauses.setdefault(r["device"], []).append((start - ends[r["device"]]).total_seconds())
        if r["status"] == "done" and r["attempt"] == 1 and r["rounds"] == r["planned"] and start and end:
            outside.setdefault(r["device"], []).append(max(0.0, (end - start).total_seconds() - r["seconds"]))
            ends[r["device"]] = end
    rates = {key: images[key] / seconds[key] for key in images if seconds[key] > 0}
    startup = {device: median(v) + (median(pauses[device]) if device in pauses else 0.0)
               for device, v in outside.items()}
    devices = [r["device"] for r in rows if r["device"] is not None]
    return rates, startup, devices[-1] if devices else None


def known_speeds(store: Store, slots: int = 1) -> Speeds:
    """The store's speeds (its runs' rounds), the queue's device, and `altui estimate`'s cache of
    that device with `slots` runs at once on it."""
    from altui.speed.plan import cached, with_slots

    rates, startup, last_device = measured(store.run_speeds())
    rows = store.throughput()
    planned = None
    if rows:
        device, version = rows[-1]["device"], rows[-1]["torch_version"]
        planned = (device, with_slots(cached(store, device, version), slots))
    here = last_device if last_device is not None else (planned[0] if planned else None)
    return Speeds(rates, startup, here, planned)

