"""Image datasets read from torchvision's on-disk layouts (never downloaded), and timm transforms.

* ``MNIST`` / ``FashionMNIST``: the IDX files (``.gz`` or not) in ``root``, ``root/raw`` or
  ``root/<ClassName>/raw`` (torchvision's layout).
* ``CIFAR10`` / ``CIFAR100``: the python pickles in ``root/cifar-10-batches-py`` or
  ``root/cifar-100-python`` (or ``root`` itself).
* ``image_folder``: torchvision's ``ImageFolder`` (``root/<class>/<image>``), with a clear error.

Every dataset takes ``root``, ``split`` (``"train"`` / ``"test"``) and ``transform`` and yields
``(image, label)`` with a PIL image (mode ``"L"`` or ``"RGB"``) before the transform.
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

SPLITS = ("train", "test")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
# Per-channel statistics of the training images (pixel / 255).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST format; gzipped when the name ends in ``.gz``) into an array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} ({int(np.prod(shape))} values), file holds {array.size}")
    return array.reshape(shape)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")


class _IdxImages(Dataset):
    class_name = "MNIST"
    classes: Sequence[str] = tuple(str(i) for i in range(10))

    def __init__(self, root: str | Path, split: str = "train", transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None) -> None:
        _check_split(split)
        self.root, self.split = Path(root), split
        self.transform, self.target_transform = transform, target_transform
        prefix = "train" if split == "train" else "t10k"
        images = self._find(f"{prefix}-images-idx3-ubyte")
        labels = self._find(f"{prefix}-labels-idx1-ubyte")
        self.data = torch.from_numpy(read_idx(images).copy())                 # (N, 28, 28) uint8
        self.targets = torch.from_numpy(read_idx(labels).astype(np.int64))    # (N,)
        if self.data.dim() != 3 or len(self.data) != len(self.targets):
            raise ValueError(f"{images}: {tuple(self.data.shape)} images for {len(self.targets)} labels")

    def _find(self, stem: str) -> Path:
        folders = [self.root, self.root / "raw", self.root / self.class_name / "raw"]
        for folder in folders:
            for name in (stem + ".gz", stem):
                if (folder / name).is_file():
                    return folder / name
        raise FileNotFoundError(f"{self.class_name}: missing {stem}(.gz); looked in "
                                + ", ".join(str(f) for f in folders) + " (no downloads here)")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.data[index].numpy(), mode="L")
        target = int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


class MNIST(_IdxImages):
    """MNIST digits: 60k train / 10k test, 28x28 grayscale."""


class FashionMNIST(_IdxImages):
    """Fashion-MNIST: 60k train / 10k test, 28x28 grayscale, 10 clothing classes."""

    class_name = "FashionMNIST"
    classes = FASHION_MNIST_CLASSES


class CIFAR10(Dataset):
    """CIFAR-10 from the python pickles (``data_batch_1..5`` / ``test_batch``), 32x32 RGB."""

    folder, train_files, test_files, label_key = "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"

    def __init__(self, root: str | Path, split: str = "train", transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None) -> None:
        _check_split(split)
        self.root, self.split = Path(root), split
        self.transform, self.target_transform = transform, target_transform
        base = self.root / self.folder if (self.root / self.folder).is_dir() else self.root
        images, labels = [], []
        for name in (self.train_files if split == "train" else self.test_files):
            path = base / name
            if not path.is_file():
                raise FileNotFoundError(f"{type(self).__name__}: missing {path} (no downloads here)")
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(entry[self.label_key])
        self.data = np.concatenate(images).transpose(0, 2, 3, 1)                # (N, 32, 32, 3)
        self.targets = [int(t) for t in labels]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image, target = Image.fromarray(self.data[index]), self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


class CIFAR100(CIFAR10):
    """CIFAR-100 (fine labels) from ``cifar-100-python/{train,test}``."""

    folder, train_files, test_files, label_key = "cifar-100-python", ["train"], ["test"], "fine_labels"


def image_folder(root: str | Path, transform: Optional[Callable] = None) -> Dataset:
    """torchvision's ``ImageFolder`` over ``root/<class>/<image>`` (RGB), with a clear error."""
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    return ImageFolder(str(root), transform=transform)


def build_transform(model_or_cfg, is_training: bool, **overrides):
    """timm's ``create_transform`` for a model (its ``pretrained_cfg``) or a data-config dict;
    ``overrides`` go to ``create_transform`` (e.g. ``scale=(0.75, 1)``, ``hflip=0.5``)."""
    from timm.data import create_transform, resolve_data_config

    if isinstance(model_or_cfg, dict):
        cfg = dict(model_or_cfg)
    else:
        cfg = resolve_data_config({}, model=model_or_cfg)
    for key in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode"):
        if key in overrides:
            cfg[key] = overrides.pop(key)
    cfg.setdefault("crop_pct", 1.0)
    return create_transform(**cfg, is_training=is_training, **overrides)
