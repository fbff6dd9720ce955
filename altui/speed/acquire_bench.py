"""`altui bench --acquisitions`: the time each acquisition takes to pick K of a pool, on one model.

Each acquisition runs as the round loop runs it (`loop._acquire`'s calls: acquire.score or acquire.bald
then top-k; diversity.coreset with K labeled centres; diversity.badge), on the same untrained model and the
same pool of distinct synthetic images, uint8 on the device. The median of `repeats` timed runs counts,
after one warm-up on a small pool; the ratio is against entropy's median on the same model.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from rich import box
from rich.table import Table

from altui.al import acquire, diversity
from altui.al.config import RunConfig
from altui.al.loop import resolve_device
from altui.al.models import build_model
from altui.al.tensors import DeviceData
from altui.speed.bench import CASES, Case, workload
from altui.speed.measure import synthetic_dataset, timed

ACQUISITIONS = ("entropy", "bald", "coreset", "badge")
POOL, BUDGET = 10_000, 1_000  # the CPU defaults; docs/benchmarks.md runs 50k on a GPU


@dataclass(frozen=True)
class AcquisitionResult:
    case: str
    acquisition: str
    pool: int
    budget: int
    seconds: float  # median of the timed runs
    entropy_seconds: float  # entropy's median on the same model and pool

    @property
    def ratio(self) -> float:
        return self.seconds / self.entropy_seconds


def picker(acquisition: str, model: torch.nn.Module, data: DeviceData, pool: torch.Tensor, labeled: torch.Tensor,
           k: int, cfg: RunConfig) -> Callable[[], object]:
    """One acquisition's picks of k among `pool`, as the round loop computes them."""
    batch = cfg.eval_batch(pool.device.type)

    def generator() -> torch.Generator:
        return torch.Generator(pool.device).manual_seed(0)

    if acquisition == "bald":
        return lambda: acquire.top_k(pool, acquire.bald(model, data, pool, batch, cfg.mc_samples, cfg.mc_dropout,
                                                        generator()), k)
    if acquisition == "coreset":
        return lambda: diversity.coreset(model, data, pool, labeled, k, batch)
    if acquisition == "badge":
        return lambda: diversity.badge(model, data, pool, k, batch, generator())
    return lambda: acquire.top_k(pool, acquire.score(model, data, pool, acquisition, batch), k)


def bench_acquisitions(
    case: Case, device: torch.device, pool: int = POOL, budget: int = BUDGET, repeats: int = 3,
    acquisitions: Sequence[str] = ACQUISITIONS, log: Callable[[str], None] = lambda _: None,
) -> list[AcquisitionResult]:
    """Seconds of each acquisition picking `budget` of `pool` images on `case`'s model (entropy first)."""
    ds = synthetic_dataset(workload(case), pool + budget, seed=0)  # the last `budget`: the labeled set
    data = DeviceData.from_dataset(ds, device, augment=False)
    torch.manual_seed(0)
    model = build_model(case.model, case.channels, ds.classes, case.size).to(device).eval()
    if data.channels_last:
        model = model.to(memory_format=torch.channels_last)
    cfg = RunConfig(model=case.model)
    unlabeled = torch.arange(pool, device=device)
    labeled = torch.arange(pool, pool + budget, device=device)
    warm = min(pool, 256)
    seconds: dict[str, float] = {}
    for name in ("entropy", *[a for a in acquisitions if a != "entropy"]):
        log(f"{case.name}: {name} picks {budget:,} of {pool:,}")
        picker(name, model, data, unlabeled[:warm], labeled[:16], min(16, warm), cfg)()  # warm-up
        run = picker(name, model, data, unlabeled, labeled, budget, cfg)
        seconds[name] = statistics.median(timed(run, device) for _ in range(repeats))
    return [AcquisitionResult(case.name, a, pool, budget, s, seconds["entropy"]) for a, s in seconds.items()]


def run_acquisition_bench(
    device: str = "auto", pool: int = POOL, budget: int = BUDGET, repeats: int = 3,
    cases: Sequence[Case] | None = None, log: Callable[[str], None] = lambda _: None,
) -> list[AcquisitionResult]:
    """Every acquisition on each case; by default cnn5 only on the CPU (ResNet18 there takes minutes a pass)."""
    dev = resolve_device(device)
    if cases is None:
        cases = CASES if dev.type == "cuda" else CASES[:1]
    return [r for case in cases for r in bench_acquisitions(case, dev, pool, budget, repeats, log=log)]


def acquisition_table(results: Sequence[AcquisitionResult]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, header_style="bold")
    table.add_column("case")
    for col in ("acquisition", "pool", "picks", "seconds", "pool img/s", "vs entropy"):
        table.add_column(col, justify="left" if col == "acquisition" else "right")
    for r in results:
        table.add_row(f"{r.case} score", r.acquisition, f"{r.pool:,}", f"{r.budget:,}", f"{r.seconds:.2f}",
                      f"{r.pool / r.seconds:,.0f}", f"{r.ratio:.2f}x")
    return table
