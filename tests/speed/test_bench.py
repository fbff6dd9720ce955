"""`altui bench`: a smoke run with tiny sizes, and the reference and altui loops computing the same thing.

Timings and ratios are never asserted: they depend on the machine and its load.
"""

import functools

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from altui.al import acquire
from altui.al.models import build_model
from altui.al.tensors import PAD, DeviceData, crop_flip
from altui.speed.bench import (
    CASES,
    BenchResult,
    Case,
    ReferenceDataset,
    altui_picks,
    altui_train,
    case_dataset,
    flops_per_image,
    peak_tflops,
    reference_picks,
    reference_scores,
    reference_train,
    reference_transforms,
    results_table,
    run_bench,
    run_config,
    run_slots,
    slots_table,
)

CPU = torch.device("cpu")
TINY = [
    Case("cnn5 tiny", "cnn5", 1, 28, 8, augment=False),  # batch 8: test_compile.py compiles the same step
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


@pytest.mark.slow
def test_run_bench_smoke():
    """Reference, eager and (training, cnn5 here: compiling ResNet-18 takes minutes) compiled loops."""
    results = run_bench("cpu", repeats=1, images=16, cases=TINY[:1]) + run_bench(
        "cpu", repeats=1, images=16, cases=TINY[1:], compiled=False)
    assert [(r.case, r.metric) for r in results] == [
        (c.name, m) for c in TINY for m in ("train", "score")
    ]
    for r in results:
        assert isinstance(r, BenchResult)
        assert r.images == 16
        assert r.reference > 0 and r.eager > 0 and r.flops > 0
        assert r.ratio == pytest.approx(r.eager / r.reference)
    train = results[0]
    assert train.compiled > 0 and train.compiled_ratio == pytest.approx(train.compiled / train.reference)
    assert [r.compiled for r in results[1:]] == [None, None, None]  # scoring is never compiled
    assert results[0].flops == pytest.approx(3 * results[1].flops)  # training: forward + backward
    table = results_table(results)
    assert table.row_count == 4 and "MFU" not in [c.header for c in table.columns]
    assert "MFU" in [c.header for c in results_table(results, peak=989.4).columns]


@pytest.mark.slow
def test_slots_train_in_processes_at_once_and_add_up_in_an_aggregate_row():
    results = run_bench("cpu", repeats=1, images=16, cases=TINY[:1], compiled=False)
    together = run_slots(results, "cpu", 2, seconds=1.0, cases=TINY[:1])
    assert len(together) == 1 and len(together[0].rates) == 2 and all(r > 0 for r in together[0].rates)
    assert together[0].total == pytest.approx(sum(together[0].rates))
    assert together[0].alone == results[0].eager
    console = Console(width=200, record=True)
    console.print(slots_table(together))
    text = console.export_text()
    assert "process 1" in text and "process 2" in text
    aggregate = [line for line in text.splitlines() if "aggregate (2)" in line]
    assert len(aggregate) == 1 and f"{together[0].total:,.0f}" in aggregate[0], text


def test_flops_per_image_and_known_gpu_peaks():
    assert flops_per_image(CASES[1]) == pytest.approx(2 * 0.5566e9, rel=0.01)  # CIFAR ResNet-18: 0.56 GMAC
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.4 and peak_tflops("NVIDIA H200") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0 and peak_tflops("Some GPU") is None


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
