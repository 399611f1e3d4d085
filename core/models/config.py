"""Model configuration as a dataclass, field-compatible with mamba_ssm's ``MambaConfig``."""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any


@dataclass
class MambaConfig:
    """Sizes and options of a Mamba backbone / language model.

    The first fields are mamba_ssm's, so its ``config.json`` files load as they are;
    ``ssm_cfg["layer"]`` picks ``"Mamba1"`` (default) or ``"Mamba2"``, the other ``ssm_cfg``
    keys go to the mixer's constructor. ``vocab_size = 0`` means no token embedding (the
    backbone takes ``(B, L, d_model)`` features).
    """

    d_model: int = 256
    d_intermediate: int = 0
    n_layer: int = 4
    vocab_size: int = 0
    ssm_cfg: dict = field(default_factory=dict)
    attn_layer_idx: list = field(default_factory=list)
    attn_cfg: dict = field(default_factory=dict)
    rms_norm: bool = True
    residual_in_fp32: bool = True
    fused_add_norm: bool = True
    pad_vocab_size_multiple: int = 8
    tie_embeddings: bool = True
    # mambakit additions
    norm_epsilon: float = 1e-5
    scan_orders: list = field(default_factory=lambda: ["forward"])
    merge: str = "sum"
    share_mixer: bool = False
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layer"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        for name in ("vocab_size", "d_intermediate"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected an int >= 0, got {value!r}")
        if not isinstance(self.pad_vocab_size_multiple, int) or self.pad_vocab_size_multiple <= 0:
            raise ValueError(f"pad_vocab_size_multiple: expected a positive int, got {self.pad_vocab_size_multiple!r}")
        if self.merge not in ("sum", "mean", "concat"):
            raise ValueError(f"merge: expected 'sum', 'mean' or 'concat', got {self.merge!r}")
        layer = self.ssm_cfg.get("layer", "Mamba1")
        if layer not in ("Mamba1", "Mamba2"):
            raise ValueError(f"ssm_cfg['layer']: expected 'Mamba1' or 'Mamba2', got {layer!r}")
        if self.attn_layer_idx:
            raise ValueError("attention layers (attn_layer_idx) are not supported by mambakit's backbone")
        if isinstance(self.scan_orders, str):
            self.scan_orders = [self.scan_orders]

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_size_multiple
        return (self.vocab_size + m - 1) // m * m if self.vocab_size else 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MambaConfig":
        """Build from a dict, ignoring (with a warning) keys this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"model_type", "mambakit_version"})
        if unknown:
            warnings.warn(f"MambaConfig: ignoring unknown keys {unknown}", stacklevel=2)
        return cls(**{k: v for k, v in data.items() if k in known})
