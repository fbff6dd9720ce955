"""What the round loop reports, and the callbacks it reports through.

The loop returns nothing hidden: every number a round produces reaches the sink. The runner turns
these into store rows; tests collect them in a list.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class EpochStats:
    round: int
    epoch: int  # 1-based
    epochs: int
    train_loss: float
    train_accuracy: float
    lr: float
    images_per_second: float
    train_ce: float | None = None  # the epoch's mean cross-entropy on the labels (unweighted)
    train_kd: float | None = None  # the epoch's mean alpha * T^2 * KL term; None without a teacher


@dataclass(frozen=True)
class LayerChannels:
    layer: str  # the batch-norm module's qualified name
    channels: int
    effective: int  # channels whose |gamma| >= mean |gamma| / 10 (section 5.1)
    # |gamma| of each channel in channel order, float32 values (Figure 5 is drawn from these)
    abs_gamma: tuple[float, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class Probes:
    channels: list[LayerChannels]
    conv_l2: float  # L2 norm of all convolution weights together
    gamma_bins: list[float]  # histogram edges of |gamma| over all batch-norm layers (len = counts + 1)
    gamma_counts: list[int]

    @property
    def effective_channels(self) -> int:
        return sum(c.effective for c in self.channels)

    @property
    def total_channels(self) -> int:
        return sum(c.channels for c in self.channels)


@dataclass(frozen=True)
class CorrectImages:
    """Which test images a round's model classified right, one bit each (bit i of byte i // 8, least
    significant first): 450 bits for digits, 10,000 for CIFAR (1.7 kB as text). In the store as
    `rounds.test_images` and `rounds.test_correct` (base64), docs/schema.md."""

    images: int
    bits: bytes

    @classmethod
    def of(cls, right: np.ndarray) -> CorrectImages:
        right = np.asarray(right, dtype=bool)
        return cls(len(right), np.packbits(right, bitorder="little").tobytes())

    def text(self) -> str:
        return base64.b64encode(self.bits).decode("ascii")

    @classmethod
    def parse(cls, images: int, text: str) -> CorrectImages:
        bits = base64.b64decode(text, validate=True)
        if len(bits) != (images + 7) // 8:
            raise ValueError(f"{len(bits)} bytes of test_correct do not hold {images} images")
        return cls(images, bits)

    def array(self) -> np.ndarray:
        """The bool [images] array."""
        return np.unpackbits(np.frombuffer(self.bits, np.uint8), count=self.images, bitorder="little").astype(bool)


@dataclass(frozen=True)
class TeacherDiagnostics:
    """Why distillation helps or hurts, per round t >= 1 (altui/al/diagnostics.py computes them)."""

    temperature: float  # T of the confidence: the run's kd_temperature with a teacher, else 1
    teacher_test_accuracy: float
    teacher_prev_accuracy: float  # on D_{t-1}, the labels it was trained on
    teacher_labeled_accuracy: float  # on D_t
    teacher_picks_accuracy: float  # on the round's new picks
    teacher_picks_confidence: float  # mean max softmax(logits / T) on the new picks
    student_prev_fit: float  # the trained student's accuracy on D_{t-1}
    student_picks_fit: float  # ... and on the new picks


@dataclass(frozen=True)
class RoundResult:
    round: int
    n_labeled: int  # labels the model of this round was trained on
    accuracy: float  # test accuracy in [0, 1]
    test_loss: float
    weight_decay: float  # lambda_t
    lr: float  # initial learning rate of the round
    train_seconds: float
    acquire_seconds: float
    probes: Probes
    picks: list[int]  # pool indices acquired after this round (empty after the last round)
    pick_scores: list[float]  # acquisition score of each pick (random: 0.0)
    pick_class_counts: list[int]  # picks per class, len = number of classes
    test_correct: CorrectImages | None = None  # which test images this round's model got right
    teacher: TeacherDiagnostics | None = None  # rounds >= 1: the previous model and the student's fit

    @property
    def pick_mean_score(self) -> float | None:
        return sum(self.pick_scores) / len(self.pick_scores) if self.pick_scores else None


@dataclass
class ResumeState:
    """All that the next round needs: saved with each round, loadable with weights_only=True.

    It holds no RNG state: every random stream of a round is seeded from (seed, round), so that a
    resumed run draws exactly what an uninterrupted one would.
    """

    next_round: int
    labeled: list[int]  # pool indices labeled for the next round
    model: dict[str, Any]  # state dict of the round's model: the next round's teacher and warm start
    init: dict[str, Any]  # state dict of the round-0 initialisation (init = 'same')
    loss_module: dict[str, Any] | None = None  # Learning Loss module, kept across rounds like the model

    def to_dict(self) -> dict[str, Any]:
        return {
            "next_round": self.next_round, "labeled": list(self.labeled), "model": self.model,
            "init": self.init, "loss_module": self.loss_module,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResumeState:
        return cls(**d)


@dataclass
class EpochState:
    """A round in progress at the end of an epoch: what resumes it there, so that a round longer
    than a Slurm job's time limit still progresses from job to job. Loadable with weights_only=True.
    With the round's own checkpoint before it (a ResumeState), training goes on exactly as it would
    have: the weights, the optimizer's momentum and learning rate, and the round's batch-order stream."""

    round: int
    epochs_done: int
    model: dict[str, Any]
    optimizer: dict[str, Any]  # torch.optim.SGD.state_dict(): momentum buffers, lr after the schedule
    generator: Any  # torch.Generator.get_state(): where the round's batch-order stream is
    loss_module: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "epochs_done": self.epochs_done, "model": self.model,
                "optimizer": self.optimizer, "generator": self.generator, "loss_module": self.loss_module}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpochState:
        return cls(**d)


class Sink(Protocol):
    def log(self, message: str, level: str = "info") -> None: ...

    def started(self, provenance: dict[str, Any]) -> None:
        """Called once as the loop starts (or resumes): what can change its numbers (al/provenance.py)."""
        ...

    def epoch_done(self, stats: EpochStats) -> None: ...

    def round_done(self, result: RoundResult, state: ResumeState) -> None:
        """Called once per round, after acquisition; `state` resumes at the next round."""
        ...


class ListSink:
    """Keeps everything in lists: for tests and notebooks."""

    def __init__(self) -> None:
        self.logs: list[tuple[str, str]] = []
        self.epochs: list[EpochStats] = []
        self.rounds: list[RoundResult] = []
        self.states: list[ResumeState] = []
        self.provenance: dict[str, Any] | None = None

    def log(self, message: str, level: str = "info") -> None:
        self.logs.append((level, message))

    def started(self, provenance: dict[str, Any]) -> None:
        self.provenance = provenance

    def epoch_done(self, stats: EpochStats) -> None:
        self.epochs.append(stats)

    def round_done(self, result: RoundResult, state: ResumeState) -> None:
        self.rounds.append(result)
        self.states.append(state)
