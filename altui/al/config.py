"""One run's settings: everything the round loop needs, nothing about where results go."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

DATASETS = (
    "digits", "mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100", "svhn", "imagefolder", "npz",
)
MODELS = ("cnn5", "resnet18", "densenet100")
ACQUISITIONS = ("random", "entropy", "margin", "least-confidence", "ll", "bald", "coreset", "badge")
WD_SCHEDULES = ("fixed", "inverse", "exact")
INITS = ("fresh", "same", "warm")
DISTILLS = ("none", "kd1", "kd2")


MAX_SEED = 2**32 - 1  # what every random generator altui seeds takes (torch, numpy)


def valid_device(name: str) -> bool:
    """auto, cpu, cuda or cuda:N, N in ASCII digits (str.isdigit takes '٣', which no CUDA takes)."""
    index = name.removeprefix("cuda:")
    return name in ("auto", "cpu", "cuda") or (index != name and index.isascii() and index.isdigit()
                                                and len(index) <= 4)


class ConfigError(ValueError):
    """A setting that names something unknown or is out of range; the message says what is allowed."""


@dataclass(frozen=True)
class RunConfig:
    """The settings of one active-learning run (one method, one seed, one sweep point)."""

    dataset: str = "digits"
    model: str = "cnn5"
    data_root: str = "data"
    download: bool = True
    seed: int = 0
    # protocol: `rounds` trainings; N_t = initial + t * budget labels in round t
    rounds: int = 5
    initial: int = 200
    budget: int = 200
    # method
    acquisition: str = "entropy"
    weight_decay: float = 0.01  # lambda_0
    wd_schedule: str = "fixed"
    decay_bn: bool = True  # the paper's footnote: decay on batch-norm weights shrinks effective channels
    init: str = "fresh"
    distill: str = "none"
    kd_alpha: float = 0.5
    kd_temperature: float = 6.0
    # training recipe
    epochs: int = 100
    lr: float = 0.01
    milestones: tuple[int, ...] = (50,)
    lr_gamma: float = 0.1
    momentum: float = 0.9
    batch_size: int = 32
    augment: bool | None = None  # None: crop+flip for the CIFAR-like sets, none for the MNIST-like ones
    # acquisition details
    pool_subset: int = 0  # score a random subset of this many unlabeled samples (0: the whole pool)
    subset_seed: int = 0
    ll_subset: int = 10000
    ll_stop_epoch: int | None = None  # None: 0.6 * epochs (Yoo & Kweon: 120 of 200)
    ll_margin: float = 1.0
    ll_weight: float = 1.0
    # BALD (Gal et al. 2017): T dropout samples of the classifier's input at acquisition
    mc_samples: int = 20
    mc_dropout: float = 0.5  # dropout rate before the classifier when sampling
    mc_dropout_train: bool = False  # also train with that dropout (off: the paper's training, unchanged)
    # execution
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    eval_batch_size: int | None = None  # None: 1024 on CUDA, 128 on the CPU (faster there; bench)
    compile: bool | str = "auto"  # torch.compile the training step; "auto": on CUDA, not on the CPU
    # torch's intra-op threads in the run's process (0: the process's default, OMP_NUM_THREADS or the
    # cores): a CPU run's numbers depend on it, so it is a setting (docs/method.md)
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)  # dataset options (e.g. npz path)

    def eval_batch(self, device_type: str) -> int:
        """The batch of test evaluation and pool scoring on a device of this type."""
        return self.eval_batch_size or (1024 if device_type == "cuda" else 128)

    def compile_on(self, device_type: str) -> bool:
        """Whether training on a device of this type is compiled."""
        return device_type == "cuda" if self.compile == "auto" else bool(self.compile)

    def n_labeled(self, round_: int) -> int:
        return self.initial + round_ * self.budget

    @property
    def ll_stop(self) -> int:
        return self.ll_stop_epoch if self.ll_stop_epoch is not None else int(0.6 * self.epochs)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown run settings {unknown}; allowed: {sorted(names)}")
        d = dict(d)
        if "milestones" in d:
            d["milestones"] = tuple(d["milestones"])
        return cls(**d)

    def validate(self) -> RunConfig:
        """Raise ConfigError naming the first bad setting and what is allowed."""
        choices = {
            "dataset": DATASETS, "model": MODELS, "acquisition": ACQUISITIONS,
            "wd_schedule": WD_SCHEDULES, "init": INITS, "distill": DISTILLS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key} = {getattr(self, key)!r} is unknown; allowed: {', '.join(allowed)}")
        checks = [
            ("rounds", self.rounds >= 1, "an integer >= 1"),
            ("initial", self.initial >= 1, "an integer >= 1"),
            ("budget", self.budget >= 1, "an integer >= 1"),
            ("epochs", self.epochs >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size >= 1, "an integer >= 1"),
            ("weight_decay", self.weight_decay >= 0, "a number >= 0"),
            ("lr", self.lr > 0, "a number > 0"),
            ("kd_alpha", 0 <= self.kd_alpha <= 1, "a number in [0, 1]"),
            ("kd_temperature", 0.01 <= self.kd_temperature <= 1000, "a number in [0.01, 1000]"),
            ("pool_subset", self.pool_subset >= 0, "an integer >= 0 (0: the whole pool)"),
            ("ll_subset", self.ll_subset >= 1, "an integer >= 1"),
            ("momentum", 0 <= self.momentum < 1, "a number in [0, 1)"),
            ("mc_samples", self.mc_samples >= 2, "an integer >= 2"),
            ("mc_dropout", 0 <= self.mc_dropout < 1, "a number in [0, 1)"),
            ("eval_batch_size", self.eval_batch_size is None or self.eval_batch_size >= 1, "an integer >= 1"),
            ("threads", self.threads >= 0, "an integer >= 0 (0: the process's default)"),
        ]
        for key in ("weight_decay", "kd_alpha", "kd_temperature", "lr", "lr_gamma", "momentum", "ll_margin",
                    "ll_weight", "mc_dropout"):  # JSON has no inf or nan, nor has training
            if not math.isfinite(getattr(self, key)):
                raise ConfigError(f"{key} = {getattr(self, key)!r} is not finite; allowed: a finite number")
        for key, ok, allowed in checks:
            if not ok:
                raise ConfigError(f"{key} = {getattr(self, key)!r} is out of range; allowed: {allowed}")
        if 0 < self.pool_subset < self.budget:
            raise ConfigError(f"pool_subset = {self.pool_subset} is smaller than budget = {self.budget}: a round "
                              "picks budget samples out of pool_subset scored ones; allowed: 0 (the whole pool) "
                              "or at least the budget")
        if self.acquisition == "ll" and self.pool_subset == 0 and self.ll_subset < self.budget:
            raise ConfigError(f"ll_subset = {self.ll_subset} is smaller than budget = {self.budget}: Learning Loss "
                              "picks budget samples out of ll_subset scored ones; allowed: at least the budget")
        if self.acquisition == "bald" and self.mc_dropout == 0:
            raise ConfigError(f"mc_dropout = {self.mc_dropout!r} leaves acquisition = 'bald' nothing to sample "
                              "(BALD needs mc_dropout > 0: without dropout its samples agree and every score is "
                              "0); allowed: mc_dropout in (0, 1)")
        if any(m < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"milestones = {list(self.milestones)} must be increasing epochs >= 1")
        if self.wd_schedule == "exact" and self.lr * self.weight_decay >= 1:
            raise ConfigError("wd_schedule = 'exact' needs lr * weight_decay < 1 (eq. 8)")
        if not (isinstance(self.compile, bool) or self.compile == "auto"):
            raise ConfigError(f"compile = {self.compile!r} is unknown; allowed: auto, true, false")
        if not valid_device(self.device):
            raise ConfigError(f"device = {self.device!r} is unknown; allowed: auto, cpu, cuda, cuda:N (N: digits 0-9)")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed = {self.seed!r} is out of range; allowed: an integer in [0, {MAX_SEED}] (what the "
                              "random generators take)")
        return self
