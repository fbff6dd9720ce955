"""The active-learning round loop: build, train, evaluate, probe, acquire, repeat."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from altui.al import acquire, diversity
from altui.al.config import ConfigError, RunConfig
from altui.al.data import load_dataset
from altui.al.diagnostics import diagnose
from altui.al.models import LossPredictionModule, build_model
from altui.al.probes import probe
from altui.al.provenance import apply_threads, collect
from altui.al.schedule import weight_decay_at
from altui.al.sink import CorrectImages, EpochState, ResumeState, RoundResult, Sink
from altui.al.tensors import DeviceData
from altui.al.train import TrainStep, evaluate, train_round

# Independent random streams of a round, each seeded from (seed, round, stream).
INIT, TRAIN, ACQUIRE, SUBSET = range(4)


def stream_seed(seed: int, round_: int, stream: int) -> int:
    return (seed * 1_000_003 + round_ * 7_919 + stream * 104_729) % (2**63 - 1)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device = {name!r} but CUDA is not available here; use 'cpu' or 'auto'")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():  # else a CUDA error mid-run
        raise ConfigError(f"device = {name!r} but this machine has {torch.cuda.device_count()} GPU(s) visible "
                          f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return device


def initial_labeled(seed: int, pool: int, initial: int) -> torch.Tensor:
    """Round 0's labels: from the seed alone, so every method at a seed starts from the same set."""
    return torch.randperm(pool, generator=torch.Generator().manual_seed(seed))[:initial]


