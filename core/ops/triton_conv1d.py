"""Fused Triton depthwise causal conv1d (+ SiLU), forward and backward.

The eager op is a sum of ``W`` shifted, scaled copies, a bias add and a SiLU: about ten kernels
forward and twenty backward, each a full pass over the ``(B, D, L)`` activations. Here one
program owns a ``(BLOCK_D, BLOCK_L)`` tile and makes one pass: it reads the tile and the ``W - 1``
positions before it (from ``initial_state`` before position 0), accumulates in float32, applies
the SiLU and writes the output in x's dtype. Inputs may have any strides (Mamba-1 passes
time-contiguous ``(B, D, L)``, Mamba-2 a transposed ``(B, L, D)`` buffer).

The backward recomputes the pre-activation instead of saving it. Program tiles cover the
positions ``q`` of the padded input ``[-(W-1), L)``: ``dx[q] = sum_j w[W-1-j] g[q+j]`` with
``g = dout * silu'(pre)``, where positions ``q < 0`` are the gradient of ``initial_state``; each
program also writes its partial ``dweight``/``dbias`` sums, which are added in a fixed order
(deterministic, no atomics). Packed sequences (``seq_idx``) mask every tap that crosses a change
of id, in both directions.

Runs on CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1`` (for tests).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

#: Widest kernel the fused path takes (Mamba uses 4); wider ones use the reference.
MAX_WIDTH = 8


@triton.jit
def _seq_ids(seq_ptr, b, pos, L, ssb, ssl, first, HAS_SEQ: tl.constexpr):
    """Sequence id of each position (``first``, the id at position 0, before it)."""
    ids = pos * 0
    if HAS_SEQ:
        ids = tl.load(seq_ptr + b * ssb + pos * ssl, mask=(pos >= 0) & (pos < L), other=first).to(tl.int64)
    return ids


@triton.jit
def _tap_input(x_ptr, h0_ptr, b, offs_d, pos, mask_d, L, sxb, sxd, sxl, shb, shd, shl,
               W: tl.constexpr, HAS_H0: tl.constexpr):
    """``x`` at positions ``pos`` (BLOCK_L,) for channels ``offs_d``: the input for ``0 <= pos < L``,
    ``initial_state[..., pos + W - 1]`` for ``pos < 0`` (zero without one), float32."""
    inside = (pos >= 0) & (pos < L)
    val = tl.load(x_ptr + b * sxb + offs_d[:, None] * sxd + pos[None, :] * sxl,
                  mask=mask_d[:, None] & inside[None, :], other=0.0).to(tl.float32)
    if HAS_H0:
        before = (pos < 0) & (pos >= 1 - W)
        val += tl.load(h0_ptr + b * shb + offs_d[:, None] * shd + (pos + W - 1)[None, :] * shl,
                       mask=mask_d[:, None] & before[None, :], other=0.0).to(tl.float32)
    return val


@triton.jit
def _pre_activation(x_ptr, h0_ptr, w_ptr, bias_ptr, seq_ptr, b, offs_d, t, mask_d, L, first,
                    sxb, sxd, sxl, shb, shd, shl, swd, swk, ssb, ssl,
                    W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr, HAS_SEQ: tl.constexpr,
                    BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
    """``bias + sum_k w[k] x[t - (W-1) + k]`` (taps of another packed sequence skipped), float32
    ``(BLOCK_D, BLOCK_L)``."""
    acc = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[:, None]
    sid_t = _seq_ids(seq_ptr, b, t, L, ssb, ssl, first, HAS_SEQ)
    for k in tl.static_range(W):
        pos = t - (W - 1) + k
        tap = _tap_input(x_ptr, h0_ptr, b, offs_d, pos, mask_d, L, sxb, sxd, sxl, shb, shd, shl, W, HAS_H0)
        if HAS_SEQ:
            same = _seq_ids(seq_ptr, b, pos, L, ssb, ssl, first, HAS_SEQ) == sid_t
            tap = tl.where(same[None, :], tap, 0.0)
        w_k = tl.load(w_ptr + offs_d * swd + k * swk, mask=mask_d, other=0.0).to(tl.float32)
        acc += w_k[:, None] * tap
    return acc


@triton.jit
def _conv1d_fwd_kernel(x_ptr, w_ptr, bias_ptr, h0_ptr, seq_ptr, out_ptr, L, D,
                sxb, sxd, sxl, swd, swk, shb, shd, shl, ssb, ssl, sob, sod, sol,
                W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr, HAS_SEQ: tl.constexpr,
                SILU: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
    pid_l = tl.program_id(0)
    b = tl.program_id(2).to(tl.int64)
    offs_d = (tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    t = (pid_l * BLOCK_L + tl.arange(0, BLOCK_L)).to(tl.int64)
    mask_d = offs_d < D
    first = 0
    if HAS_SEQ:
        first = tl.load(seq_ptr + b * ssb)
    acc = _pre_activation(x_ptr, h0_ptr, w_ptr, bias_ptr, seq_ptr, b, offs_d, t, mask_d, L, first,
                          sxb, sxd, sxl, shb, shd, shl, swd, swk, ssb, ssl, W, HAS_BIAS, HAS_H0, HAS_SEQ,
                          BLOCK_D, BLOCK_L)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    tl.store(out_ptr + b * sob + offs_d[:, None] * sod + t[None, :] * sol, acc.to(out_ptr.dtype.element_ty),
             mask=mask_d[:, None] & (t < L)[None, :])


@triton.jit
def _conv1d_bwd_kernel(x_ptr, w_ptr, bias_ptr, h0_ptr, seq_ptr, dout_ptr, dx_ptr, dh0_ptr, dw_ptr, db_ptr,
                L, D, n_tiles,
                sxb, sxd, sxl, swd, swk, shb, shd, shl, ssb, ssl, sgb, sgd, sgl,
                W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr, HAS_SEQ: tl.constexpr,
                SILU: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
    # dx, dh0 are contiguous (B, D, L) / (B, D, W-1); dw/db partials (B, n_tiles, D, W) / (B, n_tiles, D).
    pid_l = tl.program_id(0)
    b = tl.program_id(2).to(tl.int64)
    offs_d = (tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    q = (pid_l * BLOCK_L + tl.arange(0, BLOCK_L)).to(tl.int64) - (W - 1)   # padded positions
    mask_d = offs_d < D
    first = 0
    if HAS_SEQ:
        first = tl.load(seq_ptr + b * ssb)
    sid_q = _seq_ids(seq_ptr, b, q, L, ssb, ssl, first, HAS_SEQ)
    dx = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
    part = (b * n_tiles + pid_l) * D
    for j in tl.static_range(W):
        t = q + j                                                             # output positions
        valid = (t >= 0) & (t < L)
        g = tl.load(dout_ptr + b * sgb + offs_d[:, None] * sgd + t[None, :] * sgl,
                    mask=mask_d[:, None] & valid[None, :], other=0.0).to(tl.float32)
        if SILU:
            pre = _pre_activation(x_ptr, h0_ptr, w_ptr, bias_ptr, seq_ptr, b, offs_d, t, mask_d, L, first,
                                  sxb, sxd, sxl, shb, shd, shl, swd, swk, ssb, ssl,
                                  W, HAS_BIAS, HAS_H0, HAS_SEQ, BLOCK_D, BLOCK_L)
            sig = tl.sigmoid(pre)
            g = g * sig * (1.0 + pre * (1.0 - sig))
        if j == 0:
            # Each output position t = q in [0, L) is visited once here: weight and bias sums.
            if HAS_BIAS:
                tl.store(db_ptr + part + offs_d, tl.sum(g, axis=1), mask=mask_d)
            for k in tl.static_range(W):
                pos = q - (W - 1) + k
                tap = _tap_input(x_ptr, h0_ptr, b, offs_d, pos, mask_d, L, sxb, sxd, sxl, shb, shd, shl,
                                 W, HAS_H0)
                if HAS_SEQ:
                    same = _seq_ids(seq_ptr, b, pos, L, ssb, ssl, first, HAS_SEQ) == sid_q
                    tap = tl.where(same[None, :], tap, 0.0)
                tl.store(dw_ptr + (part + offs_d) * W + k, tl.sum(g * tap, axis=1), mask=mask_d)
        contrib = g
        if HAS_SEQ:
            same_t = _seq_ids(seq_ptr, b, t, L, ssb, ssl, first, HAS_SEQ) == sid_q
            contrib = tl.where(same_t[None, :], contrib, 0.0)
        w_k = tl.load(w_ptr + offs_d * swd + (W - 1 - j) * swk, mask=mask_d, other=0.0).to(tl.float32)
        dx += w_k[:, None] * contrib
    m_in = mask_d[:, None] & ((q >= 0) & (q < L))[None, :]
    tl.store(dx_ptr + b * D * L + offs_d[:, None] * L + q[None, :], dx.to(dx_ptr.dtype.element_ty), mask=m_in)
    if HAS_H0:
        m_h = mask_d[:, None] & ((q < 0) & (q >= 1 - W))[None, :]
        tl.store(dh0_ptr + b * D * (W - 1) + offs_d[:, None] * (W - 1) + (q + W - 1)[None, :],
                 dx.to(dh0_ptr.dtype.element_ty), mask=m_h)


def _blocks(x: torch.Tensor) -> tuple[int, int]:
    """``(BLOCK_D, BLOCK_L)``: long along time when time is the contiguous axis, else along channels."""
    if x.stride(-1) == 1:
        return 8, 256
    return 64, 32


def _empty_out(x: torch.Tensor) -> torch.Tensor:
    """The output buffer: x's layout, with time-contiguous rows padded to a multiple of 16 so that
    the selective scan reading it next needs no aligning copy."""
    if x.stride(-1) == 1:
        from .time_layout import time_aligned_empty
        return time_aligned_empty(x, *x.shape)
    return torch.empty_like(x)


def _dummy(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty(1)


@torch.library.custom_op("mambakit::causal_conv1d_triton_fwd", mutates_args=())
def _fwd_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
            initial_state: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor], silu: bool) -> torch.Tensor:
    """``out`` with x's shape and dtype (layout: ``_empty_out``)."""
    batch, dim, length = x.shape
    width = weight.shape[1]
    out = _empty_out(x)
    block_d, block_l = _blocks(x)
    h0 = initial_state if initial_state is not None else _dummy(x).view(1, 1, 1)
    seq = seq_idx if seq_idx is not None else x.new_empty(1, 1, dtype=torch.int32)
    grid = (triton.cdiv(length, block_l), triton.cdiv(dim, block_d), batch)
    _conv1d_fwd_kernel[grid](
        x, weight, bias if bias is not None else weight, h0, seq, out, length, dim,
        *x.stride(), *weight.stride(), *h0.stride(), *seq.stride(), *out.stride(),
        W=width, HAS_BIAS=bias is not None, HAS_H0=initial_state is not None, HAS_SEQ=seq_idx is not None,
        SILU=bool(silu), BLOCK_D=block_d, BLOCK_L=block_l, num_warps=4)
    return out


