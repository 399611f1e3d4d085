"""Fixtures of the vision tests: a fresh random seed per test (printed, replayable with
``MAMBAKIT_TEST_SEED``) and the Fashion-MNIST folder (tests skip when it is absent)."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
import torch


@pytest.fixture
def seed() -> int:
    value = os.environ.get("MAMBAKIT_TEST_SEED")
    s = int(value) if value is not None else secrets.randbits(31)
    print(f"random seed: {s} (replay with MAMBAKIT_TEST_SEED={s})")
    torch.manual_seed(s)
    return s


@pytest.fixture
def fashion_mnist_root() -> Path:
    try:
        from mambakit.data.paths import dataset_path

        root = dataset_path("vision", "fashion-mnist")
    except FileNotFoundError as err:
        pytest.skip(f"no shared data folder: {err}")
    if not (root / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not at {root} (../shared/data/vision/fashion-mnist)")
    return root
