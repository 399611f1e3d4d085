"""AdamW with the no-weight-decay convention, and the warmup + cosine learning-rate schedule.

Weight decay applies to weight matrices only. No decay for: parameters flagged
``p._no_weight_decay = True`` (the SSM's ``A_log``, ``D``, ``dt_bias``), every parameter with
fewer than two dimensions (biases, norm scales), and the weights of embeddings and norm layers
(``nn.Embedding``, ``nn.LayerNorm``, ``RMSNorm``...), including a tied LM head that shares the
embedding's tensor.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LambdaLR

from .config import SCHEDULES, OptimConfig


def _is_no_decay_module(module: nn.Module) -> bool:
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag, nn.LayerNorm, nn.GroupNorm,
                           nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
        return True
    return "norm" in type(module).__name__.lower()  # RMSNorm, RMSNormGated, FusedLayerNorm...


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into ``[{decay}, {no decay}]`` AdamW groups.

    Each group carries ``"names"`` (for inspection). A tensor shared by several modules (tied
    weights) appears once, in the no-decay group if any owner asks for no decay.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    params: dict[int, nn.Parameter] = {}
    names: dict[int, str] = {}
    no_decay: set[int] = set()
    for module_name, module in model.named_modules():
        module_no_decay = _is_no_decay_module(module)
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            key = id(p)
            params.setdefault(key, p)
            names.setdefault(key, f"{module_name}.{name}" if module_name else name)
            if module_no_decay or p.ndim < 2 or getattr(p, "_no_weight_decay", False):
                no_decay.add(key)
    decay_keys = [k for k in params if k not in no_decay]
    nodecay_keys = [k for k in params if k in no_decay]
    return [
        {"params": [params[k] for k in decay_keys], "weight_decay": weight_decay,
         "names": [names[k] for k in decay_keys]},
        {"params": [params[k] for k in nodecay_keys], "weight_decay": 0.0,
         "names": [names[k] for k in nodecay_keys]},
    ]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW over ``param_groups(model, config.weight_decay)`` (empty groups dropped)."""
    config.validate()
    groups = [g for g in param_groups(model, config.weight_decay) if g["params"]]
    if not groups:
        raise ValueError("model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)


class WarmupSchedule:
    """Learning-rate multiplier after ``step`` optimizer steps (``step = 0`` is the first).

    Linear warmup ``(step + 1) / warmup_steps`` for ``step < warmup_steps``, then from 1 down
    to ``min_lr_ratio`` at ``total_steps - 1`` following a half cosine, a straight line, or
    staying at 1 (``constant``). A plain object (numbers only) so that the scheduler's
    ``state_dict`` round-trips through ``torch.load(weights_only=True)``.
    """

    def __init__(self, warmup_steps: int, total_steps: int, schedule: str = "cosine",
                 min_lr_ratio: float = 0.0) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")
        if total_steps < 1 or warmup_steps < 0:
            raise ValueError(f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps}, {warmup_steps}")
        if not 0 <= min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {min_lr_ratio}")
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.schedule = schedule
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        span = self.total_steps - 1 - self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / span) if span > 0 else 1.0
        if self.schedule == "cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            shape = 1.0 - progress
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * shape


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int) -> LambdaLR:
    """``LambdaLR`` with ``WarmupSchedule``; call ``.step()`` once per optimizer step."""
    schedule = WarmupSchedule(min(config.warmup_steps, max(total_steps - 1, 0)), total_steps,
                              config.schedule, config.min_lr_ratio)
    return LambdaLR(optimizer, schedule)
