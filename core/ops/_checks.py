"""Input validation shared by the public ops.

Public functions call these at their boundary and then trust their inputs inside.
Every error names the argument, what was expected and what came.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(name: str, t: object, ndim: Optional[int | Sequence[int]] = None,
                 floating: bool = True) -> torch.Tensor:
    """Check that ``t`` is a tensor of the given rank(s) and, by default, floating point."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.dim() not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name}: expected a {want}-D tensor, got shape {tuple(t.shape)}")
    if floating and t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a floating-point tensor (float16/bfloat16/float32/float64), "
                        f"got {t.dtype}")
    return t


def check_shape(name: str, t: torch.Tensor, expected: Sequence[int | None]) -> None:
    """Check ``t.shape`` against ``expected`` (``None`` matches any size)."""
    ok = t.dim() == len(expected) and all(e is None or s == e for s, e in zip(t.shape, expected))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(t.shape)}")


def check_nonempty(name: str, length: int) -> None:
    if length <= 0:
        raise ValueError(f"{name}: expected a sequence of length >= 1, got length {length}")


def check_finite(name: str, t: torch.Tensor) -> None:
    """Reject NaN/Inf. One reduction: a NaN or Inf anywhere makes the sum non-finite; only if it
    is (or overflowed) do we look element by element.

    CPU tensors only: on an accelerator the answer needs a device-to-host sync per call, which
    stalls the launch queue in every layer. Skipped inside torch.compile, whose graphs cannot
    branch on tensor values.
    """
    if t.numel() == 0 or t.device.type != "cpu" or torch.compiler.is_compiling():
        return
    total = t.sum(dtype=torch.float64) if t.dtype != torch.float64 else t.sum()
    if not torch.isfinite(total) and not torch.isfinite(t).all():
        raise ValueError(f"{name}: contains NaN or Inf values")


def check_same_device(**tensors: Optional[torch.Tensor]) -> torch.device:
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    first = next(iter(devices.values()))
    for name, dev in devices.items():
        if dev != first:
            raise ValueError(f"all inputs must be on one device; {name} is on {dev}, "
                             f"expected {first}")
    return first


def check_seq_idx(seq_idx: Optional[torch.Tensor], batch: int, length: int) -> Optional[torch.Tensor]:
    """``seq_idx (B, L)`` integer ids of the packed sequence each position belongs to."""
    if seq_idx is None:
        return None
    check_tensor("seq_idx", seq_idx, ndim=2, floating=False)
    if seq_idx.dtype.is_floating_point or seq_idx.dtype == torch.bool or seq_idx.is_complex():
        raise TypeError(f"seq_idx: expected an integer tensor, got {seq_idx.dtype}")
    check_shape("seq_idx", seq_idx, (batch, length))
    return seq_idx


def check_impl(impl: str, allowed: Sequence[str]) -> None:
    if impl not in allowed:
        raise ValueError(f"impl: expected one of {', '.join(map(repr, allowed))}, got {impl!r}")
