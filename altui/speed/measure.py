"""Short measurements of altui's own loops on this machine: what `altui estimate` caches in the store,
and the concurrent processes of `altui bench --slots`.

Everything runs the code that a run runs (train_round, acquire.score, the probes, a checkpoint, the
store's writes) on random uint8 images of the run's shape: speed does not depend on pixel values, and
no data set has to be downloaded for it.
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from altui.al import acquire
from altui.al.config import RunConfig
from altui.al.data import Dataset
from altui.al.loop import cpu_state
from altui.al.models import LossPredictionModule, build_model
from altui.al.presets import RECIPES
from altui.al.probes import probe
from altui.al.provenance import cpu_model
from altui.al.sink import EpochStats, ListSink, ResumeState, RoundResult
from altui.al.tensors import DeviceData
from altui.al.train import TrainStep, train_round

POOL = 4096  # distinct random images a measurement cycles through


@dataclass(frozen=True)
class Workload:
    """What a run's speed depends on: its model and input, batch, compiling and augmentation."""

    model: str
    channels: int
    size: int
    classes: int
    batch: int
    compile: bool
    augment: bool

    @property
    def input(self) -> str:
        return f"{self.channels}x{self.size}x{self.size}"

    def config(self, variant: str = "train") -> RunConfig:
        """One epoch of the model's recipe, with a KD teacher and/or Learning Loss for those variants."""
        recipe = RECIPES[self.model]
        return RunConfig(
            model=self.model, batch_size=self.batch, compile=self.compile, epochs=1, milestones=(),
            lr=recipe["lr"], weight_decay=recipe["weight_decay"], augment=self.augment,
            distill="kd2" if "_kd" in variant else "none", acquisition="ll" if "_ll" in variant else "entropy",
            ll_stop_epoch=1,  # the module's gradient still reaches the backbone (the costlier 60% of epochs)
        )


def device_name(device: torch.device) -> str:
    """The device as the throughput cache keys it: the GPU's name, or the CPU's model and threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {cpu_model()}, {torch.get_num_threads()} threads"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def synthetic_dataset(w: Workload, pool: int = POOL, test: int = 1, seed: int = 0) -> Dataset:
    """Random uint8 images of the workload's shape with random labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (pool + test, w.channels, w.size, w.size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, w.classes, (pool + test,), generator=g)
    xf = x[:pool].float() / 255
    mean = tuple(xf.mean(dim=(0, 2, 3)).tolist())
    std = tuple(xf.std(dim=(0, 2, 3), correction=0).tolist())
    return Dataset("random", x[:pool], y[:pool], x[pool:], y[pool:], w.classes, mean, std, augment=w.augment)


