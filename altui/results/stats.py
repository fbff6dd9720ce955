"""The statistics under every table, figure and claim: the bootstrap interval of a mean over seeds, and the
claims' paired statistic (mean per-seed difference, its interval, the verdict). No altui imports: the bottom
of altui.results."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 1000  # the paper's figures: "1000 bootstrap resampling"
BOOTSTRAP_SEED = 0  # a fresh numpy Generator per cell, so every cell is reproducible on its own

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
MIN_SEEDS = 3  # fewer paired seeds give no verdict


def bootstrap_interval(values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """The 95% percentile interval of the mean: `resamples` resamples of the values (with replacement,
    each as many as the values), the 2.5th and 97.5th percentiles of their means."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def paired_interval(differences: Sequence[float]) -> tuple[float | None, float | None, float | None, str]:
    """Mean of the per-seed differences, its 95% bootstrap interval over the seeds, and the verdict:
    supported (interval above 0), contradicted (below 0), else inconclusive, as with fewer than
    MIN_SEEDS seeds."""
    if not differences:
        return None, None, None, INCONCLUSIVE
    mean = float(np.mean(differences))
    low, high = bootstrap_interval(differences)
    if len(differences) < MIN_SEEDS:
        return mean, low, high, INCONCLUSIVE
    return mean, low, high, SUPPORTED if low > 0 else CONTRADICTED if high < 0 else INCONCLUSIVE
