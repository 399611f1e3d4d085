"""Packed variable-length batches: several sequences concatenated along the time axis.

``seq_idx (B, L)`` gives, for every position, the index of the sequence it belongs to; the
scans and the causal convolution never carry state across a change of ``seq_idx``.
``cu_seqlens`` (cumulative lengths, as in FlashAttention's varlen API) is the other
common way to say the same thing for a batch of one packed row.
"""
from __future__ import annotations

import torch


def seq_idx_from_cu_seqlens(cu_seqlens: torch.Tensor, total_len: int | None = None) -> torch.Tensor:
    """Turn cumulative lengths ``[0, l1, l1+l2, ...]`` into ``seq_idx (1, total_len)`` (int32).

    Positions past ``cu_seqlens[-1]`` (padding) get their own id so they never mix with a sequence.
    """
    if not isinstance(cu_seqlens, torch.Tensor):
        cu_seqlens = torch.as_tensor(cu_seqlens)
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens: expected a 1-D tensor [0, l1, l1+l2, ...] with at least 2 entries, "
                         f"got shape {tuple(cu_seqlens.shape)}")
    if cu_seqlens.dtype.is_floating_point:
        raise TypeError(f"cu_seqlens: expected an integer tensor, got {cu_seqlens.dtype}")
    cu = cu_seqlens.to(torch.int64)
    if int(cu[0]) != 0 or bool((cu[1:] < cu[:-1]).any()):
        raise ValueError(f"cu_seqlens: expected non-decreasing values starting at 0, got {cu.tolist()}")
    end = int(cu[-1])
    total = end if total_len is None else int(total_len)
    if total < end:
        raise ValueError(f"total_len={total} is shorter than cu_seqlens[-1]={end}")
    lengths = cu[1:] - cu[:-1]
    ids = torch.repeat_interleave(torch.arange(len(lengths), device=cu.device), lengths)
    if total > end:
        ids = torch.cat([ids, ids.new_full((total - end,), len(lengths))])
    return ids.to(torch.int32).unsqueeze(0)