class TrainBench:
    """train_round of one workload on random data, in blocks of whole batches (one epoch each)."""

    def __init__(self, w: Workload, device: torch.device, variant: str = "train", pool: int = POOL):
        self.w, self.device, self.pool = w, device, pool
        self.cfg = w.config(variant)
        self.data = DeviceData.from_dataset(synthetic_dataset(w, pool), device, w.augment)
        torch.manual_seed(0)
        self.model = build_model(w.model, w.channels, w.classes, w.size).to(device)
        if self.data.channels_last:  # as the round loop builds its models on CUDA
            self.model = self.model.to(memory_format=torch.channels_last)
        self.teacher = copy.deepcopy(self.model).eval() if "_kd" in variant else None
        self.loss_module = (LossPredictionModule(self.model.feature_channels).to(device)
                            if "_ll" in variant else None)
        self.step = TrainStep(w.compile, device.type)
        self.generator = torch.Generator(device).manual_seed(0)

    def run(self, images: int) -> None:
        labeled = torch.arange(images, device=self.device) % self.pool
        train_round(self.cfg, 0, self.model, self.data, labeled, self.cfg.weight_decay, self.generator,
                    ListSink(), self.teacher, images // 2, self.loss_module, self.step)

    @property
    def warm_images(self) -> int:
        """Two full batches and a partial one: a first block that compiles both."""
        return 2 * self.w.batch + max(1, self.w.batch // 2)

    def warm_up(self) -> float:
        """Seconds of the first block of `warm_images`."""
        return timed(lambda: self.run(self.warm_images), self.device)

    def rates(self, seconds: float, repeats: int = 3) -> tuple[float, float]:
        """(images/s over whole batches, seconds of an epoch's last batch of half a batch): blocks of
        about `seconds` of whole batches, alternating with the same blocks plus a half batch; medians."""
        b, half = self.w.batch, max(1, self.w.batch // 2)
        probe = timed(lambda: self.run(2 * b), self.device)
        whole = max(2, round(seconds / max(probe, 1e-6) * 2)) * b
        plain, longer = [], []
        for _ in range(repeats):
            plain.append(timed(lambda: self.run(whole), self.device))
            longer.append(timed(lambda: self.run(whole + half), self.device))
        t = statistics.median(plain)
        return whole / t, max(0.0, statistics.median(longer) - t)


def train_rate(w: Workload, device: torch.device, variant: str = "train",
               seconds: float = 1.0) -> tuple[float, float, float]:
    """(images/s of training over whole batches; seconds of warm-up beyond that (compiling, caches);
    seconds of an epoch's last batch of half a batch: a small step costs more than its share of
    images, most on a GPU, where a step costs about the same whatever its size)."""
    bench = TrainBench(w, device, variant)
    warm = bench.warm_up()
    rate, last = bench.rates(seconds)
    return rate, max(0.0, warm - bench.warm_images / rate), last


def score_rate(w: Workload, device: torch.device, batch: int, seconds: float = 1.0) -> float:
    """Images/s of acquire.score by entropy (also the speed of test evaluation: the same forward
    passes)."""
    bench = TrainBench(w, device)
    pool = bench.pool

    def score(n: int) -> None:
        indices = torch.arange(n, device=device) % pool
        acquire.score(bench.model, bench.data, indices, "entropy", batch, bench.loss_module)

    score(batch)  # warm-up
    t = timed(lambda: score(batch), device)
    n = max(1, round(seconds / max(t, 1e-6))) * batch
    return n / timed(lambda: score(n), device)


def overheads(w: Workload, device: torch.device, folder: Path, budget: int = 100) -> tuple[float, float]:
    """(seconds per round, seconds per epoch) that are neither training nor scoring: building the
    round's model and teacher, the probes, and what the runner records (the checkpoint, written and
    fsynced in `folder`, so on the store's disk; the round's rows and log lines); an epoch's row.
    Medians of three rounds of five epochs."""
    from altui.execution.runner import StoreSink
    from altui.store import Store

    with tempfile.TemporaryDirectory(dir=folder, prefix=".altui-measure-") as tmp:
        store = Store(Path(tmp) / "scratch.db")
        run_id = store.enqueue("measure", "", {}, [{"name": "m", "method": "m", "seed": 0, "config": {}}])[0]
        sink = StoreSink(store, run_id)
        rounds, epochs = [], []
        for r in range(3):
            start = time.perf_counter()
            torch.manual_seed(r)
            model = build_model(w.model, w.channels, w.classes, w.size).to(device)
            teacher = copy.deepcopy(model)
            teacher.load_state_dict(cpu_state(model))
            sink.log(f"round {r}: starting")
            picks = list(range(r * budget, (r + 1) * budget))
            result = RoundResult(
                round=r, n_labeled=budget * (r + 1), accuracy=0.5, test_loss=1.0, weight_decay=0.0, lr=0.1,
                train_seconds=0.0, acquire_seconds=0.0, probes=probe(model), picks=picks,
                pick_scores=[0.0] * budget, pick_class_counts=[0] * w.classes,
            )
            sink.log(f"round {r}: done")
            sink.round_done(result, ResumeState(r + 1, list(range((r + 2) * budget)), cpu_state(model),
                                                cpu_state(model)))
            rounds.append(time.perf_counter() - start)
            for e in range(1, 6):
                start = time.perf_counter()
                sink.epoch_done(EpochStats(round=r, epoch=e, epochs=5, train_loss=1.0, train_accuracy=0.5,
                                           lr=0.1, images_per_second=100.0))
                epochs.append(time.perf_counter() - start)
        store.close()
    return statistics.median(rounds), statistics.median(epochs)


# ---- several processes on one device ---------------------------------------------------------------


def _slot_process(w: Workload, device: str, threads: int, seconds: float, barrier, results) -> None:  # noqa: ANN001
    torch.set_num_threads(threads)
    dev = torch.device(device)
    bench = TrainBench(w, dev)
    bench.warm_up()
    block = 4 * w.batch
    bench.run(block)
    barrier.wait(timeout=900)  # every process compiled and warm: the timed window is shared
    sync(dev)
    start = time.perf_counter()
    images = 0
    while time.perf_counter() - start < seconds:
        bench.run(block)
        images += block
    sync(dev)
    results.put(images / (time.perf_counter() - start))


def concurrent_train_rates(w: Workload, device: torch.device, processes: int, seconds: float = 3.0) -> list[float]:
    """Images/s of each of `processes` processes training the workload at once on one device, as a
    worker's slots do (on the CPU each gets its share of the threads, like OMP_NUM_THREADS there)."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    threads = max(1, torch.get_num_threads() // processes) if device.type == "cpu" else torch.get_num_threads()
    procs = [ctx.Process(target=_slot_process, args=(w, str(device), threads, seconds, barrier, results))
             for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        rates = [results.get(timeout=1200) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad:
        raise RuntimeError(f"a measuring process failed (exit codes {bad})")
    return rates
