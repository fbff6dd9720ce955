"""Weight decay per round (paper section 3.2) and the optimiser groups it applies to."""

from __future__ import annotations

from torch import nn

from altui.al.config import RunConfig


def weight_decay_at(cfg: RunConfig, round_: int) -> float:
    """lambda_t for round t, with N_0 = initial labels and N_t = initial + t * budget.

    fixed: lambda_0; inverse: eq. 10, lambda_0 * N_0 / N_t; exact: eq. 8,
    (1 - (1 - eta * lambda_0) ** (N_0 / N_t)) / eta with eta the initial learning rate.
    """
    lam0, n0, nt = cfg.weight_decay, cfg.initial, cfg.n_labeled(round_)
    if cfg.wd_schedule == "fixed":
        return lam0
    if cfg.wd_schedule == "inverse":
        return lam0 * n0 / nt
    eta = cfg.lr
    return (1.0 - (1.0 - eta * lam0) ** (n0 / nt)) / eta


def param_groups(model: nn.Module, weight_decay: float, decay_bn: bool) -> list[dict]:
    """SGD groups: every parameter decays (PyTorch's default, the paper's footnote 1) unless
    `decay_bn` is off, which exempts batch-norm weights and biases."""
    if decay_bn:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    bn = [p for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters()]
    bn_ids = {id(p) for p in bn}
    rest = [p for p in model.parameters() if id(p) not in bn_ids]
    return [{"params": rest, "weight_decay": weight_decay}, {"params": bn, "weight_decay": 0.0}]
