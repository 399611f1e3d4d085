"""Linear maps into, within and out of the channels-first layout the scans read, without copies.

The Mamba-1 scan reads ``(B, channels, L)`` tensors contiguous along time, while blocks pass
``(B, L, d_model)`` between them. ``F.linear``/``torch.matmul`` on a transposed view fold the batch
into the rows of one matrix product, which needs a contiguous copy of the input (or the output):
four copies of ``(B, L, D_in)``-sized tensors per layer and more in the backward. A batched
product with the weight expanded over the batch (stride 0, no copy) reads either layout in place:
on a 2-core CPU, fwd+bwd of the in_proj pattern at (4, 1024, 256 -> 1024) took 37 ms instead of 65.

Under autocast the weight is cast first and then expanded (casting an expanded view would
materialise one copy of the weight per batch element).

The backward of the expanded weight materialises its gradient once per batch element,
``(B, O, I)``, before summing over the batch. That is cheap for few long sequences and ruinous for
many short ones (a patch model: 896 series of 12 patches, 64 -> 256 took 53 ms instead of 13).
Each map therefore compares that ``B * O * I`` against the ``B * L * (I + O)`` a folded product
copies, and folds the batch into the rows when the weight-sized term is larger (2-core CPU:
the expanded path wins at ``I*O <= L*(I+O)``, the folded one by 2-8x above it).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


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


def _fold_batch(length: int, weight: torch.Tensor) -> bool:
    """True when a per-batch weight gradient ``(O, I)`` outweighs the activations of one sequence."""
    n_out, n_in = weight.shape
    return n_out * n_in > length * (n_in + n_out)


def tokens_to_channels(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x (B, L, I)`` -> ``weight @ x^T (B, O, L)`` (+ ``bias (O,)``), contiguous along L."""
    if _fold_batch(x.shape[1], weight):
        return F.linear(x, weight, bias).transpose(1, 2).contiguous()
    out = torch.bmm(_expanded(weight, x, x.shape[0]), _operand(x).transpose(1, 2))
    return out if bias is None else out + bias.to(out.dtype).unsqueeze(-1)


def channels_to_channels(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x (B, I, L)`` (any strides) -> ``weight @ x (B, O, L)`` (+ ``bias (O,)``)."""
    if _fold_batch(x.shape[2], weight):
        return F.linear(x.transpose(1, 2), weight, bias).transpose(1, 2).contiguous()
    out = torch.bmm(_expanded(weight, x, x.shape[0]), _operand(x))
    return out if bias is None else out + bias.to(out.dtype).unsqueeze(-1)


def channels_to_tokens(y: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``y (B, I, L)`` -> ``y^T @ weight^T (B, L, O)`` (+ ``bias (O,)``), contiguous."""
    if _fold_batch(y.shape[2], weight):
        return F.linear(y.transpose(1, 2), weight, bias)
    out = torch.bmm(_operand(y).transpose(1, 2), _expanded(weight, y, y.shape[0]).transpose(1, 2))
    return out if bias is None else out + bias.to(out.dtype)
