"""A user loads data sets: torchvision files already on disk, the bundled digits, their own folders and
arrays, and gets clear errors when files are missing or malformed. Nothing here touches the network."""

from __future__ import annotations

import pickle
import struct
import urllib.request
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from altui.al.catalog import DATASET_INFO
from altui.al.config import ConfigError
from altui.al.data import DataError, Dataset, load_dataset

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Safety net: any attempt to reach the internet fails at once instead of hanging."""

    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)


# ---- writers for the on-disk formats torchvision reads -------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX (uncompressed): magic 0x0000 08 <ndim> (uint8), then big-endian int32 dims, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_like(raw: Path, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    arrays = {
        "x": RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y": RNG.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": RNG.integers(0, 10, n_test, dtype=np.uint8),
    }
    write_idx(raw / "train-images-idx3-ubyte", arrays["x"])
    write_idx(raw / "train-labels-idx1-ubyte", arrays["y"])
    write_idx(raw / "t10k-images-idx3-ubyte", arrays["x_test"])
    write_idx(raw / "t10k-labels-idx1-ubyte", arrays["y_test"])
    return arrays


def write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def cifar_rows(n: int) -> np.ndarray:
    """CIFAR's pickled layout: one row per image, 1024 red, then green, then blue values."""
    return RNG.integers(0, 256, (n, 3072), dtype=np.uint8)


def write_png(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def assert_well_formed(ds: Dataset, n: int, m: int, shape: tuple[int, int, int]) -> None:
    assert ds.x.shape == (n, *shape) and ds.x_test.shape == (m, *shape)
    assert ds.x.dtype == ds.x_test.dtype == torch.uint8
    assert ds.y.shape == (n,) and ds.y_test.shape == (m,)
    assert ds.y.dtype == ds.y_test.dtype == torch.int64
    assert len(ds.mean) == len(ds.std) == shape[0]


# ---- torchvision data sets from files on disk ------------------------------------------------------


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"),
                                          ("kmnist", "KMNIST")])
def test_mnist_like_sets_load_from_idx_files_the_user_already_has(tmp_path: Path, name: str, folder: str):
    arrays = write_mnist_like(tmp_path / folder / "raw")

    ds = load_dataset(name, root=tmp_path, download=False)

    assert_well_formed(ds, 20, 10, (1, 28, 28))
    assert torch.equal(ds.x[:, 0], torch.from_numpy(arrays["x"]))  # pixels round-trip exactly
    assert torch.equal(ds.x_test[:, 0], torch.from_numpy(arrays["x_test"]))
    assert ds.y.tolist() == arrays["y"].tolist() and ds.y_test.tolist() == arrays["y_test"].tolist()
    assert ds.classes == 10 and ds.augment is False
    assert ds.mean[0] == pytest.approx(arrays["x"].mean() / 255)
    assert ds.std[0] == pytest.approx(arrays["x"].std() / 255)


def test_files_already_there_are_used_even_with_download_on(tmp_path: Path):
    write_mnist_like(tmp_path / "MNIST" / "raw")
    assert load_dataset("mnist", root=tmp_path, download=True).x.shape == (20, 1, 28, 28)


def published_as_written(monkeypatch: pytest.MonkeyPatch, name: str, root: Path) -> None:
    """The loader accepts only the CIFAR files whose md5 torchvision publishes. Small test files are not
    those: through the documented hook (altui.al.data.CIFAR_CLASSES), this test's loader is a subclass
    whose published lists hold the md5s of the files just written, so the real check runs on them."""
    from torchvision.datasets.utils import calculate_md5

    from altui.al import data

    cls = data.CIFAR_CLASSES[name]
    folder = root / cls.base_folder

    def md5(file: str) -> str:
        return calculate_md5(str(folder / file))

    mine = type(cls.__name__, (cls,), {
        "train_list": [[f, md5(f)] for f, _ in cls.train_list],
        "test_list": [[f, md5(f)] for f, _ in cls.test_list],
        "meta": {**cls.meta, "md5": md5(cls.meta["filename"])},
    })
    monkeypatch.setitem(data.CIFAR_CLASSES, name, mine)


