"""Single-token state update of the Mamba-1 selective scan, for decoding.

One step of the recurrence of ``selective_scan`` on a constant-size state, as mamba_ssm's
``selective_state_update``: the state is updated in place and the output returned.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ._checks import check_finite, check_impl, check_shape, check_tensor

IMPLS = ("auto", "reference", "triton")


def use_triton(impl: str, *tensors: Optional[torch.Tensor]) -> bool:
    """Whether a decoding step takes the fused Triton kernel: ``impl="triton"`` forces it (CUDA
    tensors, or CPU tensors under ``TRITON_INTERPRET=1``); ``"auto"`` takes it for CUDA tensors
    that are not float64 when no gradient is needed (the kernel updates the state in place and is
    not differentiable)."""
    import os

    check_impl(impl, IMPLS)
    present = [t for t in tensors if t is not None]
    if impl == "reference":
        return False
    if impl == "triton":
        if not (present[0].is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
            raise NotImplementedError("impl='triton' needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1)")
        return True
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in present)
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return present[0].is_cuda and not needs_grad and all(t.dtype != torch.float64 for t in present)


def selective_state_update(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                           B: torch.Tensor, C: torch.Tensor, D: Optional[torch.Tensor] = None,
                           z: Optional[torch.Tensor] = None, dt_bias: Optional[torch.Tensor] = None,
                           dt_softplus: bool = False, impl: str = "auto") -> torch.Tensor:
    """Advance ``state (B, D, N)`` by one token in place and return ``out (B, D)``.

    Args:
        x, dt, z: ``(B, D)``. A: ``(D, N)``. B, C: ``(B, N)`` or ``(B, G, N)``. D, dt_bias: ``(D,)``.
        impl: ``"auto"`` (one fused Triton kernel for CUDA tensors without gradients, else the
            reference), ``"reference"`` or ``"triton"``.
    """
    check_tensor("state", state, ndim=3)
    batch, dim, n_state = state.shape
    for name, t in (("x", x), ("dt", dt)):
        check_tensor(name, t, ndim=2)
        check_shape(name, t, (batch, dim))
    check_tensor("A", A, ndim=2)
    check_shape("A", A, (dim, n_state))
    for name, t in (("B", B), ("C", C)):
        check_tensor(name, t, ndim=(2, 3))
        if t.shape[0] != batch or t.shape[-1] != n_state or (t.dim() == 3 and dim % t.shape[1]):
            raise ValueError(f"{name}: expected (B={batch}, N={n_state}) or (B, G, N) with G dividing "
                             f"{dim}, got {tuple(t.shape)}")
    if z is not None:
        check_tensor("z", z, ndim=2)
        check_shape("z", z, (batch, dim))
    for name, t in (("D", D), ("dt_bias", dt_bias)):
        if t is not None:
            check_tensor(name, t, ndim=1)
            check_shape(name, t, (dim,))
    check_finite("x", x)
    check_finite("dt", dt)
    if use_triton(impl, state, x, dt, A, B, C, D, z, dt_bias):
        from .triton_state_update import selective_state_update_triton
        return selective_state_update_triton(state, x, dt, A, B if B.dim() == 3 else B.unsqueeze(1),
                                             C if C.dim() == 3 else C.unsqueeze(1), D, z, dt_bias, dt_softplus)
    dtype = torch.float64 if state.dtype == torch.float64 else torch.float32
    dt = dt.to(dtype)
    if dt_bias is not None:
        dt = dt + dt_bias.to(dtype)
    if dt_softplus:
        dt = F.softplus(dt)
    B = B.to(dtype) if B.dim() == 3 else B.to(dtype).unsqueeze(1)             # (B, G, N)
    C = C.to(dtype) if C.dim() == 3 else C.to(dtype).unsqueeze(1)
    B = B.repeat_interleave(dim // B.shape[1], dim=1)                          # (B, D, N)
    C = C.repeat_interleave(dim // C.shape[1], dim=1)
    xf = x.to(dtype)
    decay = torch.exp(dt.unsqueeze(-1) * A.to(dtype))                          # (B, D, N)
    new_state = decay * state.to(dtype) + (dt * xf).unsqueeze(-1) * B          # (B, D, N)
    state.copy_(new_state)
    out = (new_state * C).sum(-1)                                              # (B, D)
    if D is not None:
        out = out + D.to(dtype) * xf
    if z is not None:
        out = out * F.silu(z.to(dtype))
    return out.to(x.dtype)
