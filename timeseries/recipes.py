"""Long-term forecasting recipes on ETTh1 / ETTh2 (Time-Series-Library protocol).

``mambakit train timeseries etth1-smamba-h96`` trains one model on the train split (12
months), evaluates on the test split (4 months) and, with ``--record``, writes
``benchmarks/results/recipes/etth1-smamba-h96.json``. Every run also trains the baselines
(DLinear and the PatchTST-style Transformer, each with its own recipe's settings) on the same
data and records their test metrics next to the model's, so comparisons share one harness.

Models: ``smamba`` (variate tokens, bidirectional Mamba), ``patchmamba`` (channel-independent
patches, bidirectional Mamba), ``dlinear``, ``patchtst``; horizons 96, 192, 336, 720;
look-back 96. Two protocols (``data.selection``):

- version 1, ``last`` (the recorded v1 results): a fixed schedule evaluated on the test split;
  the recorded metrics are the test metrics after the last step (nothing selected on test).
- version 2, ``val`` (Time-Series-Library's: select on validation, report test): twice the
  epochs, the checkpoint with the best validation MSE is selected and the test split is scored
  once with it (``test_metrics`` in the record); baselines follow the same protocol.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from mambakit.data import dataset_path
from mambakit.train import OptimConfig, RecipeParts, TrainConfig, evaluate, fit, register_recipe

from .data import ForecastDataset
from .metrics import forecast_loss, forecast_metrics
from .models import MODELS, TSConfig

DATASETS = {"etth1": "ETTh1", "etth2": "ETTh2"}
HORIZONS = (96, 192, 336, 720)
RECIPE_MODELS = ("smamba", "patchmamba", "dlinear", "patchtst")
BASELINES = ("dlinear", "patchtst")

# model sizes and optimisation per model (chosen before looking at any test number)
MODEL_DEFAULTS = {
    "smamba": ({"d_model": 128, "n_layer": 2, "d_intermediate": 128, "d_state": 16, "expand": 2,
                "dropout": 0.1, "head_dropout": 0.0, "revin": True, "bidirectional": True},
               {"lr": 2e-4, "weight_decay": 0.05}, 4),
    "patchmamba": ({"d_model": 64, "n_layer": 2, "d_state": 16, "expand": 2, "patch_len": 16, "stride": 8,
                    "dropout": 0.2, "head_dropout": 0.1, "revin": True, "bidirectional": True},
                   {"lr": 5e-4, "weight_decay": 0.05}, 2),
    "dlinear": ({"moving_avg": 25, "revin": False}, {"lr": 5e-3, "weight_decay": 0.0}, 4),
    "patchtst": ({"d_model": 64, "n_layer": 2, "n_heads": 4, "d_ff": 128, "patch_len": 16, "stride": 8,
                  "dropout": 0.2, "head_dropout": 0.1, "revin": True},
                 {"lr": 5e-4, "weight_decay": 0.05}, 3),
}


def default_config(dataset: str, model: str, horizon: int) -> TrainConfig:
    model_opts, optim, epochs = MODEL_DEFAULTS[model]
    return TrainConfig(
        output_dir=f"runs/{dataset}-{model}-h{horizon}", seed=2021, epochs=epochs, batch_size=32,
        eval_batch_size=128, eval_every=0, log_every=20, keep_last=1, metric_for_best="mse",
        optim=OptimConfig(lr=optim["lr"], weight_decay=optim["weight_decay"], warmup_steps=100,
                          schedule="cosine", min_lr_ratio=0.05, grad_clip=1.0),
        model={"name": model, **model_opts},
        data={"root": "", "name": DATASETS[dataset], "seq_len": 96, "pred_len": horizon, "features": "M",
              "target": "OT", "baselines": [b for b in BASELINES if b != model]})


def build_datasets(data: dict) -> dict[str, ForecastDataset]:
    """Train / val / test ``ForecastDataset`` from a recipe's ``data`` section."""
    root = data.get("root") or dataset_path("timeseries", "ETT-small")
    kw = dict(name=data.get("name", "ETTh1"), seq_len=int(data.get("seq_len", 96)),
              pred_len=int(data.get("pred_len", 96)), features=data.get("features", "M"),
              target=data.get("target", "OT"))
    return {split: ForecastDataset(root, split=split, **kw) for split in ("train", "val", "test")}


def build_model(model_opts: dict, sets: dict[str, ForecastDataset]) -> torch.nn.Module:
    opts = dict(model_opts)
    name = opts.pop("name")
    if name not in MODELS:
        raise ValueError(f"model.name: expected one of {sorted(MODELS)}, got {name!r}")
    train = sets["train"]
    out = train.target_index if train.features == "MS" else None
    model = MODELS[name](TSConfig(seq_len=train.seq_len, pred_len=train.pred_len, n_vars=train.n_vars,
                                  output_index=out, **opts))
    if model.config.linear_path and model.config.linear_init == "least_squares":
        model.fit_linear_path(torch.from_numpy(train.data))     # the training split only
    return model


