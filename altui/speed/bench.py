"""`altui bench`: altui's training and pool-scoring loops against the loop published AL code uses.

The reference loop is written the way active-learning code usually is (e.g. Learning Loss's main.py):
a torchvision-style Dataset that turns each sample into a PIL image and runs per-sample transforms,
behind a DataLoader with a SubsetRandomSampler over the labeled set, `.item()` of the loss every step;
scoring through a DataLoader at batch 128 under no_grad, softmax entropy collected on the host, then
argsort. altui's loop is train_round and acquire.score + top_k on DeviceData (uint8 on the device),
eager and (training) compiled.

The loops run the same architecture from the same weights, on the same device, in the same process,
in alternating timed blocks of the same number of images; the median block gives images/s. With
--slots N, N processes train at once on the device, as a worker's slots do.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from rich import box
from rich.table import Table
from torch import nn
from torch.utils.data import DataLoader, Subset, SubsetRandomSampler
from torchvision import transforms as T

from altui.al import acquire
from altui.al.config import RunConfig
from altui.al.data import Dataset, load_dataset
from altui.al.loop import resolve_device
from altui.al.models import build_model
from altui.al.presets import RECIPES
from altui.al.sink import ListSink
from altui.al.tensors import DeviceData
from altui.al.train import TrainStep, train_round
from altui.speed.measure import Workload, concurrent_train_rates, synthetic_dataset, timed

REFERENCE_SCORE_BATCH = 128
POOL = 10_000  # distinct images per case; longer blocks cycle through them


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    channels: int
    size: int
    batch: int
    augment: bool  # crop + flip in training


CASES = (
    Case("cnn5 1x28x28 b32", "cnn5", 1, 28, 32, augment=False),
    Case("resnet18 3x32x32 b128", "resnet18", 3, 32, 128, augment=True),
)


@dataclass(frozen=True)
class BenchResult:
    case: str
    metric: str  # "train" or "score" (entropy over a pool, then top-k)
    images: int  # per timed block
    reference: float  # images/s, median block
    eager: float  # altui's loop, not compiled
    compiled: float | None = None  # altui's loop compiled (training only; scoring is never compiled)
    flops: float = 0.0  # per image: forward for scoring, 3x forward for training

    @property
    def ratio(self) -> float:
        return self.eager / self.reference

    @property
    def compiled_ratio(self) -> float | None:
        return None if self.compiled is None else self.compiled / self.reference


@dataclass(frozen=True)
class SlotsResult:
    case: str
    rates: tuple[float, ...]  # images/s of each process, all training at once
    alone: float  # images/s of the same loop in one process (the table's eager or compiled)
    flops: float = 0.0  # per image trained

    @property
    def total(self) -> float:
        return sum(self.rates)

    @property
    def ratio(self) -> float:
        return self.total / self.alone


# ---- the reference loop ------------------------------------------------------------------------------


class ReferenceDataset(torch.utils.data.Dataset):
    """Serves samples as torchvision's MNIST/CIFAR10 do: a PIL image per item, then the transform."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: Callable) -> None:
        self.images = x.permute(0, 2, 3, 1).numpy()  # uint8 HWC, as CIFAR10.data
        self.targets = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)  # mode L or RGB
        return self.transform(pil), self.targets[i]


def reference_transforms(ds: Dataset, augment: bool) -> tuple[T.Compose, T.Compose]:
    """(train, eval) transforms, in the order the CIFAR AL code writes them."""
    norm = [T.ToTensor(), T.Normalize(ds.mean, ds.std)]
    train = [T.RandomHorizontalFlip(), T.RandomCrop(ds.x.shape[-1], padding=4), *norm] if augment else norm
    return T.Compose(train), T.Compose(norm)


def reference_train(
    model: nn.Module, ds: ReferenceDataset, labeled: list[int], cfg: RunConfig, device: torch.device,
    workers: int = 0,
) -> float:
    """One epoch over `labeled`; returns the summed loss, read with .item() every step."""
    loader = DataLoader(ds, batch_size=cfg.batch_size, sampler=SubsetRandomSampler(labeled),
                        num_workers=workers, pin_memory=device.type == "cuda")
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    model.train()
    total = 0.0
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        total += loss.item()
    return total


def reference_scores(
    model: nn.Module, ds: ReferenceDataset, indices: list[int], device: torch.device, workers: int = 0,
) -> torch.Tensor:
    """Softmax entropy of each of `indices`, collected on the host."""
    loader = DataLoader(Subset(ds, indices), batch_size=REFERENCE_SCORE_BATCH, shuffle=False,
                        num_workers=workers, pin_memory=device.type == "cuda")
    model.eval()
    out = []
    with torch.no_grad():
        for xb, _ in loader:
            p = F.softmax(model(xb.to(device)), dim=1)
            out.append(-(p * torch.log(p.clamp_min(1e-12))).sum(dim=1).cpu())
    return torch.cat(out)


def reference_picks(
    model: nn.Module, ds: ReferenceDataset, indices: list[int], k: int, device: torch.device,
    workers: int = 0,
) -> torch.Tensor:
    """The k most uncertain of `indices`: host-side entropies, then argsort."""
    scores = reference_scores(model, ds, indices, device, workers)
    return torch.tensor(indices)[torch.argsort(scores, descending=True)[:k]]


