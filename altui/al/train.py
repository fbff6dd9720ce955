"""One round's training and the test evaluation: the whole loop on one screen.

Data stay on the device as uint8; each epoch is one randperm; losses and accuracies accumulate on
the device and are read once per epoch, so no step waits for the host.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from altui.al.acquire import ranking_loss
from altui.al.config import RunConfig
from altui.al.distill import kd_loss
from altui.al.schedule import param_groups
from altui.al.sink import EpochStats, Sink
from altui.al.tensors import DeviceData, crop_flip


def train_round(
    cfg: RunConfig,
    round_: int,
    model: nn.Module,
    data: DeviceData,
    labeled: torch.Tensor,
    weight_decay: float,
    generator: torch.Generator,
    sink: Sink,
    teacher: nn.Module | None = None,
    seen: int = 0,
    loss_module: nn.Module | None = None,
) -> None:
    """Train `model` on the pool samples `labeled` for cfg.epochs epochs with SGD.

    teacher: the previous round's model (kd1/kd2). seen: how many leading entries of `labeled` the
    teacher was trained on (kd2 distils on those only). loss_module: Learning Loss's predictor.
    """
    dev = labeled.device
    params = param_groups(model, weight_decay, cfg.decay_bn)
    if loss_module is not None:
        params += [{"params": list(loss_module.parameters()), "weight_decay": weight_decay}]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.lr_gamma)
    n = labeled.shape[0]
    kd2 = cfg.distill == "kd2"
    is_seen = torch.arange(n, device=dev) < seen
    seen_fraction = seen / n if kd2 else 1.0
    use_bf16 = dev.type == "cuda"
    if teacher is not None:
        teacher.eval()
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        if loss_module is not None:
            loss_module.train()
        lr = opt.param_groups[0]["lr"]
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        perm = torch.randperm(n, device=dev, generator=generator)
        for s in range(0, n, cfg.batch_size):
            pos = perm[s:s + cfg.batch_size]
            idx = labeled[pos]
            xb = data.x[idx]
            if data.augment:
                xb = crop_flip(xb, generator)
            xb, yb = data.normalize(xb), data.y[idx]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                if loss_module is not None:
                    logits, feats = model.forward_features(xb)
                else:
                    logits = model(xb)
                per_sample = None
                if teacher is None:
                    per_sample = F.cross_entropy(logits.float(), yb, reduction="none")
                    loss = per_sample.mean()
                else:
                    with torch.no_grad():  # not inference_mode: its tensors cannot enter autograd
                        t_logits = teacher(xb)
                    loss = kd_loss(logits, t_logits, yb, cfg.kd_alpha, cfg.kd_temperature,
                                   seen=is_seen[pos].float() if kd2 else None, seen_fraction=seen_fraction)
                if loss_module is not None:
                    if epoch > cfg.ll_stop:  # Yoo & Kweon: stop the module's gradient into the backbone
                        feats = [f.detach() for f in feats]
                    if per_sample is None:
                        per_sample = F.cross_entropy(logits.float(), yb, reduction="none")
                    predicted = loss_module(feats).float()
                    loss = loss + cfg.ll_weight * ranking_loss(predicted, per_sample, cfg.ll_margin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * idx.shape[0]
            correct += (logits.detach().argmax(1) == yb).sum()
        sched.step()
        loss_value, correct_value = loss_sum.item(), correct.item()  # the epoch's one host sync
        seconds = time.perf_counter() - start
        sink.epoch_done(EpochStats(
            round=round_, epoch=epoch, epochs=cfg.epochs, train_loss=loss_value / n,
            train_accuracy=correct_value / n, lr=lr, images_per_second=n / max(seconds, 1e-9),
        ))


@torch.inference_mode()
def evaluate(model: nn.Module, data: DeviceData, batch_size: int) -> tuple[float, float]:
    """Test accuracy in [0, 1] and mean cross-entropy."""
    model.eval()
    dev = data.x_test.device
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    m = data.x_test.shape[0]
    for s in range(0, m, batch_size):
        xb, yb = data.normalize(data.x_test[s:s + batch_size]), data.y_test[s:s + batch_size]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = model(xb).float()
        loss_sum += F.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    return correct.item() / m, loss_sum.item() / m
