"""Checkpoints: atomic writes, resume, and rotation (last ``k`` step checkpoints + ``best``).

Layout under ``<output_dir>/checkpoints/``::

    step-00000120/                one resumable checkpoint per save
        model.safetensors         weights (safetensors, tied tensors stored once)
        config.json               model config when the model has one (then
                                  ``Model.from_pretrained(dir)`` loads the folder)
        ema.safetensors           EMA weights (when EMA is on)
        trainer_state.pt          optimizer, scheduler, grad scaler, every rank's RNG states,
                                  step / epoch / best (``torch.load(weights_only=True)``-safe)
        trainer_state.json        the same progress fields, readable
        train_config.json         the TrainConfig of the run
    best/                         the weights that scored best (EMA weights when EMA is on),
                                  config.json, metrics.json

Every folder is written to a temporary sibling and renamed into place (``os.replace``), so a
failed or interrupted write never leaves a partial checkpoint and never harms an earlier one.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn
from safetensors.torch import load_file, load_model, save_file, save_model

from ..hub import CONFIG_NAME, atomic_write_dir

WEIGHTS = "model.safetensors"
EMA_WEIGHTS = "ema.safetensors"
STATE = "trainer_state.pt"
STATE_JSON = "trainer_state.json"
CONFIG = "train_config.json"
METRICS = "metrics.json"
BEST = "best"
_STEP_RE = re.compile(r"^step-(\d+)$")


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete step checkpoints under ``root``, oldest first (temporary folders ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_RE.match(child.name)
        if match and child.is_dir() and (child / STATE).is_file() and (child / WEIGHTS).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Optional[Path]:
    found = list_checkpoints(root)
    return found[-1] if found else None


def _model_config(model: nn.Module) -> Optional[dict]:
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        return dict(config.to_dict(), model_type=getattr(model, "model_type", "mamba"))
    return None


def _write_model_files(folder: Path, model: nn.Module, ema_shadow: Optional[dict] = None) -> None:
    save_model(model, str(folder / WEIGHTS))
    config = _model_config(model)
    if config is not None:
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))
    if ema_shadow is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in ema_shadow.items()}, str(folder / EMA_WEIGHTS))


def save_checkpoint(root: str | os.PathLike, step: int, model: nn.Module, trainer_state: dict[str, Any],
                    train_config: Optional[dict] = None, ema_state: Optional[dict] = None) -> Path:
    """Write ``root/step-<step>/`` atomically and return its path.

    ``trainer_state`` holds tensors and plain values (optimizer / scheduler / scaler state
    dicts, RNG states, counters); ``ema_state`` is ``EMA.state_dict()``. An existing folder for
    the same step is replaced only once the new one is complete.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    state = dict(trainer_state)
    if ema_state is not None:
        state["ema"] = {k: v for k, v in ema_state.items() if k != "shadow"}
    summary = {k: v for k, v in state.items() if isinstance(v, (int, float, str, bool, type(None)))}

    def write(tmp: Path) -> None:
        _write_model_files(tmp, model, None if ema_state is None else ema_state["shadow"])
        torch.save(state, tmp / STATE)
        (tmp / STATE_JSON).write_text(json.dumps(summary, indent=2, sort_keys=True))
        if train_config is not None:
            (tmp / CONFIG).write_text(json.dumps(train_config, indent=2, sort_keys=True))

    return atomic_write_dir(Path(root) / step_dir_name(step), write)


def save_best(root: str | os.PathLike, model: nn.Module, metrics: dict[str, float], step: int,
              train_config: Optional[dict] = None) -> Path:
    """Replace ``root/best/`` atomically with ``model``'s weights and the metrics they scored."""
    def write(tmp: Path) -> None:
        _write_model_files(tmp, model)
        (tmp / METRICS).write_text(json.dumps({"step": step, **metrics}, indent=2, sort_keys=True))
        if train_config is not None:
            (tmp / CONFIG).write_text(json.dumps(train_config, indent=2, sort_keys=True))

    return atomic_write_dir(Path(root) / BEST, write)


def load_weights(folder: str | os.PathLike, model: nn.Module, device: str | torch.device = "cpu",
                 strict: bool = True) -> nn.Module:
    """Load ``folder/model.safetensors`` into ``model`` (in place) and return it."""
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no {WEIGHTS} in {folder}")
    load_model(model, str(path), strict=strict, device=str(device))
    return model


def load_checkpoint(folder: str | os.PathLike, model: nn.Module, device: str | torch.device = "cpu",
                    ema: Any = None) -> dict[str, Any]:
    """Restore ``model`` (and ``ema`` when given) from a step checkpoint; return the trainer
    state (optimizer / scheduler / scaler state dicts, RNG states, counters) for the caller."""
    folder = Path(folder)
    if not (folder / STATE).is_file():
        raise FileNotFoundError(f"{folder} is not a training checkpoint (no {STATE})")
    load_weights(folder, model, device=device)
    state = torch.load(folder / STATE, map_location=device, weights_only=True)
    if ema is not None:
        if not (folder / EMA_WEIGHTS).is_file():
            raise FileNotFoundError(f"EMA is enabled but {folder} has no {EMA_WEIGHTS}")
        meta = state.get("ema", {})
        ema.load_state_dict({"decay": meta.get("decay", ema.decay), "warmup": meta.get("warmup", ema.warmup),
                             "num_updates": meta.get("num_updates", 0),
                             "shadow": load_file(str(folder / EMA_WEIGHTS), device=str(device))})
    return state


def rotate_checkpoints(root: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` step checkpoints (``best/`` is separate and
    kept); also clears temporary folders left by a crash. Returns the deleted paths."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    root = Path(root)
    found = list_checkpoints(root)
    removed = found[:-keep_last]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    if root.is_dir():
        for child in root.iterdir():  # leftovers of an interrupted atomic write
            if child.name.startswith(".step-") and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
    return removed
