"""Tokenizers: turn a window ``x (B, L, C)`` into a token sequence for the backbone.

- ``PatchTokenizer``: channel independence as PatchTST: each variable is its own sequence of
  patches (length ``patch_len``, step ``stride``; the end is padded by repeating the last value
  ``stride`` times), so ``(B, L, C) -> (B * C, N, d_model)``.
- ``VariateTokenizer``: iTransformer / S-Mamba: each variable's whole window is one token,
  ``(B, L, C) -> (B, C, d_model)``.
- ``TimeStepTokenizer``: one token per time step holding every variable, ``(B, L, C) ->
  (B, L, d_model)`` (causal, so it can stream).
"""
from __future__ import annotations

import torch
import torch.nn as nn


def _check_window(x: torch.Tensor, length: int | None = None, n_vars: int | None = None) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor (B, L, C), got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"expected a float tensor, got {x.dtype}")
    if x.dim() != 3:
        raise ValueError(f"expected a window of shape (B, L, C), got {tuple(x.shape)}")
    if length is not None and x.shape[1] != length:
        raise ValueError(f"expected look-back length {length}, got {x.shape[1]}")
    if n_vars is not None and x.shape[2] != n_vars:
        raise ValueError(f"expected {n_vars} variables, got {x.shape[2]}")


def num_patches(seq_len: int, patch_len: int, stride: int, pad_end: bool = True) -> int:
    """Patches of a window: ``(seq_len - patch_len) // stride + 1``, plus one with end padding."""
    if patch_len < 1 or stride < 1:
        raise ValueError(f"patch_len and stride must be >= 1, got {patch_len}, {stride}")
    if patch_len > seq_len + (stride if pad_end else 0):
        raise ValueError(f"patch_len={patch_len} is longer than the (padded) window {seq_len}")
    return (seq_len + (stride if pad_end else 0) - patch_len) // stride + 1


class PatchTokenizer(nn.Module):
    """``x (B, L, C)`` -> ``(B * C, N, d_model)`` patches embedded by one linear map.

    A learned position embedding is optional (the SSM knows order; attention needs it).
    """

    def __init__(self, seq_len: int, patch_len: int = 16, stride: int = 8, d_model: int = 128,
                 pad_end: bool = True, pos_embed: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.seq_len, self.patch_len, self.stride, self.pad_end = seq_len, patch_len, stride, pad_end
        self.num_patches = num_patches(seq_len, patch_len, stride, pad_end)
        self.proj = nn.Linear(patch_len, d_model)
        self.pos = nn.Parameter(torch.randn(1, self.num_patches, d_model) * 0.02) if pos_embed else None
        self.drop = nn.Dropout(dropout)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, L, C)`` -> raw patches ``(B, C, N, patch_len)``."""
        _check_window(x, self.seq_len)
        x = x.transpose(1, 2)                                                 # (B, C, L)
        if self.pad_end:
            x = torch.cat([x, x[..., -1:].expand(-1, -1, self.stride)], -1)  # (B, C, L + stride)
        return x.unfold(-1, self.patch_len, self.stride)                      # (B, C, N, P)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patchify(x)                                                  # (B, C, N, P)
        tokens = self.proj(p.flatten(0, 1))                                   # (B*C, N, D)
        if self.pos is not None:
            tokens = tokens + self.pos
        return self.drop(tokens)


class VariateTokenizer(nn.Module):
    """``x (B, L, C)`` -> ``(B, C, d_model)``: each variable's window is one token."""

    def __init__(self, seq_len: int, d_model: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.proj = nn.Linear(seq_len, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_window(x, self.seq_len)
        return self.drop(self.proj(x.transpose(1, 2)))                        # (B, C, D)


class TimeStepTokenizer(nn.Module):
    """``x (B, L, C)`` -> ``(B, L, d_model)``: one token per time step (any ``L``)."""

    def __init__(self, n_vars: int, d_model: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_vars = n_vars
        self.proj = nn.Linear(n_vars, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_window(x, n_vars=self.n_vars)
        return self.drop(self.proj(x))                                        # (B, L, D)
