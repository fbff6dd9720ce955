"""Acquisition: which unlabeled samples to label next (paper eq. 1; Learning Loss, Yoo & Kweon 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from altui.al.tensors import DeviceData

UNCERTAINTY = ("entropy", "margin", "least-confidence")


def uncertainty(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Higher means more uncertain; computed from float32 log-probabilities."""
    log_p = F.log_softmax(logits.float(), dim=1)
    p = log_p.exp()
    if kind == "entropy":
        return -(p * log_p).sum(dim=1)
    if kind == "margin":
        top2 = p.topk(2, dim=1).values
        return -(top2[:, 0] - top2[:, 1])
    if kind == "least-confidence":
        return 1.0 - p.max(dim=1).values
    raise ValueError(f"unknown uncertainty {kind!r}; allowed: {', '.join(UNCERTAINTY)}")


def ranking_loss(predicted: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Learning Loss's margin ranking loss over mirrored pairs (i, B-1-i) of the batch.

    An odd batch leaves its middle sample unpaired, as the reference implementation's flip does.
    """
    half = predicted.shape[0] // 2
    if half == 0:
        return predicted.sum() * 0.0
    diff_pred = (predicted - predicted.flip(0))[:half]
    diff_true = (target - target.flip(0))[:half].detach()
    sign = 2 * torch.sign(torch.clamp(diff_true, min=0)) - 1
    return torch.clamp(margin - sign * diff_pred, min=0).sum() / half


@torch.inference_mode()
def score(
    model: nn.Module,
    data: DeviceData,
    indices: torch.Tensor,
    kind: str,
    batch_size: int,
    loss_module: nn.Module | None = None,
) -> torch.Tensor:
    """Scores of the pool samples `indices`, written into one preallocated float32 device tensor."""
    model.eval()
    if loss_module is not None:
        loss_module.eval()
    out = torch.empty(indices.shape[0], dtype=torch.float32, device=indices.device)
    use_bf16 = indices.device.type == "cuda"
    for start in range(0, indices.shape[0], batch_size):
        xb = data.normalize(data.x[indices[start:start + batch_size]])
        with torch.autocast(indices.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            if kind == "ll":
                _, feats = model.forward_features(xb)
                out[start:start + xb.shape[0]] = loss_module(feats).float()
            else:
                out[start:start + xb.shape[0]] = uncertainty(model(xb), kind)
    return out


def top_k(candidates: torch.Tensor, scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k highest-scoring candidates and their scores, in one top-k."""
    values, order = scores.topk(k)
    return candidates[order], values
