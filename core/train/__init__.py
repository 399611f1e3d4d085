"""The training engine shared by every domain: ``fit`` / ``evaluate``, configs, optimizer and
schedule, checkpoints, metrics, EMA, ``torch.distributed`` helpers and the recipe registry.

    from mambakit.train import TrainConfig, fit
    result = fit(model, train_set, eval_set, loss_fn=loss, metrics=["accuracy", "f1"],
                 config=TrainConfig(output_dir="runs/x", max_steps=1000, batch_size=64))

The same code runs on one CPU, one GPU, or many GPUs and nodes under ``torchrun`` (DDP).
Domain packages register recipes with ``register_recipe``; the CLI (``mambakit train``)
runs them.
"""
from .checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, load_weights, save_checkpoint
from .config import OptimConfig, TrainConfig, apply_overrides
from .distributed import DistInfo, setup, teardown
from .ema import EMA
from .engine import FitResult, NonFiniteLossError, evaluate, fit
from .metrics import METRICS, Metric, compute_metrics, get_metric
from .optim import WarmupSchedule, build_optimizer, build_scheduler, param_groups
from .recipes import Recipe, RecipeParts, find_recipe, list_recipes, register_recipe
from .seeding import seed_everything

__all__ = [
    "fit", "evaluate", "FitResult", "NonFiniteLossError",
    "TrainConfig", "OptimConfig", "apply_overrides",
    "param_groups", "build_optimizer", "build_scheduler", "WarmupSchedule",
    "EMA", "Metric", "METRICS", "get_metric", "compute_metrics",
    "save_checkpoint", "load_checkpoint", "load_weights", "latest_checkpoint", "list_checkpoints",
    "DistInfo", "setup", "teardown", "seed_everything",
    "Recipe", "RecipeParts", "register_recipe", "find_recipe", "list_recipes",
]