@_fwd_op.register_fake
def _(x, weight, bias, initial_state, seq_idx, silu):
    return _empty_out(x)


@torch.library.custom_op("mambakit::causal_conv1d_triton_bwd", mutates_args=())
def _bwd_op(dout: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
            initial_state: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor], silu: bool
            ) -> list[torch.Tensor]:
    """``[dx (B, D, L), dweight (D, W) fp32, dbias (D,) fp32, dinitial_state (B, D, W-1)]``;
    absent ones are empty tensors."""
    batch, dim, length = x.shape
    width = weight.shape[1]
    block_d, block_l = _blocks(x)
    n_tiles = triton.cdiv(length + width - 1, block_l)
    f32 = torch.float32
    dx = torch.empty(batch, dim, length, device=x.device, dtype=x.dtype)
    dh0 = (torch.empty(batch, dim, width - 1, device=x.device, dtype=initial_state.dtype)
           if initial_state is not None else x.new_empty(0))
    dw = torch.empty(batch, n_tiles, dim, width, device=x.device, dtype=f32)
    db = torch.empty(batch, n_tiles, dim, device=x.device, dtype=f32) if bias is not None else x.new_empty(0, dtype=f32)
    h0 = initial_state if initial_state is not None else _dummy(x).view(1, 1, 1)
    seq = seq_idx if seq_idx is not None else x.new_empty(1, 1, dtype=torch.int32)
    grid = (n_tiles, triton.cdiv(dim, block_d), batch)
    _conv1d_bwd_kernel[grid](
        x, weight, bias if bias is not None else weight, h0, seq, dout, dx,
        dh0 if initial_state is not None else dx, dw, db if bias is not None else dw, length, dim, n_tiles,
        *x.stride(), *weight.stride(), *h0.stride(), *seq.stride(), *dout.stride(),
        W=width, HAS_BIAS=bias is not None, HAS_H0=initial_state is not None, HAS_SEQ=seq_idx is not None,
        SILU=bool(silu), BLOCK_D=block_d, BLOCK_L=block_l, num_warps=4)
    return [dx, dw.sum((0, 1)), db.sum((0, 1)) if bias is not None else db, dh0]


