"""Linear maps into, within and out of the channels-first layout the scans read, without copies.

The Mamba-1 scan reads ``(B, channels, L)`` tensors contiguous along time, while blocks pass
``(B, L, d_model)`` between them. ``F.linear``/``torch.matmul`` on a transposed view fold the batch
into the rows of one matrix product, which needs a contiguous copy of the input (or the output):
four copies of ``(B, L, D_in)``-sized tensors per layer and more in the backward. A batched
product with the weight expanded over the batch (stride 0, no copy) reads either layout in place:
on a 2-core CPU, fwd+bwd of the in_proj pattern at (4, 1024, 256 -> 1024) took 37 ms instead of 65.

Under autocast the weight is cast first and then expanded (casting an expanded view would
materialise one copy of the weight per batch element).
"""
from __future__ import annotations

from typing import Optional

import torch


def _expanded(weight: torch.Tensor, like: torch.Tensor, batch: int) -> torch.Tensor:
    """``weight (O, I)`` as ``(batch, O, I)`` (a stride-0 view), in the dtype autocast would use."""
    device_type = like.device.type
    if torch.is_autocast_enabled(device_type):
        weight = weight.to(torch.get_autocast_dtype(device_type))
    return weight.expand(batch, *weight.shape)


def _operand(x: torch.Tensor) -> torch.Tensor:
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return x.to(torch.get_autocast_dtype(device_type))
    return x


def tokens_to_channels(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x (B, L, I)`` -> ``weight @ x^T (B, O, L)`` (+ ``bias (O,)``), contiguous along L."""
    out = torch.bmm(_expanded(weight, x, x.shape[0]), _operand(x).transpose(1, 2))
    return out if bias is None else out + bias.to(out.dtype).unsqueeze(-1)


def channels_to_channels(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x (B, I, L)`` (any strides) -> ``weight @ x (B, O, L)`` (+ ``bias (O,)``)."""
    out = torch.bmm(_expanded(weight, x, x.shape[0]), _operand(x))
    return out if bias is None else out + bias.to(out.dtype).unsqueeze(-1)


def channels_to_tokens(y: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``y (B, I, L)`` -> ``y^T @ weight^T (B, L, O)`` (+ ``bias (O,)``), contiguous."""
    out = torch.bmm(_operand(y).transpose(1, 2), _expanded(weight, y, y.shape[0]).transpose(1, 2))
    return out if bias is None else out + bias.to(out.dtype)
