"""Hinton distillation from the previous round's model (paper section 3.3, eqs. 11 and 12)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_per_sample(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) for each sample, in float32."""
    log_p_t = F.log_softmax(teacher.float() / temperature, dim=1)
    log_p_s = F.log_softmax(student.float() / temperature, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)


def kd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    targets: torch.Tensor,
    alpha: float,
    temperature: float,
    seen: torch.Tensor | None = None,
    seen_fraction: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """(1 - alpha) * CE + alpha * T^2 * KL term over one minibatch (kd_terms)."""
    return combined(*kd_terms(student, teacher, targets, alpha, temperature, seen, seen_fraction), alpha)


def combined(ce: torch.Tensor, kd: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 11/12's loss from its two parts (kd_terms): (1 - alpha) * CE + the KD term."""
    return (1.0 - alpha) * ce + kd


def kd_terms(
    student: torch.Tensor,
    teacher: torch.Tensor,
    targets: torch.Tensor,
    alpha: float,
    temperature: float,
    seen: torch.Tensor | None = None,
    seen_fraction: float | torch.Tensor = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two parts of the loss over one minibatch drawn uniformly from D_t: the mean CE (unweighted)
    and alpha * T^2 * KL term; the loss is (1 - alpha) * CE + the second (the epochs table keeps both).

    kd1 (`seen` is None): the KL term is the batch mean, an estimate of eq. 11's mean over D_t.
    kd2: `seen` marks the batch's samples of D_{t-1} and `seen_fraction` = |D_{t-1}| / |D_t|; the sum
    over those samples divided by (batch size * seen_fraction) is an unbiased estimate of eq. 12's
    1/|D_{t-1}| sum (a batch without any of them contributes zero, as it should).
    """
    ce = F.cross_entropy(student.float(), targets)
    kl = kl_per_sample(student, teacher, temperature)
    if seen is None:
        kd = kl.mean()
    else:
        kd = (kl * seen).sum() / (kl.shape[0] * seen_fraction)
    return ce, alpha * temperature**2 * kd