@_bwd_op.register_fake
def _(dout, x, weight, bias, initial_state, seq_idx, silu):
    batch, dim, length = x.shape
    f32 = torch.float32
    return [x.new_empty(batch, dim, length), x.new_empty(dim, weight.shape[1], dtype=f32),
            x.new_empty(dim, dtype=f32) if bias is not None else x.new_empty(0, dtype=f32),
            initial_state.new_empty(batch, dim, weight.shape[1] - 1) if initial_state is not None else x.new_empty(0)]


def _setup_context(ctx, inputs, output):
    x, weight, bias, initial_state, seq_idx, silu = inputs
    ctx.save_for_backward(x, weight, bias, initial_state, seq_idx)
    ctx.silu = bool(silu)


def _backward(ctx, dout):
    x, weight, bias, initial_state, seq_idx = ctx.saved_tensors
    dx, dw, db, dh0 = _bwd_op(dout, x, weight, bias, initial_state, seq_idx, ctx.silu)
    return (dx, dw.to(weight.dtype), db.to(bias.dtype) if bias is not None else None,
            dh0 if initial_state is not None else None, None, None)


_fwd_op.register_autograd(_backward, setup_context=_setup_context)


def causal_conv1d_triton(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                         initial_state: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor],
                         silu: bool) -> torch.Tensor:
    """Validated ``x (B, D, L)``, ``weight (D, W)`` (``W <= MAX_WIDTH``), ``bias (D,)``,
    ``initial_state (B, D, W-1)``, ``seq_idx (B, L)`` -> ``out`` like x. Differentiable in x,
    weight, bias and initial_state."""
    return _fwd_op(x, weight, bias, initial_state, seq_idx, bool(silu))
