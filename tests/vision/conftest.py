"""Fixtures of the vision tests: the Fashion-MNIST folder (tests skip when it is absent).
The ``seed`` fixture comes from tests/conftest.py."""
from __future__ import annotations

from pathlib import Path

import pytest


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