def cpu_state(module: nn.Module) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def run(cfg: RunConfig, sink: Sink, resume: ResumeState | None = None, within: EpochState | None = None,
        on_epoch: Callable[[Callable[[], EpochState]], None] | None = None) -> None:
    """Run (or resume) every round of one active-learning run, reporting all through `sink`.
    `within`: the next round saved at the end of an epoch (it goes on from there); `on_epoch`: offered
    each epoch's state (train.train_round), to save it."""
    cfg.validate()
    apply_threads(cfg)
    device = resolve_device(cfg.device)
    ds = load_dataset(cfg.dataset, cfg.data_root, download=cfg.download, path=cfg.extra.get("path"))
    pool = ds.x.shape[0]
    needed = cfg.n_labeled(cfg.rounds - 1)
    if needed > pool:
        raise ConfigError(
            f"initial + (rounds - 1) * budget = {needed} labels, but {cfg.dataset!r} has a pool of {pool}"
        )
    data = DeviceData.from_dataset(ds, device, cfg.augment)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    in_channels, size = ds.x.shape[1], ds.x.shape[2]
    step = TrainStep(cfg.compile_on(device.type), device.type, sink.log)  # compiled once per process
    sink.started(collect(cfg, device))

    def new_model(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = build_model(cfg.model, in_channels, ds.classes, size).to(device)
        if cfg.mc_dropout_train and cfg.mc_dropout > 0:
            acquire.train_dropout(model, cfg.mc_dropout)
        return model.to(memory_format=torch.channels_last) if data.channels_last else model

    if resume is None:
        start, labeled = 0, initial_labeled(cfg.seed, pool, cfg.initial).tolist()
        init_state, prev_state, ll_state = None, None, None  # round 0's model is the init
    else:
        start, labeled = resume.next_round, list(resume.labeled)
        init_state, prev_state, ll_state = resume.init, resume.model, resume.loss_module
        sink.log(f"resuming at round {start} with {len(labeled)} labels")

    for t in range(start, cfg.rounds):
        model = new_model(stream_seed(cfg.seed, t, INIT))  # 'fresh': a new random init every round
        if t == 0:
            init_state = cpu_state(model)  # from the seed alone, like round 0's labels
        elif cfg.init == "same":
            model.load_state_dict(init_state)
        elif cfg.init == "warm":
            model.load_state_dict(prev_state)
        teacher = None
        if cfg.distill != "none" and t > 0:
            teacher = copy.deepcopy(model)
            teacher.load_state_dict(prev_state)
        loss_module = None
        if cfg.acquisition == "ll":
            torch.manual_seed(stream_seed(cfg.seed, t, INIT) + 1)
            loss_module = LossPredictionModule(model.feature_channels).to(device)
            if cfg.init == "warm" and ll_state is not None:
                loss_module.load_state_dict(ll_state)

        lam = weight_decay_at(cfg, t)
        sink.log(f"round {t}: {len(labeled)} labels, weight decay {lam:.6g}")
        labeled_t = torch.tensor(labeled, device=device)
        seen = len(labeled) - cfg.budget if t > 0 else 0
        gen = torch.Generator(device).manual_seed(stream_seed(cfg.seed, t, TRAIN))
        part = within if within is not None and within.round == t else None
        if part is not None:
            sink.log(f"round {t}: resuming after epoch {part.epochs_done} of {cfg.epochs}")
        t0 = time.perf_counter()
        train_round(cfg, t, model, data, labeled_t, lam, gen, sink, teacher, seen, loss_module, step, part, on_epoch)
        accuracy, test_loss, right = evaluate(model, data, cfg.eval_batch(device.type))
        train_seconds = time.perf_counter() - t0
        diagnostics = None
        if t > 0:  # the previous round's model: the teacher (kd1, kd2), and the picker of D_t's new images
            previous = teacher if teacher is not None else _previous_model(model, prev_state)
            diagnostics = diagnose(previous, model, data, labeled, seen,
                                   cfg.kd_temperature if teacher is not None else 1.0, cfg.eval_batch(device.type))

        t0 = time.perf_counter()
        picks, scores = ([], []) if t == cfg.rounds - 1 else _acquire(cfg, t, model, loss_module, data, labeled)
        acquire_seconds = time.perf_counter() - t0
        class_counts = torch.bincount(ds.y[torch.tensor(picks, dtype=torch.long)], minlength=ds.classes)

        prev_state = cpu_state(model)
        ll_state = cpu_state(loss_module) if loss_module is not None else None
        labeled = labeled + picks
        result = RoundResult(
            round=t, n_labeled=cfg.n_labeled(t), accuracy=accuracy, test_loss=test_loss, weight_decay=lam,
            lr=cfg.lr, train_seconds=train_seconds, acquire_seconds=acquire_seconds, probes=probe(model),
            picks=picks, pick_scores=scores, pick_class_counts=class_counts.tolist(),
            test_correct=CorrectImages.of(right.numpy()), teacher=diagnostics,
        )
        sink.log(f"round {t}: accuracy {accuracy:.4f}, {result.probes.effective_channels} effective channels")
        sink.round_done(result, ResumeState(t + 1, labeled, prev_state, init_state, ll_state))


def _previous_model(model: nn.Module, state: dict[str, Any]) -> nn.Module:
    """The previous round's model (no random stream touched: a copy of this round's, its weights loaded)."""
    previous = copy.deepcopy(model)
    previous.load_state_dict(state)
    return previous


def _acquire(
    cfg: RunConfig, t: int, model: nn.Module, loss_module: nn.Module | None, data: DeviceData, labeled: list[int]
) -> tuple[list[int], list[float]]:
    """The K pool indices to label next, with their scores."""
    dev = data.x.device
    mask = torch.ones(data.x.shape[0], dtype=torch.bool, device=dev)
    mask[torch.tensor(labeled, device=dev)] = False
    unlabeled = mask.nonzero().squeeze(1)
    subset = cfg.pool_subset or (cfg.ll_subset if cfg.acquisition == "ll" else 0)
    if subset and subset < unlabeled.shape[0]:
        g = torch.Generator(dev).manual_seed(stream_seed(cfg.subset_seed, t, SUBSET))
        unlabeled = unlabeled[torch.randperm(unlabeled.shape[0], device=dev, generator=g)[:subset]]
    if cfg.budget > unlabeled.shape[0]:
        raise ConfigError(f"budget K = {cfg.budget} is larger than the {unlabeled.shape[0]} samples left to score")
    g = torch.Generator(dev).manual_seed(stream_seed(cfg.seed, t, ACQUIRE))
    batch = cfg.eval_batch(dev.type)
    if cfg.acquisition == "random":
        picks = unlabeled[torch.randperm(unlabeled.shape[0], device=dev, generator=g)[: cfg.budget]]
        return picks.tolist(), [0.0] * cfg.budget
    if cfg.acquisition in acquire.DIVERSITY:
        if cfg.acquisition == "coreset":
            labeled_t = torch.tensor(labeled, device=dev)
            positions, values = diversity.coreset(model, data, unlabeled, labeled_t, cfg.budget, batch)
        else:
            positions, values = diversity.badge(model, data, unlabeled, cfg.budget, batch, g)
        return unlabeled[positions].tolist(), values.tolist()
    if cfg.acquisition == "bald":
        scores = acquire.bald(model, data, unlabeled, batch, cfg.mc_samples, cfg.mc_dropout, g)
    else:
        scores = acquire.score(model, data, unlabeled, cfg.acquisition, batch, loss_module)
    picks, values = acquire.top_k(unlabeled, scores, cfg.budget)
    return picks.tolist(), values.tolist()
