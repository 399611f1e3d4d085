"""Pre-norm residual block around a mixer (and an optional MLP), as mamba_ssm's ``Block``."""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class GatedMLP(nn.Module):
    """SwiGLU MLP: ``fc2(a * silu(gate))`` with ``a, gate = fc1(x).chunk(2)``. ``(..., D)``."""

    def __init__(self, in_features: int, hidden_features: Optional[int] = None,
                 out_features: Optional[int] = None, bias: bool = False, multiple_of: int = 128,
                 device=None, dtype=None) -> None:
        super().__init__()
        out_features = out_features or in_features
        hidden = hidden_features or int(8 * in_features / 3)
        hidden = (hidden + multiple_of - 1) // multiple_of * multiple_of
        self.fc1 = nn.Linear(in_features, 2 * hidden, bias=bias, device=device, dtype=dtype)
        self.fc2 = nn.Linear(hidden, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, gate = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(y * F.silu(gate))


class Block(nn.Module):
    """``residual = x + residual; x = mixer(norm(residual))`` (then the same with an MLP).

    Returns ``(hidden_states, residual)`` like mamba_ssm so the last norm can add the final
    residual; ``residual_in_fp32`` keeps the residual stream in float32 under autocast.
    """

    def __init__(self, dim: int, mixer_cls: Callable[[int], nn.Module],
                 mlp_cls: Optional[Callable[[int], nn.Module]] = None,
                 norm_cls: Callable[[int], nn.Module] = nn.LayerNorm,
                 fused_add_norm: bool = False, residual_in_fp32: bool = False) -> None:
        super().__init__()
        self.residual_in_fp32 = residual_in_fp32
        self.fused_add_norm = fused_add_norm  # accepted for compatibility; the add is not fused here
        self.norm = norm_cls(dim)
        self.mixer = mixer_cls(dim)
        if mlp_cls is not None and mlp_cls is not nn.Identity:
            self.norm2 = norm_cls(dim)
            self.mlp = mlp_cls(dim)
        else:
            self.mlp = None

    def _add(self, hidden_states: torch.Tensor, residual: Optional[torch.Tensor]) -> torch.Tensor:
        residual = hidden_states if residual is None else hidden_states + residual
        return residual.float() if self.residual_in_fp32 else residual

    def forward(self, hidden_states: torch.Tensor, residual: Optional[torch.Tensor] = None,
                inference_params=None, **mixer_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """``hidden_states, residual (B, L, D)`` -> the same two, advanced by this block."""
        residual = self._add(hidden_states, residual)
        hidden_states = self.norm(residual.to(self.norm.weight.dtype))
        hidden_states = self.mixer(hidden_states, inference_params=inference_params, **mixer_kwargs)
        if self.mlp is not None:
            residual = self._add(hidden_states, residual)
            hidden_states = self.mlp(self.norm2(residual.to(self.norm2.weight.dtype)))
        return hidden_states, residual

    def allocate_inference_cache(self, batch_size: int, max_seqlen: int = 0, dtype=None):
        return self.mixer.allocate_inference_cache(batch_size, max_seqlen, dtype=dtype)
