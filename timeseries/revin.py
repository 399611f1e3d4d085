"""RevIN: reversible instance normalisation around any forecaster.

Each series of the input window is standardised by its own mean and std over time before the
model sees it; the forecast is mapped back with the same statistics (and the inverse of the
optional per-variable affine map), so the model only learns the shape of the future relative
to the window, not its level or scale.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn


class RevIN(nn.Module):
    """``normalize(x (B, L, C)) -> (B, L, C)`` stores the statistics; ``denormalize(y (B, H, C))``
    inverts them. ``affine`` adds a learnable per-variable scale and bias (``C = num_features``).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features: expected an int >= 1, got {num_features!r}")
        self.num_features, self.eps, self.affine = num_features, eps, affine
        if affine:
            self.affine_weight = nn.Parameter(torch.ones(num_features))
            self.affine_bias = nn.Parameter(torch.zeros(num_features))
            self.affine_weight._no_weight_decay = True
            self.affine_bias._no_weight_decay = True

    def statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std over time: ``x (B, L, C)`` -> ``(B, 1, C)`` each (no gradient through them)."""
        if x.dim() != 3 or x.shape[-1] != self.num_features:
            raise ValueError(f"RevIN: expected (B, L, {self.num_features}), got {tuple(x.shape)}")
        mean = x.mean(1, keepdim=True).detach()
        std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + self.eps).detach()
        return mean, std

    def normalize(self, x: torch.Tensor, stats: Optional[tuple[torch.Tensor, torch.Tensor]] = None
                  ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x (B, L, C)`` -> ``(x_norm (B, L, C), (mean, std))``."""
        mean, std = stats if stats is not None else self.statistics(x)
        x = (x - mean) / std
        if self.affine:
            x = x * self.affine_weight + self.affine_bias
        return x, (mean, std)

    def denormalize(self, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``y (B, H, C)`` on the normalised scale -> original scale with the stored statistics."""
        mean, std = stats
        if self.affine:
            y = (y - self.affine_bias) / (self.affine_weight + self.eps * self.eps)
        return y * std + mean

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"
