"""Data sets as uint8 tensors in memory: the pool (official training split) and the test split.

Everything is read straight from arrays (never sample by sample through transforms); normalisation and
augmentation happen later, on the device.
"""

from __future__ import annotations

import itertools
import math
import os
import pickle
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import datasets as tvd

from altui.al.catalog import DATASET_INFO
from altui.al.config import DATASETS, ConfigError


class DataError(ConfigError):
    """A data set that cannot be loaded; the message says which files or arrays and what is expected."""


# eq=False: field-wise == on tensors is ambiguous; a Dataset compares by identity.
@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    x: torch.Tensor = field(repr=False)  # uint8 [N, C, H, W], the pool
    y: torch.Tensor = field(repr=False)  # int64 [N]
    x_test: torch.Tensor = field(repr=False)  # uint8 [M, C, H, W]
    y_test: torch.Tensor = field(repr=False)  # int64 [M]
    classes: int
    mean: tuple[float, ...]  # per channel, pool pixels in [0, 1]
    std: tuple[float, ...]
    augment: bool  # crop + flip by default


_MNIST_LIKE: dict[str, type[tvd.MNIST]] = {
    "mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "kmnist": tvd.KMNIST,
}
# CIFAR files are pickles, and unpickling runs code: every file is checked against the md5 that
# torchvision publishes with the class (train_list, test_list, meta) before any is unpickled, always.
# The classes are looked up here at load time: a test substitutes a subclass whose lists hold the md5s
# of its own small files (the only way to load files that are not the published ones).
CIFAR_CLASSES: dict[str, type[tvd.CIFAR10]] = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}

# What torchvision raises for missing, failed or unreadable files (URLError is an OSError; MNIST wraps
# download errors in RuntimeError; a truncated file surfaces as one of the others).
_LOAD_ERRORS = (
    RuntimeError, OSError, ValueError, TypeError, EOFError, AssertionError, pickle.UnpicklingError,
)


def load_dataset(
    name: str, root: str | Path = "data", download: bool = True, path: str | Path | None = None,
) -> Dataset:
    """Load data set `name`; torchvision sets live under `root`, imagefolder/npz under `path`."""
    root = Path(root).expanduser()
    if name == "digits":
        x, y, x_test, y_test = _digits()
    elif name in _MNIST_LIKE:
        x, y, x_test, y_test = _mnist_like(name, root, download)
    elif name in CIFAR_CLASSES:
        x, y, x_test, y_test = _cifar(name, root, download)
    elif name == "svhn":
        x, y, x_test, y_test = _svhn(root, download)
    elif name == "imagefolder":
        x, y, x_test, y_test = _imagefolder(Path(path).expanduser() if path is not None else root)
    elif name == "npz":
        if path is None:
            raise DataError("npz: no file given; set the path to an .npz with arrays x, y, x_test, y_test")
        x, y, x_test, y_test = _npz(Path(path).expanduser())
    else:
        raise DataError(f"dataset {name!r} is unknown; allowed: {', '.join(DATASETS)}")

    info = DATASET_INFO.get(name)
    if info:
        _check_labels(name, root, y, y_test, info.classes)
    classes = info.classes if info else _class_count(name, y, y_test)
    mean, std = _channel_stats(x)
    return Dataset(name, x, y, x_test, y_test, classes, mean, std, augment=bool(info and info.augment))


