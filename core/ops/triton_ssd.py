"""Triton kernels for the Mamba-2 SSD chunked scan, forward and backward.

Per head ``h`` the recurrence is ``S_t = exp(dt_t A) S_{t-1} + dt_t x_t ⊗ B_t`` on a ``(P, N)``
state, read out as ``y_t = S_t C_t``. The sequence is cut into chunks of ``K`` steps and, with
``cs`` the cumulative sum of ``dt A`` inside a chunk, the output splits into

* an intra-chunk part, a causal "attention" ``y_l = sum_{s<=l} (C_l·B_s) exp(cs_l - cs_s) dt_s x_s``,
* an inter-chunk part ``y_l += exp(cs_l) S_in C_l`` from the state ``S_in`` entering the chunk,

and the states entering the chunks follow a short recurrence over chunks,
``S_in[c+1] = exp(cs_last) S_in[c] + sum_s exp(cs_last - cs_s) dt_s x_s ⊗ B_s``.

Forward kernels (5 launches):

1. ``_dt_kernel``: bias, softplus, clamp of dt and the in-chunk cumulative sum of ``dt A``,
   ``dtp, cs (b, H, n_chunks, K)`` float32 (pads past ``L`` get ``dt = 0``: no decay, no input).
2. ``_bmm_kernel``: ``CB = C Bᵀ`` per chunk and group, ``(b, n_chunks, G, K, K)`` float32 (lower
   block triangle only), shared by the heads of a group.
3. ``_chunk_state_kernel``: each chunk's own contribution to the state, one ``tl.dot`` over the
   chunk per ``(batch, chunk, head, P-block, N-block)``.
4. ``_state_pass_kernel``: the sequential recurrence over chunks per ``(batch, head, P*N block)``,
   in place: chunk contributions in, entering states ``S_in`` out, plus the final state.
5. ``_chunk_out_kernel``: per ``(batch, chunk, head, block of positions)`` the masked causal
   ``tl.dot``, the inter-chunk term, ``+ D x`` and ``* silu(z)``.

Backward (9 launches; nothing of size ``(b, L, L)`` or ``(b, L, H, P, N)`` is ever stored: the
forward saves its inputs and the chunk-level states ``S_in``; ``dtp``, ``cs``, ``CB`` and, with a
gate, the pre-gate output are recomputed):

* kernels 1 and 2 again; with ``z``, kernel 5 in "gate backward" mode writes ``dz`` and the
  gradient ``g`` of the pre-gate output;
* ``_chunk_state_kernel`` in backward mode: ``Q_c = sum_l exp(cs_l) g_l ⊗ C_l``;
* ``_state_pass_kernel`` in reverse: ``dS`` (gradient of each chunk's contribution), the gradient
  of the initial state and ``dR_c = <dS_c, S_in[c]>`` for the chunk decays;
* ``_bwd_dx_kernel`` (one program per block of source positions ``s`` and head): ``dx`` and the
  per-position pieces of ``ddt``;
* ``_bwd_dcb_kernel`` (one program per block of output positions ``l`` and split of a group's
  heads): ``dCB``, the gradient of ``C_l · B_s`` summed over the heads of the group, and the
  intra-chunk part of the gradient of ``dA = dt A``, computed in the stable form
  ``sum_{l >= s > s'} T_{l s'}`` (pairs whose decay spans position ``s``) rather than as a
  difference of two large sums;
* ``_bwd_dbc_kernel``: ``dB = dCBᵀ C + (chunk-state part)`` and ``dC = dCB B + (entering-state
  part)`` per group, so the ``(K, K) x (K, N)`` products run once per group, not once per head;
* ``_bwd_ddt_kernel``: assembles ``d(dA)``, then ``ddt`` through clamp/softplus/bias, and the
  per-chunk partial sums of ``dA`` and ``ddt_bias``.

That is the backward with ``set_config(bwd_grouped=1)``. The default (``bwd_grouped=0``) is the
earlier per-head form, in which the dx kernel and ``_bwd_dc_kernel`` accumulate ``dB``/``dC`` head
by head (float32 atomics), and which is the one timed against mamba_ssm so far.

Decays are always ``exp`` of a difference that is ``<= 0`` for ``A <= 0``, masked to ``-inf``
before the ``exp``. Packed sequences (``seq_idx``) become segment ids (count of changes) and
every decay between two segments is masked to 0. Heads of a group share ``B``/``C``: the group
kernels loop over a split of the group's heads per program, summing in registers, then store
(or add with float32 atomics when a group's heads come in several splits). Offsets are int64.

Runs on CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1`` (for tests; there the
dots are done in float32, because the interpreter's bfloat16 ``tl.dot`` is wrong).
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import triton
import triton.language as tl

__all__ = ["ssd_chunk_scan_triton", "interpreter_enabled", "set_config", "clear_config"]

_NO_LIMIT = (0.0, float("inf"))


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# ----------------------------------------------------------------------------- helpers

@triton.jit
def _softplus(x):
    # torch's softplus with threshold 20; log(1 + e) is e to float32 precision for x < -15.
    e = tl.exp(tl.minimum(x, 20.0))
    return tl.where(x > 20.0, x, tl.where(x < -15.0, e, tl.log(1.0 + e)))


@triton.jit
def _seg(seg_ptr, pos, L):
    """Segment id at position ``pos`` clamped into ``[0, L)`` (pads take the last id)."""
    return tl.load(seg_ptr + tl.minimum(tl.maximum(pos, 0), L - 1))


# ----------------------------------------------------------------------------- forward kernels

@triton.jit
def _dt_kernel(dt_ptr, bias_ptr, A_ptr, dtp_ptr, cs_ptr,
               L, H, nc, s_db, s_dl, s_dh, lo, hi,
               HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_LIMIT: tl.constexpr,
               K: tl.constexpr, BLOCK_H: tl.constexpr):
    # Program = one chunk of one batch row, BLOCK_H heads. Out: dtp, cs (b, H, nc, K) float32.
    pid = tl.program_id(0).to(tl.int64)
    b = pid // nc
    c = pid % nc
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_k = tl.arange(0, K)
    t = c * K + offs_k
    mask_h = offs_h < H
    m = (t < L)[:, None] & mask_h[None, :]
    raw = tl.load(dt_ptr + b * s_db + t[:, None] * s_dl + offs_h[None, :] * s_dh, mask=m,
                  other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw += tl.load(bias_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)[None, :]
    v = raw
    if SOFTPLUS:
        v = _softplus(raw)
    if HAS_LIMIT:
        v = tl.minimum(tl.maximum(v, lo), hi)
    v = tl.where(m, v, 0.0)
    A = tl.load(A_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)
    cs = tl.cumsum(v * A[None, :], axis=0)
    off = ((b * H + offs_h[None, :]) * nc + c) * K + offs_k[:, None]
    tl.store(dtp_ptr + off, v, mask=mask_h[None, :])
    tl.store(cs_ptr + off, cs, mask=mask_h[None, :])


@triton.jit
def _bmm_kernel(C_ptr, B_ptr, CB_ptr, L, G, nc, N,
                s_cb, s_cl, s_cg, s_cn, s_bb, s_bl, s_bg, s_bn,
                K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_S: tl.constexpr,
                BLOCK_KN: tl.constexpr, DOT_DTYPE: tl.constexpr, PREC: tl.constexpr):
    # CB[b, c, g, l, s] = C_l · B_s for the blocks with s-block start <= l-block end.
    pid = tl.program_id(0).to(tl.int64)
    b = pid // nc
    c = pid % nc
    g = tl.program_id(1).to(tl.int64)
    mb = tl.program_id(2) // (K // BLOCK_S)
    sb = tl.program_id(2) % (K // BLOCK_S)
    if sb * BLOCK_S < (mb + 1) * BLOCK_M:
        offs_m = mb * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_s = sb * BLOCK_S + tl.arange(0, BLOCK_S)
        tm = c * K + offs_m
        ts = c * K + offs_s
        acc = tl.zeros((BLOCK_M, BLOCK_S), dtype=tl.float32)
        for n0 in range(0, N, BLOCK_KN):
            offs_n = n0 + tl.arange(0, BLOCK_KN)
            mn = offs_n < N
            cm = tl.load(C_ptr + b * s_cb + g * s_cg + tm[:, None] * s_cl + offs_n[None, :] * s_cn,
                         mask=(tm < L)[:, None] & mn[None, :], other=0.0)
            bm = tl.load(B_ptr + b * s_bb + g * s_bg + ts[None, :] * s_bl + offs_n[:, None] * s_bn,
                         mask=(ts < L)[None, :] & mn[:, None], other=0.0)
            acc += tl.dot(cm.to(DOT_DTYPE), bm.to(DOT_DTYPE), input_precision=PREC)
        base = ((b * nc + c) * G + g) * K * K
        tl.store(CB_ptr + base + offs_m[:, None] * K + offs_s[None, :], acc)


@triton.jit
def _chunk_state_kernel(X_ptr, Y_ptr, dtp_ptr, cs_ptr, seg_ptr, out_ptr,
                        L, H, nc, P, N, heads_per_group,
                        s_xb, s_xl, s_xh, s_xp, s_yb, s_yl, s_yg, s_yn, s_segb,
                        BWD: tl.constexpr, HAS_SEQ: tl.constexpr, K: tl.constexpr,
                        BLOCK_S: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
                        DOT_DTYPE: tl.constexpr, PREC: tl.constexpr):
    # out[b, c, h] (P, N) = sum_s w_s X_s ⊗ Y_s over the chunk.
    #   forward:  X = x, Y = B, w_s = exp(cs_last - cs_s) dt_s  [seg_s == seg_last]
    #   backward: X = g, Y = C, w_l = exp(cs_l)                 [seg_l == seg_in]
    pid = tl.program_id(0).to(tl.int64)
    b = pid // nc
    c = pid % nc
    h = tl.program_id(1).to(tl.int64)
    g = h // heads_per_group
    n_nb = tl.cdiv(N, BLOCK_N)
    pb = tl.program_id(2) // n_nb
    nb = tl.program_id(2) % n_nb
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = nb * BLOCK_N + tl.arange(0, BLOCK_N)
    mp = offs_p < P
    mn = offs_n < N
    row = ((b * H + h) * nc + c) * K
    seg_b = seg_ptr + b * s_segb
    if HAS_SEQ:
        if BWD:
            seg_ref = _seg(seg_b, c * K - 1, L)
        else:
            seg_ref = _seg(seg_b, c * K + K - 1, L)
    cs_last = tl.load(cs_ptr + row + K - 1)
    acc = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    for s0 in range(0, K, BLOCK_S):
        offs_s = s0 + tl.arange(0, BLOCK_S)
        t = c * K + offs_s
        mt = t < L
        cs_s = tl.load(cs_ptr + row + offs_s)
        if BWD:
            logw = cs_s
        else:
            logw = cs_last - cs_s
        keep = mt
        if HAS_SEQ:
            keep = keep & (_seg(seg_b, t, L) == seg_ref)
        w = tl.exp(tl.where(keep, logw, float("-inf")))
        if BWD:
            w = w
        else:
            w = w * tl.load(dtp_ptr + row + offs_s)
        xs = tl.load(X_ptr + b * s_xb + h * s_xh + t[None, :] * s_xl + offs_p[:, None] * s_xp,
                     mask=mp[:, None] & mt[None, :], other=0.0).to(tl.float32)    # (BP, BS)
        ys = tl.load(Y_ptr + b * s_yb + g * s_yg + t[:, None] * s_yl + offs_n[None, :] * s_yn,
                     mask=mt[:, None] & mn[None, :], other=0.0)                    # (BS, BN)
        acc += tl.dot((xs * w[None, :]).to(DOT_DTYPE), ys.to(DOT_DTYPE), input_precision=PREC)
    off = (((b * nc + c) * H + h) * P + offs_p[:, None]) * N + offs_n[None, :]
    tl.store(out_ptr + off, acc, mask=mp[:, None] & mn[None, :])


@triton.jit
def _state_pass_kernel(buf_ptr, states_ptr, cs_ptr, seg_ptr, init_ptr, final_ptr, dR_ptr,
                       L, H, nc, PN, s_segb,
                       REVERSE: tl.constexpr, HAS_INIT: tl.constexpr, HAS_SEQ: tl.constexpr,
                       K: tl.constexpr, BLOCK: tl.constexpr):
    # buf (b, nc, H, P*N) float32, in place.
    #   forward: chunk contributions in, entering states S_in[c] out; final = S_in[nc].
    #   reverse: Q_c in, dS_c (the gradient of chunk c's contribution) out; "init" is the
    #            gradient of the final state, "final" receives the gradient of the initial
    #            state; dR[b, h, c, block] = <dS_c, S_in[c]> over this block (states = S_in).
    pb = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    n_pb = tl.num_programs(0)
    offs = pb * BLOCK + tl.arange(0, BLOCK)
    m = offs < PN
    seg_b = seg_ptr + b * s_segb
    if HAS_INIT:
        carry = tl.load(init_ptr + bh * PN + offs, mask=m, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros((BLOCK,), dtype=tl.float32)
    # The loads of chunk i+1 are issued before the work on chunk i (a one-deep prefetch): the
    # loop is otherwise bound by memory latency, one dependent load per chunk.
    c_next = tl.full((), 0, tl.int32)
    if REVERSE:
        c_next += nc - 1
    v_next = tl.load(buf_ptr + ((b * nc + c_next) * H + h) * PN + offs, mask=m, other=0.0)
    cs_next = tl.load(cs_ptr + (bh * nc + c_next) * K + K - 1)
    for i in range(0, nc):
        c = c_next
        v = v_next
        cs_last = cs_next
        if REVERSE:
            c_next = tl.maximum(c - 1, 0)
        else:
            c_next = tl.minimum(c + 1, nc - 1)
        v_next = tl.load(buf_ptr + ((b * nc + c_next) * H + h) * PN + offs, mask=m & (i + 1 < nc),
                         other=0.0)
        cs_next = tl.load(cs_ptr + (bh * nc + c_next) * K + K - 1)
        if HAS_SEQ:
            same = _seg(seg_b, c * K - 1, L) == _seg(seg_b, c * K + K - 1, L)
            cs_last = tl.where(same, cs_last, float("-inf"))
        R = tl.exp(cs_last)
        off = ((b * nc + c) * H + h) * PN + offs
        tl.store(buf_ptr + off, carry, mask=m)
        if REVERSE:
            s_in = tl.load(states_ptr + off, mask=m, other=0.0)
            tl.store(dR_ptr + (bh * nc + c) * n_pb + pb, tl.sum(carry * s_in, axis=0))
        carry = R * carry + v
    tl.store(final_ptr + bh * PN + offs, carry, mask=m)


@triton.jit
def _chunk_out_kernel(x_ptr, C_ptr, CB_ptr, st_ptr, dtp_ptr, cs_ptr, seg_ptr, D_ptr, z_ptr,
                      out_ptr, dout_ptr, dz_ptr,
                      L, H, G, nc, P, N, heads_per_group,
                      s_xb, s_xl, s_xh, s_xp, s_cb, s_cl, s_cg, s_cn,
                      s_zb, s_zl, s_zh, s_zp, s_gb, s_gl, s_gh, s_gp, s_segb, s_Dh, s_Dp,
                      GATE_BWD: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                      HAS_SEQ: tl.constexpr, K: tl.constexpr, BLOCK_L: tl.constexpr,
                      BLOCK_S: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
                      DOT_DTYPE: tl.constexpr, PREC: tl.constexpr, SPREC: tl.constexpr):
    # y_l = sum_{s<=l} CB_ls exp(cs_l - cs_s) dt_s x_s + exp(cs_l) S_in C_l, then + D x, * silu(z).
    # out (b, L, H, P) contiguous. GATE_BWD: out <- g = dout * silu(z), dz <- dout * y * silu'(z).
    pid = tl.program_id(0).to(tl.int64)
    b = pid // nc
    c = pid % nc
    h = tl.program_id(1).to(tl.int64)
    g = h // heads_per_group
    n_pb = tl.cdiv(P, BLOCK_P)
    lb = tl.program_id(2) // n_pb
    pb = tl.program_id(2) % n_pb
    offs_l = lb * BLOCK_L + tl.arange(0, BLOCK_L)
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    tl_ = c * K + offs_l
    ml = tl_ < L
    mp = offs_p < P
    mn = offs_n < N
    row = ((b * H + h) * nc + c) * K
    seg_b = seg_ptr + b * s_segb
    cs_l = tl.load(cs_ptr + row + offs_l)
    # inter-chunk: exp(cs_l) * (C_l · S_in)
    log_f = cs_l
    if HAS_SEQ:
        seg_l = _seg(seg_b, tl_, L)
        log_f = tl.where(seg_l == _seg(seg_b, c * K - 1, L), cs_l, float("-inf"))
    Cl = tl.load(C_ptr + b * s_cb + g * s_cg + tl_[:, None] * s_cl + offs_n[None, :] * s_cn,
                 mask=ml[:, None] & mn[None, :], other=0.0).to(tl.float32)           # (BL, BN)
    S = tl.load(st_ptr + (((b * nc + c) * H + h) * P + offs_p[None, :]) * N + offs_n[:, None],
                mask=mn[:, None] & mp[None, :], other=0.0)                          # (BN, BP)
    acc = tl.dot(Cl, S, input_precision=SPREC) * tl.exp(log_f)[:, None]
    # intra-chunk: the causal, decayed C·B weights times dt x
    cb_base = CB_ptr + ((b * nc + c) * G + g) * K * K
    for s0 in range(0, (lb + 1) * BLOCK_L, BLOCK_S):
        offs_s = s0 + tl.arange(0, BLOCK_S)
        ts = c * K + offs_s
        keep = offs_l[:, None] >= offs_s[None, :]
        if HAS_SEQ:
            keep = keep & (seg_l[:, None] == _seg(seg_b, ts, L)[None, :])
        cs_s = tl.load(cs_ptr + row + offs_s)
        dt_s = tl.load(dtp_ptr + row + offs_s)
        cb = tl.load(cb_base + offs_l[:, None] * K + offs_s[None, :], mask=keep, other=0.0)
        w = cb * tl.exp(tl.where(keep, cs_l[:, None] - cs_s[None, :], float("-inf"))) * dt_s[None, :]
        xs = tl.load(x_ptr + b * s_xb + h * s_xh + ts[:, None] * s_xl + offs_p[None, :] * s_xp,
                     mask=(ts < L)[:, None] & mp[None, :], other=0.0)
        acc += tl.dot(w.to(DOT_DTYPE), xs.to(DOT_DTYPE), input_precision=PREC)
    m_lp = ml[:, None] & mp[None, :]
    y = acc
    if HAS_D:
        xl = tl.load(x_ptr + b * s_xb + h * s_xh + tl_[:, None] * s_xl + offs_p[None, :] * s_xp,
                     mask=m_lp, other=0.0).to(tl.float32)
        Dv = tl.load(D_ptr + h * s_Dh + offs_p * s_Dp, mask=mp, other=0.0).to(tl.float32)
        y += xl * Dv[None, :]
    out_off = ((b * L + tl_[:, None]) * H + h) * P + offs_p[None, :]
    if HAS_Z:
        zz = tl.load(z_ptr + b * s_zb + h * s_zh + tl_[:, None] * s_zl + offs_p[None, :] * s_zp,
                     mask=m_lp, other=0.0).to(tl.float32)
        sig = tl.sigmoid(zz)
    if GATE_BWD:
        do = tl.load(dout_ptr + b * s_gb + h * s_gh + tl_[:, None] * s_gl + offs_p[None, :] * s_gp,
                     mask=m_lp, other=0.0).to(tl.float32)
        dz = do * y * sig * (1.0 + zz * (1.0 - sig))
        tl.store(dz_ptr + out_off, dz.to(dz_ptr.dtype.element_ty), mask=m_lp)
        tl.store(out_ptr + out_off, (do * zz * sig).to(out_ptr.dtype.element_ty), mask=m_lp)
    else:
        if HAS_Z:
            y = y * zz * sig
        tl.store(out_ptr + out_off, y.to(out_ptr.dtype.element_ty), mask=m_lp)


# ----------------------------------------------------------------------------- backward kernels

@triton.jit
def _bwd_dx_kernel(x_ptr, B_ptr, C_ptr, CB_ptr, g_ptr, dS_ptr, dtp_ptr, cs_ptr, seg_ptr, D_ptr,
                   dx_ptr, dB_ptr, ddd_ptr, V_ptr, dDp_ptr,
                   L, H, G, nc, P, N, heads_per_group,
                   s_xb, s_xl, s_xh, s_xp, s_bb, s_bl, s_bg, s_bn, s_cb, s_cl, s_cg, s_cn,
                   s_gb, s_gl, s_gh, s_gp, s_segb, s_Dh, s_Dp,
                   HPP: tl.constexpr, HAS_D: tl.constexpr, HAS_SEQ: tl.constexpr,
                   ATOMIC: tl.constexpr, K: tl.constexpr, BLOCK_L: tl.constexpr,
                   BLOCK_S: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
                   DOT_DTYPE: tl.constexpr, PREC: tl.constexpr, SPREC: tl.constexpr,
                   WITH_DB: tl.constexpr):
    # Program = a block of source positions s of one chunk, HPP heads of one group.
    # Without WITH_DB it leaves dB to the group kernels (_bwd_dcb_kernel, _bwd_dbc_kernel).
    #   Z_s = sum_{l>=s} CB_ls E_ls g_l + W_s dS B_s   (E_ls = exp(cs_l - cs_s), W_s = exp(cs_last - cs_s))
    #   dx_s = dt_s Z_s + D g_s;  ddt_direct_s = x_s · Z_s;  V_s = dt_s x_s · (W_s dS B_s)
    #   dB_s = dt_s sum_{l>=s} E_ls (g_l · x_s) C_l + W_s dt_s dSᵀ x_s   (summed over the heads)
    pid = tl.program_id(0).to(tl.int64)
    b = pid // nc
    c = pid % nc
    h0 = tl.program_id(1).to(tl.int64) * HPP
    g = h0 // heads_per_group
    sb = tl.program_id(2)
    n_sb = tl.num_programs(2)
    offs_s = sb * BLOCK_S + tl.arange(0, BLOCK_S)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    ts = c * K + offs_s
    ms = ts < L
    mp = offs_p < P
    mn = offs_n < N
    m_sp = ms[:, None] & mp[None, :]
    seg_b = seg_ptr + b * s_segb
    if HAS_SEQ:
        seg_s = _seg(seg_b, ts, L)
        keep_w = seg_s == _seg(seg_b, c * K + K - 1, L)
    Bs = tl.load(B_ptr + b * s_bb + g * s_bg + ts[:, None] * s_bl + offs_n[None, :] * s_bn,
                 mask=ms[:, None] & mn[None, :], other=0.0)                          # (BS, BN)
    cb_base = CB_ptr + ((b * nc + c) * G + g) * K * K
    l_start = (sb * BLOCK_S // BLOCK_L) * BLOCK_L
    dB_acc = tl.zeros((BLOCK_S, BLOCK_N), dtype=tl.float32)
    for hh in range(HPP):
        h = h0 + hh
        row = ((b * H + h) * nc + c) * K
        cs_s = tl.load(cs_ptr + row + offs_s)
        dt_s = tl.load(dtp_ptr + row + offs_s)
        log_w = tl.load(cs_ptr + row + K - 1) - cs_s
        if HAS_SEQ:
            log_w = tl.where(keep_w, log_w, float("-inf"))
        W = tl.exp(log_w)
        xs = tl.load(x_ptr + b * s_xb + h * s_xh + ts[:, None] * s_xl + offs_p[None, :] * s_xp,
                     mask=m_sp, other=0.0).to(tl.float32)                            # (BS, BP)
        dS = tl.load(dS_ptr + (((b * nc + c) * H + h) * P + offs_p[:, None]) * N + offs_n[None, :],
                     mask=mp[:, None] & mn[None, :], other=0.0)                      # (BP, BN)
        # the state part first; the loop then accumulates onto it (fewer live registers)
        Z = tl.dot(Bs.to(tl.float32), tl.trans(dS), input_precision=SPREC) * W[:, None]
        tl.store(V_ptr + row + offs_s, dt_s * tl.sum(xs * Z, axis=1))
        if WITH_DB:
            dB_acc += tl.dot(xs, dS, input_precision=SPREC) * (W * dt_s)[:, None]
        xs_d = xs.to(DOT_DTYPE)
        for l0 in range(l_start, K, BLOCK_L):
            offs_l = l0 + tl.arange(0, BLOCK_L)
            tl_ = c * K + offs_l
            ml = tl_ < L
            keep = offs_l[None, :] >= offs_s[:, None]                                # (BS, BL)
            if HAS_SEQ:
                keep = keep & (seg_s[:, None] == _seg(seg_b, tl_, L)[None, :])
            cs_l = tl.load(cs_ptr + row + offs_l)
            cbT = tl.load(cb_base + offs_l[None, :] * K + offs_s[:, None], mask=keep, other=0.0)
            ET = tl.exp(tl.where(keep, cs_l[None, :] - cs_s[:, None], float("-inf")))
            gl = tl.load(g_ptr + b * s_gb + h * s_gh + tl_[:, None] * s_gl + offs_p[None, :] * s_gp,
                         mask=ml[:, None] & mp[None, :], other=0.0).to(DOT_DTYPE)   # (BL, BP)
            Z += tl.dot((cbT * ET).to(DOT_DTYPE), gl, input_precision=PREC)
            if WITH_DB:
                Cl = tl.load(C_ptr + b * s_cb + g * s_cg + tl_[:, None] * s_cl + offs_n[None, :] * s_cn,
                             mask=ml[:, None] & mn[None, :], other=0.0).to(DOT_DTYPE)  # (BL, BN)
                gxT = tl.dot(xs_d, tl.trans(gl), input_precision=PREC)              # (BS, BL)
                dB_acc += tl.dot((gxT * ET * dt_s[:, None]).to(DOT_DTYPE), Cl, input_precision=PREC)
        dx = Z * dt_s[:, None]
        if HAS_D:
            gs = tl.load(g_ptr + b * s_gb + h * s_gh + ts[:, None] * s_gl + offs_p[None, :] * s_gp,
                         mask=m_sp, other=0.0).to(tl.float32)
            Dv = tl.load(D_ptr + h * s_Dh + offs_p * s_Dp, mask=mp, other=0.0).to(tl.float32)
            dx += gs * Dv[None, :]
            tl.store(dDp_ptr + (((b * nc + c) * n_sb + sb) * H + h) * P + offs_p,
                     tl.sum(gs * xs, axis=0), mask=mp)
        tl.store(dx_ptr + ((b * L + ts[:, None]) * H + h) * P + offs_p[None, :],
                 dx.to(dx_ptr.dtype.element_ty), mask=m_sp)
        tl.store(ddd_ptr + row + offs_s, tl.sum(xs * Z, axis=1))
    if WITH_DB:
        dB_off = ((b * L + ts[:, None]) * G + g) * N + offs_n[None, :]
        if ATOMIC:
            tl.atomic_add(dB_ptr + dB_off, dB_acc, mask=ms[:, None] & mn[None, :], sem="relaxed")
        else:
            tl.store(dB_ptr + dB_off, dB_acc, mask=ms[:, None] & mn[None, :])


@triton.jit
def _bwd_dc_kernel(x_ptr, B_ptr, C_ptr, CB_ptr, g_ptr, st_ptr, dtp_ptr, cs_ptr, seg_ptr,
                   dC_ptr, intra_ptr, inter_ptr,
                   L, H, G, nc, P, N, heads_per_group,
                   s_xb, s_xl, s_xh, s_xp, s_bb, s_bl, s_bg, s_bn, s_cb, s_cl, s_cg, s_cn,
                   s_gb, s_gl, s_gh, s_gp, s_segb,
                   HPP: tl.constexpr, HAS_SEQ: tl.constexpr, ATOMIC: tl.constexpr,
                   K: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_S: tl.constexpr,
                   BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
                   DOT_DTYPE: tl.constexpr, PREC: tl.constexpr, SPREC: tl.constexpr):
    # Program = a block of output positions l of one chunk, HPP heads of one group.
    #   dC_l = sum_{s<=l} E_ls dt_s (g_l · x_s) B_s + exp(cs_l) S_inᵀ g_l   (summed over the heads)
    #   inter_l = exp(cs_l) g_l · (S_in C_l)
    #   intra[lb, s] = sum_{l in block, l >= s} sum_{s' < s} T_ls',  T_ls' = (g_l·x_s') CB_ls' E_ls' dt_s'
    pid = tl.program_id(0).to(tl.int64)
    b = pid // nc
    c = pid % nc
    h0 = tl.program_id(1).to(tl.int64) * HPP
    g = h0 // heads_per_group
    lb = tl.program_id(2)
    n_lb = tl.num_programs(2)
    offs_l = lb * BLOCK_L + tl.arange(0, BLOCK_L)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    tl_ = c * K + offs_l
    ml = tl_ < L
    mp = offs_p < P
    mn = offs_n < N
    seg_b = seg_ptr + b * s_segb
    if HAS_SEQ:
        seg_l = _seg(seg_b, tl_, L)
        keep_f = seg_l == _seg(seg_b, c * K - 1, L)
    c_ptrs = C_ptr + b * s_cb + g * s_cg + tl_[:, None] * s_cl + offs_n[None, :] * s_cn
    cb_base = CB_ptr + ((b * nc + c) * G + g) * K * K
    dC_acc = tl.zeros((BLOCK_L, BLOCK_N), dtype=tl.float32)
    for hh in range(HPP):
        h = h0 + hh
        row = ((b * H + h) * nc + c) * K
        cs_l = tl.load(cs_ptr + row + offs_l)
        log_f = cs_l
        if HAS_SEQ:
            log_f = tl.where(keep_f, cs_l, float("-inf"))
        gl = tl.load(g_ptr + b * s_gb + h * s_gh + tl_[:, None] * s_gl + offs_p[None, :] * s_gp,
                     mask=ml[:, None] & mp[None, :], other=0.0).to(tl.float32)       # (BL, BP)
        S = tl.load(st_ptr + (((b * nc + c) * H + h) * P + offs_p[:, None]) * N + offs_n[None, :],
                    mask=mp[:, None] & mn[None, :], other=0.0)                      # (BP, BN)
        GS = tl.dot(gl, S, input_precision=SPREC) * tl.exp(log_f)[:, None]          # (BL, BN)
        Cl = tl.load(c_ptrs, mask=ml[:, None] & mn[None, :], other=0.0).to(tl.float32)
        tl.store(inter_ptr + row + offs_l, tl.sum(GS * Cl, axis=1))
        dC_acc += GS
        gl_d = gl.to(DOT_DTYPE)
        carry = tl.zeros((BLOCK_L,), dtype=tl.float32)
        for s0 in range(0, (lb + 1) * BLOCK_L, BLOCK_S):
            offs_s = s0 + tl.arange(0, BLOCK_S)
            ts = c * K + offs_s
            mts = ts < L
            causal = offs_l[:, None] >= offs_s[None, :]
            keep = causal
            if HAS_SEQ:
                keep = keep & (seg_l[:, None] == _seg(seg_b, ts, L)[None, :])
            cs_s = tl.load(cs_ptr + row + offs_s)
            dt_s = tl.load(dtp_ptr + row + offs_s)
            cb = tl.load(cb_base + offs_l[:, None] * K + offs_s[None, :], mask=keep, other=0.0)
            E = tl.exp(tl.where(keep, cs_l[:, None] - cs_s[None, :], float("-inf")))
            xs = tl.load(x_ptr + b * s_xb + h * s_xh + ts[:, None] * s_xl + offs_p[None, :] * s_xp,
                         mask=mts[:, None] & mp[None, :], other=0.0).to(DOT_DTYPE)  # (BS, BP)
            Bs = tl.load(B_ptr + b * s_bb + g * s_bg + ts[:, None] * s_bl + offs_n[None, :] * s_bn,
                         mask=mts[:, None] & mn[None, :], other=0.0).to(DOT_DTYPE)  # (BS, BN)
            gx = tl.dot(gl_d, tl.trans(xs), input_precision=PREC)                   # (BL, BS)
            gxE = gx * E * dt_s[None, :]
            dC_acc += tl.dot(gxE.to(DOT_DTYPE), Bs, input_precision=PREC)
            T = gxE * cb
            excl = carry[:, None] + tl.cumsum(T, axis=1) - T                        # sum_{s' < s}
            contrib = tl.sum(tl.where(causal, excl, 0.0), axis=0)                    # (BS,)
            tl.store(intra_ptr + (((b * H + h) * nc + c) * n_lb + lb) * K + offs_s, contrib)
            carry += tl.sum(T, axis=1)
    dC_off = ((b * L + tl_[:, None]) * G + g) * N + offs_n[None, :]
    if ATOMIC:
        tl.atomic_add(dC_ptr + dC_off, dC_acc, mask=ml[:, None] & mn[None, :], sem="relaxed")
    else:
        tl.store(dC_ptr + dC_off, dC_acc, mask=ml[:, None] & mn[None, :])


@triton.jit
def _bwd_dcb_kernel(x_ptr, CB_ptr, g_ptr, dtp_ptr, cs_ptr, seg_ptr, dCB_ptr, intra_ptr,
                    L, H, G, nc, P, heads_per_group, n_split,
                    s_xb, s_xl, s_xh, s_xp, s_gb, s_gl, s_gh, s_gp, s_segb,
                    HPS: tl.constexpr, HPS_P2: tl.constexpr, HAS_SEQ: tl.constexpr,
                    ATOMIC: tl.constexpr, K: tl.constexpr, BLOCK: tl.constexpr,
                    BLOCK_P: tl.constexpr, DOT_DTYPE: tl.constexpr, PREC: tl.constexpr):
    # Program = a block of output positions l of one chunk and HPS heads of one group. For each
    # block of sources s <= l, summed over its heads:
    #   dCB_ls = sum_h E_ls dt_s (g_l · x_s)            (the gradient of C_l · B_s, all heads)
    # and per head the intra-chunk part of the gradient of dA (see _bwd_dc_kernel):
    #   intra[lb, s] = sum_{l in block, l >= s} sum_{s' < s} T_ls',  T_ls' = (g_l·x_s') CB_ls' E_ls' dt_s'
    # with each head's running row sums over earlier source blocks kept in registers.
    pid = tl.program_id(0).to(tl.int64)
    b = pid // nc
    c = pid % nc
    gs = tl.program_id(1).to(tl.int64)
    g = gs // n_split
    h0 = g * heads_per_group + (gs % n_split) * HPS
    lb = tl.program_id(2)
    n_lb = tl.num_programs(2)
    offs_l = lb * BLOCK + tl.arange(0, BLOCK)
    offs_p = tl.arange(0, BLOCK_P)
    offs_h = tl.arange(0, HPS_P2)
    tl_ = c * K + offs_l
    ml = tl_ < L
    mp = offs_p < P
    seg_b = seg_ptr + b * s_segb
    if HAS_SEQ:
        seg_l = _seg(seg_b, tl_, L)
    cb_base = CB_ptr + ((b * nc + c) * G + g) * K * K
    carries = tl.zeros((HPS_P2, BLOCK), dtype=tl.float32)     # per head: sum over s' < block
    for sb in range(0, lb + 1):
        offs_s = sb * BLOCK + tl.arange(0, BLOCK)
        ts = c * K + offs_s
        mts = ts < L
        causal = offs_l[:, None] >= offs_s[None, :]
        keep = causal
        if HAS_SEQ:
            keep = keep & (seg_l[:, None] == _seg(seg_b, ts, L)[None, :])
        cb = tl.load(cb_base + offs_l[:, None] * K + offs_s[None, :], mask=keep, other=0.0)
        acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
        for hh in range(HPS):
            h = h0 + hh
            row = ((b * H + h) * nc + c) * K
            cs_l = tl.load(cs_ptr + row + offs_l)
            cs_s = tl.load(cs_ptr + row + offs_s)
            dt_s = tl.load(dtp_ptr + row + offs_s)
            gl = tl.load(g_ptr + b * s_gb + h * s_gh + tl_[:, None] * s_gl + offs_p[None, :] * s_gp,
                         mask=ml[:, None] & mp[None, :], other=0.0).to(DOT_DTYPE)   # (BL, BP)
            xs = tl.load(x_ptr + b * s_xb + h * s_xh + ts[:, None] * s_xl + offs_p[None, :] * s_xp,
                         mask=mts[:, None] & mp[None, :], other=0.0).to(DOT_DTYPE)  # (BS, BP)
            E = tl.exp(tl.where(keep, cs_l[:, None] - cs_s[None, :], float("-inf")))
            gxE = tl.dot(gl, tl.trans(xs), input_precision=PREC) * E * dt_s[None, :]
            acc += gxE
            T = gxE * cb
            this = offs_h[:, None] == hh
            carry = tl.sum(tl.where(this, carries, 0.0), axis=0)                    # (BL,)
            excl = carry[:, None] + tl.cumsum(T, axis=1) - T                        # sum_{s' < s}
            contrib = tl.sum(tl.where(causal, excl, 0.0), axis=0)                    # (BS,)
            tl.store(intra_ptr + (((b * H + h) * nc + c) * n_lb + lb) * K + offs_s, contrib)
            carries = tl.where(this, carries + tl.sum(T, axis=1)[None, :], carries)
        dcb_ptrs = dCB_ptr + ((b * nc + c) * G + g) * K * K + offs_l[:, None] * K + offs_s[None, :]
        if ATOMIC:
            tl.atomic_add(dcb_ptrs, acc, sem="relaxed")
        else:
            tl.store(dcb_ptrs, acc)


@triton.jit
def _bwd_dbc_kernel(x_ptr, B_ptr, C_ptr, g_ptr, dS_ptr, st_ptr, dCB_ptr, dtp_ptr, cs_ptr, seg_ptr,
                    dB_ptr, dC_ptr, inter_ptr,
                    L, H, G, nc, P, N, heads_per_group, n_split,
                    s_xb, s_xl, s_xh, s_xp, s_bb, s_bl, s_bg, s_bn, s_cb, s_cl, s_cg, s_cn,
                    s_gb, s_gl, s_gh, s_gp, s_segb,
                    HPS: tl.constexpr, HAS_SEQ: tl.constexpr, ATOMIC: tl.constexpr,
                    K: tl.constexpr, BLOCK: tl.constexpr, BLOCK_P: tl.constexpr,
                    BLOCK_N: tl.constexpr, DOT_DTYPE: tl.constexpr, PREC: tl.constexpr,
                    SPREC: tl.constexpr):
    # Program = a block of rows r of one chunk, HPS heads of one group; the first half of the
    # row blocks are rows of dB (positions s), the second half rows of dC (positions l):
    #   dB_s = sum_{l >= s} dCB_ls C_l + sum_h W_s dt_s dS_hᵀ x_s       (W_s = exp(cs_last - cs_s))
    #   dC_l = sum_{s <= l} dCB_ls B_s + sum_h exp(cs_l) S_in,hᵀ g_l,  inter_l = exp(cs_l) g_l · (S_in C_l)
    # The dCB part is added by the first head split only.
    pid = tl.program_id(0).to(tl.int64)
    b = pid // nc
    c = pid % nc
    gs = tl.program_id(1).to(tl.int64)
    g = gs // n_split
    split = gs % n_split
    h0 = g * heads_per_group + split * HPS
    n_rb = K // BLOCK
    rb = tl.program_id(2) % n_rb
    rows_of_c = tl.program_id(2) >= n_rb
    offs_r = rb * BLOCK + tl.arange(0, BLOCK)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    tr = c * K + offs_r
    mr = tr < L
    mp = offs_p < P
    mn = offs_n < N
    seg_b = seg_ptr + b * s_segb
    cbase = dCB_ptr + ((b * nc + c) * G + g) * K * K
    acc = tl.zeros((BLOCK, BLOCK_N), dtype=tl.float32)
    if rows_of_c:
        if split == 0:
            for sb in range(0, rb + 1):
                offs_s = sb * BLOCK + tl.arange(0, BLOCK)
                ts = c * K + offs_s
                dcb = tl.load(cbase + offs_r[:, None] * K + offs_s[None, :]).to(DOT_DTYPE)  # (BL, BS)
                Bs = tl.load(B_ptr + b * s_bb + g * s_bg + ts[:, None] * s_bl + offs_n[None, :] * s_bn,
                             mask=(ts < L)[:, None] & mn[None, :], other=0.0).to(DOT_DTYPE)
                acc += tl.dot(dcb, Bs, input_precision=PREC)
        if HAS_SEQ:
            keep_f = _seg(seg_b, tr, L) == _seg(seg_b, c * K - 1, L)
        Cl = tl.load(C_ptr + b * s_cb + g * s_cg + tr[:, None] * s_cl + offs_n[None, :] * s_cn,
                     mask=mr[:, None] & mn[None, :], other=0.0).to(tl.float32)      # (BL, BN)
        for hh in range(HPS):
            h = h0 + hh
            row = ((b * H + h) * nc + c) * K
            log_f = tl.load(cs_ptr + row + offs_r)
            if HAS_SEQ:
                log_f = tl.where(keep_f, log_f, float("-inf"))
            gl = tl.load(g_ptr + b * s_gb + h * s_gh + tr[:, None] * s_gl + offs_p[None, :] * s_gp,
                         mask=mr[:, None] & mp[None, :], other=0.0).to(tl.float32)   # (BL, BP)
            S = tl.load(st_ptr + (((b * nc + c) * H + h) * P + offs_p[:, None]) * N + offs_n[None, :],
                        mask=mp[:, None] & mn[None, :], other=0.0)                  # (BP, BN)
            GS = tl.dot(gl, S, input_precision=SPREC) * tl.exp(log_f)[:, None]
            tl.store(inter_ptr + row + offs_r, tl.sum(GS * Cl, axis=1))
            acc += GS
        out_ptr = dC_ptr
    else:
        if split == 0:
            for lb in range(rb, n_rb):
                offs_l = lb * BLOCK + tl.arange(0, BLOCK)
                tl_ = c * K + offs_l
                dcbT = tl.load(cbase + offs_l[None, :] * K + offs_r[:, None]).to(DOT_DTYPE)  # (BS, BL)
                Cl = tl.load(C_ptr + b * s_cb + g * s_cg + tl_[:, None] * s_cl + offs_n[None, :] * s_cn,
                             mask=(tl_ < L)[:, None] & mn[None, :], other=0.0).to(DOT_DTYPE)
                acc += tl.dot(dcbT, Cl, input_precision=PREC)
        if HAS_SEQ:
            keep_w = _seg(seg_b, tr, L) == _seg(seg_b, c * K + K - 1, L)
        for hh in range(HPS):
            h = h0 + hh
            row = ((b * H + h) * nc + c) * K
            cs_s = tl.load(cs_ptr + row + offs_r)
            dt_s = tl.load(dtp_ptr + row + offs_r)
            log_w = tl.load(cs_ptr + row + K - 1) - cs_s
            if HAS_SEQ:
                log_w = tl.where(keep_w, log_w, float("-inf"))
            xs = tl.load(x_ptr + b * s_xb + h * s_xh + tr[:, None] * s_xl + offs_p[None, :] * s_xp,
                         mask=mr[:, None] & mp[None, :], other=0.0).to(tl.float32)   # (BS, BP)
            dS = tl.load(dS_ptr + (((b * nc + c) * H + h) * P + offs_p[:, None]) * N + offs_n[None, :],
                         mask=mp[:, None] & mn[None, :], other=0.0)                 # (BP, BN)
            acc += tl.dot(xs, dS, input_precision=SPREC) * (tl.exp(log_w) * dt_s)[:, None]
        out_ptr = dB_ptr
    off = ((b * L + tr[:, None]) * G + g) * N + offs_n[None, :]
    if ATOMIC:
        tl.atomic_add(out_ptr + off, acc, mask=mr[:, None] & mn[None, :], sem="relaxed")
    else:
        tl.store(out_ptr + off, acc, mask=mr[:, None] & mn[None, :])


@triton.jit
def _bwd_ddt_kernel(dt_ptr, bias_ptr, A_ptr, dtp_ptr, cs_ptr, seg_ptr, intra_ptr, inter_ptr,
                    V_ptr, ddd_ptr, dR_ptr, ddt_ptr, dAp_ptr, dbp_ptr,
                    L, H, nc, n_lb, s_db, s_dl, s_dh, s_segb, lo, hi,
                    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_LIMIT: tl.constexpr,
                    HAS_SEQ: tl.constexpr, K: tl.constexpr, BLOCK_L: tl.constexpr,
                    BLOCK_H: tl.constexpr):
    # d(dA)_s = intra_s + sum_{l>=s} inter_l + sum_{s'<s} V_s' + R dR   (R = exp(cs_last), masked)
    # ddt_s = ddt_direct_s + A d(dA)_s, then back through clamp, softplus and the bias.
    pid = tl.program_id(0).to(tl.int64)
    b = pid // nc
    c = pid % nc
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_k = tl.arange(0, K)
    t = c * K + offs_k
    mh = offs_h < H
    valid = (t < L)[:, None] & mh[None, :]
    hrow = (b * H + offs_h) * nc + c                                                  # (BH,)
    off = hrow[None, :] * K + offs_k[:, None]                                        # (K, BH)
    intra = tl.zeros((K, BLOCK_H), dtype=tl.float32)
    for lb in range(0, n_lb):
        intra += tl.load(intra_ptr + (hrow[None, :] * n_lb + lb) * K + offs_k[:, None],
                         mask=mh[None, :] & (offs_k < (lb + 1) * BLOCK_L)[:, None], other=0.0)
    inter = tl.load(inter_ptr + off, mask=mh[None, :], other=0.0)
    V = tl.load(V_ptr + off, mask=mh[None, :], other=0.0)
    ddd = tl.load(ddd_ptr + off, mask=mh[None, :], other=0.0)
    dtp = tl.load(dtp_ptr + off, mask=mh[None, :], other=0.0)
    cs_last = tl.load(cs_ptr + hrow * K + K - 1, mask=mh, other=0.0)
    if HAS_SEQ:
        seg_b = seg_ptr + b * s_segb
        same = _seg(seg_b, c * K - 1, L) == _seg(seg_b, c * K + K - 1, L)
        cs_last = tl.where(same, cs_last, float("-inf"))
    RdR = tl.exp(cs_last) * tl.load(dR_ptr + hrow, mask=mh, other=0.0)
    d_dA = intra + tl.cumsum(inter, axis=0, reverse=True) + (tl.cumsum(V, axis=0) - V) + RdR[None, :]
    A = tl.load(A_ptr + offs_h, mask=mh, other=0.0).to(tl.float32)
    ddt = ddd + A[None, :] * d_dA
    tl.store(dAp_ptr + pid * H + offs_h, tl.sum(tl.where(valid, dtp * d_dA, 0.0), axis=0), mask=mh)
    raw = tl.load(dt_ptr + b * s_db + t[:, None] * s_dl + offs_h[None, :] * s_dh, mask=valid,
                  other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw += tl.load(bias_ptr + offs_h, mask=mh, other=0.0).to(tl.float32)[None, :]
    v = raw
    if SOFTPLUS:
        v = _softplus(raw)
    if HAS_LIMIT:
        ddt = tl.where((v >= lo) & (v <= hi), ddt, 0.0)
    if SOFTPLUS:
        ddt = tl.where(raw > 20.0, ddt, ddt * tl.sigmoid(raw))
    ddt = tl.where(valid, ddt, 0.0)
    tl.store(ddt_ptr + ((b * L + t[:, None]) * H + offs_h[None, :]),
             ddt.to(ddt_ptr.dtype.element_ty), mask=valid)
    tl.store(dbp_ptr + pid * H + offs_h, tl.sum(ddt, axis=0), mask=mh)


# ----------------------------------------------------------------------------- launch config

# Overrides for tests and tuning: any of the keys _launch_config returns.
_CONFIG_OVERRIDE: dict[str, int] = {}


def set_config(**kw: int) -> None:
    """Force launch parameters (``block_l``, ``block_s``, ``out_block_l``, ``out_block_s``, ``hpp``,
    ``warps_*``, ``bwd_grouped``, ``bwd_heads``, ...); for tests/tuning."""
    known = set(_launch_config(256, 64, 64, 1))
    unknown = sorted(set(kw) - known)
    if unknown:
        raise ValueError(f"triton_ssd.set_config: unknown keys {unknown}; expected some of {sorted(known)}")
    _CONFIG_OVERRIDE.update(kw)


def clear_config() -> None:
    _CONFIG_OVERRIDE.clear()


def _launch_config(K: int, P: int, N: int, heads_per_group: int) -> dict:
    """Block sizes and warps. ``block_p``/``block_n`` cover all of P/N (padded to a power of 2,
    >= 16 for tl.dot); blocks of chunk positions are 64, 32 when P or N needs a 256 tile."""
    block_p = max(16, triton.next_power_of_2(P))
    block_n = max(16, triton.next_power_of_2(N))
    big = max(block_p, block_n) >= 256
    # Measured on an H100 at (4, 4096, 64 heads, P 64, N 128, chunk 256) in bf16: one stage
    # (no software pipelining) lets several programs share an SM, which pays more than
    # pipelining each; one head per backward program (float32 atomics for dB/dC) beat 2 and 4.
    # The forward's output kernel has its own tile: 128 rows x 32-step blocks with 8 warps was the
    # fastest of 24 configs at P 64 / N 128 and N 64 (forward 0.76 vs 0.89 ms and 0.48 vs 0.62 ms on
    # an H100, results/raw/ssd_sweep_h100.json); in the backward kernels that tile was slower, so
    # they (and the gate-backward pass of the output kernel) keep block_l x block_s.
    # Chunks shorter than 128 and 256-wide tiles keep the backward's tile (not measured otherwise).
    # bwd_grouped=1 (dB/dC from the group kernels) passes the interpreter tests and the float64
    # checks at scale on an H100 (results/raw/kernels_mamba2_correctness_h100_grouped.log) but is
    # not yet timed, so the measured per-head backward stays the default until it is.
    block = min(K, 32 if big else 64)
    own_out = not big and K >= 128
    cfg = dict(block_p=block_p, block_n=block_n, block_l=block, block_s=block,
               out_block_l=128 if own_out else block, out_block_s=32 if own_out else block,
               cs_block_p=min(block_p, 64), cs_block_n=min(block_n, 128),  # chunk-state tile
               hpp=1,
               warps_out=8 if own_out else 4, warps_gate=4, warps_state=4, warps_bmm=4, warps_dx=4,
               warps_dc=4, pass_block=1024,
               stages_out=1, stages_state=3, stages_dx=1, stages_dc=1,
               bwd_grouped=0, bwd_heads=16, warps_dcb=4, warps_dbc=4, stages_dcb=1, stages_dbc=1)
    cfg.update(_CONFIG_OVERRIDE)
    for key in ("block_l", "block_s", "out_block_l"):
        cfg[key] = min(cfg[key], K)
    if cfg["bwd_grouped"]:  # the group kernels tile the chunk in square blocks
        cfg["block_s"] = cfg["block_l"]
    # heads per split of a group in the group kernels: the largest divisor not above the request
    cfg["bwd_heads"] = max(d for d in range(1, min(cfg["bwd_heads"], heads_per_group) + 1)
                           if heads_per_group % d == 0)
    cfg["out_block_s"] = min(cfg["out_block_s"], cfg["out_block_l"])  # steps within a row block
    # heads per program: the largest divisor of the heads per group not above the request
    cfg["hpp"] = max(d for d in range(1, min(cfg["hpp"], heads_per_group) + 1)
                     if heads_per_group % d == 0)
    return cfg


def _dot_setup(*tensors: torch.Tensor) -> tuple[tl.dtype, str, str]:
    """(dtype of tl.dot operands, their input_precision, input_precision of the float32 dots
    with states). 16-bit inputs use 16-bit dots and tf32 for the states; float32 inputs use
    exact float32 dots (torch's default matmul precision). The interpreter multiplies in float32."""
    dts = {t.dtype for t in tensors}
    if not interpreter_enabled() and len(dts) == 1 and dts <= {torch.bfloat16, torch.float16}:
        return (tl.bfloat16 if torch.bfloat16 in dts else tl.float16), "tf32", "tf32"
    return tl.float32, "ieee", "ieee"


def _strides4(t: torch.Tensor) -> tuple[int, int, int, int]:
    return tuple(t.stride())  # type: ignore[return-value]


# ----------------------------------------------------------------------------- launchers

def _launch_dt(dt, dt_bias, A, dt_softplus, dt_limit, K, nc):
    batch, L, H = dt.shape
    dtp = torch.empty(batch, H, nc, K, device=dt.device, dtype=torch.float32)
    cs = torch.empty_like(dtp)
    block_h = max(1, min(triton.next_power_of_2(H), max(1, 4096 // K)))
    has_limit = tuple(dt_limit) != _NO_LIMIT
    _dt_kernel[(batch * nc, triton.cdiv(H, block_h))](
        dt, dt_bias if dt_bias is not None else A, A, dtp, cs, L, H, nc, *dt.stride(),
        float(dt_limit[0]), float(dt_limit[1]),
        HAS_BIAS=dt_bias is not None, SOFTPLUS=bool(dt_softplus), HAS_LIMIT=has_limit,
        K=K, BLOCK_H=block_h, num_warps=4)
    return dtp, cs


def _launch_bmm(B, C, K, nc, cfg, dot):
    batch, L, G, N = B.shape
    CB = torch.empty(batch, nc, G, K, K, device=B.device, dtype=torch.float32)
    bm, bs = cfg["block_l"], cfg["block_s"]
    _bmm_kernel[(batch * nc, G, (K // bm) * (K // bs))](
        C, B, CB, L, G, nc, N, *_strides4(C), *_strides4(B),
        K=K, BLOCK_M=bm, BLOCK_S=bs, BLOCK_KN=min(cfg["block_n"], 64), DOT_DTYPE=dot[0],
        PREC=dot[1], num_warps=cfg["warps_bmm"])
    return CB


def _launch_chunk_state(X, Y, dtp, cs, seg, K, nc, H, bwd, cfg, dot):
    batch, L, _, P = X.shape
    G, N = Y.shape[2], Y.shape[3]
    out = torch.empty(batch, nc, H, P, N, device=X.device, dtype=torch.float32)
    bp, bn = cfg["cs_block_p"], cfg["cs_block_n"]
    seg_ = seg if seg is not None else cs
    _chunk_state_kernel[(batch * nc, H, triton.cdiv(P, bp) * triton.cdiv(N, bn))](
        X, Y, dtp, cs, seg_, out, L, H, nc, P, N, H // G, *_strides4(X), *_strides4(Y),
        seg_.stride(0),
        BWD=bwd, HAS_SEQ=seg is not None, K=K, BLOCK_S=cfg["block_s"], BLOCK_P=bp, BLOCK_N=bn,
        DOT_DTYPE=dot[0], PREC=dot[1], num_warps=cfg["warps_state"], num_stages=cfg["stages_state"])
    return out


def _launch_pass(buf, cs, seg, init, K, L, reverse, cfg, states=None):
    batch, nc, H, P, N = buf.shape
    PN = P * N
    block = min(cfg["pass_block"], triton.next_power_of_2(PN))
    n_pb = triton.cdiv(PN, block)
    final = torch.empty(batch, H, P, N, device=buf.device, dtype=torch.float32)
    dR = torch.empty(batch, H, nc, n_pb, device=buf.device, dtype=torch.float32) if reverse else final
    seg_ = seg if seg is not None else cs
    init_ = init.float().contiguous() if init is not None else final
    _state_pass_kernel[(n_pb, batch * H)](
        buf, states if states is not None else buf, cs, seg_, init_, final, dR,
        L, H, nc, PN, seg_.stride(0),
        REVERSE=reverse, HAS_INIT=init is not None, HAS_SEQ=seg is not None, K=K, BLOCK=block,
        num_warps=4)
    return final, (dR.sum(-1) if reverse else None)


def _launch_chunk_out(x, C, CB, states, dtp, cs, seg, D, z, K, nc, cfg, dot,
                      dout=None, out_dtype=None):
    """Forward output; with ``dout`` the gate backward instead: returns ``(g, dz)``."""
    batch, L, H, P = x.shape
    G, N = C.shape[2], C.shape[3]
    gate_bwd = dout is not None
    out = torch.empty(batch, L, H, P, device=x.device, dtype=out_dtype or x.dtype)
    dz = torch.empty(batch, L, H, P, device=x.device, dtype=z.dtype) if gate_bwd else out
    # the forward output has its own tile; the gate backward keeps the backward kernels' one
    bl, bs, warps = ((cfg["block_l"], cfg["block_s"], cfg["warps_gate"]) if gate_bwd else
                     (cfg["out_block_l"], cfg["out_block_s"], cfg["warps_out"]))
    bp = cfg["block_p"]
    seg_ = seg if seg is not None else cs
    z_ = z if z is not None else x
    dout_ = dout if dout is not None else x
    D_ = D if D is not None else cs
    s_D = (D.stride(0), D.stride(1) if D.dim() == 2 else 0) if D is not None else (0, 0)
    _chunk_out_kernel[(batch * nc, H, (K // bl) * triton.cdiv(P, bp))](
        x, C, CB, states, dtp, cs, seg_, D_, z_, out, dout_, dz,
        L, H, G, nc, P, N, H // G, *_strides4(x), *_strides4(C), *_strides4(z_), *_strides4(dout_),
        seg_.stride(0), *s_D,
        GATE_BWD=gate_bwd, HAS_D=D is not None, HAS_Z=z is not None, HAS_SEQ=seg is not None,
        K=K, BLOCK_L=bl, BLOCK_S=bs, BLOCK_P=bp, BLOCK_N=cfg["block_n"],
        DOT_DTYPE=dot[0], PREC=dot[1], SPREC=dot[2], num_warps=warps,
        num_stages=cfg["stages_out"])
    return (out, dz) if gate_bwd else out


def _launch_grouped_dbc(x, B, C, g, dS, states, CB, dtp, cs, seg, dB, dC, intra, inter, K, nc, cfg, dot):
    """The group-level part of the backward: ``dCB`` summed over the heads of each group (and the
    per-head ``intra``), then ``dB``, ``dC`` and ``inter`` from it and the chunk states. Fills the
    given ``dB``/``dC`` (zeroed by the caller when the heads of a group come in several splits)."""
    batch, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    hps = cfg["bwd_heads"]
    n_split = (H // G) // hps
    block = cfg["block_l"]
    n_lb = K // block
    seg_ = seg if seg is not None else cs
    dCB = (torch.zeros if n_split > 1 else torch.empty)(batch, nc, G, K, K, device=x.device,
                                                        dtype=torch.float32)
    _bwd_dcb_kernel[(batch * nc, G * n_split, n_lb)](
        x, CB, g, dtp, cs, seg_, dCB, intra, L, H, G, nc, P, H // G, n_split,
        *_strides4(x), *_strides4(g), seg_.stride(0),
        HPS=hps, HPS_P2=triton.next_power_of_2(hps), HAS_SEQ=seg is not None, ATOMIC=n_split > 1,
        K=K, BLOCK=block, BLOCK_P=cfg["block_p"], DOT_DTYPE=dot[0], PREC=dot[1],
        num_warps=cfg["warps_dcb"], num_stages=cfg["stages_dcb"])
    _bwd_dbc_kernel[(batch * nc, G * n_split, 2 * n_lb)](
        x, B, C, g, dS, states, dCB, dtp, cs, seg_, dB, dC, inter, L, H, G, nc, P, N, H // G, n_split,
        *_strides4(x), *_strides4(B), *_strides4(C), *_strides4(g), seg_.stride(0),
        HPS=hps, HAS_SEQ=seg is not None, ATOMIC=n_split > 1, K=K, BLOCK=block,
        BLOCK_P=cfg["block_p"], BLOCK_N=cfg["block_n"], DOT_DTYPE=dot[0], PREC=dot[1],
        SPREC=dot[2], num_warps=cfg["warps_dbc"], num_stages=cfg["stages_dbc"])


def _segments(seq_idx: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """(b, L) segment ids counting the changes of seq_idx (so repeated ids never merge)."""
    if seq_idx is None:
        return None
    changes = (seq_idx[:, 1:] != seq_idx[:, :-1]).to(torch.int32)
    return torch.nn.functional.pad(changes.cumsum(dim=1, dtype=torch.int32), (1, 0)).contiguous()


def _chunking(chunk_size: int, L: int) -> tuple[int, int]:
    K = chunk_size if L >= chunk_size else max(16, triton.next_power_of_2(L))
    return K, triton.cdiv(L, K)


# torch.library custom ops: torch.compile keeps a model with the SSD in one graph (shapes from the
# fake implementations) instead of breaking it at every scan.
@torch.library.custom_op("mambakit::ssd_chunk_scan_triton_fwd", mutates_args=())
def _fwd_op(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
            D: Optional[torch.Tensor], z: Optional[torch.Tensor], dt_bias: Optional[torch.Tensor],
            initial_states: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor], chunk_size: int,
            dt_softplus: bool, dt_min: float, dt_max: float
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y (b, L, H, P) in x.dtype, final (b, H, P, N) fp32, entering states (b, nc, H, P, N) fp32)``."""
    batch, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    K, nc = _chunking(chunk_size, L)
    cfg = _launch_config(K, P, N, H // G)
    dot = _dot_setup(x, B, C)
    seg = _segments(seq_idx)
    dtp, cs = _launch_dt(dt, dt_bias, A, dt_softplus, (dt_min, dt_max), K, nc)
    CB = _launch_bmm(B, C, K, nc, cfg, dot)
    states = _launch_chunk_state(x, B, dtp, cs, seg, K, nc, H, False, cfg, dot)
    final, _ = _launch_pass(states, cs, seg, initial_states, K, L, False, cfg)
    y = _launch_chunk_out(x, C, CB, states, dtp, cs, seg, D, z, K, nc, cfg, dot)
    return y, final, states


@_fwd_op.register_fake
def _(x, dt, A, B, C, D, z, dt_bias, initial_states, seq_idx, chunk_size, dt_softplus, dt_min, dt_max):
    batch, L, H, P = x.shape
    N = B.shape[3]
    nc = _chunking(chunk_size, L)[1]
    f32 = torch.float32
    return (x.new_empty(batch, L, H, P), x.new_empty(batch, H, P, N, dtype=f32),
            x.new_empty(batch, nc, H, P, N, dtype=f32))


@torch.library.custom_op("mambakit::ssd_chunk_scan_triton_bwd", mutates_args=())
def _bwd_op(dy: torch.Tensor, dfinal: Optional[torch.Tensor], x: torch.Tensor, dt: torch.Tensor,
            A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: Optional[torch.Tensor],
            z: Optional[torch.Tensor], dt_bias: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor],
            states: torch.Tensor, chunk_size: int, dt_softplus: bool, dt_min: float, dt_max: float
            ) -> list[torch.Tensor]:
    """``[dx, ddt, dA (H,), dB, dC (b, L, G, N), dD (D's shape), dz, ddt_bias (H,), dinit (b, H, P, N)]``;
    reductions in float32, absent optionals as (fresh) empty tensors."""
    batch, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    K, nc = _chunking(chunk_size, L)
    cfg = _launch_config(K, P, N, H // G)
    dot = _dot_setup(x, B, C)
    dev, f32 = x.device, torch.float32
    dt_limit = (dt_min, dt_max)
    seg = _segments(seq_idx)
    dtp, cs = _launch_dt(dt, dt_bias, A, dt_softplus, dt_limit, K, nc)
    CB = _launch_bmm(B, C, K, nc, cfg, dot)
    dz = x.new_empty(0)
    if z is not None:  # recompute the pre-gate output: g = dy * silu(z), dz
        g, dz = _launch_chunk_out(x, C, CB, states, dtp, cs, seg, D, z, K, nc, cfg, dot,
                                  dout=dy, out_dtype=x.dtype)
    else:
        g = dy
    # gradient of each chunk's contribution, by the reverse recurrence over chunks
    dS = _launch_chunk_state(g, C, dtp, cs, seg, K, nc, H, True, cfg, dot)
    dinit, dR = _launch_pass(dS, cs, seg, dfinal, K, L, True, cfg, states=states)
    hpp = cfg["hpp"]
    atomic = (H // G) != hpp
    bl, bs = cfg["block_l"], cfg["block_s"]
    n_sb, n_lb = K // bs, K // bl
    seg_ = seg if seg is not None else cs
    s_seg = seg_.stride(0)
    D_ = D if D is not None else cs
    s_D = (D.stride(0), D.stride(1) if D.dim() == 2 else 0) if D is not None else (0, 0)
    dx = torch.empty(batch, L, H, P, device=dev, dtype=x.dtype)
    if cfg["bwd_grouped"]:
        atomic = False                                  # the dx kernel leaves dB alone
        atomic_g = (H // G) // cfg["bwd_heads"] > 1     # head splits add into dB/dC
        alloc = torch.zeros if atomic_g else torch.empty
    else:
        alloc = torch.zeros if atomic else torch.empty
    dB = alloc(batch, L, G, N, device=dev, dtype=f32)
    dC = alloc(batch, L, G, N, device=dev, dtype=f32)
    ddd = torch.empty(batch, H, nc, K, device=dev, dtype=f32)
    V = torch.empty_like(ddd)
    inter = torch.empty_like(ddd)
    intra = torch.empty(batch, H, nc, n_lb, K, device=dev, dtype=f32)
    dDp = torch.empty(batch * nc * n_sb, H, P, device=dev, dtype=f32) if D is not None else ddd
    grouped = bool(cfg["bwd_grouped"])
    common = dict(HPP=hpp, HAS_SEQ=seg is not None, ATOMIC=atomic, K=K, BLOCK_L=bl,
                  BLOCK_S=bs, BLOCK_P=cfg["block_p"], BLOCK_N=cfg["block_n"],
                  DOT_DTYPE=dot[0], PREC=dot[1], SPREC=dot[2])
    _bwd_dx_kernel[(batch * nc, H // hpp, n_sb)](
        x, B, C, CB, g, dS, dtp, cs, seg_, D_, dx, dB, ddd, V, dDp,
        L, H, G, nc, P, N, H // G, *_strides4(x), *_strides4(B), *_strides4(C),
        *_strides4(g), s_seg, *s_D, HAS_D=D is not None, WITH_DB=not grouped,
        num_warps=cfg["warps_dx"], num_stages=cfg["stages_dx"], **common)
    if grouped:
        _launch_grouped_dbc(x, B, C, g, dS, states, CB, dtp, cs, seg, dB, dC, intra, inter,
                            K, nc, cfg, dot)
    else:
        _bwd_dc_kernel[(batch * nc, H // hpp, n_lb)](
            x, B, C, CB, g, states, dtp, cs, seg_, dC, intra, inter,
            L, H, G, nc, P, N, H // G, *_strides4(x), *_strides4(B), *_strides4(C),
            *_strides4(g), s_seg, num_warps=cfg["warps_dc"], num_stages=cfg["stages_dc"], **common)
    ddt = torch.empty(batch, L, H, device=dev, dtype=dt.dtype)
    dAp = torch.empty(batch * nc, H, device=dev, dtype=f32)
    dbp = torch.empty(batch * nc, H, device=dev, dtype=f32)
    block_h = max(1, min(triton.next_power_of_2(H), max(1, 4096 // K)))
    _bwd_ddt_kernel[(batch * nc, triton.cdiv(H, block_h))](
        dt, dt_bias if dt_bias is not None else A, A, dtp, cs, seg_, intra, inter, V, ddd,
        dR, ddt, dAp, dbp, L, H, nc, n_lb, *dt.stride(), s_seg, float(dt_min), float(dt_max),
        HAS_BIAS=dt_bias is not None, SOFTPLUS=dt_softplus,
        HAS_LIMIT=dt_limit != _NO_LIMIT, HAS_SEQ=seg is not None, K=K,
        BLOCK_L=bl, BLOCK_H=block_h, num_warps=4)
    dD = dAp.new_empty(0)   # absent gradients: fresh empty tensors (outputs may not alias)
    if D is not None:
        dD = dDp.sum(0)
        dD = dD.sum(-1) if D.dim() == 1 else dD
    return [dx, ddt, dAp.sum(0), dB, dC, dD, dz, dbp.sum(0) if dt_bias is not None else dAp.new_empty(0), dinit]


@_bwd_op.register_fake
def _(dy, dfinal, x, dt, A, B, C, D, z, dt_bias, seq_idx, states, chunk_size, dt_softplus, dt_min, dt_max):
    batch, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    f32 = torch.float32
    return [x.new_empty(batch, L, H, P), dt.new_empty(batch, L, H), x.new_empty(H, dtype=f32),
            x.new_empty(batch, L, G, N, dtype=f32), x.new_empty(batch, L, G, N, dtype=f32),
            x.new_empty(D.shape, dtype=f32) if D is not None else x.new_empty(0, dtype=f32),
            z.new_empty(batch, L, H, P) if z is not None else x.new_empty(0),
            x.new_empty(H, dtype=f32) if dt_bias is not None else x.new_empty(0, dtype=f32),
            x.new_empty(batch, H, P, N, dtype=f32)]


def _setup_context(ctx, inputs, output):
    x, dt, A, B, C, D, z, dt_bias, initial_states, seq_idx, chunk_size, dt_softplus, dt_min, dt_max = inputs
    ctx.save_for_backward(x, dt, A, B, C, D, z, dt_bias, seq_idx, output[2])
    ctx.args = (int(chunk_size), bool(dt_softplus), float(dt_min), float(dt_max))
    ctx.init_dtype = None if initial_states is None else initial_states.dtype


def _backward(ctx, dy, dfinal, _dstates):
    x, dt, A, B, C, D, z, dt_bias, seq_idx, states = ctx.saved_tensors
    if dy is None:
        dy = torch.zeros_like(x)
    dx, ddt, dA, dB, dC, dD, dz, dbias, dinit = _bwd_op(dy, dfinal, x, dt, A, B, C, D, z, dt_bias, seq_idx,
                                                        states, *ctx.args)
    return (dx, ddt, dA.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype), dD.to(D.dtype) if D is not None else None,
            dz if z is not None else None, dbias.to(dt_bias.dtype) if dt_bias is not None else None,
            dinit.to(ctx.init_dtype) if ctx.init_dtype is not None else None, None, None, None, None, None)


_fwd_op.register_autograd(_backward, setup_context=_setup_context)


def _use_reference(x, B, C, chunk_size, P, N) -> bool:
    """Cases this path does not take: chunk sizes that are not a power of 2 >= 16, float64,
    and P or N above 256 (one tile covers all of P and N in the backward)."""
    pow2 = chunk_size >= 16 and chunk_size & (chunk_size - 1) == 0
    f64 = any(t.dtype == torch.float64 for t in (x, B, C))
    return not pow2 or f64 or P > 256 or N > 256


def ssd_chunk_scan_triton(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    chunk_size: int, D: Optional[torch.Tensor], z: Optional[torch.Tensor],
    dt_bias: Optional[torch.Tensor], dt_softplus: bool, dt_limit: tuple[float, float],
    initial_states: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same arguments and results as ``ssd._ssd_chunk_scan_reference`` (validated inputs):
    ``(y (b, L, H, P) in x.dtype, final_states (b, H, P, N) float32)``. Differentiable in x, dt,
    A, B, C, D, z, dt_bias and initial_states. Falls back to the reference for chunk sizes that
    are not a power of 2 >= 16, float64 inputs and P or N > 256."""
    P, N = x.shape[3], B.shape[3]
    if _use_reference(x, B, C, chunk_size, P, N):
        from .ssd import _ssd_chunk_scan_reference
        return _ssd_chunk_scan_reference(x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus,
                                         dt_limit, initial_states, seq_idx)
    if x.device.type != "cuda" and not interpreter_enabled():
        raise NotImplementedError("ssd_chunk_scan(impl='triton') needs CUDA tensors (or CPU "
                                  "tensors with TRITON_INTERPRET=1)")
    y, final, _ = _fwd_op(x, dt, A, B, C, D, z, dt_bias, initial_states, seq_idx, int(chunk_size),
                          bool(dt_softplus), float(dt_limit[0]), float(dt_limit[1]))
    return y, final
