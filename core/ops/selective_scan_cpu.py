"""Fused CPU selective scan: Numba kernels for the forward and the backward.

The CPU counterpart of the GPU kernel: one pass over ``u, dt, B, C`` per channel with the
state ``h (N,)`` in registers, discretisation and the D skip fused. The per-element work around
the scan (dt = softplus(delta + bias), the SiLU(z) gate and their gradients) runs as vectorised
torch ops before and after the kernels: as scalar libm calls inside them it cost as much as the
scan itself at N = 16. Memory is
``O(B D L)``, never ``O(B D L N)``: the forward keeps the state only every ``CHECKPOINT`` steps,
and the backward recomputes each checkpointed chunk's states before walking it in reverse.

Parallel over (batch, channel) in the forward. In the backward ``dB`` and ``dC`` are sums over
channels, so the channels are split in blocks, each block writes its own partial sums, and the
blocks are added at the end in float64: deterministic, no atomics.

The float32 kernels use ``fast_exp`` (a polynomial exp that vectorises; relative error 2e-7)
for the decays; float64 inputs use ``math.exp``.

Numba compiles each kernel once per dtype on first use (about a second; cached on disk).
"""
from __future__ import annotations

import math
from typing import Optional

import numba
import numpy as np
import torch
import torch.nn.functional as F
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

CHECKPOINT = 64
# Reassociation only (no NaN/Inf assumptions): lets LLVM vectorise the sums over the state.
# error_model="numpy" on the kernels drops Python's division-by-zero checks for the same reason.
FASTMATH = {"reassoc", "contract", "arcp"}


