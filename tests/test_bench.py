"""`altui bench`: a smoke run with tiny sizes, and the reference and altui loops computing the same thing.

Timings and ratios are never asserted: they depend on the machine and its load.
"""

import functools

import pytest
import torch
import torch.nn.functional as F

from altui.al import acquire
from altui.al.models import build_model
from altui.al.tensors import PAD, DeviceData, crop_flip
from altui.bench import (
    CASES,
    BenchResult,
    Case,
    ReferenceDataset,
    altui_picks,
    altui_train,
    case_dataset,
    reference_picks,
    reference_scores,
    reference_train,
    reference_transforms,
    results_table,
    run_bench,
    run_config,
)

CPU = torch.device("cpu")
TINY = [
    Case("cnn5 tiny", "cnn5", 1, 28, 16, augment=False),
    Case("resnet18 tiny", "resnet18", 3, 32, 8, augment=True),
]


@functools.cache
def dataset(case: Case):
    return case_dataset(case)


def setup(case: Case, seed: int = 0):
    ds = dataset(case)
    data = DeviceData.from_dataset(ds, CPU, augment=case.augment)
    train_tf, eval_tf = reference_transforms(ds, case.augment)
    torch.manual_seed(seed)
    model = build_model(case.model, case.channels, ds.classes, case.size)
    return ds, data, ReferenceDataset(ds.x, ds.y, train_tf), ReferenceDataset(ds.x, ds.y, eval_tf), model


def test_run_bench_smoke():
    results = run_bench("cpu", repeats=1, images=16, cases=TINY)
    assert [(r.case, r.metric) for r in results] == [
        (c.name, m) for c in TINY for m in ("train", "score")
    ]
    for r in results:
        assert isinstance(r, BenchResult)
        assert r.images == 16
        assert r.reference > 0 and r.altui > 0
        assert r.ratio == pytest.approx(r.altui / r.reference)
    assert results_table(results).row_count == 4


def test_default_cases():
    assert [(c.model, c.channels, c.size, c.batch, c.augment) for c in CASES] == [
        ("cnn5", 1, 28, 32, False), ("resnet18", 3, 32, 128, True),
    ]


@pytest.mark.parametrize("case", TINY, ids=lambda c: c.model)
def test_scoring_paths_agree(case):
    _, data, _, ref_eval, model = setup(case)
    with torch.no_grad():  # a fresh model's entropies all sit near log(10); spread them so picks are distinct
        model.fc.weight.mul_(30)
    indices = list(range(0, 288, 3))  # 96 distinct samples
    ref = reference_scores(model, ref_eval, indices, CPU)
    alt = acquire.score(model, data, torch.tensor(indices), "entropy", 64)
    assert ref.device.type == "cpu" and ref.shape == (len(indices),)
    torch.testing.assert_close(alt, ref, atol=1e-4, rtol=0)
    k = 10
    top = ref.topk(k + 1).values
    assert top[k - 1] - top[k] > 2 * (alt - ref).abs().max()  # so both paths must pick the same set
    assert set(reference_picks(model, ref_eval, indices, k, CPU).tolist()) == set(
        altui_picks(model, data, torch.tensor(indices), k)
    )


def test_normalisation_agrees():
    ds, data, _, ref_eval, _ = setup(TINY[1])
    for i in (0, 7):
        torch.testing.assert_close(ref_eval[i][0], data.normalize(data.x[i:i + 1])[0], atol=1e-5, rtol=0)
        assert ref_eval[i][1] == ds.y[i].item()


def test_both_augmentations_are_a_zero_padded_crop_and_flip():
    ds, data, ref_train, _, _ = setup(TINY[1])
    i = 3
    padded = data.normalize(F.pad(data.x[i:i + 1], (PAD,) * 4))[0]  # zero pixels, then normalised
    size = ds.x.shape[-1]
    variants = torch.stack([
        v for dy in range(2 * PAD + 1) for dx in range(2 * PAD + 1)
        for crop in [padded[:, dy:dy + size, dx:dx + size]] for v in (crop, crop.flip(-1))
    ])

    def is_variant(img: torch.Tensor) -> bool:
        return bool(((variants - img).abs().amax(dim=(1, 2, 3)) < 1e-5).any())

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    for _ in range(5):
        assert is_variant(ref_train[i][0])
        assert is_variant(data.normalize(crop_flip(data.x[i:i + 1], g))[0])


def test_one_training_step_agrees():
    """One full batch (no augmentation): the same SGD step from the same weights, whatever the order."""
    case = TINY[0]
    ds, data, ref_train, _, ref_model = setup(case)
    _, _, _, _, alt_model = setup(case)
    cfg = run_config(case)
    labeled = list(range(case.batch))
    reference_train(ref_model, ref_train, labeled, cfg, CPU)
    altui_train(alt_model, data, torch.tensor(labeled), cfg, torch.Generator().manual_seed(0))
    for (name, a), b in zip(alt_model.state_dict().items(), ref_model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
