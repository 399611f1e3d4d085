"""Mamba-1 selective scan (S6): the public op, its PyTorch reference, and the dispatch.

Per batch element b, channel d and state index n::

    dt_t  = softplus(delta_t + delta_bias)          (or delta_t + delta_bias)
    h_t   = exp(dt_t * A[d, n]) * h_{t-1} + dt_t * B_t[n] * u_t
    y_t   = sum_n C_t[n] * h_t[n] + D[d] * u_t
    out_t = y_t * silu(z_t)                          (when z is given)

Layouts follow mamba_ssm's ``selective_scan_fn``: ``u, delta, z (B, D, L)``, ``A (D, N)``,
``B, C (B, N, L)`` shared by all channels or ``(B, G, N, L)`` with channel d using group
``d // (D // G)``, ``D, delta_bias (D,)``. ``initial_state`` and the returned last state are
``(B, D, N)``. ``seq_idx (B, L)`` marks packed sequences: the state is reset where it changes.

Implementations: ``"reference"`` (this file; the specification, plain PyTorch, autograd),
``"cpu"`` (a fused Numba kernel with a hand-written backward that recomputes states chunk by
chunk, see ``selective_scan_cpu.py``), ``"triton"`` (GPU). ``"auto"`` picks by device.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ._checks import (check_finite, check_impl, check_nonempty, check_same_device, check_seq_idx,
                      check_shape, check_tensor)
from .packing import seq_idx_from_cu_seqlens

IMPLS = ("auto", "reference", "cpu", "triton")


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """Half-precision inputs are accumulated in float32; float64 stays float64."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def selective_scan_reference(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor, D: Optional[torch.Tensor] = None,
                             z: Optional[torch.Tensor] = None, delta_bias: Optional[torch.Tensor] = None,
                             delta_softplus: bool = False, initial_state: Optional[torch.Tensor] = None,
                             seq_idx: Optional[torch.Tensor] = None, chunk_size: int = 16
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The specification. Inputs are assumed validated; B, C are ``(B, G, N, L)``.

    Processes the sequence chunk by chunk, carrying the state; inside a chunk of T steps the
    states come from the closed form ``h_t = sum_{s<=t} exp(S_t - S_s) x_s + exp(S_t) h_0``
    with ``S`` the cumulative log-decay, evaluated pairwise (``(.., T, T, N)``) so that only
    non-positive numbers are ever exponentiated. Memory: one chunk's pairwise tensor at a time.

    Returns ``out (B, D, L)`` in the compute dtype and the last state ``(B, D, N)``.
    """
    dtype = compute_dtype(u)
    batch, dim, length = u.shape
    groups, n_state = B.shape[1], A.shape[1]
    dg = dim // groups

    u = u.to(dtype)
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    A_g = A.to(dtype).view(1, groups, dg, 1, n_state)                         # (1, G, Dg, 1, N)
    h = (initial_state.to(dtype) if initial_state is not None
         else u.new_zeros(batch, dim, n_state)).view(batch, groups, dg, n_state)  # (B, G, Dg, N)
    ys = []
    for c0 in range(0, length, chunk_size):
        c1 = min(c0 + chunk_size, length)
        T = c1 - c0
        u_c = u[:, :, c0:c1].reshape(batch, groups, dg, T)                       # (B, G, Dg, T)
        dt_c = delta[:, :, c0:c1].reshape(batch, groups, dg, T)                  # (B, G, Dg, T)
        B_c = B[..., c0:c1].to(dtype).transpose(-1, -2).unsqueeze(2)             # (B, G, 1, T, N)
        C_c = C[..., c0:c1].to(dtype)                                            # (B, G, N, T)
        log_decay = dt_c.unsqueeze(-1) * A_g                                     # (B, G, Dg, T, N)
        inputs = (dt_c * u_c).unsqueeze(-1) * B_c                                # (B, G, Dg, T, N)
        S = log_decay.cumsum(dim=-2)                                             # (B, G, Dg, T, N)
        pair = S.unsqueeze(-2) - S.unsqueeze(-3)                                 # (B, G, Dg, T, T, N)
        causal = torch.ones(T, T, dtype=torch.bool, device=u.device).tril()      # (T, T) t >= s
        carry = torch.ones(batch, T, dtype=torch.bool, device=u.device)          # (B, T)
        if seq_idx is not None:
            s_c = seq_idx[:, c0:c1]
            same = s_c.unsqueeze(-1) == s_c.unsqueeze(-2)                        # (B, T, T)
            mask = (causal & same).view(batch, 1, 1, T, T, 1)
            state_seq = seq_idx[:, max(c0 - 1, 0)]                               # (B,) owner of h
            carry = s_c == state_seq.unsqueeze(-1)                               # (B, T)
        else:
            mask = causal.view(1, 1, 1, T, T, 1)
        weights = torch.where(mask, pair, torch.full_like(pair, float("-inf"))).exp()
        h_all = torch.einsum("bgdtsn,bgdsn->bgdtn", weights, inputs)            # (B, G, Dg, T, N)
        h_carry = S.exp() * h.unsqueeze(-2)                                      # (B, G, Dg, T, N)
        h_all = h_all + h_carry * carry.view(batch, 1, 1, T, 1).to(dtype)
        ys.append(torch.einsum("bgdtn,bgnt->bgdt", h_all, C_c).reshape(batch, dim, T))
        h = h_all[..., -1, :]                                                    # (B, G, Dg, N)
    y = torch.cat(ys, dim=-1)                                                    # (B, D, L)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y, h.reshape(batch, dim, n_state)


def _validate(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx):
    check_tensor("u", u, ndim=3)
    batch, dim, length = u.shape
    check_nonempty("u", length)
    check_tensor("delta", delta, ndim=3)
    check_shape("delta", delta, (batch, dim, length))
    check_tensor("A", A, ndim=2)
    if A.shape[0] != dim:
        raise ValueError(f"A: expected shape ({dim}, N) to match u's {dim} channels, got {tuple(A.shape)}")
    if A.is_complex():
        raise TypeError("A: complex A is not supported; expected a real floating-point tensor")
    n_state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        check_tensor(name, t, ndim=(3, 4))
        groups = 1 if t.dim() == 3 else t.shape[1]
        check_shape(name, t, (batch, n_state, length) if t.dim() == 3 else (batch, groups, n_state, length))
        if dim % groups:
            raise ValueError(f"{name}: {groups} groups do not divide the {dim} channels of u")
    if B.dim() == 4 and C.dim() == 4 and B.shape[1] != C.shape[1]:
        raise ValueError(f"B and C must have the same number of groups, got {B.shape[1]} and {C.shape[1]}")
    if D is not None:
        check_tensor("D", D, ndim=1)
        check_shape("D", D, (dim,))
    if delta_bias is not None:
        check_tensor("delta_bias", delta_bias, ndim=1)
        check_shape("delta_bias", delta_bias, (dim,))
    if z is not None:
        check_tensor("z", z, ndim=3)
        check_shape("z", z, (batch, dim, length))
    if initial_state is not None:
        check_tensor("initial_state", initial_state, ndim=3)
        check_shape("initial_state", initial_state, (batch, dim, n_state))
    check_seq_idx(seq_idx, batch, length)
    check_same_device(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias,
                      initial_state=initial_state, seq_idx=seq_idx)
    check_finite("u", u)
    check_finite("delta", delta)


#: Sequences up to this length take the Triton kernel with all N states in one tile
#: (``triton_selective_scan_nd``); longer ones the kernel that loops over the states. On an H100
#: (results/raw/tune_selective_scan_nd_h100.json) the first was 1.5x faster forward+backward at
#: (256, 384, 197, 16), the Vision Mamba shape, and 1.3-1.4x slower at L >= 2048.
SHORT_SEQUENCE_MAX = 256


def _triton_available(device: torch.device) -> bool:
    """Triton runs CUDA tensors, and CPU tensors under its interpreter (TRITON_INTERPRET=1)."""
    import os
    if device.type != "cuda" and not (device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    try:
        from . import triton_selective_scan  # noqa: F401
    except ImportError:
        return False
    return True


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                   C: torch.Tensor, D: Optional[torch.Tensor] = None, z: Optional[torch.Tensor] = None,
                   delta_bias: Optional[torch.Tensor] = None, delta_softplus: bool = False,
                   return_last_state: bool = False, initial_state: Optional[torch.Tensor] = None,
                   seq_idx: Optional[torch.Tensor] = None, cu_seqlens: Optional[torch.Tensor] = None,
                   impl: str = "auto") -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan with mamba_ssm's semantics (see the module docstring for the math).

    Args:
        u, delta: ``(B, D, L)``. A: ``(D, N)``. B, C: ``(B, N, L)`` or ``(B, G, N, L)``.
        D, delta_bias: ``(D,)``. z: ``(B, D, L)`` gate, ``out = y * silu(z)``.
        initial_state: ``(B, D, N)`` state before the first step (receives gradients).
        seq_idx: ``(B, L)`` int ids of packed sequences; no state crosses a change of id.
            ``initial_state`` belongs to the sequence at position 0.
        cu_seqlens: cumulative lengths of sequences packed in a batch of one (alternative to seq_idx).
        impl: ``"auto"`` (Triton on CUDA, the Numba kernel on CPU), ``"reference"``, ``"cpu"``,
            ``"triton"``.

    Returns:
        ``out (B, D, L)`` in u's dtype, and with ``return_last_state`` also the state after the
        last step ``(B, D, N)`` in float32 (float64 for float64 inputs), differentiable.
    """
    check_impl(impl, IMPLS)
    if cu_seqlens is not None:
        if seq_idx is not None:
            raise ValueError("pass either seq_idx or cu_seqlens, not both")
        if isinstance(u, torch.Tensor) and u.dim() == 3 and u.shape[0] != 1:
            raise ValueError(f"cu_seqlens packs sequences in a batch of one; u has batch {u.shape[0]}")
        seq_idx = seq_idx_from_cu_seqlens(cu_seqlens, u.shape[-1]).to(u.device)
    _validate(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx)
    if B.dim() == 3:
        B = B.unsqueeze(1)
    if C.dim() == 3:
        C = C.unsqueeze(1)

    if impl == "auto":
        if u.device.type == "cuda":
            impl = "triton" if _triton_available(u.device) else "reference"
        else:
            impl = "cpu"
    if impl == "triton":
        if not _triton_available(u.device):
            raise NotImplementedError("impl='triton' needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1) "
                                      "and an importable triton")
        if u.device.type == "cuda" and u.shape[-1] <= SHORT_SEQUENCE_MAX:
            from .triton_selective_scan_nd import selective_scan_triton_nd as selective_scan_triton
        else:
            from .triton_selective_scan import selective_scan_triton
        out, last = selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                          initial_state, seq_idx)
    elif impl == "cpu":
        if u.device.type != "cpu":
            raise ValueError(f"impl='cpu' needs CPU tensors, got {u.device}")
        from .selective_scan_cpu import selective_scan_cpu
        out, last = selective_scan_cpu(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                       initial_state, seq_idx)
    else:
        out, last = selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                             initial_state, seq_idx)
    out = out.to(u.dtype)
    return (out, last) if return_last_state else out
