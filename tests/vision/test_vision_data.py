"""Datasets (torchvision layouts, generated here and the shared Fashion-MNIST), timm transforms,
the Fashion-MNIST recipe and the benchmark's summary logic."""
from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mambakit.vision.data import CIFAR10, CIFAR100, FashionMNIST, MNIST, build_transform, image_folder, read_idx


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_mnist(root: Path, n: int, gz: bool) -> tuple[np.ndarray, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng()
    images, labels = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
    ext = ".gz" if gz else ""
    write_idx(root / f"t10k-images-idx3-ubyte{ext}", images)
    write_idx(root / f"t10k-labels-idx1-ubyte{ext}", labels)
    return images, labels


@pytest.mark.parametrize("gz,layout", [(True, ""), (False, "FashionMNIST/raw")])
def test_fashion_mnist_reads_torchvision_layouts(seed, tmp_path, gz, layout):
    images, labels = make_mnist(tmp_path / layout, 7, gz)
    ds = FashionMNIST(tmp_path, "test")
    assert len(ds) == 7
    image, label = ds[3]
    assert image.mode == "L" and np.array_equal(np.asarray(image), images[3]) and label == labels[3]
    tf = build_transform({"input_size": (1, 28, 28), "mean": (0.5,), "std": (0.5,)}, is_training=False)
    x, _ = FashionMNIST(tmp_path, "test", transform=tf)[0]
    assert x.shape == (1, 28, 28)
    assert torch.allclose(x, torch.from_numpy(images[0]).float().div(255).sub(0.5).div(0.5)[None], atol=1e-5)


def test_missing_files_and_bad_split_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        MNIST(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        MNIST(tmp_path, "val")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="test_batch"):
        CIFAR10(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder(tmp_path / "nowhere")


def test_cifar_pickles(seed, tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.random.default_rng().integers(0, 256, (5, 3 * 32 * 32), dtype=np.uint8)
    with open(folder / "test", "wb") as f:
        pickle.dump({"data": data, "fine_labels": [1, 2, 3, 4, 99]}, f)
    ds = CIFAR100(tmp_path, "test")
    image, label = ds[4]
    assert label == 99 and image.size == (32, 32)
    assert np.array_equal(np.asarray(image), data[4].reshape(3, 32, 32).transpose(1, 2, 0))


def test_image_folder_with_model_transform(seed, tmp_path):
    from PIL import Image

    import timm

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.random.default_rng().integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / cls / "a.png")
    model = timm.create_model("vim_tiny_patch16_224", depth=1, embed_dim=16, img_size=32, patch_size=8)
    ds = image_folder(tmp_path, transform=build_transform(model, is_training=True, input_size=(3, 32, 32)))
    x, y = ds[1]
    assert x.shape == (3, 32, 32) and y == 1


def test_real_fashion_mnist(fashion_mnist_root):
    test = FashionMNIST(fashion_mnist_root, "test")
    assert len(test) == 10000 and test.data.shape == (10000, 28, 28)
    assert sorted(set(test.targets.tolist())) == list(range(10))


def test_recipe_builds_and_steps(seed, fashion_mnist_root):
    from mambakit.train import apply_overrides, find_recipe

    recipe = find_recipe("vision", "fashion-mnist-vim-tiny")
    default = recipe.config()
    assert default.model["embed_dim"] == 192 and default.model["depth"] == 24 and default.model["patch_size"] == 2
    config = apply_overrides(default, ["model.embed_dim=16", "model.depth=1", "model.patch_size=7",
                                       "model.stride=7", "data.train_limit=8", "data.eval_limit=8"])
    parts = recipe.build(config)
    x, y = next(iter(torch.utils.data.DataLoader(parts.train_data, batch_size=4)))
    assert x.shape == (4, 1, 28, 28)
    loss = parts.loss_fn(parts.model(x), y)
    loss.backward()
    assert torch.isfinite(loss)


def _load_benchmark():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "vision.py"
    spec = importlib.util.spec_from_file_location("vision_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_summary_and_crossover():
    bench = _load_benchmark()
    rows = [{"model": m, "size": s, "images_per_s": v, "peak_memory_gb": g}
            for m, s, v, g in [("deit_tiny", 224, 3384, 0.1), ("vim_tiny", 224, 2000, 0.2),
                               ("deit_tiny", 512, 2000, 0.3), ("vim_tiny", 512, 1900, 0.25),
                               ("deit_tiny", 1024, 1238, 0.6), ("vim_tiny", 1024, 1500, 0.4),
                               ("deit_tiny", 1248, 687, 0.92), ("vim_tiny", 1248, 1900, 0.5)]]
    summary = bench.summarise(rows, [224, 512, 1024, 1248])
    assert summary["vim_tiny_crossover_px"] == 1024
    assert "vmamba_tiny_crossover_px" not in summary            # not measured in this run
    # a graphed model is compared with the graphed DeiT when the run has one
    graphed = rows + [{"model": "vim_tiny_graphed", "size": 224, "images_per_s": 3000, "peak_memory_gb": 0.2},
                      {"model": "deit_tiny_graphed", "size": 224, "images_per_s": 6000, "peak_memory_gb": 0.1}]
    bench.summarise(graphed, [224])
    assert graphed[-2]["speedup_vs_deit"] == 0.5
    assert rows[-1]["speedup_vs_deit"] == pytest.approx(1900 / 687)
    assert "| 1248 | vim_tiny | 1900 |" in bench.table(rows)


def test_benchmark_unpadded_vim_variant_gives_the_same_logits():
    """``vim_tiny_unpadded`` (the layout A/B) is Vim-Tiny with unpadded, channel-flipped mixers:
    the same function, so the same logits as ``vim_tiny`` forced to pad and flip tokens."""
    from mambakit.vision import MultiOrderMamba

    bench = _load_benchmark()
    torch.manual_seed(0)
    unpadded = bench.build("vim_tiny_unpadded", 32, smoke=True)
    mixers = [m for m in unpadded.modules() if isinstance(m, MultiOrderMamba)]
    assert mixers and all(m.time_align == 1 and m.flip_tokens is False for m in mixers)
    padded = bench.build("vim_tiny", 32, smoke=True)
    padded.load_state_dict(unpadded.state_dict())
    for m in padded.modules():
        if isinstance(m, MultiOrderMamba):
            m.time_align, m.flip_tokens = 16, True
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(padded(x), unpadded(x), rtol=1e-4, atol=1e-5)
