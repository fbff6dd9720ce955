import pytest
import torch

from altui.al.config import MODELS, ConfigError
from altui.al.models import LossPredictionModule, ModelError, build_model

CIFAR_MODELS = ["cnn5", "resnet18", "densenet100"]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_cnn5_on_mnist_shapes():
    torch.manual_seed(0)
    m = build_model("cnn5", 1, 10, 28).eval()
    logits, feats = m.forward_features(torch.randn(2, 1, 28, 28))
    assert logits.shape == (2, 10)
    assert [tuple(f.shape[1:]) for f in feats] == [(32, 26, 26), (64, 24, 24), (64, 22, 22), (64, 20, 20)]
    assert m.fc.in_features == 10 * 10 * 64  # 20x20 -> stride-2 pool -> 10x10x64 (section 4.2)
    assert n_params(m) == 156_906


@pytest.mark.parametrize("name", CIFAR_MODELS)
@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_shapes_and_features(name, classes):
    torch.manual_seed(0)
    m = build_model(name, 3, classes, 32).eval()
    x = torch.randn(3, 3, 32, 32)  # odd batch size in eval mode
    with torch.no_grad():
        logits, feats = m.forward_features(x)
        plain = m(x)
    assert logits.shape == (3, classes)
    torch.testing.assert_close(plain, logits)
    assert len(m.feature_channels) == 4 and len(feats) == 4
    assert [f.shape[1] for f in feats] == m.feature_channels
    assert all(f.ndim == 4 and f.shape[0] == 3 for f in feats)


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_batch_of_one_in_eval(name):
    m = build_model(name, 3, 10, 32).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_channels_last_matches_contiguous(name):
    torch.manual_seed(0)
    m = build_model(name, 3, 10, 32).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = m(x)
        m_cl = m.to(memory_format=torch.channels_last)
        out = m_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_smallest_input(name):
    from altui.al.catalog import MODEL_MIN_SIZE

    n = MODEL_MIN_SIZE[name]
    m = build_model(name, 3, 10, n).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, n, n)).shape == (2, 10)


def test_train_step_reaches_all_parameters():
    torch.manual_seed(0)
    m = build_model("cnn5", 1, 10, 28).train()
    loss = torch.nn.functional.cross_entropy(m(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())


def test_unknown_model_lists_allowed():
    with pytest.raises(ModelError) as e:
        build_model("vgg16", 3, 10, 32)
    msg = str(e.value)
    assert "vgg16" in msg and all(name in msg for name in MODELS)
    assert isinstance(e.value, ConfigError)


def test_too_small_input_names_minimum():
    msg = "model 'cnn5' needs inputs of at least 10x10 pixels; the data set gives 8x8"
    with pytest.raises(ModelError, match=msg):
        build_model("cnn5", 1, 10, 8)
    build_model("cnn5", 1, 10, 10)  # the minimum itself is fine


def test_parameter_counts():
    assert 11.1e6 < n_params(build_model("resnet18", 3, 10, 32)) < 11.25e6  # 11,173,962
    assert 0.74e6 < n_params(build_model("densenet100", 3, 10, 32)) < 0.82e6  # 0.77M (C10), 0.80M (C100)
    assert 0.78e6 < n_params(build_model("densenet100", 3, 100, 32)) < 0.82e6


def test_convs_before_bn_have_no_bias():
    for name in CIFAR_MODELS:
        for mod in build_model(name, 3, 10, 32).modules():
            if isinstance(mod, torch.nn.Conv2d):
                assert mod.bias is None


def test_loss_prediction_module():
    torch.manual_seed(0)
    backbone = build_model("cnn5", 1, 10, 28).train()
    lpm = LossPredictionModule(backbone.feature_channels, hidden=16)
    _, feats = backbone.forward_features(torch.randn(5, 1, 28, 28))
    pred = lpm(feats)
    assert pred.shape == (5,)
    pred.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lpm.parameters())
    assert backbone.blocks[0][0][0].weight.grad is not None  # not detached: the loop decides when to cut


def test_loss_prediction_module_batch_of_one():
    lpm = LossPredictionModule([8, 16, 16, 32])
    feats = [torch.randn(1, c, s, s) for c, s in [(8, 8), (16, 4), (16, 4), (32, 2)]]
    assert lpm(feats).shape == (1,)
