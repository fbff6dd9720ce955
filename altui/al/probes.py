"""What weight decay does to a trained model (section 5.1): effective channels, conv norm, |gamma| histogram.

All numbers are computed on the CPU in float32, so they do not depend on the device or the training
precision. This runs once per round; it is not on a hot path.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from altui.al.sink import LayerChannels, Probes

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _layer_name(name: str) -> str:
    # torch.compile wraps the model in `_orig_mod`; layer names should not depend on compiling.
    return name.replace("_orig_mod.", "")


def _abs_gammas(model: nn.Module) -> list[tuple[str, Tensor]]:
    """(qualified name, |gamma| on the CPU in float32) for every batch-norm layer, in module order."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, _BATCH_NORMS):
            # affine=False: the layer scales every channel by 1.
            g = m.weight.detach() if m.weight is not None else torch.ones(m.num_features)
            out.append((_layer_name(name), g.to("cpu", torch.float32).abs()))
    return out


def count_effective(a: Tensor) -> int:
    """Effective channels of one layer from its |gamma| (float32): those not below the layer's mean
    |gamma| / 10. A layer of all-zero gammas has none (the strict rule alone would count them all)."""
    ineffective = (a < a.mean() / 10) | (a == 0)
    return a.numel() - int(ineffective.sum().item())


def _effective(gammas: list[tuple[str, Tensor]]) -> list[LayerChannels]:
    return [LayerChannels(name, a.numel(), count_effective(a), tuple(a.tolist())) for name, a in gammas]


def _histogram(gammas: list[tuple[str, Tensor]], bins: int) -> tuple[list[float], list[int]]:
    return histogram(torch.cat([g for _, g in gammas]) if gammas else torch.zeros(0), bins)


def histogram(a: Tensor, bins: int = 20) -> tuple[list[float], list[int]]:
    """Edges (bins + 1, from 0 to max |gamma|) and counts of the finite values of `a` (float32)."""
    if bins < 1:
        raise ValueError(f"bins = {bins} must be >= 1")
    a = a[torch.isfinite(a)]  # a diverged layer must not break the probe
    top = a.max().item() if a.numel() else 0.0
    top = top if top > 0 else 1.0  # degenerate (no layers, or all zero): edges 0..1
    counts, edges = torch.histogram(a, bins=bins, range=(0.0, top))  # the last bin includes max|gamma|
    return edges.tolist(), [int(c) for c in counts.tolist()]


def effective_channels(model: nn.Module) -> list[LayerChannels]:
    """Channels and effective channels of each batch-norm layer, in module order (section 5.1)."""
    return _effective(_abs_gammas(model))


def conv_l2(model: nn.Module) -> float:
    """L2 norm of all Conv2d weights taken together (the number in the paper's figure 4)."""
    total = 0.0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            total += m.weight.detach().to("cpu", torch.float32).square().sum().item()
    return math.sqrt(total)


def gamma_histogram(model: nn.Module, bins: int = 20) -> tuple[list[float], list[int]]:
    """Edges (bins + 1, from 0 to max |gamma|) and counts of |gamma| over all batch-norm layers."""
    return _histogram(_abs_gammas(model), bins)


def probe(model: nn.Module, bins: int = 20) -> Probes:
    gammas = _abs_gammas(model)
    edges, counts = _histogram(gammas, bins)
    return Probes(channels=_effective(gammas), conv_l2=conv_l2(model), gamma_bins=edges, gamma_counts=counts)
