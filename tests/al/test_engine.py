"""The science of altui.al: each piece against the paper's formulas, and whole runs on digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from altui.al import loop
from altui.al.acquire import ranking_loss, score, top_k, uncertainty
from altui.al.config import ConfigError, RunConfig
from altui.al.distill import kd_loss
from altui.al.presets import PRESETS, resolve
from altui.al.schedule import param_groups, weight_decay_at
from altui.al.sink import ListSink
from altui.al.tensors import DeviceData, crop_flip

TINY = dict(dataset="digits", model="cnn5", rounds=2, initial=20, budget=20, epochs=2, milestones=[1],
            device="cpu", pool_subset=300)


def tiny(preset: str = "WS+init", **kw) -> RunConfig:
    return resolve(preset, {**TINY, **kw})


# ---- weight-decay schedules (section 3.2) -----------------------------------------------------

def test_inverse_and_exact_schedules_follow_eq10_and_eq8_over_five_rounds():
    base = dict(initial=200, budget=200, rounds=5, weight_decay=0.02, lr=0.01)
    inverse = RunConfig(wd_schedule="inverse", **base)
    exact = RunConfig(wd_schedule="exact", **base)
    fixed = RunConfig(wd_schedule="fixed", **base)
    for t, n_t in enumerate([200, 400, 600, 800, 1000]):
        assert inverse.n_labeled(t) == n_t
        assert weight_decay_at(inverse, t) == pytest.approx(0.02 * 200 / n_t, rel=1e-12)
        eq8 = (1 - (1 - 0.01 * 0.02) ** (200 / n_t)) / 0.01
        assert weight_decay_at(exact, t) == pytest.approx(eq8, rel=1e-12)
        assert weight_decay_at(fixed, t) == 0.02
    # eq. 9's approximation: exact and inverse agree to first order in eta * lambda
    assert weight_decay_at(exact, 4) == pytest.approx(weight_decay_at(inverse, 4), rel=1e-3)


def test_fixed_presets_end_with_the_ws_last_round_decay_as_in_the_paper():
    fields = dict(dataset="mnist", model="cnn5", rounds=5, initial=200, budget=200, weight_decay=0.02)
    assert resolve("Entropy", fields).weight_decay == pytest.approx(0.004)  # the paper's Entropy(0.004)
    ws = resolve("WS+init", fields)
    assert weight_decay_at(ws, 4) == pytest.approx(0.004)
    assert resolve("LL", fields).weight_decay == 5e-4


def test_batch_norm_weights_decay_only_when_configured():
    def one_step(decay_bn: bool) -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4))
        opt = torch.optim.SGD(param_groups(model, 0.5, decay_bn), lr=0.1)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)  # only the decay moves the weights
        before = (model[0].weight.detach().clone(), model[1].weight.detach().clone())
        opt.step()
        return before[0], before[1], model

    conv0, bn0, model = one_step(decay_bn=True)
    assert torch.allclose(model[0].weight, conv0 * (1 - 0.05))
    assert torch.allclose(model[1].weight, bn0 * (1 - 0.05))
    conv0, bn0, model = one_step(decay_bn=False)
    assert torch.allclose(model[0].weight, conv0 * (1 - 0.05))
    assert torch.equal(model[1].weight, bn0)


# ---- distillation (section 3.3) ---------------------------------------------------------------

def _eq_terms(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, T: float):
    """Direct per-sample CE and KL(softmax(z_{t-1}/T) || softmax(z_t/T)) with plain formulas."""
    pairs = zip(student.tolist(), labels.tolist(), strict=True)
    ce = [-math.log(math.exp(s[y]) / sum(math.exp(v) for v in s)) for s, y in pairs]
    kl = []
    for s, t in zip(student.tolist(), teacher.tolist(), strict=True):
        ps = [math.exp(v / T) for v in s]
        pt = [math.exp(v / T) for v in t]
        ps = [v / sum(ps) for v in ps]
        pt = [v / sum(pt) for v in pt]
        kl.append(sum(a * math.log(a / b) for a, b in zip(pt, ps, strict=True)))
    return ce, kl


def test_kd1_loss_equals_eq11_on_hand_made_logits():
    student = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-2.0, 3.0, 0.0], [1.0, 1.0, 4.0]])
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.5, -0.5, 2.0], [0.0, 2.5, 0.5], [2.0, 0.0, 1.0]])
    labels = torch.tensor([0, 2, 1, 2])
    alpha, T = 0.3, 6.0
    ce, kl = _eq_terms(student, teacher, labels, T)
    eq11 = (1 - alpha) / 4 * sum(ce) + alpha * T**2 / 4 * sum(kl)
    assert kd_loss(student, teacher, labels, alpha, T).item() == pytest.approx(eq11, rel=1e-5)


def test_kd2_loss_equals_eq12_with_its_own_normalisation():
    student = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-2.0, 3.0, 0.0], [1.0, 1.0, 4.0], [0.0, 0.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.5, -0.5, 2.0], [0.0, 2.5, 0.5], [2.0, 0.0, 1.0], [3.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2, 1, 2, 0])
    seen = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])  # D_{t-1}: samples 0, 2 and 4 of D_t
    alpha, T = 0.5, 4.0
    ce, kl = _eq_terms(student, teacher, labels, T)
    # eq. 12: CE averaged over |D_t| = 5, KL averaged over |D_{t-1}| = 3
    eq12 = (1 - alpha) / 5 * sum(ce) + alpha * T**2 / 3 * (kl[0] + kl[2] + kl[4])
    got = kd_loss(student, teacher, labels, alpha, T, seen=seen, seen_fraction=3 / 5)
    assert got.item() == pytest.approx(eq12, rel=1e-5)


def test_kd2_minibatch_estimate_is_unbiased_over_random_batches():
    g = torch.Generator().manual_seed(0)
    n, seen_n, b = 12, 5, 4
    student, teacher = torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    seen = (torch.arange(n) < seen_n).float()
    full = kd_loss(student, teacher, labels, 1.0, 2.0, seen=seen, seen_fraction=seen_n / n).item()
    # average over every batch of a large number of random permutations
    total, count = 0.0, 0
    for _ in range(3000):
        perm = torch.randperm(n, generator=g)[:b]
        total += kd_loss(student[perm], teacher[perm], labels[perm], 1.0, 2.0, seen[perm], seen_n / n).item()
        count += 1
    assert total / count == pytest.approx(full, rel=0.03)


# ---- acquisition ------------------------------------------------------------------------------

def test_entropy_picks_equal_top_k_of_an_independent_numpy_entropy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(101, 10, generator=g) * 3
    p = np.exp(logits.numpy().astype(np.float64))
    p /= p.sum(1, keepdims=True)
    h = -(p * np.log(p)).sum(1)
    ours = uncertainty(logits, "entropy")
    assert np.allclose(ours.numpy(), h, atol=1e-5)
    candidates = torch.arange(1000, 1101)
    picks, _ = top_k(candidates, ours, 7)
    assert sorted(picks.tolist()) == sorted((1000 + np.argsort(-h)[:7]).tolist())


def test_pool_scoring_through_a_model_matches_numpy_entropy_with_odd_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 5))
    x = torch.randint(0, 256, (37, 1, 4, 4), dtype=torch.uint8)
    data = DeviceData(x=x, y=torch.zeros(37, dtype=torch.long), x_test=x, y_test=torch.zeros(37, dtype=torch.long),
                      mean=torch.full((1, 1, 1, 1), 0.5), std=torch.full((1, 1, 1, 1), 0.25), classes=5, augment=False)
    idx = torch.tensor([3, 5, 8, 13, 21, 34, 1, 2, 0])
    scores = score(model, data, idx, "entropy", batch_size=4)  # 9 samples in batches of 4: 4, 4, 1
    with torch.no_grad():
        logits = model(data.normalize(x[idx])).double().numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert np.allclose(scores.numpy(), -(p * np.log(p)).sum(1), atol=1e-5)


def test_margin_and_least_confidence_rank_the_uncertain_sample_first():
    logits = torch.tensor([[5.0, 0.0, 0.0], [1.0, 0.9, 0.0], [0.0, 0.0, 0.0]])
    assert uncertainty(logits, "margin").argmax().item() == 2
    assert uncertainty(logits, "least-confidence").argmax().item() == 2
    assert uncertainty(logits, "least-confidence").argmin().item() == 0


def _reference_ll_loss(pred: list[float], target: list[float], margin: float) -> float:
    """Yoo & Kweon's LossPredLoss written out with loops over the mirrored pairs (i, B-1-i)."""
    b = len(pred)
    pairs = [(i, b - 1 - i) for i in range(b // 2)]
    total = 0.0
    for i, j in pairs:
        one = 1.0 if target[i] - target[j] > 0 else -1.0
        total += max(0.0, margin - one * (pred[i] - pred[j]))
    return total / len(pairs)


@pytest.mark.parametrize("b", [2, 5, 8])
def test_learning_loss_ranking_loss_equals_the_reference_formula(b):
    g = torch.Generator().manual_seed(b)
    pred, target = torch.randn(b, generator=g), torch.rand(b, generator=g) * 3
    got = ranking_loss(pred, target, margin=1.0).item()
    assert got == pytest.approx(_reference_ll_loss(pred.tolist(), target.tolist(), 1.0), rel=1e-6)


def test_learning_loss_ranking_loss_on_known_inputs():
    pred = torch.tensor([0.5, 2.0, 1.0, 0.0])  # pairs (0, 3) and (1, 2)
    target = torch.tensor([3.0, 1.0, 2.0, 1.0])
    # pair (0,3): target higher for 0 -> one=+1, loss max(0, 1 - 0.5) = 0.5
    # pair (1,2): target lower for 1 -> one=-1, loss max(0, 1 + (2 - 1)) = 2
    assert ranking_loss(pred, target).item() == pytest.approx((0.5 + 2.0) / 2)


# ---- augmentation -----------------------------------------------------------------------------

def test_crop_and_flip_differ_per_sample_and_pad_with_zero_pixels():
    x = torch.full((64, 3, 8, 8), 200, dtype=torch.uint8)
    x[:, :, :, 0] = 7  # a marked left column shows flips
    out = crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    # padding is zero in pixel space (black before normalisation), never reflected content
    assert set(out.unique().tolist()) <= {0, 7, 200}
    assert (out == 0).any()
    # within one batch, samples get different crops and flips
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 10
    left_marked = (out[:, 0, 4, :4] == 7).any(dim=1)
    right_marked = (out[:, 0, 4, 4:] == 7).any(dim=1)
    assert left_marked.any() and right_marked.any()


def test_mnist_like_sets_get_no_augmentation_and_cifar_like_do():
    from altui.al.catalog import DATASET_INFO

    for name in ("mnist", "fashion-mnist", "kmnist", "digits"):
        assert DATASET_INFO[name].augment is False
    for name in ("cifar10", "cifar100"):
        assert DATASET_INFO[name].augment is True
    # and the loop passes none to an MNIST-like run: every epoch sees the stored pixels
    seen = []
    original = loop.train_round

    def spy(cfg, t, model, data, *a, **k):
        seen.append(data.augment)
        return original(cfg, t, model, data, *a, **k)

    mp = pytest.MonkeyPatch()
    mp.setattr(loop, "train_round", spy)
    try:
        loop.run(tiny(rounds=1, epochs=1), ListSink())
    finally:
        mp.undo()
    assert seen == [False]


# ---- whole runs -------------------------------------------------------------------------------

def test_same_seed_gives_identical_initial_sets_and_picks_on_the_cpu():
    a, b = ListSink(), ListSink()
    loop.run(tiny("Entropy+init", seed=3), a)
    loop.run(tiny("Entropy+init", seed=3), b)
    assert a.states[0].labeled == b.states[0].labeled
    assert [r.picks for r in a.rounds] == [r.picks for r in b.rounds]
    assert [r.accuracy for r in a.rounds] == [r.accuracy for r in b.rounds]
    c = ListSink()
    loop.run(tiny("Entropy+init", seed=4), c)
    assert c.states[0].labeled[:20] != a.states[0].labeled[:20]


def test_every_method_at_one_seed_shares_the_initial_set():
    initial = loop.initial_labeled(7, 1347, 20).tolist()
    for preset in PRESETS:
        sink = ListSink()
        loop.run(tiny(preset, seed=7, rounds=1, epochs=1), sink)
        assert sink.states[0].labeled[:20] == initial, preset


def _start_weights(monkeypatch, cfg: RunConfig) -> tuple[list[dict], ListSink]:
    """The weights each round's model has when its training starts."""
    starts: list[dict] = []
    original = loop.train_round

    def spy(cfg_, t, model, *a, **k):
        starts.append({k_: v.clone() for k_, v in model.state_dict().items()})
        return original(cfg_, t, model, *a, **k)

    monkeypatch.setattr(loop, "train_round", spy)
    sink = ListSink()
    loop.run(cfg, sink)
    return starts, sink


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_fresh_same_and_warm_start_from_the_weights_they_promise(monkeypatch):
    starts, sink = _start_weights(monkeypatch, tiny("Entropy+init", init="same"))
    assert _same(starts[1], starts[0]) and _same(starts[0], sink.states[0].init)

    starts, sink = _start_weights(monkeypatch, tiny("Entropy"))  # warm
    assert _same(starts[0], sink.states[0].init)
    assert _same(starts[1], sink.states[0].model)  # round 0's trained model
    assert not _same(starts[1], starts[0])

    starts, sink = _start_weights(monkeypatch, tiny("Entropy+init"))  # fresh
    assert not _same(starts[1], starts[0]) and not _same(starts[1], sink.states[0].model)
    # a fresh init is a new draw from the same initialiser: same shapes, similar scale
    conv = [k for k in starts[0] if k.endswith("weight") and starts[0][k].dim() == 4][0]
    w0, w1 = starts[0][conv], starts[1][conv]
    assert w0.std().item() == pytest.approx(w1.std().item(), rel=0.2)


def test_a_three_round_digits_run_of_ws_init_kd1_improves():
    cfg = resolve("WS+init+KD1", dict(dataset="digits", model="cnn5", rounds=3, initial=40, budget=120,
                                      epochs=12, milestones=[8], device="cpu", seed=0))
    sink = ListSink()
    loop.run(cfg, sink)
    assert [r.round for r in sink.rounds] == [0, 1, 2]
    assert [r.n_labeled for r in sink.rounds] == [40, 160, 280]
    assert [r.weight_decay for r in sink.rounds] == pytest.approx([0.02, 0.005, 0.02 * 40 / 280])
    assert sink.rounds[-1].accuracy > sink.rounds[0].accuracy
    assert len(sink.epochs) == 3 * 12
    for r in sink.rounds[:-1]:
        assert len(set(r.picks)) == 120 and sum(r.pick_class_counts) == 120
        assert r.probes.total_channels == 224
    labeled = sink.states[-1].labeled
    assert len(labeled) == len(set(labeled)) == 40 + 2 * 120


def test_picks_are_never_already_labeled_and_kd2_runs():
    sink = ListSink()
    loop.run(tiny("WS+init+KD2", rounds=3), sink)
    labeled = set(sink.states[0].labeled[:20])
    for r in sink.rounds[:-1]:
        assert not labeled & set(r.picks)
        labeled |= set(r.picks)


def test_learning_loss_runs_and_scores_a_pool_subset():
    sink = ListSink()
    loop.run(tiny("LL", ll_subset=100, pool_subset=0, epochs=2, ll_stop_epoch=1), sink)
    assert len(sink.rounds[0].picks) == 20 and sink.states[0].loss_module is not None


# ---- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("fields", "preset", "fragment"),
    [
        (dict(model="vgg"), "Random", "cnn5"),
        (dict(dataset="imagenet"), "Random", "digits"),
        ({}, "WS+init+KD3", "WS+init+KD1"),
        (dict(kd_alpha=1.5), "WS+init+KD1", "[0, 1]"),
        (dict(acquisition="batchbald"), None, "entropy"),
    ],
)
def test_bad_settings_name_what_is_allowed(fields, preset, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("+", r"\+")):
        resolve(preset, {**TINY, **fields})


def test_a_budget_larger_than_the_pool_is_a_clear_error():
    with pytest.raises(ConfigError, match="pool of 1347"):
        loop.run(tiny(initial=1000, budget=400, rounds=2, pool_subset=0), ListSink())


def test_a_model_that_cannot_take_the_input_size_is_a_clear_error(tmp_path):
    path = tmp_path / "tiny.npz"
    x = np.zeros((30, 8, 8), dtype=np.uint8)
    np.savez(path, x=x, y=np.arange(30) % 3, x_test=x[:6], y_test=np.arange(6) % 3)
    cfg = resolve("Random", {**TINY, "dataset": "npz", "initial": 5, "budget": 5, "extra": {"path": str(path)}})
    with pytest.raises(ConfigError, match="at least 10x10"):
        loop.run(cfg, ListSink())



def test_distillation_with_alpha_zero_is_the_same_run_as_no_distillation():
    # the teacher is consulted but weighs nothing: every pick and accuracy must match WS+init
    plain, kd = ListSink(), ListSink()
    loop.run(tiny("WS+init", rounds=3), plain)
    loop.run(tiny("WS+init+KD1", rounds=3, kd_alpha=0.0), kd)
    assert [r.picks for r in kd.rounds] == [r.picks for r in plain.rounds]
    assert [r.accuracy for r in kd.rounds] == pytest.approx([r.accuracy for r in plain.rounds], abs=1e-6)
