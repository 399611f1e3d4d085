"""Single-token decoding steps of Mamba-1 and Mamba-2 as one fused Triton kernel each.

The PyTorch reference of a decoding step (``state_update.selective_state_update``,
``ssd.ssd_state_update``) launches about ten small kernels (bias, softplus, exp, the state
update, the contraction with C, D and the gate), which dominates the latency of generating one
token at small batch. Here each step is one launch: a program owns a block of channels (Mamba-1)
or of one head's channels (Mamba-2) of one sequence, reads its state tile once, writes the new
state in place and the output. Arithmetic is in float32; the state keeps its own dtype.

Runs on CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1`` (for tests). Inputs are
validated by the public functions that dispatch here.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from .triton_selective_scan import _softplus

__all__ = ["selective_state_update_triton", "ssd_state_update_triton"]


@triton.jit
def _mamba1_step_kernel(state_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr,
                        dim, dg,
                        s_sb, s_sd, s_sn, s_xb, s_xd, s_tb, s_td, s_ad, s_an,
                        s_bb, s_bg, s_bn, s_cb, s_cg, s_cn, s_zb, s_zd, s_ob, s_od,
                        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                        SOFTPLUS: tl.constexpr, N: tl.constexpr, BLOCK_D: tl.constexpr,
                        BLOCK_N: tl.constexpr):
    b = tl.program_id(1).to(tl.int64)
    offs_d = (tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask = mask_d[:, None] & (offs_n < N)[None, :]
    grp = offs_d // dg                                                   # (BD,) group of each channel
    x = tl.load(x_ptr + b * s_xb + offs_d * s_xd, mask=mask_d, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + b * s_tb + offs_d * s_td, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if SOFTPLUS:
        dt = _softplus(dt)
    A = tl.load(A_ptr + offs_d[:, None] * s_ad + offs_n[None, :] * s_an, mask=mask, other=0.0).to(tl.float32)
    Bm = tl.load(B_ptr + b * s_bb + grp[:, None] * s_bg + offs_n[None, :] * s_bn, mask=mask, other=0.0).to(tl.float32)
    Cm = tl.load(C_ptr + b * s_cb + grp[:, None] * s_cg + offs_n[None, :] * s_cn, mask=mask, other=0.0).to(tl.float32)
    s_off = b * s_sb + offs_d[:, None] * s_sd + offs_n[None, :] * s_sn
    h = tl.load(state_ptr + s_off, mask=mask, other=0.0).to(tl.float32)
    h = tl.exp(dt[:, None] * A) * h + (dt * x)[:, None] * Bm          # (BD, BN)
    tl.store(state_ptr + s_off, h.to(state_ptr.dtype.element_ty), mask=mask)
    y = tl.sum(h * Cm, axis=1)                                          # (BD,)
    if HAS_D:
        y += tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32) * x
    if HAS_Z:
        zz = tl.load(z_ptr + b * s_zb + offs_d * s_zd, mask=mask_d, other=0.0).to(tl.float32)
        y = y * zz * tl.sigmoid(zz)
    tl.store(out_ptr + b * s_ob + offs_d * s_od, y.to(out_ptr.dtype.element_ty), mask=mask_d)


def selective_state_update_triton(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                                  B: torch.Tensor, C: torch.Tensor, D: Optional[torch.Tensor],
                                  z: Optional[torch.Tensor], dt_bias: Optional[torch.Tensor],
                                  dt_softplus: bool) -> torch.Tensor:
    """Validated inputs: ``state (B, D, N)`` (updated in place), x/dt/z ``(B, D)``, A ``(D, N)``,
    B/C ``(B, G, N)``, D/dt_bias ``(D,)``. Returns ``out (B, D)`` in x's dtype."""
    batch, dim, n_state = state.shape
    groups = B.shape[1]
    out = torch.empty(batch, dim, device=x.device, dtype=x.dtype)
    block_n = triton.next_power_of_2(n_state)
    block_d = max(1, min(triton.next_power_of_2(dim), 4096 // block_n, 64))
    z_ = z if z is not None else x
    grid = (triton.cdiv(dim, block_d), batch)
    _mamba1_step_kernel[grid](
        state, x, dt, A, B, C, D if D is not None else A, z_, dt_bias if dt_bias is not None else A, out,
        dim, dim // groups, *state.stride(), *x.stride(), *dt.stride(), *A.stride(), *B.stride(), *C.stride(),
        *z_.stride(), *out.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None, SOFTPLUS=bool(dt_softplus),
        N=n_state, BLOCK_D=block_d, BLOCK_N=block_n, num_warps=4)
    return out


@triton.jit
def _ssd_step_kernel(state_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr,
                     P, heads_per_group, dt_min, dt_max,
                     s_sb, s_sh, s_sp, s_sn, s_xb, s_xh, s_xp, s_tb, s_th,
                     s_bb, s_bg, s_bn, s_cb, s_cg, s_cn, s_zb, s_zh, s_zp, s_ob, s_oh, s_op, s_dh, s_dp,
                     HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                     SOFTPLUS: tl.constexpr, HAS_LIMIT: tl.constexpr, N: tl.constexpr,
                     BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(1).to(tl.int64)
    h = tl.program_id(2).to(tl.int64)
    offs_p = (tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)).to(tl.int64)
    offs_n = tl.arange(0, BLOCK_N)
    mask_p = offs_p < P
    mask_n = offs_n < N
    mask = mask_p[:, None] & mask_n[None, :]
    g = h // heads_per_group
    dt = tl.load(dt_ptr + b * s_tb + h * s_th).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + h).to(tl.float32)
    if SOFTPLUS:
        dt = _softplus(dt)
    if HAS_LIMIT:
        dt = tl.minimum(tl.maximum(dt, dt_min), dt_max)
    a = tl.exp(dt * tl.load(A_ptr + h).to(tl.float32))
    x = tl.load(x_ptr + b * s_xb + h * s_xh + offs_p * s_xp, mask=mask_p, other=0.0).to(tl.float32)
    Bv = tl.load(B_ptr + b * s_bb + g * s_bg + offs_n * s_bn, mask=mask_n, other=0.0).to(tl.float32)
    Cv = tl.load(C_ptr + b * s_cb + g * s_cg + offs_n * s_cn, mask=mask_n, other=0.0).to(tl.float32)
    s_off = b * s_sb + h * s_sh + offs_p[:, None] * s_sp + offs_n[None, :] * s_sn
    st = tl.load(state_ptr + s_off, mask=mask, other=0.0).to(tl.float32)
    st = a * st + (dt * x)[:, None] * Bv[None, :]                      # (BP, BN)
    tl.store(state_ptr + s_off, st.to(state_ptr.dtype.element_ty), mask=mask)
    y = tl.sum(st * Cv[None, :], axis=1)                                # (BP,)
    if HAS_D:
        y += tl.load(D_ptr + h * s_dh + offs_p * s_dp, mask=mask_p, other=0.0).to(tl.float32) * x
    if HAS_Z:
        zz = tl.load(z_ptr + b * s_zb + h * s_zh + offs_p * s_zp, mask=mask_p, other=0.0).to(tl.float32)
        y = y * zz * tl.sigmoid(zz)
    tl.store(out_ptr + b * s_ob + h * s_oh + offs_p * s_op, y.to(out_ptr.dtype.element_ty), mask=mask_p)


def ssd_state_update_triton(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                            B: torch.Tensor, C: torch.Tensor, D: Optional[torch.Tensor], z: Optional[torch.Tensor],
                            dt_bias: Optional[torch.Tensor], dt_softplus: bool,
                            dt_limit: tuple[float, float]) -> torch.Tensor:
    """Validated inputs: ``state (b, H, P, N)`` (updated in place), x/z ``(b, H, P)``, dt ``(b, H)``,
    A/dt_bias ``(H,)``, B/C ``(b, G, N)``, D ``(H,)`` or ``(H, P)``. Returns ``out (b, H, P)``."""
    batch, H, P, N = state.shape
    G = B.shape[1]
    out = torch.empty(batch, H, P, device=x.device, dtype=x.dtype)
    block_n = triton.next_power_of_2(N)
    block_p = max(1, min(triton.next_power_of_2(P), 8192 // block_n))
    z_ = z if z is not None else x
    if D is None:
        D_, s_D = A, (0, 0)
    else:
        D_, s_D = D, (D.stride(0), D.stride(1) if D.dim() == 2 else 0)
    has_limit = (float(dt_limit[0]), float(dt_limit[1])) != (0.0, float("inf"))
    grid = (triton.cdiv(P, block_p), batch, H)
    _ssd_step_kernel[grid](
        state, x, dt, A, B, C, D_, z_, dt_bias if dt_bias is not None else A, out,
        P, H // G, float(dt_limit[0]), float(dt_limit[1]),
        *state.stride(), *x.stride(), *dt.stride(), *B.stride(), *C.stride(), *z_.stride(), *out.stride(), *s_D,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None, SOFTPLUS=bool(dt_softplus),
        HAS_LIMIT=has_limit, N=N, BLOCK_P=block_p, BLOCK_N=block_n, num_warps=4)
    return out