def _check_labels(name: str, root: Path, y: torch.Tensor, y_test: torch.Tensor, classes: int) -> None:
    """Labels of a published set within its classes: files edited or damaged in place (an MNIST label
    of 200) would index past the model's outputs, deep in training."""
    for split, labels in (("training", y), ("test", y_test)):
        bad = labels[(labels < 0) | (labels >= classes)]
        if len(bad):
            raise DataError(f"{name}: the {split} labels under {root} hold {int(bad[0])} ({len(bad)} label(s) "
                            f"outside 0 .. {classes - 1}); the files are damaged or not the published ones: "
                            "delete them and download again")


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and (population) std in [0, 1] units, from a 256-bin histogram per channel."""
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).double()
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean) ** 2).sum() / n
        means.append(float(mean))
        stds.append(float(var.sqrt()))
    return tuple(means), tuple(stds)


def _offline_error(name: str, folder: Path, files: list[str], download: bool, err: Exception) -> DataError:
    how = f"download failed: {' '.join(str(err).split())}" if download else "download was off"  # one line
    expected = ", ".join(str(folder / f) for f in files)
    return DataError(
        f"{name}: could not load the data set ({how}). Expected files: {expected}. "
        f"Put them in {folder}/ (or turn download on with internet access)."
    )


# ---- torchvision sets ------------------------------------------------------------------------------


def _mnist_like(name: str, root: Path, download: bool) -> tuple[torch.Tensor, ...]:
    cls = _MNIST_LIKE[name]
    try:
        train = cls(root, train=True, download=download)
        test = cls(root, train=False, download=download)
    except _LOAD_ERRORS as e:
        folder = root / cls.__name__ / "raw"
        files = [Path(f).name.removesuffix(".gz") for f, _ in cls.resources]
        raise _offline_error(name, folder, files, download, e) from e
    # .data is uint8 [N, 28, 28]; add the channel axis.
    return train.data.unsqueeze(1), train.targets.long(), test.data.unsqueeze(1), test.targets.long()


def _cifar(name: str, root: Path, download: bool) -> tuple[torch.Tensor, ...]:
    cls = CIFAR_CLASSES[name]
    _check_cifar_files(name, cls, root)
    try:
        train = cls(root, train=True, download=download)
        test = cls(root, train=False, download=download)
    except _LOAD_ERRORS as e:
        files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        err = _offline_error(name, root / cls.base_folder, files, download, e)
        raise DataError(f"{err} Or put {cls.filename} in {root}/ and load with download on.") from e

    def to_tensors(ds: tvd.CIFAR10) -> tuple[torch.Tensor, torch.Tensor]:
        # .data is uint8 [N, 32, 32, 3] (HWC)
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets).long()

    return *to_tensors(train), *to_tensors(test)


def _check_cifar_files(name: str, cls: type[tvd.CIFAR10], root: Path) -> None:
    """Refuse a CIFAR file that is there but is not the published one: it is a pickle, and unpickling
    an unknown file can run any code. (torchvision checks again; this check names the file.) Missing
    files are left to torchvision, which downloads them or fails."""
    from torchvision.datasets.utils import calculate_md5

    folder = root / cls.base_folder
    for file, md5 in [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]:
        path = folder / file
        if path.is_file() and calculate_md5(str(path)) != md5:
            raise DataError(f"{name}: {path} is not the published file (its md5 is not {md5}); altui never "
                            f"unpickles a file it cannot verify. Delete {folder}/ and download {cls.url} again "
                            f"(or load with download on)")


def _svhn(root: Path, download: bool) -> tuple[torch.Tensor, ...]:
    try:
        train = tvd.SVHN(root, split="train", download=download)
        test = tvd.SVHN(root, split="test", download=download)
    except _LOAD_ERRORS as e:
        files = [tvd.SVHN.split_list[s][1] for s in ("train", "test")]
        raise _offline_error("svhn", root, files, download, e) from e
    # .data is uint8 [N, 3, 32, 32]; .labels int64 with 10 already mapped to 0
    return (torch.from_numpy(train.data).contiguous(), torch.from_numpy(train.labels).long(),
            torch.from_numpy(test.data).contiguous(), torch.from_numpy(test.labels).long())


# ---- bundled and user data -------------------------------------------------------------------------


def _digits() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images).float().unsqueeze(1) * (255.0 / 16.0)  # 0..16 -> 0..255
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False, antialias=False)
    x = images.round().clamp(0, 255).to(torch.uint8)
    y = torch.from_numpy(digits.target).long()
    # fixed stratified split: every class in both halves, same split on every machine
    pool, test = train_test_split(np.arange(len(y)), test_size=450, stratify=digits.target, random_state=0)
    pool, test = torch.from_numpy(pool), torch.from_numpy(test)
    return x[pool], y[pool], x[test], y[test]


def _imagefolder(folder: Path) -> tuple[torch.Tensor, ...]:
    splits = {}
    for split in ("train", "test"):
        d = folder / split
        if not d.is_dir():
            raise DataError(f"imagefolder: {d}/ not found; expected {folder}/train/<class>/* and "
                            f"{folder}/test/<class>/* image files")
        splits[split] = _image_samples(d)
    (train_classes, train), (test_classes, test) = splits["train"], splits["test"]
    if test_classes != train_classes:
        raise DataError(f"imagefolder: test classes {test_classes} differ from train classes "
                        f"{train_classes}; both folders must hold the same class folders")
    # one size for all images, fixed by the first training image
    size = _open_rgb(train[0][0]).shape[:2]
    x, y = _read_images(train, size)
    x_test, y_test = _read_images(test, size)
    return x, y, x_test, y_test


def _image_samples(split: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """The classes (sorted folder names) and (file, class) pairs of one split, in torchvision's
    ImageFolder order; links are followed, but a folder reached twice (a link loop, or two links to
    one folder) is refused, where ImageFolder walked on until paths grew too long."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    classes = sorted(e.name for e in os.scandir(split) if e.is_dir())
    seen: dict[tuple[int, int], str] = {}
    samples: list[tuple[str, int]] = []
    for index, name in enumerate(classes):
        found = []
        stack = [str(split / name)]
        while stack:
            folder = stack.pop()
            info = os.stat(folder)
            key = (info.st_dev, info.st_ino)
            if key in seen:
                raise DataError(f"imagefolder: {folder} is {seen[key]} again (a symbolic link loop, or two links to "
                                "one folder); allowed: each folder once")
            seen[key] = folder
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
            found.append((folder, [e.name for e in entries if not e.is_dir()]))
            stack += [e.path for e in entries if e.is_dir()]
        files = [os.path.join(root, f) for root, names in sorted(found) for f in names
                 if f.lower().endswith(IMG_EXTENSIONS)]
        if not files:
            raise DataError(f"imagefolder: {split / name}/ holds no image ({', '.join(IMG_EXTENSIONS)}); every class "
                            "folder needs at least one")
        samples += [(f, index) for f in files]
    if not classes:
        raise DataError(f"imagefolder: {split}/ has no class folders with images")
    return classes, samples


