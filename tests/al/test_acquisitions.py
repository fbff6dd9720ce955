"""BALD, CoreSet and BADGE against independent code: baal's BALD heuristic, a brute-force numpy k-center,
autograd's last-layer gradients and Ash et al.'s k-means++ seeding; then whole runs on digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from baal.active.heuristics import BALD
from scipy import stats
from torch import nn

from altui.al import loop
from altui.al.acquire import bald, embeddings, mc_log_probs, mutual_information, train_dropout
from altui.al.config import ConfigError, RunConfig
from altui.al.diversity import gradient_embedding, gradient_factors, k_center_greedy, kmeans_pp
from altui.al.models import build_model
from altui.al.presets import resolve
from altui.al.sink import ListSink
from altui.al.tensors import DeviceData

TINY = dict(dataset="digits", model="cnn5", rounds=2, initial=20, budget=20, epochs=2, milestones=[1],
            device="cpu", pool_subset=300)


def pool_data(n: int = 64, seed: int = 0) -> DeviceData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    stat = torch.tensor([0.5]).view(1, -1, 1, 1)
    return DeviceData(x, y, x[:8], y[:8], stat, stat / 2, 10, augment=False)


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("cnn5", 1, 10, 28).eval()


# ---- BALD ------------------------------------------------------------------------------------------


def test_bald_scores_equal_baal_on_the_same_stacked_mc_outputs():
    model, data = cnn(), pool_data()
    with torch.no_grad():
        model.fc.weight *= 30  # an untrained net is near uniform: make its samples disagree
    idx = torch.arange(data.x.shape[0])
    _, feats = embeddings(model, data, idx, 16)
    log_p = mc_log_probs(model.fc, feats, 20, 0.5, torch.Generator().manual_seed(3))  # [T, n, C]
    ours = mutual_information(log_p).numpy()
    theirs = BALD().compute_score(log_p.exp().permute(1, 2, 0).double().numpy())  # [n, C, T]
    assert ours.shape == (64,) and ours.max() > 1e-3  # the samples disagree: a real test
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    # the pool scores of a round are these, batch by batch, with the round's generator
    scores = bald(model, data, idx, 64, 20, 0.5, torch.Generator().manual_seed(3))
    np.testing.assert_allclose(scores.numpy(), ours, rtol=1e-6, atol=1e-7)


def test_each_mc_sample_is_a_forward_pass_with_dropout_before_the_classifier():
    model, data = cnn(), pool_data(8)
    idx = torch.arange(8)
    _, feats = embeddings(model, data, idx, 8)
    masks = torch.rand((3, *feats.shape), generator=torch.Generator().manual_seed(5)) >= 0.3
    log_p = mc_log_probs(model.fc, feats, 3, 0.3, torch.Generator().manual_seed(5))
    for t in range(3):
        handle = model.fc.register_forward_pre_hook(lambda m, a, t=t: (a[0] * masks[t] / 0.7,))
        with torch.no_grad():
            full = F.log_softmax(model(data.normalize(data.x[idx])), dim=1)
        handle.remove()
        torch.testing.assert_close(log_p[t], full, rtol=1e-5, atol=1e-5)


def test_training_dropout_is_off_in_eval_mode_and_on_when_training():
    model, data = cnn(), pool_data(8)
    xb = data.normalize(data.x)
    with torch.no_grad():
        before = model(xb)
        train_dropout(model, 0.5)
        torch.testing.assert_close(model(xb), before, rtol=0, atol=0)  # eval: unchanged
        model.train()
        assert not torch.equal(model(xb), model(xb))


# ---- CoreSet ---------------------------------------------------------------------------------------


def brute_force_k_center(pool: np.ndarray, labeled: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """Sener & Savarese's greedy, written out: every step recomputes all distances to all centres."""
    centres, picks, dists = list(labeled), [], []
    for _ in range(k):
        d = np.sqrt(((pool[:, None, :] - np.array(centres)[None]) ** 2).sum(-1)).min(1)
        j = int(d.argmax())
        picks.append(j)
        dists.append(float(d[j]))
        centres.append(pool[j])
    return picks, dists


def test_k_center_picks_equal_a_brute_force_numpy_k_center():
    rng = np.random.default_rng(0)
    pool, labeled = rng.normal(size=(200, 7)), rng.normal(size=(5, 7))
    picks, dists = k_center_greedy(torch.tensor(pool, dtype=torch.float32),
                                   torch.tensor(labeled, dtype=torch.float32), 12)
    want, want_d = brute_force_k_center(pool, labeled, 12)
    assert picks.tolist() == want
    np.testing.assert_allclose(dists.numpy(), want_d, rtol=1e-4)