def write_cifar10(root: Path, batch: object = None) -> tuple[list[np.ndarray], list[int]]:
    folder = root / "cifar-10-batches-py"
    rows, labels = [], []
    for i in range(1, 6):
        rows.append(cifar_rows(2))
        labels += [i, 9 - i]
        write_pickle(folder / f"data_batch_{i}", {"data": rows[-1], "labels": labels[-2:]})
    write_pickle(folder / "test_batch", {"data": cifar_rows(3), "labels": [0, 1, 2]} if batch is None else batch)
    write_pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    return rows, labels


def test_cifar10_loads_pickle_batches_whose_md5_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rows, labels = write_cifar10(tmp_path)
    published_as_written(monkeypatch, "cifar10", tmp_path)

    ds = load_dataset("cifar10", root=tmp_path, download=False)

    assert_well_formed(ds, 10, 3, (3, 32, 32))
    assert torch.equal(ds.x.reshape(10, 3072), torch.from_numpy(np.concatenate(rows)))  # planes stay R, G, B
    assert ds.y.tolist() == labels and ds.y_test.tolist() == [0, 1, 2]
    assert ds.classes == 10 and ds.augment is True


def test_cifar100_loads_fine_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "cifar-100-python"
    write_pickle(folder / "train", {"data": cifar_rows(4), "fine_labels": [0, 42, 99, 7]})
    write_pickle(folder / "test", {"data": cifar_rows(2), "fine_labels": [5, 6]})
    write_pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    published_as_written(monkeypatch, "cifar100", tmp_path)

    ds = load_dataset("cifar100", root=tmp_path, download=False)

    assert_well_formed(ds, 4, 2, (3, 32, 32))
    assert ds.y.tolist() == [0, 42, 99, 7] and ds.y_test.tolist() == [5, 6]
    assert ds.classes == 100 and ds.augment is True


