"""What is known about data sets and models before loading anything: for validating experiments."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    channels: int
    size: int  # height = width
    classes: int
    pool: int  # samples in the pool (the official training split)
    augment: bool  # crop + flip by default (the CIFAR-like sets)
    test: int  # samples in the test split


# digits: scikit-learn's 1797 images, split 1347 pool / 450 test (stratified, fixed).
DATASET_INFO: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(1, 28, 10, 1347, False, 450),
    "mnist": DatasetInfo(1, 28, 10, 60000, False, 10000),
    "fashion-mnist": DatasetInfo(1, 28, 10, 60000, False, 10000),
    "kmnist": DatasetInfo(1, 28, 10, 60000, False, 10000),
    "cifar10": DatasetInfo(3, 32, 10, 50000, True, 10000),
    "cifar100": DatasetInfo(3, 32, 100, 50000, True, 10000),
    "svhn": DatasetInfo(3, 32, 10, 73257, False, 26032),
}
# imagefolder and npz: known only once loaded.

# The smallest square input each model takes (cnn5: four unpadded 3x3 convs, then a 2x2 pool).
MODEL_MIN_SIZE: dict[str, int] = {"cnn5": 10, "resnet18": 8, "densenet100": 8}


# Figure 5's layer per model: the |gamma| histogram the paper draws is of this batch norm alone
# (module names of altui.al.models; here so that the dashboard knows them without torch).
PAPER_LAYER: dict[str, str] = {
    "resnet18": "stages.0.0.conv1.1",  # the first batch norm of the first residual block
    "cnn5": "blocks.0.0.1",  # the first batch norm
    "densenet100": "blocks.0.0.layers.0",  # the first batch norm of the first dense layer
}
