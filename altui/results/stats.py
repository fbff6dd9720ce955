"""The statistics under every table, figure and claim. No altui imports: the bottom of altui.results.

- `bootstrap_interval`: the paper's percentile band of a mean over seeds (the summary and the plots'
  shading: the paper's own protocol, descriptive).
- `paired_test`: the claims' calibrated statistic (docs/export.md, "The statistic"). A difference
  between methods has two sources of chance: the seeds (initial labels, initialisation, batch order)
  and the test set itself (another sample of test images would move every seed's accuracy the same
  way). The per-seed differences hold the first; the per-image differences, averaged over the seeds,
  hold the second. Their variances add (a crossed seeds x images design: the one-way variances of
  each margin, which counts the seed-by-image residual twice and so errs on the safe side), and the
  mean over its standard error is read against Student's t with Welch-Satterthwaite's degrees of
  freedom: t with n-1 degrees of freedom (exact for normal seed effects) when the seeds dominate, the
  normal when the test set does. Satterthwaite's extra degrees of freedom can make that interval
  narrower than the seeds' own t interval; the test set's noise should only ever widen it, so the
  verdict takes the larger p of the two (and the interval their union): a maximum of valid p-values
  is valid.
- `holm`: a family's adjusted p-values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sp

BOOTSTRAP_RESAMPLES = 1000  # the paper's figures: "1000 bootstrap resampling"
BOOTSTRAP_SEED = 0  # a fresh numpy Generator per cell, so every cell is reproducible on its own

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
ALPHA = 0.05  # two-sided: "supported" is wrong at most 1 time in 40, as is "contradicted"
MIN_SEEDS = 2  # a t statistic needs a spread: fewer paired seeds give no verdict
MAX_SEEDS = 10_000  # seeds_to_decide looks no further


def bootstrap_interval(values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """The 95% percentile interval of the mean: `resamples` resamples of the values (with replacement,
    each as many as the values), the 2.5th and 97.5th percentiles of their means."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class Evidence:
    """A paired test of "mean > 0" over seeds (and test images, where recorded)."""

    mean: float
    seeds: int
    seed_sd: float  # sample SD of the per-seed values (0 with one seed)
    images: int | None  # test images in the statistic; None: over the seeds only
    image_var: float  # variance of the mean from the test set (0 without images)

    @property
    def seed_var(self) -> float:
        return self.seed_sd ** 2 / self.seeds

    @property
    def se(self) -> float:
        return float(np.sqrt(self.seed_var + self.image_var))

    @property
    def df(self) -> float:
        return satterthwaite(self.seed_var, self.seeds, self.image_var, self.images)

    @property
    def t(self) -> float:
        if self.se > 0:
            return self.mean / self.se
        return 0.0 if self.mean == 0 else float(np.copysign(np.inf, self.mean))

    def _seeds_only(self) -> Evidence:
        return Evidence(self.mean, self.seeds, self.seed_sd, None, 0.0)

    def _one_sided(self, sign: int) -> float:
        """p of "mean > 0" (sign 1) or "mean < 0" (sign -1): with test images, the larger of the
        combined test's and the seeds' own."""
        if self.seeds < MIN_SEEDS:
            return 1.0
        p = float(sp.t.sf(sign * self.t, self.df))
        return max(p, self._seeds_only()._one_sided(sign)) if self.images else p

    @property
    def p_greater(self) -> float:
        return self._one_sided(1)

    @property
    def p_less(self) -> float:
        return self._one_sided(-1)

    def interval(self, level: float = 1 - ALPHA) -> tuple[float, float]:
        if self.seeds < MIN_SEEDS:
            return self.mean, self.mean
        half = float(sp.t.ppf(0.5 + level / 2, self.df)) * self.se
        low, high = self.mean - half, self.mean + half
        if self.images:
            seeds_low, seeds_high = self._seeds_only().interval(level)
            low, high = min(low, seeds_low), max(high, seeds_high)
        return low, high

    @property
    def test(self) -> str:
        return "paired t (seeds × test images)" if self.images else "paired t (seeds)"


def satterthwaite(seed_var: float, seeds: int, image_var: float, images: int | None) -> float:
    """Degrees of freedom of a sum of two variance estimates (n-1 and M-1 degrees of freedom)."""
    if seeds < 2:
        return 1.0
    if not images or image_var <= 0:
        return float(seeds - 1)
    total = seed_var + image_var
    return float(total ** 2 / (seed_var ** 2 / (seeds - 1) + image_var ** 2 / (images - 1)))


def paired_test(per_seed: Sequence[float], per_image: np.ndarray | None = None) -> Evidence:
    """`per_seed`: each seed's difference (or contrast); `per_image`: the same per test image, shape
    (seeds, images), each row averaging to the seed's value; None where a round has no bitset."""
    values = np.asarray(per_seed, dtype=float)
    if len(values) == 0:
        return Evidence(0.0, 0, 0.0, None, 0.0)
    sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    images, image_var = None, 0.0
    if per_image is not None and per_image.shape[1] > 1:
        images = per_image.shape[1]
        image_var = float(per_image.mean(axis=0).var(ddof=1) / images)
    return Evidence(float(values.mean()), len(values), sd, images, image_var)


def two_sided(p_greater: float, p_less: float) -> float:
    """Either direction, Bonferroni over the two (the usual two-sided p for one t statistic)."""
    return min(1.0, 2 * min(p_greater, p_less))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order): the family's chance of any false decision
    stays at the level, whatever the dependence between its tests."""
    order = np.argsort(pvalues, kind="stable")
    m, adjusted, running = len(pvalues), [1.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def verdict(p_value: float, p_greater: float, p_less: float, alpha: float = ALPHA) -> str:
    if p_value > alpha:
        return INCONCLUSIVE
    return SUPPORTED if p_greater < p_less else CONTRADICTED


def seeds_to_decide(e: Evidence, multiplier: float = 2.0, alpha: float = ALPHA) -> int | None:
    """The fewest seeds at which this mean, with this spread over seeds and this test-set variance,
    would be decided (`multiplier` * one-sided p <= alpha; 2 for a plain two-sided test, more after a
    family's correction); None when no number up to MAX_SEEDS would: no spread to go on (one seed),
    no effect, or a test-set variance that alone hides the effect. p falls as seeds are added (the
    standard error shrinks, the degrees of freedom grow): a bisection finds the first n."""
    if e.seeds < MIN_SEEDS or e.mean == 0:
        return None

    def decides(n: int) -> bool:
        at_n = Evidence(e.mean, n, e.seed_sd, e.images, e.image_var)
        return multiplier * min(at_n.p_greater, at_n.p_less) <= alpha

    if not decides(MAX_SEEDS):
        return None
    low, high = MIN_SEEDS - 1, MAX_SEEDS  # decides(high) holds; decides(low) is taken as false
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if decides(mid) else (mid, high)
    return high


def image_noise_hides(e: Evidence, multiplier: float = 2.0, alpha: float = ALPHA) -> bool:
    """True when the test set's variance alone (infinitely many seeds) would leave the mean undecided."""
    if not e.images or e.image_var <= 0:
        return False
    return multiplier * float(sp.norm.sf(abs(e.mean) / np.sqrt(e.image_var))) > alpha
