"""The PATTERN / CLUSTER recipes end to end on tiny generated splits (select on val, score test)."""
from __future__ import annotations

import pytest
import torch

from mambakit.train import fit
from mambakit.train.config import apply_overrides
from mambakit.train.recipes import find_recipe, list_recipes


def test_every_dataset_model_pair_is_registered():
    names = {r.name for r in list_recipes("graphs")}
    for dataset in ("pattern", "cluster"):
        for model in ("graph-mamba", "gatedgcn", "graphgps", "gmn"):
            assert f"{dataset}-{model}" in names


def test_weighted_loss_matches_the_benchmark_definition(seed):
    from mambakit.graphs.recipes import WeightedNodeCE

    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(40, 3, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 2, (40,), generator=g)          # class 2 absent: weight 0
    counts = torch.bincount(targets, minlength=3).double()
    w = (40 - counts) / 40 * (counts > 0)
    logp = logits.log_softmax(-1)[torch.arange(40), targets]
    expected = -(w[targets] * logp).sum() / w[targets].sum()
    torch.testing.assert_close(WeightedNodeCE()(logits, targets).double(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["cluster-graph-mamba", "pattern-graphgps"])
def test_recipe_trains_selects_on_val_and_scores_test(tmp_path, name):
    recipe = find_recipe("graphs", name)
    config = apply_overrides(recipe.config(), [
        f"output_dir={tmp_path / 'run'}", f"data.root={tmp_path / 'data'}", "max_steps=2", "batch_size=4",
        "eval_batch_size=8", "quiet=true", "optim.warmup_steps=1", "model.budget=20000", "model.num_layers=2",
        'data.num_graphs={"train": 8, "val": 6, "test": 6}'])
    parts = recipe.build(config)
    assert 10_000 < sum(p.numel() for p in parts.model.parameters()) <= 20_000
    result = fit(parts.model, parts.train_data, parts.eval_data, loss_fn=parts.loss_fn, metrics=parts.metrics,
                 config=parts.config, collate_fn=parts.collate_fn, test_data=parts.test_data)
    for metrics in (result.final_metrics, result.test_metrics, result.test_metrics_final):
        assert 0 <= metrics["balanced_accuracy"] <= 1 and metrics["loss"] > 0
    assert parts.baseline()["metrics"]["GraphGPS"] in (0.8669, 0.7802)


def test_scaling_benchmark_cpu_smoke(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "graphs.py"
    spec = importlib.util.spec_from_file_location("bench_graphs", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--cpu-smoke", "--out", str(tmp_path), "--models", "graph-mamba", "graphgps"]) == 0
    rows = json.loads((tmp_path / "graphs_scaling_cpu.json").read_text())["metrics"]["rows"]
    assert [(r["model"], r["nodes"]) for r in rows] == [("graph-mamba", 50), ("graphgps", 50),
                                                         ("graph-mamba", 200), ("graphgps", 200)]
    assert all(r["fwd_bwd_ms"] > 0 and 400_000 < r["parameters"] <= 500_000 for r in rows)
