"""`altui bench`: altui's training and pool-scoring loops against the loop published AL code uses.

The reference loop is written the way active-learning code usually is (e.g. Learning Loss's main.py):
a torchvision-style Dataset that turns each sample into a PIL image and runs per-sample transforms,
behind a DataLoader with a SubsetRandomSampler over the labeled set, `.item()` of the loss every step;
scoring through a DataLoader at batch 128 under no_grad, softmax entropy collected on the host, then
argsort. altui's loop is train_round and acquire.score + top_k on DeviceData (uint8 on the device).

Both loops run the same architecture from the same weights, on the same device, in the same process,
in alternating timed blocks of the same number of images; the median block gives images/s.
"""

from __future__ import annotations

import statistics
import time
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
from altui.al.train import train_round

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
    altui: float

    @property
    def ratio(self) -> float:
        return self.altui / self.reference


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
) -> None:
    """One epoch of train_round over `labeled` (a device tensor)."""
    train_round(cfg, 0, model, data, labeled, cfg.weight_decay, generator, ListSink())


def altui_picks(model: nn.Module, data: DeviceData, indices: torch.Tensor, k: int) -> list[int]:
    """The k most uncertain of `indices`, as the round loop acquires them."""
    # the batch the round loop scores with on this device
    scores = acquire.score(model, data, indices, "entropy", RunConfig().eval_batch(indices.device.type))
    return acquire.top_k(indices, scores, k)[0].tolist()


# ---- one case ----------------------------------------------------------------------------------------


def case_dataset(case: Case, pool: int = POOL, seed: int = 0) -> Dataset:
    """cnn5: the bundled digits (real 28x28x1 images); resnet18: random uint8 CIFAR-sized images."""
    if case.model == "cnn5" and (case.channels, case.size) == (1, 28):
        return load_dataset("digits")
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (pool, case.channels, case.size, case.size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (pool,), generator=g)
    xf = x.float() / 255
    mean = tuple(xf.mean(dim=(0, 2, 3)).tolist())
    std = tuple(xf.std(dim=(0, 2, 3), correction=0).tolist())
    return Dataset("random", x, y, x[:1], y[:1], 10, mean, std, augment=case.augment)


def run_config(case: Case) -> RunConfig:
    recipe = RECIPES[case.model]
    return RunConfig(model=case.model, epochs=1, batch_size=case.batch, lr=recipe["lr"],
                     weight_decay=recipe["weight_decay"])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def measure(
    run_reference: Callable[[int], object], run_altui: Callable[[int], object], device: torch.device,
    step: int, seconds: float, repeats: int, images: int | None,
) -> tuple[int, float, float]:
    """(images per block, reference images/s, altui images/s).

    Warm-up: one small block of each loop; then, unless `images` is given, a second small block of
    each sets the block size so that the slower loop takes about `seconds` (a multiple of `step`).
    Then `repeats` alternating timed blocks of each; the median block counts.
    """
    small = images or step
    run_reference(small)
    run_altui(small)
    if images is None:
        slowest = max(timed(lambda: run_reference(small), device), timed(lambda: run_altui(small), device))
        images = max(step, round(seconds * small / slowest / step) * step)
    ref, alt = [], []
    for _ in range(repeats):
        ref.append(timed(lambda: run_reference(images), device))
        alt.append(timed(lambda: run_altui(images), device))
    return images, images / statistics.median(ref), images / statistics.median(alt)


def bench_case(
    case: Case, device: torch.device, seconds: float, repeats: int, images: int | None = None,
    workers: int = 0, log: Callable[[str], None] = lambda _: None,
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

    def ref_train(n: int) -> None:
        ref_model.load_state_dict(init)
        reference_train(ref_model, ref_train_ds, [i % pool for i in range(n)], cfg, device, workers)

    def alt_train(n: int) -> None:
        alt_model.load_state_dict(init)
        altui_train(alt_model, data, torch.arange(n, device=device) % pool, cfg, generator)

    def ref_score(n: int) -> None:
        indices = [i % pool for i in range(n)]
        reference_picks(ref_model, ref_eval_ds, indices, max(1, n // 10), device, workers)

    def alt_score(n: int) -> None:
        altui_picks(alt_model, data, torch.arange(n, device=device) % pool, max(1, n // 10))

    log(f"{case.name}: training")
    n, ref, alt = measure(ref_train, alt_train, device, case.batch, seconds, repeats, images)
    results = [BenchResult(case.name, "train", n, ref, alt)]
    log(f"{case.name}: scoring")
    ref_model.load_state_dict(init)
    alt_model.load_state_dict(init)
    n, ref, alt = measure(ref_score, alt_score, device, REFERENCE_SCORE_BATCH, seconds, repeats, images)
    results.append(BenchResult(case.name, "score", n, ref, alt))
    return results


def run_bench(
    device: str = "auto", seconds: float = 2.0, repeats: int = 3, images: int | None = None,
    workers: int = 0, cases: Sequence[Case] = CASES, log: Callable[[str], None] = lambda _: None,
) -> list[BenchResult]:
    """Time every case's training and pool scoring, reference loop against altui's.

    seconds: target length of the slower loop's timed block; images: a fixed block size instead.
    workers: the reference DataLoader's num_workers (0 in the published code this mimics).
    """
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # for both loops alike
    results: list[BenchResult] = []
    for case in cases:
        results += bench_case(case, dev, seconds, repeats, images, workers, log)
    return results


def describe_device(device: str) -> str:
    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu, {torch.get_num_threads()} threads"


def results_table(results: Sequence[BenchResult]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, header_style="bold")
    table.add_column("case")
    for col in ("images", "reference img/s", "altui img/s", "ratio"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(f"{r.case} {r.metric}", str(r.images), f"{r.reference:,.0f}", f"{r.altui:,.0f}",
                      f"{r.ratio:.2f}")
    return table