def test_k_center_distances_are_chunked_without_changing_them():
    from altui.al.diversity import min_sq_distances

    rng = np.random.default_rng(1)
    x, c = (torch.tensor(rng.normal(size=s), dtype=torch.float32) for s in ((50, 4), (9, 4)))
    whole = ((x[:, None] - c[None]) ** 2).sum(-1).min(1).values
    torch.testing.assert_close(min_sq_distances(x, c, chunk=4), whole, rtol=1e-4, atol=1e-5)


# ---- BADGE -----------------------------------------------------------------------------------------


def test_badge_embeddings_are_autograds_last_layer_gradients_at_the_predicted_label():
    model, data = cnn(), pool_data(6)
    idx = torch.arange(6)
    logits, feats = embeddings(model, data, idx, 4)
    emb = gradient_embedding(logits, feats)
    assert emb.shape == (6, 10 * model.fc.in_features)
    for i in range(6):
        model.zero_grad()
        out = model(data.normalize(data.x[i:i + 1]))
        F.cross_entropy(out, out.argmax(1)).backward()
        torch.testing.assert_close(emb[i], model.fc.weight.grad.flatten(), rtol=1e-4, atol=1e-6)


def ash_init_centers(x: np.ndarray, uniforms: np.ndarray) -> list[int]:
    """Ash et al.'s init_centers (BADGE's query_strategies/badge_sampling.py) on explicit embeddings, with
    its rv_discrete draw made at given uniforms (scipy's inverse CDF, `ppf`)."""
    ind = int(np.argmax([np.linalg.norm(s, 2) for s in x]))
    mu, inds_all, cent_inds = [x[ind]], [ind], [0.0] * len(x)
    d2 = None
    for u in uniforms:
        dist = np.sqrt(((x - mu[-1]) ** 2).sum(1))
        if d2 is None:
            d2 = dist
        else:
            new = d2 > dist
            cent_inds = [len(mu) - 1 if n else c for n, c in zip(new, cent_inds, strict=True)]
            d2 = np.where(new, dist, d2)
        p = d2 ** 2 / np.sum(d2 ** 2)
        ind = int(stats.rv_discrete(name="custm", values=(np.arange(len(d2)), p)).ppf(u))
        assert ind not in inds_all  # a zero-probability draw would need the original's redraw
        mu.append(x[ind])
        inds_all.append(ind)
    return inds_all


def test_kmeans_pp_seeding_matches_ash_et_al_given_the_same_draws():
    rng = np.random.default_rng(2)
    logits = torch.tensor(rng.normal(size=(120, 5)) * 2, dtype=torch.float32)
    feats = torch.tensor(np.abs(rng.normal(size=(120, 9))), dtype=torch.float32)  # post-ReLU features
    uniforms = torch.tensor(rng.uniform(size=14), dtype=torch.float64)
    picks, dists = kmeans_pp(gradient_factors(logits), feats, 15, uniforms)
    explicit = gradient_embedding(logits, feats).double().numpy()
    assert picks.tolist() == ash_init_centers(explicit, uniforms.numpy())
    # the factorised distance at each pick is the explicit one
    chosen = explicit[picks.numpy()]
    want = [np.linalg.norm(chosen[0])] + [
        np.sqrt(((chosen[:i] - chosen[i]) ** 2).sum(1)).min() for i in range(1, 15)]
    np.testing.assert_allclose(dists.numpy(), want, rtol=1e-3, atol=1e-4)


def test_kmeans_pp_picks_distinct_samples_when_the_embeddings_run_out():
    a = torch.zeros(10, 3)
    a[:2, 0] = 1.0  # two nonzero embeddings, eight equal zeros
    picks, _ = kmeans_pp(a, torch.ones(10, 4), 6, torch.rand(5, dtype=torch.float64))
    assert len(set(picks.tolist())) == 6


# ---- whole runs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("acquisition", ["bald", "coreset", "badge"])
def test_each_acquisition_composes_with_ws_init_kd1_on_a_pool_subset(acquisition):
    cfg = resolve("WS+init+KD1", {**TINY, "acquisition": acquisition, "mc_samples": 4})
    a, b = ListSink(), ListSink()
    loop.run(cfg, a)
    loop.run(cfg, b)
    picks = a.rounds[0].picks
    assert len(set(picks)) == cfg.budget and not set(picks) & set(a.states[0].labeled[:cfg.initial])
    assert a.rounds[0].acquire_seconds > 0 and len(a.rounds[0].pick_scores) == cfg.budget
    assert picks == b.rounds[0].picks  # same seed, same picks
    assert a.rounds[1].n_labeled == cfg.initial + cfg.budget


def test_bald_needs_dropout_to_sample():
    with pytest.raises(ConfigError, match="mc_dropout > 0"):
        RunConfig(acquisition="bald", mc_dropout=0.0).validate()
    with pytest.raises(ConfigError, match="mc_samples"):
        RunConfig(acquisition="bald", mc_samples=1).validate()
