"""Why distillation helps or hurts: the teacher's accuracy where the student learns, and how well the
student fits the labels it was given (issue 22).

Entropy sends the student exactly the images its teacher (the previous round's model) got wrong; a
confident wrong teacher then outweighs the label. These numbers show it, per round t >= 1: the
previous round's model on the test set, on D_{t-1}, on D_t and on the round's new picks (D_t minus
D_{t-1}), its mean max-probability at T on the new picks, and the trained student's accuracy on
D_{t-1} and on the new picks. For runs without distillation the previous round's model is no teacher
of the loss but still the model that picked the new images (its confidence at T = 1).

Evaluation only: eval mode, no augmentation, no random stream touched, so a run's picks and
accuracies are the same with or without them.
"""

from __future__ import annotations

import torch
from torch import nn

from altui.al.sink import TeacherDiagnostics
from altui.al.tensors import DeviceData


@torch.inference_mode()
def _predict(model: nn.Module, data: DeviceData, x: torch.Tensor, batch: int, temperature: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted class and max softmax(logits / T) of uint8 images `x`, in eval mode."""
    model.eval()
    dev = x.device
    preds, conf = [], []
    for s in range(0, x.shape[0], batch):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = model(data.normalize(x[s:s + batch])).float()
        preds.append(logits.argmax(1))
        conf.append(torch.softmax(logits / temperature, dim=1).amax(1))
    if not preds:
        return torch.empty(0, dtype=torch.long, device=dev), torch.empty(0, device=dev)
    return torch.cat(preds), torch.cat(conf)


def _mean(t: torch.Tensor) -> float:
    return t.float().mean().item()  # never empty: D_{t-1} holds the initial labels, the picks K >= 1


def diagnose(teacher: nn.Module, student: nn.Module, data: DeviceData, labeled: list[int], seen: int,
             temperature: float, batch: int) -> TeacherDiagnostics:
    """The round's diagnostics; `labeled` is D_t, its first `seen` entries D_{t-1}."""
    dev = data.x.device
    idx = torch.tensor(labeled, dtype=torch.long, device=dev)
    y = data.y[idx]
    t_pred, t_conf = _predict(teacher, data, data.x[idx], batch, temperature)
    s_pred, _ = _predict(student, data, data.x[idx], batch, temperature)
    test_pred, _ = _predict(teacher, data, data.x_test, batch, temperature)
    t_right, s_right = t_pred == y, s_pred == y
    return TeacherDiagnostics(
        temperature=temperature,
        teacher_test_accuracy=_mean(test_pred == data.y_test),
        teacher_prev_accuracy=_mean(t_right[:seen]),
        teacher_labeled_accuracy=_mean(t_right),
        teacher_picks_accuracy=_mean(t_right[seen:]),
        teacher_picks_confidence=_mean(t_conf[seen:]),
        student_prev_fit=_mean(s_right[:seen]),
        student_picks_fit=_mean(s_right[seen:]),
    )
