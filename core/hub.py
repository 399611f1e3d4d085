"""Save and load models as ``config.json`` + ``model.safetensors`` (no pickle for weights).

Writes go to a temporary directory that is renamed into place, so an interrupted save never
leaves a half-written model behind and never destroys the previous one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Type, TypeVar

import torch
from safetensors.torch import load_model, save_model

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
LEGACY_WEIGHTS_NAME = "pytorch_model.bin"  # mamba_ssm / Hugging Face checkpoints

T = TypeVar("T", bound="PretrainedMixin")


def atomic_write_dir(target: str | os.PathLike, write: Any) -> Path:
    """Call ``write(tmp_dir)`` then move ``tmp_dir`` to ``target`` (replacing it)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


class PretrainedMixin:
    """Adds ``save_pretrained`` / ``from_pretrained`` to a module with a dataclass ``config``.

    Subclasses set ``config_class`` and take the config as their first constructor argument.
    """

    config_class: type
    model_type: str = "mamba"

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``save_directory`` atomically."""
        config = dict(self.config.to_dict(), model_type=self.model_type)

        def write(tmp: Path) -> None:
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))
            save_model(self, str(tmp / WEIGHTS_NAME))  # handles tied weights

        return atomic_write_dir(save_directory, write)

    @classmethod
    def from_pretrained(cls: Type[T], directory: str | os.PathLike, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, strict: bool = True, **config_overrides) -> T:
        """Load a model saved by ``save_pretrained`` (or a mamba_ssm checkpoint folder with
        ``config.json`` + ``pytorch_model.bin``, read with ``weights_only=True``)."""
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} in {directory}")
        try:
            data = json.loads(config_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{config_path} is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"{config_path}: expected a JSON object, got {type(data).__name__}")
        data.update(config_overrides)
        model = cls(cls.config_class.from_dict(data))
        weights = directory / WEIGHTS_NAME
        if weights.is_file():
            missing, unexpected = load_model(model, str(weights), strict=strict, device=str(device))
        elif (directory / LEGACY_WEIGHTS_NAME).is_file():
            state = torch.load(directory / LEGACY_WEIGHTS_NAME, map_location=device, weights_only=True)
            model.load_state_dict(state, strict=strict)
        else:
            raise FileNotFoundError(f"no {WEIGHTS_NAME} (or {LEGACY_WEIGHTS_NAME}) in {directory}")
        model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
        return model.eval()
