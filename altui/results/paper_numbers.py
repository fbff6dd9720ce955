"""The paper's published numbers (accuracy, %), transcribed from its Table 1, Table 2 and the text of
sections 4.2-4.4, with where each sits in our experiments (experiments.toml) so that a report can put
them beside ours.

Values are as printed; Table 1 (b) prints 52.1 with one decimal. Our method names are the paper's preset
names; the paper writes a method's weight decay in parentheses (its initial value for WS methods).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PaperRow:
    label: str  # the row as the paper prints it
    method: str  # our method name
    values: tuple[float, ...]  # one per column of its table
    sweep: dict[str, Any] = field(default_factory=dict)  # our sweep point (the keys it fixes)
    experiment: str | None = None  # where our numbers are, when not in the table's own experiment


@dataclass(frozen=True)
class PaperTable:
    title: str
    experiment: str
    columns: tuple[int, ...]  # labeled counts
    rows: tuple[PaperRow, ...]


@dataclass(frozen=True)
class PaperQuote:
    """A number the text quotes: one method at one labeled count."""

    experiment: str
    label: str  # the method as the paper names it
    method: str  # our method name
    n_labeled: int
    value: float
    where: str


def _wd_rows(method: str, rows: dict[float, tuple[float, ...]]) -> tuple[PaperRow, ...]:
    return tuple(PaperRow(f"WD {wd}", method, values, {"weight_decay": wd}) for wd, values in rows.items())


# Table 1 (a): 5-layer CNN on MNIST, one training per fixed weight decay and number of labels.
TABLE1_MNIST = PaperTable(
    "Table 1 (a): MNIST, 5-layer CNN, fixed weight decay", "table1-mnist",
    (200, 500, 1000, 2000, 5000, 10000),
    _wd_rows("Random", {
        0.2: (92.37, 94.86, 95.64, 95.81, 93.84, 94.50),
        0.1: (92.46, 95.75, 96.75, 96.94, 96.67, 96.82),
        0.04: (91.82, 96.30, 97.12, 97.68, 98.17, 98.26),
        0.02: (91.00, 96.03, 97.29, 97.96, 98.54, 98.71),
        0.01: (89.97, 95.06, 97.25, 98.03, 98.58, 98.94),
        0.004: (89.94, 94.50, 96.70, 97.91, 98.70, 98.97),
        0.002: (89.25, 94.25, 96.42, 97.63, 98.60, 98.98),
        0.001: (89.67, 94.18, 96.17, 97.45, 98.54, 98.90),
    }),
)

# Table 1 (b): ResNet18 on CIFAR-10.
TABLE1_CIFAR10 = PaperTable(
    "Table 1 (b): CIFAR-10, ResNet18, fixed weight decay", "table1-cifar10",
    (1000, 2000, 5000, 10000, 20000, 50000),
    _wd_rows("Random", {
        0.02: (52.44, 54.25, 33.03, 19.58, 17.66, 10.00),
        0.01: (62.84, 71.80, 75.83, 74.60, 71.91, 61.75),
        0.005: (58.46, 73.93, 81.50, 84.06, 83.47, 83.37),
        0.002: (54.12, 70.83, 83.15, 87.54, 90.42, 92.05),
        0.001: (53.30, 67.63, 83.05, 88.26, 92.00, 94.48),
        0.0005: (52.1, 65.34, 81.37, 88.13, 92.23, 95.18),
        0.0002: (49.47, 63.56, 79.23, 86.56, 91.39, 95.26),
        0.0001: (50.18, 64.06, 78.50, 85.76, 90.91, 94.84),
    }),
)

# Table 2: the distillation weight alpha, CIFAR-10, ResNet18, K = 1000. Its WS+init row (no alpha) is
# the WS+init run of cifar10-resnet18-k1000.
TABLE2_ALPHA = PaperTable(
    "Table 2: distillation weight alpha, CIFAR-10, ResNet18, K = 1000", "table2-alpha",
    (1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000),
    (
        PaperRow("WS+init", "WS+init",
                 (62.17, 75.40, 80.40, 83.33, 85.45, 87.60, 88.93, 90.03, 91.07, 91.68),
                 experiment="cifar10-resnet18-k1000"),
        PaperRow("WS+init+KD1, alpha 0.1", "WS+init+KD1",
                 (62.57, 75.49, 80.74, 83.72, 85.71, 87.70, 89.46, 90.26, 91.28, 91.90), {"kd_alpha": 0.1}),
        PaperRow("WS+init+KD1, alpha 0.5", "WS+init+KD1",
                 (61.27, 76.24, 81.85, 84.77, 86.91, 88.07, 89.52, 90.57, 91.53, 91.96), {"kd_alpha": 0.5}),
        PaperRow("WS+init+KD1, alpha 0.9", "WS+init+KD1",
                 (62.55, 74.18, 80.88, 84.59, 86.99, 88.60, 89.81, 90.86, 91.66, 92.18), {"kd_alpha": 0.9}),
    ),
)

TABLES: dict[str, PaperTable] = {t.experiment: t for t in (TABLE1_MNIST, TABLE1_CIFAR10, TABLE2_ALPHA)}

_FIG1 = "§4.2, Fig. 1 (K = 500), 2,500 labels"
_FIG2A = "§4.3, Fig. 2 (a), last round"
_FIG2C = "§4.3, Fig. 2 (c), last round"
_FIG2D = "§4.3, Fig. 2 (d), third round"
_FIG3A = "§4.4, Fig. 3 (a), last round"
_FIG3B = "§4.4, Fig. 3 (b), last round"

QUOTES: tuple[PaperQuote, ...] = (
    PaperQuote("mnist-k500", "Entropy(0.004)", "Entropy", 2500, 99.12, _FIG1),
    PaperQuote("mnist-k500", "Entropy+init(0.004)", "Entropy+init", 2500, 99.17, _FIG1),
    PaperQuote("mnist-k500", "WS+init+KD1", "WS+init+KD1", 2500, 99.27, _FIG1),
    PaperQuote("mnist-k500", "WS+init+KD2", "WS+init+KD2", 2500, 99.29, _FIG1),
    PaperQuote("cifar10-resnet18-k1000", "WS+init(0.008)", "WS+init", 10000, 91.68, _FIG2A),
    PaperQuote("cifar10-resnet18-k1000", "Entropy+init(0.0008)", "Entropy+init", 10000, 91.51, _FIG2A),
    PaperQuote("cifar10-densenet100-k1000", "WS+init(0.003)", "WS+init", 10000, 89.96, _FIG2C),
    PaperQuote("cifar10-densenet100-k1000", "Entropy+init(0.0003)", "Entropy+init", 10000, 90.43, _FIG2C),
    PaperQuote("cifar10-densenet100-k250", "Random(0.0012)", "Random", 750, 51.37, _FIG2D),
    PaperQuote("cifar10-densenet100-k250", "Entropy(0.0012)", "Entropy", 750, 49.31, _FIG2D),
    PaperQuote("cifar100-resnet18-k1000", "WS+init(0.008)", "WS+init", 10000, 57.38, _FIG3A),
    PaperQuote("cifar100-resnet18-k1000", "Entropy+init(0.0008)", "Entropy+init", 10000, 57.43, _FIG3A),
    PaperQuote("cifar100-densenet100-k1000", "WS+init(0.003)", "WS+init", 10000, 54.88, _FIG3B),
    PaperQuote("cifar100-densenet100-k1000", "Entropy+init(0.0003)", "Entropy+init", 10000, 55.23, _FIG3B),
)

# The figure each of the paper's experiments reproduces (the paper gives most curves only as figures).
FIGURES: dict[str, str] = {
    "table1-mnist": "Table 1 (a)",
    "table1-cifar10": "Table 1 (b)",
    "table2-alpha": "Table 2",
    "mnist-k200": "Fig. 1 (K = 200)",
    "mnist-k500": "Fig. 1 (K = 500)",
    "cifar10-resnet18-k1000": "Fig. 2 (a)",
    "cifar10-resnet18-k250": "Fig. 2 (b)",
    "cifar10-densenet100-k1000": "Fig. 2 (c)",
    "cifar10-densenet100-k250": "Fig. 2 (d)",
    "cifar100-resnet18-k1000": "Fig. 3 (a)",
    "cifar100-densenet100-k1000": "Fig. 3 (b)",
}


def quotes_for(experiment: str) -> list[PaperQuote]:
    return [q for q in QUOTES if q.experiment == experiment]
