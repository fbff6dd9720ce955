import math

import pytest
import torch
from torch import nn

from altui.al.models import build_model
from altui.al.probes import conv_l2, effective_channels, gamma_histogram, probe
from altui.al.sink import LayerChannels, Probes


def bn_with(gammas: list[float]) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(len(gammas))
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gammas))
    return bn


def test_effective_channels_by_hand():
    gammas = [1, 1, 1, 1, 0.01, -0.05, 0.5, 2]
    # mean |gamma| = (4 + 0.01 + 0.05 + 0.5 + 2) / 8 = 0.82; threshold 0.082 -> 0.01 and |-0.05| are out
    assert sum(abs(g) for g in gammas) / 8 == pytest.approx(0.82)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), bn_with(gammas))
    assert effective_channels(model) == [LayerChannels("1", 8, 6)]


def test_negative_gammas_count_by_absolute_value():
    # mean |gamma| = 1; -1 and -0.5 are large in magnitude, only 0.05 is below 0.1
    model = nn.Sequential(bn_with([-1.0, -0.5, 0.05, 2.45]))
    assert effective_channels(model)[0].effective == 3


def test_all_zero_layer_has_no_effective_channel():
    assert effective_channels(nn.Sequential(bn_with([0.0, 0.0, 0.0])))[0].effective == 0


def test_layers_named_in_module_order_including_bn1d():
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(nn.Conv2d(1, 4, 3), bn_with([1, 1, 1, 1])))
    model.add_module("head", nn.BatchNorm1d(5))
    assert [(c.layer, c.channels) for c in effective_channels(model)] == [("features.1", 4), ("head", 5)]


def test_cnn5_totals_and_fresh_init():
    p = probe(build_model("cnn5", 1, 10, 28))
    assert isinstance(p, Probes)
    assert [c.channels for c in p.channels] == [32, 64, 64, 64]
    assert p.total_channels == 224
    assert p.effective_channels == 224  # fresh BN: every gamma is 1
    assert p.channels[0].layer == "blocks.0.0.1"


def test_conv_l2_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Conv2d(2, 3, 1), nn.Linear(4, 4))
    expected = math.sqrt(sum(float((m.weight.detach().double() ** 2).sum()) for m in (model[0], model[2])))
    assert conv_l2(model) == pytest.approx(expected, rel=1e-6)
    with torch.no_grad():
        model[0].weight.fill_(1.0)  # 18 ones
        model[2].weight.fill_(-2.0)  # 6 entries of 4
    assert conv_l2(model) == pytest.approx(math.sqrt(18 + 24))


def test_gamma_histogram():
    model = nn.Sequential(bn_with([1, 1, 1, 1, 0.01, -0.05, 0.5, 2]), nn.BatchNorm1d(3))
    edges, counts = gamma_histogram(model, bins=4)
    assert edges == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert sum(counts) == 11
    # [0, .5): 0.01, 0.05; [.5, 1): 0.5; [1, 1.5): seven ones; [1.5, 2]: 2 (the top edge is inclusive)
    assert counts == [2, 1, 7, 1]


def test_probe_histogram_on_resnet():
    model = build_model("resnet18", 3, 10, 32)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(-3, 3)
    p = probe(model, bins=20)
    assert len(p.gamma_bins) == 21 and len(p.gamma_counts) == 20
    assert sum(p.gamma_counts) == p.total_channels
    top = max(float(m.weight.detach().abs().max()) for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert p.gamma_bins[0] == 0.0 and p.gamma_bins[-1] == pytest.approx(top)
    assert p.conv_l2 == pytest.approx(conv_l2(model))
    assert p.channels == effective_channels(model)


def test_degenerate_histograms():
    edges, counts = gamma_histogram(nn.Linear(2, 2), bins=5)
    assert len(edges) == 6 and counts == [0] * 5
    edges, counts = gamma_histogram(nn.Sequential(bn_with([0.0, 0.0])), bins=2)
    assert edges[0] == 0.0 and counts == [2, 0]
    with pytest.raises(ValueError):
        gamma_histogram(nn.Linear(2, 2), bins=0)
