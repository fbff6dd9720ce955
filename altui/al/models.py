"""The paper's three backbones and the Learning Loss module.

Every backbone maps NCHW images to logits [B, classes], and `forward_features` also returns four block
features (NCHW) for the loss-prediction module; `feature_channels` lists their channel counts.

Initialisation: PyTorch's defaults throughout (Kaiming-uniform convs and linears, BN gamma 1 and beta 0),
as in the widely used CIFAR implementations (kuangliu/pytorch-cifar, Learning Loss's code).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from altui.al.catalog import MODEL_MIN_SIZE, PAPER_LAYER  # noqa: F401 (PAPER_LAYER: re-exported)
from altui.al.config import MODELS, ConfigError


class ModelError(ConfigError):
    """A model that is unknown or does not fit the data set; the message says what is allowed."""


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    # No conv bias: the following BN's beta makes it redundant.
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False), nn.BatchNorm2d(cout)
    )


class CNN5(nn.Module):
    """Section 4.2: four unpadded 3x3 conv-BN-ReLU blocks (32, 64, 64, 64), a 2x2 max pool, one linear."""

    def __init__(self, in_channels: int, classes: int, image_size: int) -> None:
        super().__init__()
        self.feature_channels = [32, 64, 64, 64]
        cins = [in_channels, *self.feature_channels[:-1]]
        self.blocks = nn.ModuleList(
            nn.Sequential(conv_bn(cin, cout, padding=0), nn.ReLU(inplace=True))
            for cin, cout in zip(cins, self.feature_channels, strict=True)
        )
        side = (image_size - 8) // 2  # each unpadded conv takes 2 pixels, the pool halves
        self.fc = nn.Linear(64 * side * side, classes)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        x = F.max_pool2d(x, 2)
        return self.fc(x.flatten(1)), features

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)[0]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, stride=stride)
        self.conv2 = conv_bn(cout, cout)
        # Projection shortcut only where the shape changes (He et al. option B).
        self.shortcut = conv_bn(cin, cout, 1, stride, 0) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 3x3 stem, no max pool, four stages of two BasicBlocks, global average pool."""

    def __init__(self, in_channels: int, classes: int) -> None:
        super().__init__()
        self.feature_channels = [64, 128, 256, 512]
        self.stem = conv_bn(in_channels, 64)
        cins = [64, *self.feature_channels[:-1]]
        self.stages = nn.ModuleList(
            nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))
            for cin, cout, stride in zip(cins, self.feature_channels, [1, 2, 2, 2], strict=True)
        )
        self.fc = nn.Linear(512, classes)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = F.relu(self.stem(x))
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1)), features

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)[0]


class Bottleneck(nn.Module):
    """DenseNet-BC layer: BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k), output concatenated to the input."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth), nn.ReLU(inplace=True),
            nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.layers(x)], dim=1)


def transition(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False), nn.AvgPool2d(2)
    )


class DenseNet100(nn.Module):
    """DenseNet-BC (depth 100, growth 12, compression 0.5): three dense blocks of 16 bottleneck layers."""

    def __init__(self, in_channels: int, classes: int, growth: int = 12, layers: int = 16) -> None:
        super().__init__()
        c = 2 * growth
        self.stem = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)  # followed by BN-ReLU in layer 1
        blocks: list[nn.Module] = []
        self.feature_channels: list[int] = []
        for i in range(3):
            blocks.append(nn.Sequential(*(Bottleneck(c + j * growth, growth) for j in range(layers))))
            c += layers * growth
            if i < 2:
                blocks.append(transition(c, c // 2))
                c //= 2
            self.feature_channels.append(c)  # after each transition, and after the third dense block
        self.feature_channels.append(c)  # the final BN-ReLU: 108, 150, 342, 342 for the defaults
        self.blocks = nn.ModuleList(blocks)  # block, transition, block, transition, block
        self.norm = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.fc = nn.Linear(c, classes)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = self.stem(x)
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in (1, 3, 4):  # after both transitions and after the third dense block
                features.append(x)
        x = self.norm(x)
        features.append(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1)), features

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)[0]




def build_model(name: str, in_channels: int, classes: int, image_size: int) -> nn.Module:
    """A freshly initialised backbone for `in_channels` x `image_size` x `image_size` inputs."""
    if name not in MODELS:
        raise ModelError(f"model {name!r} is unknown; allowed: {', '.join(MODELS)}")
    if image_size < MODEL_MIN_SIZE[name]:
        n, s = MODEL_MIN_SIZE[name], image_size
        raise ModelError(
            f"model {name!r} needs inputs of at least {n}x{n} pixels; the data set gives {s}x{s}"
        )
    if in_channels < 1 or classes < 1:
        raise ModelError(
            f"model {name!r} needs in_channels >= 1 and classes >= 1; got {in_channels} and {classes}"
        )
    if name == "cnn5":
        return CNN5(in_channels, classes, image_size)
    if name == "resnet18":
        return ResNet18(in_channels, classes)
    return DenseNet100(in_channels, classes)


class LossPredictionModule(nn.Module):
    """Learning Loss (Yoo & Kweon 2019): predicts each sample's loss from the backbone's block features.

    Global average pooling (rather than the original's fixed-size pools) lets one module serve any
    input size and backbone.
    """

    def __init__(self, feature_channels: Sequence[int], hidden: int = 128) -> None:
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(c, hidden) for c in feature_channels)
        self.out = nn.Linear(len(feature_channels) * hidden, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        if len(features) != len(self.fcs):
            raise ValueError(f"expected {len(self.fcs)} feature maps, got {len(features)}")
        pooled = [F.adaptive_avg_pool2d(f, 1).flatten(1) for f in features]
        hs = [F.relu(fc(p)) for fc, p in zip(self.fcs, pooled, strict=True)]
        return self.out(torch.cat(hs, dim=1)).squeeze(1)
