"""Spectrogram tokenizers: 2-D patches (AST / AuM / SSAMBA style) and one token per frame.

Features come in as ``(B, T, F)`` (frames x mel bins, the frontend's layout).

- ``PatchTokenizer``: a ``Conv2d`` over the ``(F, T)`` image cuts ``patch_size`` patches every
  ``patch_stride`` and projects each to ``d_model``; tokens are ordered **time-major** (all
  frequency patches of the first time step, then the next), so a forward scan walks through
  time; a learned position embedding per grid cell; an optional class token placed at the
  head, the middle (Vim's choice for bidirectional scans), the tail, or none (mean pooling).
- ``FrameTokenizer``: a ``Linear`` from the ``F`` bins of each frame to ``d_model``, no
  position embedding (the causal scan carries order), so it works for any length and streams.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn

CLS_POSITIONS = ("none", "head", "middle", "tail")


def _pair(v) -> Tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return (int(v[0]), int(v[1]))
    raise ValueError(f"expected an int or a pair of ints, got {v!r}")


def grid_size(num_frames: int, num_bins: int, patch_size, patch_stride) -> Tuple[int, int]:
    """``(freq_patches, time_patches)`` of a ``num_frames x num_bins`` spectrogram."""
    (pf, pt), (sf, st) = _pair(patch_size), _pair(patch_stride)
    if num_bins < pf or num_frames < pt:
        raise ValueError(f"a {num_frames} x {num_bins} spectrogram is smaller than one {pt} x {pf} patch")
    return (num_bins - pf) // sf + 1, (num_frames - pt) // st + 1


class PatchTokenizer(nn.Module):
    """``(B, T, F)`` features -> ``(B, L, d_model)`` tokens (+ class token), ``L = Fp * Tp (+1)``.

    ``cls_index`` (or ``None``) tells the model where the class token sits.
    """

    def __init__(self, num_frames: int, num_bins: int, d_model: int, patch_size=16, patch_stride=16,
                 cls_position: str = "middle") -> None:
        super().__init__()
        if cls_position not in CLS_POSITIONS:
            raise ValueError(f"cls_position: expected one of {CLS_POSITIONS}, got {cls_position!r}")
        self.num_frames, self.num_bins = num_frames, num_bins
        self.patch_size, self.patch_stride = _pair(patch_size), _pair(patch_stride)
        self.grid = grid_size(num_frames, num_bins, self.patch_size, self.patch_stride)   # (Fp, Tp)
        self.num_patches = self.grid[0] * self.grid[1]
        self.cls_position = cls_position
        self.proj = nn.Conv2d(1, d_model, kernel_size=self.patch_size, stride=self.patch_stride)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, d_model))
        if cls_position != "none":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if cls_position != "none":
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    @property
    def cls_index(self) -> Optional[int]:
        return {"none": None, "head": 0, "middle": self.num_patches // 2, "tail": self.num_patches}[self.cls_position]

    @property
    def seq_len(self) -> int:
        return self.num_patches + (self.cls_position != "none")

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        b, t, f = feats.shape
        if (t, f) != (self.num_frames, self.num_bins):
            raise ValueError(f"PatchTokenizer: expected (B, {self.num_frames}, {self.num_bins}) features, "
                             f"got {tuple(feats.shape)}")
        x = self.proj(feats.transpose(1, 2).unsqueeze(1))                     # (B, D, Fp, Tp)
        x = x.permute(0, 3, 2, 1).flatten(1, 2)                               # (B, Tp*Fp, D) time-major
        x = x + self.pos_embed
        idx = self.cls_index
        if idx is not None:
            cls = self.cls_token.expand(b, -1, -1)                            # (B, 1, D)
            x = torch.cat([x[:, :idx], cls, x[:, idx:]], dim=1)               # (B, L+1, D)
        return x


class FrameTokenizer(nn.Module):
    """``(B, T, F)`` -> ``(B, T, d_model)``: one token per 10 ms frame (causal, any length)."""

    def __init__(self, num_bins: int, d_model: int) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.proj = nn.Linear(num_bins, d_model)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.shape[-1] != self.num_bins:
            raise ValueError(f"FrameTokenizer: expected (B, T, {self.num_bins}) features, got {tuple(feats.shape)}")
        return self.proj(feats)