def _train_baseline(name: str, config: TrainConfig, sets: dict, metrics: list) -> dict:
    """Train baseline ``name`` with its own recipe settings on the same data; test metrics."""
    dataset = next((k for k, v in DATASETS.items() if v == sets["train"].name), "etth1")  # names only
    base = default_config(dataset, name, sets["train"].pred_len)
    base.seed, base.device, base.precision, base.quiet = config.seed, config.device, config.precision, config.quiet
    base.max_steps = config.max_steps   # a shortened run (max_steps > 0) shortens the baselines too
    base.time_budget_min, base.num_workers = config.time_budget_min, config.num_workers  # likewise a budget
    base.output_dir = str(Path(config.output_dir) / "baselines" / name)
    shutil.rmtree(base.output_dir, ignore_errors=True)   # a fresh run each time (our own run folder)
    torch.manual_seed(base.seed)
    model = build_model(base.model, sets)
    select_on_val = config.data.get("selection", "last") == "val"
    if select_on_val:
        base.epochs, base.metric_for_best = 2 * base.epochs, "mse"
        result = fit(model, sets["train"], sets["val"], loss_fn=forecast_loss, metrics=metrics, config=base,
                     test_data=sets["test"])
    else:
        result = fit(model, sets["train"], sets["test"], loss_fn=forecast_loss, metrics=metrics, config=base)
    return {"name": name, "metrics": result.test_metrics if select_on_val else result.final_metrics,
            "parameters": sum(p.numel() for p in model.parameters()),
            "model": base.model, "optim": base.optim.__dict__, "epochs": base.epochs, "steps": result.step}


def build(config: TrainConfig) -> RecipeParts:
    selection = config.data.get("selection", "last")
    if selection not in ("last", "val"):
        raise ValueError(f"data.selection: expected 'last' or 'val', got {selection!r}")
    sets = build_datasets(dict(config.data))
    train = sets["train"]
    metrics = forecast_metrics(train.scaler, train.out_index)
    torch.manual_seed(config.seed)
    model = build_model(dict(config.model), sets)

    def baseline() -> dict:
        val = evaluate(model, sets["val"], forecast_loss, metrics, batch_size=config.eval_batch_size or 64,
                       device=config.device, precision=config.precision)
        rows = [_train_baseline(b, config, sets, metrics) for b in config.data.get("baselines", BASELINES)]
        if not rows:
            return {"name": "none", "metrics": {}, "model_val_metrics": val}
        best = min(rows, key=lambda r: r["metrics"]["mse"])
        return {**best, "others": [r for r in rows if r is not best], "model_val_metrics": val}

    split = (f"{train.name}, look-back {train.seq_len}, horizon {train.pred_len}, features {train.features}: "
             f"train = rows 0-8640 (12 months, {len(train)} windows), test = rows 11520-14400 (4 months, "
             f"{len(sets['test'])} windows whose look-back starts {train.seq_len} rows earlier); scaler fitted on "
             f"train; metrics on the standardised scale (mse, mae) and in data units (*_original), all test "
             f"windows (no drop_last); " + ("fixed schedule, last-step weights" if selection == "last" else
             f"validation = rows 8640-11520 ({len(sets['val'])} windows) selects the checkpoint (best mse), "
             "the test split is scored once with it"))
    if selection == "val":
        return RecipeParts(model=model, train_data=train, eval_data=sets["val"], test_data=sets["test"],
                           loss_fn=forecast_loss, metrics=metrics, config=config, baseline=baseline,
                           dataset_name=f"timeseries/ETT-small/{train.name}", split=split,
                           extra={"datasets": sets})
    return RecipeParts(model=model, train_data=train, eval_data=sets["test"], loss_fn=forecast_loss,
                       metrics=metrics, config=config, baseline=baseline,
                       dataset_name=f"timeseries/ETT-small/{train.name}", split=split,
                       extra={"datasets": sets})


def _register() -> None:
    for dataset, csv_name in DATASETS.items():
        for model in RECIPE_MODELS:
            for horizon in HORIZONS:
                def config(dataset=dataset, model=model, horizon=horizon) -> TrainConfig:
                    return default_config(dataset, model, horizon)
                register_recipe("timeseries", f"{dataset}-{model}-h{horizon}", 1, build, config=config,
                                description=f"{model} on {csv_name}, look-back 96, horizon {horizon}; "
                                            f"baselines trained in the same run; last-step test metrics")

                def config_v2(dataset=dataset, model=model, horizon=horizon) -> TrainConfig:
                    config = default_config(dataset, model, horizon)
                    config.epochs *= 2
                    config.data["selection"] = "val"
                    config.output_dir += "-v2"
                    return config
                register_recipe("timeseries", f"{dataset}-{model}-h{horizon}", 2, build, config=config_v2,
                                description=f"{model} on {csv_name}, look-back 96, horizon {horizon}; checkpoint "
                                            "selected on validation, test scored once (baselines likewise)")

                if model == "dlinear":
                    continue

                def config_v3(dataset=dataset, model=model, horizon=horizon) -> TrainConfig:
                    config = config_v2(dataset, model, horizon)
                    config.model.update(linear_path=True, linear_init="least_squares")
                    config.output_dir = config.output_dir.replace("-v2", "-v3")
                    return config
                register_recipe("timeseries", f"{dataset}-{model}-h{horizon}", 3, build, config=config_v3,
                                description=f"{model} on {csv_name}, look-back 96, horizon {horizon}, beside a "
                                            "linear path fitted by least squares on the training split (the "
                                            "network starts silent and learns the remainder); checkpoint "
                                            "selected on validation, test scored once (baselines likewise)")


_register()
