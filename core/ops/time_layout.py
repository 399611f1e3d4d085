"""Row pitch of the ``(B, channels, L)`` tensors the Triton scans read and write.

Triton specialises integer arguments divisible by 16, and only with every stride but time's a
multiple of 16 can it vectorise the loads along time: on an H200 the Mamba-1 forward at
(16, 768, L, 16) took 9.5 ms at L = 6085 and 1.4 ms at L = 6144 (Vim-Tiny at 1248 px has
L = 6085). Tensors whose rows are padded to ``aligned_length(L)`` are read in place; others are
copied into such a buffer first. No Triton import here: layers choose their layout on any install.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

import torch

#: Row pitch multiple, in elements.
TIME_ALIGN = 16


def padded_length(length: int, multiple: int) -> int:
    """``length`` rounded up to a multiple of ``multiple``."""
    return -(-length // multiple) * multiple


def aligned_length(length: int) -> int:
    """``length`` rounded up to a multiple of ``TIME_ALIGN``."""
    return padded_length(length, TIME_ALIGN)


def time_aligned_empty(like: torch.Tensor, *shape: int, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """An uninitialised ``shape`` tensor, time (last axis) contiguous, every other stride a
    multiple of ``TIME_ALIGN``: a view of a buffer whose rows are padded to ``aligned_length``."""
    buf = like.new_empty(*shape[:-1], aligned_length(shape[-1]), dtype=dtype or like.dtype)
    return buf[..., :shape[-1]]


_copy_log: Optional[list] = None


def aligned_copy(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` with time-contiguous, aligned rows (what a scan launcher makes of an
    input it cannot read in place); recorded inside ``record_layout_copies``."""
    if _copy_log is not None:
        _copy_log.append(tuple(t.shape))
    return time_aligned_empty(t, *t.shape).copy_(t)


@contextlib.contextmanager
def record_layout_copies() -> Iterator[list]:
    """Collect the shapes of the inputs the Mamba-1 scan launchers copy inside the block, to check
    that a layer hands them aligned layouts::

        with record_layout_copies() as copies:
            layer(x).sum().backward()
        assert not copies
    """
    global _copy_log
    previous, _copy_log = _copy_log, []
    try:
        yield _copy_log
    finally:
        _copy_log = previous


def scan_time_multiple(x: torch.Tensor, impl: str = "auto") -> int:
    """The multiple a layer should pad ``L`` to before a Mamba-1 scan of ``x``'s activations:
    ``TIME_ALIGN`` where the Triton kernels will read them (CUDA tensors, or ``impl="triton"``
    under the interpreter), else 1 (the CPU kernels read any row pitch at full speed)."""
    if impl in ("reference", "cpu"):
        return 1
    if x.is_cuda or (impl == "triton" and os.environ.get("TRITON_INTERPRET") == "1"):
        return TIME_ALIGN
    return 1