MAX_IMAGE_PIXELS = 4096 * 4096  # per image; PIL's own limit (89 million) lets a bomb decode for half a minute


def _open_rgb(file: str) -> np.ndarray:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # (its size is checked here)
            with Image.open(file) as im:  # the header only: the size is known before any decoding
                if im.width * im.height > MAX_IMAGE_PIXELS:
                    raise DataError(f"imagefolder: {file} is {im.width}x{im.height} pixels; allowed: at most "
                                    f"{MAX_IMAGE_PIXELS:,} pixels an image (a decompression bomb, or an image to scale "
                                    "down first)")
                return np.asarray(im.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as e:
        raise DataError(f"imagefolder: cannot read image {file} ({e})") from e


def _read_images(samples: list[tuple[str, int]], size: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    out = np.empty((len(samples), *size, 3), dtype=np.uint8)
    for i, (file, _) in enumerate(samples):
        img = _open_rgb(file)
        if img.shape[:2] != size:
            raise DataError(f"imagefolder: {file} is {img.shape[1]}x{img.shape[0]} (WxH) but the images are "
                            f"{size[1]}x{size[0]}; all images must share one size")
        out[i] = img
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), labels


_NPZ_X = "[N, H, W] (one channel), [N, H, W, C] or [N, C, H, W] with C in {1, 3}; uint8, or floats in [0, 1]"


_ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a zip of .npy files


def _npz(file: Path) -> tuple[torch.Tensor, ...]:
    if file.exists() and not file.is_file():  # /dev/zero, a FIFO or a folder: reading it never ends or fails
        raise DataError(f"npz: {file} is not a regular file; expected an .npz with arrays x, y, x_test, y_test")
    if not file.is_file():
        raise DataError(f"npz: file {file} not found; expected an .npz with arrays x, y, x_test, y_test")
    with open(file, "rb") as f:
        head = f.read(len(_ZIP_MAGIC))
    if head != _ZIP_MAGIC:
        raise DataError(f"npz: {file} is not an .npz archive (it starts with {head!r}); expected a file written "
                        "by numpy.savez with arrays x, y, x_test, y_test")
    try:
        arrays = np.load(file, allow_pickle=False)
        with arrays:
            missing = [k for k in ("x", "y", "x_test", "y_test") if k not in arrays.files]
            if missing:
                raise DataError(f"npz: {file} lacks arrays {missing}; needed: x, y, x_test, y_test "
                                f"(found: {arrays.files})")
            _check_npz_sizes(file)
            x, x_test = _npz_images("x", arrays["x"]), _npz_images("x_test", arrays["x_test"])
            y = _npz_labels("y", arrays["y"], len(x))
            y_test = _npz_labels("y_test", arrays["y_test"], len(x_test))
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # truncated or damaged
        raise DataError(f"npz: {file} is truncated or damaged; cannot read it ({e})") from e
    if len(x) == 0 or len(x_test) == 0:
        raise DataError(f"npz: {file} has an empty x or x_test; both need at least one image")
    if x.shape[1:] != x_test.shape[1:]:
        raise DataError(f"npz: x images are {list(x.shape[1:])} (C, H, W) but x_test images are "
                        f"{list(x_test.shape[1:])}; both must match")
    return x, y, x_test, y_test


def _check_npz_sizes(file: Path) -> None:
    """Each array's header (shape, dtype) against the bytes its entry holds and this machine's memory,
    before numpy allocates what a header claims (1 TiB: a MemoryError traceback)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with zipfile.ZipFile(file) as archive:
        for key in ("x", "y", "x_test", "y_test"):
            entry = archive.getinfo(f"{key}.npy" if f"{key}.npy" in archive.namelist() else key)
            with archive.open(entry) as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
                header = f.tell()
            need = math.prod(shape) * dtype.itemsize
            if need > memory or header + need > entry.file_size:
                have = f"{entry.file_size:,} bytes" if need <= memory else f"{memory / 2**30:.0f} GiB of memory"
                raise DataError(f"npz: array {key} of {file} claims shape {list(shape)} {dtype} ({need / 2**30:.3g} "
                                f"GiB), but there are {have}; the file is damaged or not what it says")


def _npz_images(key: str, a: np.ndarray) -> torch.Tensor:
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[3] in (1, 3):
        a = a.transpose(0, 3, 1, 2)  # NHWC -> NCHW (checked first: the usual numpy layout)
    elif not (a.ndim == 4 and a.shape[1] in (1, 3)):
        raise DataError(f"npz: array {key} has shape {list(a.shape)}; allowed: {_NPZ_X}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.all((a >= 0) & (a <= 1)):  # also catches NaN
            raise DataError(f"npz: array {key} has floats outside [0, 1]; allowed: {_NPZ_X}")
        a = np.rint(a * 255)
    elif a.dtype != np.uint8:
        raise DataError(f"npz: array {key} has dtype {a.dtype}; allowed: {_NPZ_X}")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.uint8))


def _class_count(name: str, y: torch.Tensor, y_test: torch.Tensor) -> int:
    """The classes of a user's data set: 0 .. C-1, each in the pool's labels, and no test label
    outside them. Checked before anything is sized by C (a label of 10**9 would ask for terabytes)."""
    present = torch.unique(y)
    classes = int(present[-1]) + 1
    if len(present) != classes:
        have = set(present.tolist())
        missing = list(itertools.islice((c for c in itertools.count() if c not in have), 3))
        raise DataError(f"{name}: the pool labels (y) go up to {classes - 1} but only {len(present)} classes "
                        f"appear (missing: {', '.join(map(str, missing))}, ...); allowed: labels 0 .. C-1 with "
                        "every class in the pool")
    outside = torch.unique(y_test[y_test >= classes])
    if len(outside):
        raise DataError(f"{name}: test labels (y_test) {', '.join(map(str, outside[:5].tolist()))} are classes the "
                        f"pool (y) never has; allowed: test labels among the pool's classes 0 .. {classes - 1}")
    return classes


def _npz_labels(key: str, a: np.ndarray, n: int) -> torch.Tensor:
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"npz: array {key} is {a.dtype} {list(a.shape)}; allowed: 1-D integer class labels")
    if len(a) != n:
        raise DataError(f"npz: array {key} has {len(a)} labels but its images have {n}; lengths must match")
    if a.size and a.min() < 0:
        raise DataError(f"npz: array {key} has negative labels; allowed: 0 .. classes-1")
    return torch.from_numpy(a.astype(np.int64))