# ---- altui's loop ------------------------------------------------------------------------------------


def altui_train(
    model: nn.Module, data: DeviceData, labeled: torch.Tensor, cfg: RunConfig, generator: torch.Generator,
    step: TrainStep | None = None,
) -> None:
    """One epoch of train_round over `labeled` (a device tensor); `step` compiled or not."""
    train_round(cfg, 0, model, data, labeled, cfg.weight_decay, generator, ListSink(), step=step)


def altui_picks(model: nn.Module, data: DeviceData, indices: torch.Tensor, k: int) -> list[int]:
    """The k most uncertain of `indices`, as the round loop acquires them."""
    # the batch the round loop scores with on this device
    scores = acquire.score(model, data, indices, "entropy", RunConfig().eval_batch(indices.device.type))
    return acquire.top_k(indices, scores, k)[0].tolist()


# ---- one case ----------------------------------------------------------------------------------------


def workload(case: Case, compiled: bool = False) -> Workload:
    return Workload(case.model, case.channels, case.size, 10, case.batch, compiled, case.augment)


def case_dataset(case: Case, pool: int = POOL, seed: int = 0) -> Dataset:
    """cnn5: the bundled digits (real 28x28x1 images); resnet18: random uint8 CIFAR-sized images."""
    if case.model == "cnn5" and (case.channels, case.size) == (1, 28):
        return load_dataset("digits")
    return synthetic_dataset(workload(case), pool, seed=seed)


def run_config(case: Case) -> RunConfig:
    recipe = RECIPES[case.model]
    return RunConfig(model=case.model, epochs=1, batch_size=case.batch, lr=recipe["lr"],
                     weight_decay=recipe["weight_decay"])


