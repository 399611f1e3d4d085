"""Normalisation layers used by the Mamba blocks (parameter names as mamba_ssm)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dimension: ``x / rms(x) * weight``. ``(..., D)``."""

    def __init__(self, hidden_size: int, eps: float = 1e-5, device=None, dtype=None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (out * self.weight).to(x.dtype)


class RMSNormGated(nn.Module):
    """Mamba-2's gated RMSNorm: ``rmsnorm(x * silu(z))`` per group of ``group_size`` channels
    (or ``rmsnorm(x) * silu(z)`` with ``norm_before_gate``). ``x, z (..., D)``."""

    def __init__(self, hidden_size: int, eps: float = 1e-5, group_size: Optional[int] = None,
                 norm_before_gate: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        self.eps = eps
        self.group_size = group_size or hidden_size
        if hidden_size % self.group_size:
            raise ValueError(f"group_size {self.group_size} must divide hidden_size {hidden_size}")
        self.norm_before_gate = norm_before_gate
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        dtype = x.dtype
        xf = x.float() if dtype in (torch.float16, torch.bfloat16) else x
        if z is not None and not self.norm_before_gate:
            xf = xf * F.silu(z.to(xf.dtype))
        grouped = xf.unflatten(-1, (-1, self.group_size))                     # (..., G, D/G)
        grouped = grouped * torch.rsqrt(grouped.pow(2).mean(-1, keepdim=True) + self.eps)
        out = grouped.flatten(-2) * self.weight
        if z is not None and self.norm_before_gate:
            out = out * F.silu(z.to(out.dtype))
        return out.to(dtype)
