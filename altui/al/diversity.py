"""Batch acquisition by diversity: CoreSet (Sener & Savarese 2018) and BADGE (Ash et al. 2020).

Both pick K samples jointly, one after another, on the device, with memory bounded by the pool's
features (never a pool x pool or pool x (classes x features) matrix), and no host sync inside the
greedy loop. The returned score of a pick is its distance to the nearest centre when it was picked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from altui.al.acquire import embeddings
from altui.al.tensors import DeviceData

CHUNK = 4096  # rows per block of a distance matrix: 4096 x 4096 float32 is 64 MiB


# ---- CoreSet: greedy k-center on the penultimate features --------------------------------------


def min_sq_distances(x: torch.Tensor, centres: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """Each row of x's squared Euclidean distance to its nearest row of `centres`, in blocks."""
    out = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    c_norms = (centres * centres).sum(1)
    for s in range(0, x.shape[0], chunk):
        xs = x[s:s + chunk]
        x_norms = (xs * xs).sum(1, keepdim=True)
        best = torch.full((xs.shape[0],), float("inf"), device=x.device)
        for c in range(0, centres.shape[0], chunk):
            d = x_norms + c_norms[c:c + chunk][None] - 2.0 * (xs @ centres[c:c + chunk].T)
            best = torch.minimum(best, d.min(1).values)
        out[s:s + chunk] = best.clamp_min(0.0)
    return out


def k_center_greedy(pool: torch.Tensor, labeled: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sener & Savarese's greedy k-center: k times, the pool row farthest from every centre (the
    labeled rows, then the picks so far) becomes a centre. Returns the picked rows and their distances."""
    if labeled.shape[0]:
        d2 = min_sq_distances(pool, labeled)
    else:
        d2 = torch.full((pool.shape[0],), float("inf"), device=pool.device)
    norms = (pool * pool).sum(1)
    picks = torch.empty(k, dtype=torch.long, device=pool.device)
    values = torch.empty(k, dtype=torch.float32, device=pool.device)
    for i in range(k):
        j = d2.argmax()
        picks[i], values[i] = j, d2[j]
        d2 = torch.minimum(d2, (norms + norms[j] - 2.0 * (pool @ pool[j])).clamp_min(0.0))
        d2[j] = 0.0  # exactly: a centre is never picked again
    return picks, values.sqrt()


def coreset(model: nn.Module, data: DeviceData, candidates: torch.Tensor, labeled: torch.Tensor, k: int,
            batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CoreSet's k picks among `candidates` (positions into it) and their distances."""
    _, pool = embeddings(model, data, candidates, batch_size)
    _, centres = embeddings(model, data, labeled, batch_size)
    return k_center_greedy(pool, centres, k)


# ---- BADGE: k-means++ seeding on the last layer's gradient embeddings ------------------------------


def gradient_factors(logits: torch.Tensor) -> torch.Tensor:
    """a = p - e_ŷ: the cross-entropy gradient at the predicted label with respect to the logits. The
    gradient embedding of a sample, d CE / d W of the last layer, is the outer product a ⊗ h with its
    penultimate features h (Ash et al. use its negative; distances are the same)."""
    p = F.softmax(logits.float(), dim=1)
    return p - F.one_hot(p.argmax(1), p.shape[1]).float()


def gradient_embedding(logits: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """The embeddings themselves, [n, C x F] (class-major): for small pools and for checking."""
    return (gradient_factors(logits)[:, :, None] * feats[:, None, :]).flatten(1)


def kmeans_pp(a: torch.Tensor, h: torch.Tensor, k: int, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) on the embeddings g_i = a_i ⊗ h_i, as BADGE seeds
    it: the first centre is the largest embedding, each next one is drawn with probability D², the
    squared distance to the nearest centre so far, by inverse CDF at `uniforms[i - 1]` (k - 1 draws in
    [0, 1)). Distances factorise, ||g_i - g_j||² = |a_i|²|h_i|² + |a_j|²|h_j|² - 2 (a_i·a_j)(h_i·h_j),
    so memory is that of a and h. When every D² is 0 (fewer distinct embeddings than k), the draw is
    uniform over the samples not yet picked. Returns the picks and their distances at the pick."""
    sq = (a * a).sum(1) * (h * h).sum(1)
    n, dev = a.shape[0], a.device
    picks = torch.empty(k, dtype=torch.long, device=dev)
    values = torch.empty(k, dtype=torch.float32, device=dev)
    chosen = torch.zeros(n, dtype=torch.bool, device=dev)
    d2 = torch.full((n,), float("inf"), device=dev)
    j = sq.argmax()
    values[0] = sq[j]
    for i in range(k):
        if i:
            weights = torch.where(d2.sum() > 0, d2.double(), (~chosen).double())
            cdf = weights.cumsum(0)
            j = torch.searchsorted(cdf, uniforms[i - 1].double() * cdf[-1:], right=True)[0].clamp_max(n - 1)
            values[i] = d2[j]
        picks[i] = j
        chosen[j] = True
        d2 = torch.minimum(d2, (sq + sq[j] - 2.0 * (a @ a[j]) * (h @ h[j])).clamp_min(0.0))
        d2 = d2.masked_fill(chosen, 0.0)  # exactly: a centre is never drawn again
    return picks, values.sqrt()


def badge(model: nn.Module, data: DeviceData, candidates: torch.Tensor, k: int, batch_size: int,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BADGE's k picks among `candidates` (positions into it) and their gradient-embedding distances."""
    logits, feats = embeddings(model, data, candidates, batch_size)
    uniforms = torch.rand(max(k - 1, 0), device=candidates.device, generator=generator, dtype=torch.float64)
    return kmeans_pp(gradient_factors(logits), feats, k, uniforms)
