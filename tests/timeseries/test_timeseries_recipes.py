"""Recipes (registry, a tiny end-to-end run on a generated CSV, ETTh1 when present) and the
benchmark script's CPU smoke mode."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mambakit.train import find_recipe, fit, list_recipes

ROOT = Path(__file__).resolve().parents[2]


def test_every_dataset_model_horizon_is_registered():
    names = {r.name for r in list_recipes("timeseries")}
    for ds in ("etth1", "etth2"):
        for model in ("smamba", "patchmamba", "dlinear", "patchtst"):
            for h in (96, 192, 336, 720):
                assert f"{ds}-{model}-h{h}" in names
    config = find_recipe("timeseries", "etth2-smamba-h336").config()
    assert config.data["name"] == "ETTh2" and config.data["pred_len"] == 336
    assert config.data["baselines"] == ["dlinear", "patchtst"]
    # the newest version adds the least-squares linear path; v2 stays as it was recorded
    assert config.model["linear_path"] and config.model["linear_init"] == "least_squares"
    assert config.data["selection"] == "val"
    v2 = find_recipe("timeseries", "etth2-smamba-h336@2").config()
    assert "linear_path" not in v2.model and v2.output_dir.endswith("-v2")
    assert find_recipe("timeseries", "etth1-dlinear-h96").version == 2      # linear already


def _waves_csv(tmp_path) -> Path:
    t = np.arange(1200)
    rng = np.random.default_rng(0)
    values = np.stack([np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=t.size),
                       np.cos(2 * np.pi * t / 12) + 0.1 * rng.normal(size=t.size),
                       0.5 * np.sin(2 * np.pi * t / 24 + 1) + 0.05 * rng.normal(size=t.size) + 2], 1)
    csv = tmp_path / "waves.csv"
    csv.write_text("date,a,b,OT\n" + "\n".join(f"{i},{v[0]},{v[1]},{v[2]}" for i, v in enumerate(values)) + "\n")
    return csv


def test_least_squares_linear_path_is_fitted_on_the_training_split(tmp_path):
    recipe = find_recipe("timeseries", "etth1-patchmamba-h96")
    config = recipe.config()
    config.model.update(d_model=16, n_layer=1, linear_path=True, linear_init="least_squares")
    config.data.update(root=str(_waves_csv(tmp_path)), seq_len=48, pred_len=24)
    parts = recipe.build(config)
    model = parts.model.eval()
    assert model.output_layer().weight.abs().sum() == 0
    x = torch.stack([parts.eval_data[i][0] for i in range(0, len(parts.eval_data), 7)])
    y = torch.stack([parts.eval_data[i][1] for i in range(0, len(parts.eval_data), 7)])
    with torch.no_grad():
        mse = (model(x) - y).pow(2).mean().item()
    assert mse < 0.1        # sums of sines are linearly predictable: the fit already forecasts them
    # refitting on the training split alone reproduces the recipe's map (no other split was read)
    weight = model.linear.weight.clone()
    model.fit_linear_path(torch.from_numpy(parts.train_data.data))
    torch.testing.assert_close(model.linear.weight, weight)


def test_recipe_end_to_end_on_a_generated_csv(tmp_path):
    csv = _waves_csv(tmp_path)
    recipe = find_recipe("timeseries", "etth1-smamba-h96")
    config = recipe.config()
    config.output_dir = str(tmp_path / "run")
    config.max_steps, config.log_every, config.quiet, config.eval_every = 30, 10, True, 0
    config.optim.lr, config.optim.warmup_steps = 3e-3, 5
    config.model.update(d_model=16, n_layer=1, d_intermediate=16)
    config.data.update(root=str(csv), seq_len=48, pred_len=24, baselines=["dlinear"])
    torch.manual_seed(0)
    parts = recipe.build(config)
    result = fit(parts.model, parts.train_data, parts.eval_data, loss_fn=parts.loss_fn, metrics=parts.metrics,
                 config=config)
    m = result.final_metrics
    assert set(m) >= {"mse", "mae", "mse_original", "mae_original"}
    assert m["mse"] < 0.5                                                     # periodic data: well below 1
    base = parts.baseline()
    assert base["name"] == "dlinear" and np.isfinite(base["metrics"]["mse"])
    assert np.isfinite(base["model_val_metrics"]["mse"])


ETT = ROOT.parent / "shared" / "data" / "timeseries" / "ETT-small"


@pytest.mark.skipif(not (ETT / "ETTh1.csv").is_file(), reason=f"ETT data not found at {ETT}")
def test_etth1_recipe_builds_standard_splits():
    recipe = find_recipe("timeseries", "etth1-smamba-h96")
    parts = recipe.build(recipe.config())
    assert len(parts.train_data) == 8449 and len(parts.eval_data) == 2785
    x, y = parts.eval_data[0]
    assert x.shape == (96, 7) and y.shape == (96, 7)
    with torch.no_grad():
        assert parts.model(x.unsqueeze(0)).shape == (1, 96, 7)


def test_benchmark_cpu_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("ts_bench", ROOT / "benchmarks" / "timeseries.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--cpu-smoke", "--reps", "2", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "timeseries_cpu_smoke.json").read_text())
    assert {r["model"] for r in record["rows"]} == {"smamba", "patchmamba", "patchtst", "dlinear"}
    assert all(r["forward_ms"] > 0 for r in record["rows"])


def _bench_module():
    spec = importlib.util.spec_from_file_location("ts_bench", ROOT / "benchmarks" / "timeseries.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_search_grid_is_the_product_of_its_lists():
    points = _bench_module()._grid_points({"model": {"d_model": [16, 32], "linear_path": [True, False]},
                                           "optim": {"lr": [1e-3]}, "epochs": [2, 4]})
    assert len(points) == 8
    assert {"model": {"d_model": 32, "linear_path": False}, "optim": {"lr": 1e-3}, "epochs": 4} in points
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 8


def test_search_run_selects_on_validation_only(tmp_path, monkeypatch):
    t = np.arange(900)
    rng = np.random.default_rng(1)
    values = np.stack([np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=t.size),
                       np.cos(2 * np.pi * t / 24) + 0.1 * rng.normal(size=t.size)], 1)
    csv = tmp_path / "waves.csv"
    csv.write_text("date,a,OT\n" + "\n".join(f"{i},{v[0]},{v[1]}" for i, v in enumerate(values)) + "\n")
    from mambakit.timeseries.data import ForecastDataset

    read = []
    original = ForecastDataset.__getitem__

    def spy(self, index):
        read.append(self.split)
        return original(self, index)

    monkeypatch.setattr(ForecastDataset, "__getitem__", spy)
    point = {"model": {"d_model": 8, "n_layer": 1, "linear_path": True}, "optim": {"lr": 3e-3},
             "data": {"root": str(csv), "seq_len": 48}, "epochs": 2}
    row = _bench_module()._search_one(("etth1", 24, "patchmamba", point, 0, "cpu"))
    assert set(read) == {"train", "val"}                      # the test split is never read
    assert len(row["val_mse_per_eval"]) == 2 and abs(row["val_mse"] - min(row["val_mse_per_eval"])) < 1e-4
    assert row["val_mse"] < 0.6                               # periodic data: well below 1