@intrinsic
def _bits_to_float32(typingctx, bits):
    """Reinterpret an int32 as a float32 (a free bitcast, so loops using it still vectorise)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return sig, codegen


def fast_exp(x):
    """exp(x). float32: a branch-free range reduction + degree-6 polynomial (max relative error
    about 2e-7, as float32's own) that LLVM can vectorise, unlike a call to libm's expf.
    float64: math.exp."""
    return math.exp(x)


@overload(fast_exp, inline="always")
def _fast_exp_impl(x):
    if x == types.float32:
        def impl(x):
            tiny = x < np.float32(-87.0)                               # exp(-87) ~ 1.6e-38: flush to 0
            x = max(x, np.float32(-87.0))
            k = math.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))
            r = x - k * np.float32(0.693359375) + k * np.float32(2.12194440e-4)   # x - k ln2 (two parts)
            p = np.float32(1.0 / 720.0)
            p = p * r + np.float32(1.0 / 120.0)
            p = p * r + np.float32(1.0 / 24.0)
            p = p * r + np.float32(1.0 / 6.0)
            p = p * r + np.float32(0.5)
            p = p * r + np.float32(1.0)
            p = p * r + np.float32(1.0)
            y = p * _bits_to_float32((np.int32(k) + np.int32(127)) << np.int32(23))
            return np.float32(0.0) if tiny else y
        return impl
    return lambda x: math.exp(x)


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _forward_kernel(u, delta, A, Bm, Cm, Dv, h0, seq, has_D, has_h0, has_seq, out, last, ckpt):
    # u, delta (already biased and softplus'd), out: (Bt, D, L); A: (D, N); Bm, Cm: (Bt, G, L, N);
    # last: (Bt, D, N); ckpt: (Bt, D, nchunks, N) state *before* the first step of each chunk.
    # out is C.h + D u, before any gate (the caller applies SiLU(z) with vectorised torch ops).
    batch, dim, length = u.shape
    groups = Bm.shape[1]
    n_state = A.shape[1]
    dg = dim // groups
    for i in numba.prange(batch * dim):
        b = i // dim
        d = i % dim
        g = d // dg
        h = np.zeros(n_state, dtype=u.dtype)
        e = np.empty(n_state, dtype=u.dtype)
        zero = np.zeros(1, dtype=u.dtype)[0]    # a literal 0.0 would make the sums float64
        if has_h0:
            for n in range(n_state):
                h[n] = h0[b, d, n]
        for t in range(length):
            if t % CHECKPOINT == 0:
                for n in range(n_state):
                    ckpt[b, d, t // CHECKPOINT, n] = h[n]
            dt = delta[b, d, t]
            if has_seq and t > 0 and seq[b, t] != seq[b, t - 1]:
                for n in range(n_state):
                    h[n] = 0.0
            ut = u[b, d, t]
            dtu = dt * ut
            A_row = A[d]
            B_row = Bm[b, g, t]
            C_row = Cm[b, g, t]
            for n in range(n_state):            # simple loops over the state vectorise
                e[n] = fast_exp(dt * A_row[n])
            for n in range(n_state):
                h[n] = e[n] * h[n] + dtu * B_row[n]
            acc = zero
            for n in range(n_state):
                acc += h[n] * C_row[n]
            if has_D:
                acc += Dv[d] * ut
            out[b, d, t] = acc
        for n in range(n_state):
            last[b, d, n] = h[n]


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _backward_kernel(u, delta, A, Bm, Cm, Dv, seq, has_D, has_seq, has_dlast, ckpt, gy_all, dlast, n_blocks,
                     du, ddelta, dh0, dA_p, dD_p, dB_p, dC_p):
    # delta: the dt the forward used (biased, softplus'd); gy_all: the gradient w.r.t. the ungated
    # output C.h + D u; ddelta: the gradient w.r.t. that dt (the caller chains softplus and bias).
    # Partial sums: dA_p (Bt, D, N), dD_p (Bt, D) in float64; dB_p / dC_p
    # (Bt, n_blocks, G, L, N) in the compute dtype, summed over blocks in float64.
    batch, dim, length = u.shape
    groups = Bm.shape[1]
    n_state = A.shape[1]
    dg = dim // groups
    block = (dim + n_blocks - 1) // n_blocks
    n_chunks = (length + CHECKPOINT - 1) // CHECKPOINT
    for j in numba.prange(batch * n_blocks):
        b = j // n_blocks
        p = j % n_blocks
        hs = np.empty((CHECKPOINT, n_state), dtype=u.dtype)
        decay = np.empty((CHECKPOINT, n_state), dtype=u.dtype)
        h = np.empty(n_state, dtype=u.dtype)
        dh = np.empty(n_state, dtype=u.dtype)
        dA_loc = np.empty(n_state, dtype=np.float64)
        dA_chunk = np.empty(n_state, dtype=u.dtype)   # float32 inside a chunk keeps the loop vectorised
        zero = np.zeros(1, dtype=u.dtype)[0]          # likewise the per-step sums below
        one = np.ones(1, dtype=u.dtype)[0]
        for d in range(p * block, min(dim, (p + 1) * block)):
            g = d // dg
            for n in range(n_state):
                dh[n] = dlast[b, d, n] if has_dlast else 0.0
                dA_loc[n] = 0.0
            for c in range(n_chunks - 1, -1, -1):
                t0 = c * CHECKPOINT
                t1 = min(length, t0 + CHECKPOINT)
                # Recompute the chunk: hs[k] = h after step t0 + k, decay[k] = a (0 at a reset).
                for n in range(n_state):
                    h[n] = ckpt[b, d, c, n]
                for t in range(t0, t1):
                    k = t - t0
                    dt = delta[b, d, t]
                    keep = zero if (has_seq and t > 0 and seq[b, t] != seq[b, t - 1]) else one
                    dtu = dt * u[b, d, t]
                    A_row = A[d]
                    B_row = Bm[b, g, t]
                    decay_row = decay[k]
                    hs_row = hs[k]
                    for n in range(n_state):
                        decay_row[n] = fast_exp(dt * A_row[n]) * keep
                    for n in range(n_state):
                        h[n] = decay_row[n] * h[n] + dtu * B_row[n]
                        hs_row[n] = h[n]
                # Walk it backwards. a_t h_{t-1} = h_t - x_t, so no shifted state is needed and
                # the inner loop has no branch (it vectorises over the state).
                for n in range(n_state):
                    dA_chunk[n] = 0.0
                for t in range(t1 - 1, t0 - 1, -1):
                    k = t - t0
                    dt = delta[b, d, t]
                    ut = u[b, d, t]
                    dtu = dt * ut
                    gy = gy_all[b, d, t]
                    du_t = zero
                    if has_D:
                        dD_p[b, d] += gy * ut
                        du_t = gy * Dv[d]
                    ddt = zero
                    dB_row = dB_p[b, p, g, t]
                    dC_row = dC_p[b, p, g, t]
                    B_row = Bm[b, g, t]
                    C_row = Cm[b, g, t]
                    for n in range(n_state):
                        hn = hs[k, n]
                        bn = B_row[n]
                        gn = dh[n] + gy * C_row[n]                # dL/dh_t, complete now
                        dC_row[n] += gy * hn
                        dB_row[n] += gn * dtu
                        du_t += gn * dt * bn
                        decayed = hn - dtu * bn                   # a_t h_{t-1}
                        ddt += gn * (A[d, n] * decayed + ut * bn)
                        dA_chunk[n] += gn * dt * decayed
                        dh[n] = gn * decay[k, n]                  # dL/dh_{t-1} from step t
                    du[b, d, t] = du_t
                    ddelta[b, d, t] = ddt
                for n in range(n_state):
                    dA_loc[n] += dA_chunk[n]
            for n in range(n_state):
                dh0[b, d, n] = dh[n]
                dA_p[b, d, n] = dA_loc[n]


def _np(t: Optional[torch.Tensor], dtype: torch.dtype, ndim: int = 1) -> np.ndarray:
    """Contiguous numpy view in ``dtype``; an absent optional becomes a 1-element placeholder of
    the same rank, so that Numba compiles one signature per dtype."""
    if t is None:
        return np.zeros((1,) * ndim, dtype=np.float64 if dtype == torch.float64 else np.float32)
    return t.detach().to(dtype).contiguous().numpy()


def _compute_dtype(u: torch.Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _grouped_time_last(t: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """``(Bt, G, N, L)`` -> contiguous ``(Bt, G, L, N)`` numpy (the kernels read one state row per step)."""
    return t.detach().to(dtype).transpose(-1, -2).contiguous().numpy()


def _discretisation_step(delta: torch.Tensor, delta_bias: Optional[torch.Tensor], softplus: bool,
                         dtype: torch.dtype, with_slope: bool = False
                         ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(dt, slope)``: ``dt = softplus(delta + bias)`` (or ``delta + bias``) contiguous
    ``(Bt, D, L)`` in ``dtype``, and with ``with_slope`` its derivative ``sigmoid(delta + bias)``
    (``None`` without softplus). Computed with torch's vectorised ops: inside the kernels these
    were scalar transcendental calls on every step, as costly as the whole scan over a 16-state row."""
    raw = delta.detach().to(dtype)
    if delta_bias is not None:
        raw = raw + delta_bias.detach().to(dtype).unsqueeze(-1)
    if not softplus:
        return raw.contiguous(), None
    return F.softplus(raw).contiguous(), torch.sigmoid(raw) if with_slope else None


def _seq_np(seq_idx: Optional[torch.Tensor]) -> np.ndarray:
    if seq_idx is None:
        return np.zeros((1, 1), dtype=np.int64)
    return seq_idx.detach().to(torch.int64).contiguous().numpy()


# The kernels are registered as torch.library custom ops, so torch.compile sees them as single
# graph nodes (with shapes from the fake implementations) instead of breaking the graph.
@torch.library.custom_op("mambakit::selective_scan_cpu_fwd", mutates_args=(), device_types="cpu")
def _fwd_op(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
            D: Optional[torch.Tensor], z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
            initial_state: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor], softplus: bool
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(out (Bt, D, L), last (Bt, D, N), ckpt (Bt, D, n_chunks, N), ypre (Bt, D, L or 1))``."""
    dtype = _compute_dtype(u)
    batch, dim, length = u.shape
    n_state = A.shape[1]
    out = torch.empty(batch, dim, length, dtype=dtype)
    last = torch.empty(batch, dim, n_state, dtype=dtype)
    ckpt = torch.empty(batch, dim, (length + CHECKPOINT - 1) // CHECKPOINT, n_state, dtype=dtype)
    dt, _ = _discretisation_step(delta, delta_bias, softplus, dtype)
    _forward_kernel(_np(u, dtype), dt.numpy(), _np(A, dtype), _grouped_time_last(B, dtype),
                    _grouped_time_last(C, dtype), _np(D, dtype), _np(initial_state, dtype, 3), _seq_np(seq_idx),
                    D is not None, initial_state is not None, seq_idx is not None,
                    out.numpy(), last.numpy(), ckpt.numpy())
    del dt
    if z is None:
        return out, last, ckpt, torch.empty(batch, dim, 1, dtype=dtype)
    gated = F.silu(z.to(dtype)).contiguous()   # a fresh tensor: the product is taken in place
    return gated.mul_(out), last, ckpt, out


@_fwd_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, softplus):
    dtype = _compute_dtype(u)
    batch, dim, length = u.shape
    n_state = A.shape[1]
    return (u.new_empty(batch, dim, length, dtype=dtype), u.new_empty(batch, dim, n_state, dtype=dtype),
            u.new_empty(batch, dim, (length + CHECKPOINT - 1) // CHECKPOINT, n_state, dtype=dtype),
            u.new_empty(batch, dim, length if z is not None else 1, dtype=dtype))


@torch.library.custom_op("mambakit::selective_scan_cpu_bwd", mutates_args=(), device_types="cpu")
def _bwd_op(dout: torch.Tensor, dlast: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
            B: torch.Tensor, C: torch.Tensor, D: Optional[torch.Tensor], z: Optional[torch.Tensor],
            delta_bias: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor], ckpt: torch.Tensor,
            ypre: torch.Tensor, softplus: bool) -> list[torch.Tensor]:
    """``[du, ddelta, dA, dB, dC, dD, dz, dbias, dh0]`` in the compute dtype (float64 for the
    reductions); absent optionals get empty tensors."""
    dtype = _compute_dtype(u)
    batch, dim, length = u.shape
    groups, n_state = B.shape[1], A.shape[1]
    n_blocks = max(1, min(dim, 2 * numba.get_num_threads() // max(1, batch)))
    f64 = torch.float64
    empty = torch.empty(0, dtype=dtype)
    dt, slope = _discretisation_step(delta, delta_bias, softplus, dtype, with_slope=True)
    gy, dz = dout.to(dtype), empty
    if z is not None:      # out = ypre * silu(z): the gate's gradients, vectorised, in place on fresh tensors
        zz = z.to(dtype)
        sig = torch.sigmoid(zz).contiguous()
        dz = (1.0 - sig).mul_(zz).add_(1.0).mul_(sig).mul_(ypre).mul_(gy)          # g ypre sig (1 + z (1 - sig))
        gy = sig.mul_(zz).mul_(gy)                                                    # g z sig
        del zz, sig
    du = torch.empty(batch, dim, length, dtype=dtype)
    ddt = torch.empty_like(du)
    dh0 = torch.empty(batch, dim, n_state, dtype=f64)
    dA_p = torch.zeros(batch, dim, n_state, dtype=f64)
    dD_p = torch.zeros(batch, dim, dtype=f64)
    dB_p = torch.zeros(batch, n_blocks, groups, length, n_state, dtype=dtype)
    dC_p = torch.zeros_like(dB_p)
    _backward_kernel(_np(u, dtype), dt.numpy(), _np(A, dtype), _grouped_time_last(B, dtype),
                     _grouped_time_last(C, dtype), _np(D, dtype), _seq_np(seq_idx), D is not None,
                     seq_idx is not None, True, ckpt.contiguous().numpy(), gy.contiguous().numpy(),
                     _np(dlast, dtype, 3), n_blocks, du.numpy(), ddt.numpy(), dh0.numpy(), dA_p.numpy(),
                     dD_p.numpy(), dB_p.numpy(), dC_p.numpy())
    ddelta = ddt.mul_(slope) if softplus else ddt                                # softplus'(x) = sigmoid(x)
    return [du, ddelta, dA_p.sum(0), dB_p.sum(1, dtype=f64).transpose(-1, -2).contiguous(),
            dC_p.sum(1, dtype=f64).transpose(-1, -2).contiguous(), dD_p.sum(0) if D is not None else empty,
            dz, ddelta.sum((0, 2), dtype=f64) if delta_bias is not None else empty, dh0]


@_bwd_op.register_fake
def _(dout, dlast, u, delta, A, B, C, D, z, delta_bias, seq_idx, ckpt, ypre, softplus):
    dtype = _compute_dtype(u)
    batch, dim, length = u.shape
    groups, n_state = B.shape[1], A.shape[1]
    f64 = torch.float64
    empty = u.new_empty(0, dtype=dtype)
    return [u.new_empty(batch, dim, length, dtype=dtype), u.new_empty(batch, dim, length, dtype=dtype),
            u.new_empty(dim, n_state, dtype=f64), u.new_empty(batch, groups, n_state, length, dtype=f64),
            u.new_empty(batch, groups, n_state, length, dtype=f64),
            u.new_empty(dim, dtype=f64) if D is not None else empty,
            u.new_empty(batch, dim, length, dtype=dtype) if z is not None else empty,
            u.new_empty(dim, dtype=f64) if delta_bias is not None else empty,
            u.new_empty(batch, dim, n_state, dtype=f64)]


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, softplus = inputs
    _, _, ckpt, ypre = output
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, seq_idx, ckpt, ypre)
    ctx.softplus = softplus
    ctx.h0_dtype = initial_state.dtype if initial_state is not None else None


def _backward(ctx, dout, dlast, _dckpt, _dypre):
    u, delta, A, B, C, D, z, delta_bias, seq_idx, ckpt, ypre = ctx.saved_tensors
    if dlast is None:
        dlast = torch.zeros(u.shape[0], u.shape[1], A.shape[1], dtype=_compute_dtype(u))
    if dout is None:
        dout = torch.zeros(u.shape, dtype=_compute_dtype(u))
    du, ddelta, dA, dB, dC, dD, dz, dbias, dh0 = _bwd_op(dout, dlast, u, delta, A, B, C, D, z, delta_bias,
                                                        seq_idx, ckpt, ypre, ctx.softplus)
    return (du.to(u.dtype), ddelta.to(delta.dtype), dA.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype),
            dD.to(D.dtype) if D is not None else None, dz.to(z.dtype) if z is not None else None,
            dbias.to(delta_bias.dtype) if delta_bias is not None else None,
            dh0.to(ctx.h0_dtype) if ctx.h0_dtype is not None else None, None, None)


_fwd_op.register_autograd(_backward, setup_context=_setup_context)


def selective_scan_cpu(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                       C: torch.Tensor, D: Optional[torch.Tensor], z: Optional[torch.Tensor],
                       delta_bias: Optional[torch.Tensor], delta_softplus: bool,
                       initial_state: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated inputs in, ``(out (B, D, L), last_state (B, D, N))`` in the compute dtype out.

    B and C must be grouped ``(B, G, N, L)``. Differentiable in every floating input.
    """
    out, last, _, _ = _fwd_op(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, bool(delta_softplus))
    return out, last
