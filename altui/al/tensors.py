"""The data set on the device as uint8, and the batched per-sample ops that feed the model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

PAD = 4  # the standard CIFAR crop: zero padding of 4 pixels, then a random crop back to size


@dataclass
class DeviceData:
    x: torch.Tensor  # uint8 [N, C, H, W] on the device
    y: torch.Tensor  # int64 [N]
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor  # [1, C, 1, 1] float32
    std: torch.Tensor
    classes: int
    augment: bool
    channels_last: bool = False

    @classmethod
    def from_dataset(cls, ds, device: torch.device, augment: bool | None = None) -> DeviceData:
        shape = (1, -1, 1, 1)
        return cls(
            x=ds.x.to(device), y=ds.y.to(device), x_test=ds.x_test.to(device), y_test=ds.y_test.to(device),
            mean=torch.tensor(ds.mean, dtype=torch.float32, device=device).view(shape),
            std=torch.tensor(ds.std, dtype=torch.float32, device=device).view(shape),
            classes=ds.classes, augment=ds.augment if augment is None else augment,
            channels_last=device.type == "cuda",
        )

    def normalize(self, xb: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> normalised float32 (channels_last on CUDA)."""
        out = (xb.float() / 255.0 - self.mean) / self.std
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out


def crop_flip(xb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop (zero padding in pixel space) and horizontal flip, as batched ops.

    Every sample draws its own offsets and flip: a transform shared across the batch would change
    the method (DESIGN.md, speed rules).
    """
    b, _, h, w = xb.shape
    dev = xb.device
    padded = F.pad(xb, (PAD, PAD, PAD, PAD))  # zeros, before normalisation: black pixels
    dy = torch.randint(0, 2 * PAD + 1, (b,), device=dev, generator=generator)
    dx = torch.randint(0, 2 * PAD + 1, (b,), device=dev, generator=generator)
    flip = torch.rand(b, device=dev, generator=generator) < 0.5
    cols = torch.arange(w, device=dev)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + dx[:, None]  # [B, W]
    rows = torch.arange(h, device=dev) + dy[:, None]  # [B, H]
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(xb.shape[1], device=dev)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]