def flops_per_image(case: Case) -> float:
    """Forward FLOPs of one image (2 per multiply-add, as torch.utils.flop_counter counts them)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(case.model, case.channels, 10, case.size).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, case.channels, case.size, case.size))
    return float(counter.get_total_flops())


# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, for MFU.
PEAK_BF16_TFLOPS = (
    ("H200", 989.4), ("H100 SXM", 989.4), ("H100 80GB HBM3", 989.4), ("H100 NVL", 835.0), ("H100 PCIe", 756.0),
    ("H100", 756.0), ("GH200", 989.4), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.1),
    ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0), ("RTX 4090", 165.2), ("RTX 3090", 71.0),
)


def peak_tflops(device_name: str) -> float | None:
    """The bf16 peak of a GPU by its name; None when unknown (give --peak-tflops)."""
    for key, peak in PEAK_BF16_TFLOPS:
        if key in device_name:
            return peak
    return None


def measure(
    loops: dict[str, Callable[[int], object]], device: torch.device, step: int, seconds: float, repeats: int,
    images: int | None,
) -> tuple[int, dict[str, float]]:
    """(images per block, images/s of each loop).

    Warm-up: one small block of each loop (compiling, for a compiled one); then, unless `images` is
    given, a second small block of each sets the block size so that the slowest loop takes about
    `seconds` (a multiple of `step`). Then `repeats` rounds of timed blocks, the loops alternating
    within each; the median block counts.
    """
    small = images or step
    for run in loops.values():
        run(small)
    if images is None:
        slowest = max(timed(lambda r=run: r(small), device) for run in loops.values())
        images = max(step, round(seconds * small / slowest / step) * step)
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, run in loops.items():
            times[name].append(timed(lambda r=run: r(images), device))
    return images, {name: images / statistics.median(t) for name, t in times.items()}


def bench_case(
    case: Case, device: torch.device, seconds: float, repeats: int, images: int | None = None,
    workers: int = 0, log: Callable[[str], None] = lambda _: None, compiled: bool = True,
) -> list[BenchResult]:
    ds = case_dataset(case)
    data = DeviceData.from_dataset(ds, device, augment=case.augment)
    train_tf, eval_tf = reference_transforms(ds, case.augment)
    ref_train_ds, ref_eval_ds = ReferenceDataset(ds.x, ds.y, train_tf), ReferenceDataset(ds.x, ds.y, eval_tf)
    pool = ds.x.shape[0]
    cfg = run_config(case)

    torch.manual_seed(0)
    ref_model = build_model(case.model, case.channels, ds.classes, case.size).to(device)
    init = {k: v.clone() for k, v in ref_model.state_dict().items()}
    alt_model = build_model(case.model, case.channels, ds.classes, case.size).to(device)
    alt_model.load_state_dict(init)
    if data.channels_last:  # as the round loop builds its models on CUDA
        alt_model = alt_model.to(memory_format=torch.channels_last)
    generator = torch.Generator(device).manual_seed(0)
    steps = {"eager": TrainStep(False, device.type), "compiled": TrainStep(True, device.type, _log_warning(log))}

    def ref_train(n: int) -> None:
        ref_model.load_state_dict(init)
        reference_train(ref_model, ref_train_ds, [i % pool for i in range(n)], cfg, device, workers)

    def alt_train(kind: str) -> Callable[[int], None]:
        def run(n: int) -> None:
            alt_model.load_state_dict(init)
            altui_train(alt_model, data, torch.arange(n, device=device) % pool, cfg, generator, steps[kind])
        return run

    def ref_score(n: int) -> None:
        indices = [i % pool for i in range(n)]
        reference_picks(ref_model, ref_eval_ds, indices, max(1, n // 10), device, workers)

    def alt_score(n: int) -> None:
        altui_picks(alt_model, data, torch.arange(n, device=device) % pool, max(1, n // 10))

    flops = flops_per_image(case)
    log(f"{case.name}: training" + (" (the compiled loop compiles first)" if compiled else ""))
    loops = {"reference": ref_train, "eager": alt_train("eager")}
    if compiled:
        loops["compiled"] = alt_train("compiled")
    n, rates = measure(loops, device, case.batch, seconds, repeats, images)
    results = [BenchResult(case.name, "train", n, rates["reference"], rates["eager"], rates.get("compiled"),
                           3 * flops)]
    log(f"{case.name}: scoring")
    ref_model.load_state_dict(init)
    alt_model.load_state_dict(init)
    n, rates = measure({"reference": ref_score, "eager": alt_score}, device, REFERENCE_SCORE_BATCH, seconds,
                       repeats, images)
    results.append(BenchResult(case.name, "score", n, rates["reference"], rates["eager"], None, flops))
    return results


def _log_warning(log: Callable[[str], None]) -> Callable[[str, str], None]:
    return lambda message, level: log(message) if level != "info" else None


def run_bench(
    device: str = "auto", seconds: float = 2.0, repeats: int = 3, images: int | None = None,
    workers: int = 0, cases: Sequence[Case] = CASES, log: Callable[[str], None] = lambda _: None,
    compiled: bool = True,
) -> list[BenchResult]:
    """Time every case's training and pool scoring: the reference loop, altui's eager loop and (for
    training) altui's compiled loop.

    seconds: target length of the slowest loop's timed block; images: a fixed block size instead.
    workers: the reference DataLoader's num_workers (0 in the published code this mimics).
    """
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # for every loop alike
    results: list[BenchResult] = []
    for case in cases:
        results += bench_case(case, dev, seconds, repeats, images, workers, log, compiled)
    return results


def run_slots(
    results: Sequence[BenchResult], device: str, slots: int, seconds: float = 5.0, cases: Sequence[Case] = CASES,
    log: Callable[[str], None] = lambda _: None,
) -> list[SlotsResult]:
    """`slots` processes training each case at once on one device, as a worker's slots do; each
    runs altui's loop as a run would here (compiled on CUDA, eager on the CPU). `results` give the
    same loop's rate in one process."""
    dev = resolve_device(device)
    compiled = RunConfig().compile_on(dev.type)
    out = []
    for case in cases:
        log(f"{case.name}: training in {slots} processes at once")
        rates = concurrent_train_rates(workload(case, compiled), dev, slots, seconds)
        single = next(r for r in results if r.case == case.name and r.metric == "train")
        alone = single.compiled if compiled and single.compiled else single.eager
        out.append(SlotsResult(case.name, tuple(rates), alone, single.flops))
    return out


def mfu(rate: float, flops: float, peak: float | None) -> str:
    return f"{100 * rate * flops / (peak * 1e12):.1f}%" if peak else ""


def results_table(results: Sequence[BenchResult], peak: float | None = None) -> Table:
    """One row per case and metric; with a GPU's `peak` (TFLOP/s), the MFU of altui's best loop."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold")
    table.add_column("case")
    columns = ["images", "reference img/s", "eager img/s", "compiled img/s", "eager ratio", "compiled ratio"]
    for col in columns + (["MFU"] if peak else []):
        table.add_column(col, justify="right")
    for r in results:
        best = max(r.eager, r.compiled or 0.0)
        row = [f"{r.case} {r.metric}", str(r.images), f"{r.reference:,.0f}", f"{r.eager:,.0f}",
               "-" if r.compiled is None else f"{r.compiled:,.0f}", f"{r.ratio:.2f}",
               "-" if r.compiled_ratio is None else f"{r.compiled_ratio:.2f}"]
        table.add_row(*row, *([mfu(best, r.flops, peak)] if peak else []))
    return table


def slots_table(slots: Sequence[SlotsResult], peak: float | None = None) -> Table:
    """Per process and summed images/s of training with several processes on one device."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold")
    for col in ("case", "processes", "img/s", "vs one process") + (("MFU",) if peak else ()):
        table.add_column(col, justify="left" if col == "case" else "right")
    for s in slots:
        for i, rate in enumerate(s.rates, start=1):
            table.add_row(f"{s.case} train", f"process {i}", f"{rate:,.0f}", "", *([""] if peak else []))
        extra = [mfu(s.total, s.flops, peak)] if peak else []
        table.add_row(f"{s.case} train", f"aggregate ({len(s.rates)})", f"{s.total:,.0f}", f"{s.ratio:.2f}",
                      *extra, style="bold")
    return table