class Planted:
    """What an attacker pickles: unpickling it runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("download", [False, True])
def test_a_planted_cifar_pickle_is_never_unpickled(tmp_path: Path, name: str, download: bool):
    from altui.al.data import CIFAR_CLASSES

    cls = CIFAR_CLASSES[name]
    marker = tmp_path / "PWNED"
    folder = tmp_path / "evil" / cls.base_folder
    for file, _ in [*cls.train_list, *cls.test_list, (cls.meta["filename"], None)]:
        write_pickle(folder / file, {"data": Planted(marker), "labels": [0]})
    assert pickle.loads(pickle.dumps(Planted(tmp_path / "probe"))) == 0 and (tmp_path / "probe").exists()

    with pytest.raises(DataError) as err:
        load_dataset(name, root=tmp_path / "evil", download=download)

    assert not marker.exists(), "a planted pickle ran"
    first = folder / cls.train_list[0][0]
    assert f"{first} is not the published file" in str(err.value)
    assert "never unpickles a file it cannot verify" in str(err.value)


# ---- offline ------------------------------------------------------------------------------------------


def test_offline_download_fails_with_a_message_saying_where_to_put_the_files(tmp_path, monkeypatch):
    import torchvision.datasets.mnist

    def no_internet(*args: object, **kwargs: object) -> None:
        raise URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", no_internet)

    with pytest.raises(DataError) as err:
        load_dataset("mnist", root=tmp_path, download=True)

    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert "download failed" in message and "Name or service not known" in message


@pytest.mark.parametrize("name, folder, file", [
    ("mnist", "MNIST/raw", "train-images-idx3-ubyte"),
    ("kmnist", "KMNIST/raw", "t10k-images-idx3-ubyte"),
    ("cifar10", "cifar-10-batches-py", "data_batch_1"),
    ("cifar100", "cifar-100-python", "meta"),
    ("svhn", "", "train_32x32.mat"),
])
def test_download_off_and_no_files_names_the_folder_and_files(tmp_path: Path, name: str, folder: str,
                                                              file: str):
    with pytest.raises(DataError) as err:
        load_dataset(name, root=tmp_path, download=False)

    message = str(err.value)
    assert str(tmp_path / folder / file) in message
    assert "download was off" in message
    assert isinstance(err.value, ConfigError)  # callers that catch ConfigError see data errors too


# ---- digits ---------------------------------------------------------------------------------------------


def test_digits_is_a_fixed_stratified_28x28_split():
    first, second = load_dataset("digits"), load_dataset("digits")

    info = DATASET_INFO["digits"]
    assert_well_formed(first, info.pool, 450, (1, 28, 28))
    assert torch.equal(first.x, second.x) and torch.equal(first.y, second.y)
    assert torch.equal(first.x_test, second.x_test) and torch.equal(first.y_test, second.y_test)
    assert set(first.y.tolist()) == set(first.y_test.tolist()) == set(range(10))
    assert first.classes == 10 and first.augment is False
    assert first.x.max() > 200  # scaled to the full 0..255 range, not left at 0..16


# ---- the user's own data ---------------------------------------------------------------------------------


def test_npz_with_uint8_channels_last_images(tmp_path: Path):
    x = RNG.integers(0, 256, (6, 12, 10, 3), dtype=np.uint8)
    x_test = RNG.integers(0, 256, (2, 12, 10, 3), dtype=np.uint8)
    y, y_test = np.array([0, 1, 2, 3, 4, 0]), np.array([1, 4])
    np.savez(tmp_path / "mine.npz", x=x, y=y, x_test=x_test, y_test=y_test)

    ds = load_dataset("npz", path=tmp_path / "mine.npz")

    assert_well_formed(ds, 6, 2, (3, 12, 10))
    assert torch.equal(ds.x, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert ds.classes == 5 and ds.augment is False
    assert ds.mean == pytest.approx(tuple(x.mean(axis=(0, 1, 2)) / 255))


def test_npz_with_float_grayscale_images_is_scaled_to_uint8(tmp_path: Path):
    x = np.linspace(0, 1, 4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    np.savez(tmp_path / "f.npz", x=x, y=np.array([0, 1, 0, 1]), x_test=x[:2], y_test=np.array([1, 0]))

    ds = load_dataset("npz", path=tmp_path / "f.npz")

    assert_well_formed(ds, 4, 2, (1, 8, 8))
    assert ds.x.min() == 0 and ds.x.max() == 255
    assert torch.equal(ds.x[:, 0], torch.from_numpy(np.rint(x * 255).astype(np.uint8)))


@pytest.mark.parametrize("arrays, problem", [
    ({"x": np.zeros((3, 8, 8), np.uint8), "y": np.zeros(3, int), "x_test": np.zeros((1, 8, 8), np.uint8)},
     "y_test"),
    ({"x": np.zeros((3, 8), np.uint8), "y": np.zeros(3, int), "x_test": np.zeros((1, 8, 8), np.uint8),
      "y_test": np.zeros(1, int)}, "array x has shape [3, 8]"),
    ({"x": np.zeros((3, 8, 8), np.uint8), "y": np.zeros(2, int), "x_test": np.zeros((1, 8, 8), np.uint8),
      "y_test": np.zeros(1, int)}, "array y has 2 labels but its images have 3"),
    ({"x": np.full((3, 8, 8), 2.0), "y": np.zeros(3, int), "x_test": np.zeros((1, 8, 8), np.uint8),
      "y_test": np.zeros(1, int)}, "floats outside [0, 1]"),
    ({"x": np.zeros((3, 8, 8), np.uint8), "y": np.array([0, 1, 10**9]), "x_test": np.zeros((1, 8, 8), np.uint8),
      "y_test": np.zeros(1, int)}, "the pool labels (y) go up to 1000000000 but only 3 classes appear (missing: 2, "
                                   "3, 4, ...); allowed: labels 0 .. C-1 with every class in the pool"),
    ({"x": np.zeros((3, 8, 8), np.uint8), "y": np.array([0, 1, 1]), "x_test": np.zeros((2, 8, 8), np.uint8),
      "y_test": np.array([1, 7])}, "test labels (y_test) 7 are classes the pool (y) never has"),
])
def test_a_malformed_npz_names_the_array_and_what_is_allowed(tmp_path: Path, arrays: dict, problem: str):
    np.savez(tmp_path / "bad.npz", **arrays)

    with pytest.raises(DataError, match="npz") as err:
        load_dataset("npz", path=tmp_path / "bad.npz")

    assert problem in str(err.value)


@pytest.mark.parametrize("content, problem", [
    (b"x,y\n1,2\n", "is not an .npz archive (it starts with b'x,y\\n'); expected a file written by numpy.savez"),
    (None, "is truncated or damaged"),  # the first half of a real .npz
    (b"\x93NUMPY", "is not an .npz archive"),  # a single .npy array
])
def test_a_file_that_is_no_npz_archive_is_refused_by_name(tmp_path: Path, content: bytes | None, problem: str):
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((3, 8, 8), np.uint8), y=np.zeros(3, int), x_test=np.zeros((1, 8, 8), np.uint8),
             y_test=np.zeros(1, int))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2] if content is None else content)

    with pytest.raises(DataError) as err:
        load_dataset("npz", path=bad)

    assert f"npz: {bad}" in str(err.value) and problem in str(err.value)


def test_imagefolder_loads_train_and_test_class_folders(tmp_path: Path):
    for split, n in (("train", 3), ("test", 1)):
        for label, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            for i in range(n):
                write_png(tmp_path / split / label / f"{i}.png", (10, 8), color)

    ds = load_dataset("imagefolder", path=tmp_path)

    assert_well_formed(ds, 6, 2, (3, 8, 10))
    assert ds.y.tolist() == [0, 0, 0, 1, 1, 1] and ds.y_test.tolist() == [0, 1]
    assert ds.x[0, :, 0, 0].tolist() == [255, 0, 0] and ds.x[5, :, 0, 0].tolist() == [0, 0, 255]
    assert ds.classes == 2 and ds.augment is False
    assert ds.mean == pytest.approx((0.5, 0.0, 0.5))


def test_imagefolder_with_mixed_image_sizes_names_the_odd_file(tmp_path: Path):
    write_png(tmp_path / "train" / "a" / "0.png", (10, 8), (0, 0, 0))
    write_png(tmp_path / "train" / "b" / "odd.png", (12, 8), (0, 0, 0))
    write_png(tmp_path / "test" / "a" / "0.png", (10, 8), (0, 0, 0))
    write_png(tmp_path / "test" / "b" / "0.png", (10, 8), (0, 0, 0))

    with pytest.raises(DataError) as err:
        load_dataset("imagefolder", path=tmp_path)

    message = str(err.value)
    assert "odd.png" in message and "12x8" in message and "10x8" in message


def test_imagefolder_test_classes_must_match_train_classes(tmp_path: Path):
    write_png(tmp_path / "train" / "a" / "0.png", (4, 4), (0, 0, 0))
    write_png(tmp_path / "train" / "b" / "0.png", (4, 4), (0, 0, 0))
    write_png(tmp_path / "test" / "a" / "0.png", (4, 4), (0, 0, 0))

    with pytest.raises(DataError, match="test classes"):
        load_dataset("imagefolder", root=tmp_path)  # root serves when no path is given


def test_an_unknown_data_set_lists_the_allowed_names():
    with pytest.raises(DataError, match="allowed:.*digits"):
        load_dataset("imagenet")
