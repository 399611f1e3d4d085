"""Training configuration: dataclasses, saved as JSON next to checkpoints, overridable by key.

Overrides use one scheme everywhere (API and CLI): ``"key=value"`` strings with dotted keys
into nested sections, e.g. ``"optim.lr=3e-4"``, ``"max_steps=100"``, ``"model.d_model=128"``.
Values are parsed by the type of the field they set (``true/false`` for booleans, JSON for
lists and dicts, ``none`` for optional fields); keys of the free-form ``model`` / ``data``
sections keep the type of their current value, or are read as JSON when new.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("cosine", "linear", "constant")


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule."""

    lr: float = field(default=1e-3, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.1, metadata={
        "help": "AdamW decay for matrices; never for biases, norms, embeddings, _no_weight_decay"})
    betas: list = field(default_factory=lambda: [0.9, 0.95], metadata={"help": "AdamW betas (JSON list)"})
    eps: float = field(default=1e-8, metadata={"help": "AdamW epsilon"})
    warmup_steps: int = field(default=100, metadata={"help": "linear warmup steps (optimizer steps)"})
    schedule: str = field(default="cosine", metadata={"help": f"decay after warmup: {', '.join(SCHEDULES)}"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "final lr as a fraction of lr (cosine/linear)"})
    grad_clip: float = field(default=1.0, metadata={"help": "max global gradient norm; 0 disables clipping"})

    def validate(self) -> None:
        _check(self.lr > 0, f"optim.lr must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        _check(isinstance(self.betas, (list, tuple)) and len(self.betas) == 2
               and all(0 <= b < 1 for b in self.betas), f"optim.betas: expected two values in [0, 1), got {self.betas}")
        _check(self.eps > 0, f"optim.eps must be > 0, got {self.eps}")
        _check(self.warmup_steps >= 0, f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        _check(self.schedule in SCHEDULES, f"optim.schedule: expected one of {SCHEDULES}, got {self.schedule!r}")
        _check(0 <= self.min_lr_ratio <= 1, f"optim.min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        _check(self.grad_clip >= 0, f"optim.grad_clip must be >= 0, got {self.grad_clip}")


@dataclass
class TrainConfig:
    """Everything ``fit`` needs besides the model, data, loss and metrics.

    ``batch_size`` is the *global* batch per optimizer step: each of ``world_size`` processes
    runs ``grad_accum`` micro-batches of ``batch_size // (world_size * grad_accum)`` samples, so
    a config gives the same optimisation on 1 CPU, 1 GPU or 16 GPUs.
    """

    recipe: str = field(default="", metadata={"help": "recipe this config came from (domain/name@version)"})
    output_dir: str = field(default="runs/default", metadata={
        "help": "run folder: metrics.jsonl, train_config.json, checkpoints/"})
    seed: int = field(default=0, metadata={"help": "seed for model init (in recipes), data order and dropout"})
    epochs: int = field(default=1, metadata={"help": "passes over the training set (when max_steps is 0)"})
    max_steps: int = field(default=0, metadata={"help": "optimizer steps; > 0 overrides epochs"})
    time_budget_min: float = field(default=0.0, metadata={
        "help": "stop after about this many minutes of training (evals included): the step count is "
                "cut to what the measured speed allows, so the LR schedule still ends; 0 = no limit"})
    batch_size: int = field(default=32, metadata={"help": "global samples per optimizer step (all processes)"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches accumulated per optimizer step"})
    eval_batch_size: int = field(default=0, metadata={"help": "per-process eval batch; 0 = the training micro-batch"})
    eval_every: int = field(default=0, metadata={"help": "evaluate every N steps; 0 = at the end of each epoch"})
    patience: int = field(default=0, metadata={
        "help": "stop after this many evaluations in a row without a new best metric_for_best (the "
                "best checkpoint is kept); 0 = train to the end"})
    log_every: int = field(default=10, metadata={"help": "write a train record every N steps"})
    save_every: int = field(default=0, metadata={"help": "checkpoint every N steps; 0 = at every evaluation"})
    keep_last: int = field(default=2, metadata={"help": "step checkpoints to keep (best/ is kept separately)"})
    metric_for_best: str = field(default="loss", metadata={"help": "eval metric that selects checkpoints/best"})
    greater_is_better: Optional[bool] = field(default=None, metadata={
        "help": "direction of metric_for_best; none = known from the metric (loss: lower)"})
    device: str = field(default="auto", metadata={"help": "auto (cuda:LOCAL_RANK if available, else cpu), cpu, cuda, cuda:N"})
    precision: str = field(default="auto", metadata={
        "help": "auto (bf16 autocast on GPU, fp32 on CPU), fp32, bf16, fp16 (GPU, with a grad scaler)"})
    compile: bool = field(default=False, metadata={"help": "wrap the model in torch.compile"})
    ema_decay: float = field(default=0.0, metadata={"help": "EMA of weights for eval/best; 0 disables"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes per process"})
    deterministic: bool = field(default=False, metadata={"help": "torch.use_deterministic_algorithms (slower)"})
    quiet: bool = field(default=False, metadata={"help": "log lines instead of a progress bar"})
    optim: OptimConfig = field(default_factory=OptimConfig)
    model: dict = field(default_factory=dict, metadata={"help": "recipe-specific model options"})
    data: dict = field(default_factory=dict, metadata={"help": "recipe-specific data options"})

    def validate(self) -> "TrainConfig":
        """Check ranges and choices; raise ``ValueError`` naming the field. Returns ``self``."""
        for name in ("epochs", "batch_size", "grad_accum", "log_every"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, f"{name} must be an int >= 1, got {value!r}")
        for name in ("max_steps", "eval_batch_size", "eval_every", "save_every", "num_workers", "patience"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 0, f"{name} must be an int >= 0, got {value!r}")
        _check(isinstance(self.keep_last, int) and self.keep_last >= 1,
               f"keep_last must be an int >= 1, got {self.keep_last!r}")
        _check(self.precision in PRECISIONS, f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        _check(0 <= self.ema_decay < 1, f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        _check(isinstance(self.time_budget_min, (int, float)) and math.isfinite(self.time_budget_min)
               and self.time_budget_min >= 0,
               f"time_budget_min must be a number >= 0, got {self.time_budget_min!r}")
        _check(bool(self.output_dir), "output_dir must not be empty")
        _check(self.batch_size % self.grad_accum == 0,
               f"batch_size ({self.batch_size}) must be divisible by grad_accum ({self.grad_accum})")
        self.optim.validate()
        return self

    def micro_batch_size(self, world_size: int) -> int:
        """Samples per forward pass on one process; raises if the global batch does not split."""
        per_step = world_size * self.grad_accum
        if self.batch_size % per_step:
            raise ValueError(f"batch_size={self.batch_size} is not divisible by world_size ({world_size}) "
                             f"x grad_accum ({self.grad_accum})")
        return self.batch_size // per_step

    # ---- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (as written by ``to_dict``); unknown keys raise ``ValueError``."""
        if not isinstance(data, dict):
            raise TypeError(f"expected a dict, got {type(data).__name__}")
        return _from_dict(cls, data, prefix="")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config as JSON (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no config file at {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        return cls.from_dict(data)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _from_dict(cls, data: dict, prefix: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config keys {[prefix + k for k in unknown]}")
    kwargs = {}
    for name, value in data.items():
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _from_dict(hints[name], value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = value
    return cls(**kwargs)


# ---- overrides --------------------------------------------------------------------------------
def _parse_value(text: str, target_type: Any, key: str) -> Any:
    origin = typing.get_origin(target_type)
    args = [a for a in typing.get_args(target_type) if a is not type(None)]
    optional = origin is typing.Union and len(args) < len(typing.get_args(target_type))
    if optional:
        if text.strip().lower() in ("none", "null"):
            return None
        target_type = args[0]
    try:
        if target_type is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if target_type is int:
            value = float(text) if any(c in text for c in ".eE") else int(text)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("expected an integer")
            return int(value)
        if target_type is float:
            return float(text)
        if target_type is str:
            return text
        if target_type in (list, dict) or typing.get_origin(target_type) in (list, dict):
            value = json.loads(text)
            expected = typing.get_origin(target_type) or target_type
            if not isinstance(value, expected):
                raise ValueError(f"expected a JSON {expected.__name__}")
            return value
        if target_type is Any:
            return _parse_free(text)
    except (ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"--set {key}={text!r}: {err}") from err
    raise TypeError(f"--set {key}: cannot parse values of type {target_type}")


def _parse_free(text: str) -> Any:
    """A value for a free-form dict key: JSON if it parses (numbers, bools, lists), else a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config: TrainConfig, overrides: Iterable[str]) -> TrainConfig:
    """Return a copy of ``config`` with ``"key=value"`` overrides applied, then validated.

    Dotted keys reach nested sections (``optim.lr=3e-4``) and the free-form ``model`` /
    ``data`` dicts (``model.d_model=128``). Raises ``ValueError`` for an unknown key or a value
    that does not parse as the field's type.
    """
    if isinstance(overrides, str):
        raise TypeError("overrides: expected a list of 'key=value' strings, got one string")
    config = TrainConfig.from_dict(config.to_dict())  # deep copy
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"override {item!r}: expected 'key=value'")
        key, text = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not key or not all(parts):
            raise ValueError(f"override {item!r}: empty key")
        target: Any = config
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(target, dict):
                if last:
                    current = target.get(part)
                    target[part] = _parse_free(text) if current is None else _parse_value(text, type(current), key)
                else:
                    target = target.setdefault(part, {})
                    if not isinstance(target, dict):
                        raise ValueError(f"override {key}: {'.'.join(parts[:depth + 1])} is not a section")
                continue
            if not dataclasses.is_dataclass(target):
                raise ValueError(f"override {key}: {'.'.join(parts[:depth])} is not a section")
            hints = typing.get_type_hints(type(target))
            if part not in hints:
                choices = ", ".join(sorted(f.name for f in dataclasses.fields(target)))
                raise ValueError(f"unknown config key {'.'.join(parts[:depth + 1])!r}; known here: {choices}")
            if last:
                if dataclasses.is_dataclass(hints[part]) or hints[part] is dict:
                    value = _parse_value(text, dict, key)
                    if dataclasses.is_dataclass(hints[part]):
                        value = _from_dict(hints[part], {**dataclasses.asdict(getattr(target, part)), **value},
                                           prefix=f"{part}.")
                    setattr(target, part, value)
                else:
                    setattr(target, part, _parse_value(text, hints[part], key))
            else:
                target = getattr(target, part)
    return config.validate()


def describe_fields(cls=TrainConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(key, default, help)`` for every overridable field, nested sections flattened."""
    rows = []
    instance = cls()
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe_fields(type(value), prefix=f"{prefix}{f.name}."))
        else:
            rows.append((prefix + f.name, json.dumps(value), f.metadata.get("help", "")))
    return rows
