"""Acquisition: which unlabeled samples to label next (paper eq. 1; Learning Loss, Yoo & Kweon 2019; BALD,
Houlsby et al. 2011 with MC dropout, Gal et al. 2017). The batch-diverse ones (CoreSet, BADGE) are in
diversity.py; both read the pool through `pool_batches`."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from altui.al.tensors import DeviceData

UNCERTAINTY = ("entropy", "margin", "least-confidence")
DIVERSITY = ("coreset", "badge")  # pick a batch jointly (diversity.py) rather than the top-k scores


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


# ---- the classifier's input, and BALD ------------------------------------------------------------


def classifier(model: nn.Module) -> nn.Linear:
    """The last layer (every backbone of models.py ends in `fc`, fed by the penultimate features)."""
    return model.fc


def train_dropout(model: nn.Module, rate: float) -> None:
    """Dropout before the classifier while the model trains (mc_dropout_train); a no-op in eval mode,
    so test evaluation, the teacher and acquisition see the deterministic network."""
    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
        return (F.dropout(args[0], rate, training=True),) if module.training else None

    classifier(model).register_forward_pre_hook(hook)


@torch.inference_mode()
def pool_batches(
    model: nn.Module, data: DeviceData, indices: torch.Tensor, batch_size: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(start, logits, penultimate features) of the pool samples `indices`, batch by batch, in float32
    and eval mode: one forward pass, the features caught on their way into the classifier."""
    model.eval()
    caught: list[torch.Tensor] = []
    handle = classifier(model).register_forward_pre_hook(lambda m, args: caught.append(args[0]))
    use_bf16 = indices.device.type == "cuda"
    try:
        for start in range(0, indices.shape[0], batch_size):
            xb = data.normalize(data.x[indices[start:start + batch_size]])
            with torch.autocast(indices.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(xb)
            yield start, logits.float(), caught.pop().float().flatten(1)
    finally:
        handle.remove()


def embeddings(
    model: nn.Module, data: DeviceData, indices: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [n, C] and penultimate features [n, F] of the pool samples `indices`, float32."""
    fc = classifier(model)
    n, dev = indices.shape[0], indices.device
    logits = torch.empty(n, fc.out_features, dtype=torch.float32, device=dev)
    feats = torch.empty(n, fc.in_features, dtype=torch.float32, device=dev)
    for start, lb, fb in pool_batches(model, data, indices, batch_size):
        logits[start:start + lb.shape[0]] = lb
        feats[start:start + fb.shape[0]] = fb
    return logits, feats


def mutual_information(log_probs: torch.Tensor) -> torch.Tensor:
    """BALD's score from T samples of log-probabilities [T, n, C]: H[mean_t p_t] - mean_t H[p_t], float32.
    The mean's log is a logsumexp, so that no probability is rounded to zero before its log."""
    log_probs = log_probs.float()
    t = log_probs.shape[0]
    log_mean = torch.logsumexp(log_probs, dim=0) - torch.log(torch.tensor(float(t), device=log_probs.device))
    entropy_of_mean = -(log_mean.exp() * log_mean).sum(dim=1)
    mean_entropy = -(log_probs.exp() * log_probs).sum(dim=2).mean(dim=0)
    return (entropy_of_mean - mean_entropy).clamp_min(0.0)  # >= 0 in exact arithmetic


@torch.inference_mode()
def mc_log_probs(fc: nn.Linear, feats: torch.Tensor, samples: int, rate: float,
                 generator: torch.Generator) -> torch.Tensor:
    """T dropout samples of the classifier on features [n, F] -> log-probabilities [T, n, C], float32.
    Dropout sits right before the classifier, so T whole forward passes would repeat the same features:
    the passes share them and differ only in their masks (drawn from `generator`)."""
    weight, bias = fc.weight.float(), fc.bias.float() if fc.bias is not None else None
    out = []
    for _ in range(samples):
        keep = torch.rand(feats.shape, device=feats.device, generator=generator) >= rate
        out.append(F.log_softmax(F.linear(feats * keep / (1.0 - rate), weight, bias), dim=1))
    return torch.stack(out)


@torch.inference_mode()
def bald(model: nn.Module, data: DeviceData, indices: torch.Tensor, batch_size: int, samples: int, rate: float,
         generator: torch.Generator) -> torch.Tensor:
    """BALD scores of the pool samples `indices` (mc_samples dropout samples at rate mc_dropout)."""
    out = torch.empty(indices.shape[0], dtype=torch.float32, device=indices.device)
    fc = classifier(model)
    for start, _, feats in pool_batches(model, data, indices, batch_size):
        out[start:start + feats.shape[0]] = mutual_information(mc_log_probs(fc, feats, samples, rate, generator))
    return out
