"""Fused Triton selective scan (Mamba-1) with the state axis inside the tile.

Same op and semantics as ``triton_selective_scan.py`` (see ``selective_scan.py`` for the math),
organised differently: a program owns ``BLOCK_D`` channels of one batch element and works on
3-D register tiles ``(BLOCK_D, BLOCK_N, BLOCK_L)``, so that all states of the channel block are
scanned together by one ``tl.associative_scan(axis=2)`` per chunk of ``BLOCK_L`` time steps
(two in the backward: the recomputation of the states and the reverse adjoint scan). Every
contraction is then one reduction per chunk:

* ``y = sum_n C h``                            axis 1 (states),
* the state carried to the next chunk         masked sum over axis 2, once per chunk,
* ``dA += sum_t G dt a h_prev``                axis 2 into a ``(BLOCK_D, BLOCK_N)`` accumulator,
* ``dB, dC``                                   axis 0 (channels), one 2-D atomic add each
                                              (or a per-block partial, deterministic mode),
* ``ddelta, du``                               axis 1.

Checkpoints: the forward stores the state entering every ``CK`` steps, ``(B, D, cdiv(L, CK), N)``
float32, where ``CK`` is the backward's ``BLOCK_L``; the backward walks those intervals in reverse
and recomputes their states from the checkpoint, so ``(B, D, L, N)`` never exists in memory. The
two directions therefore have independent launch configurations (both ``BLOCK_L`` powers of 2).

Adjoint carry: the backward carries ``G`` at the first step of the interval it just finished
(not multiplied by the decay); the interval before multiplies it by its own ``a_{t+1}`` at its last
step, which it computes anyway, so no ``a`` tile has to stay alive for the carry.

Runs on CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1`` (for tests).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

# Shared with the kernel that loops over the states: the scan's combine, softplus, the time
# layout, and one deterministic switch for both kernels.
from .triton_selective_scan import (_combine, _softplus, _store_checkpoint, _time_contiguous, aligned_length,
                                    deterministic_mode, fake_grads, interpreter_enabled, set_deterministic,
                                    time_aligned_empty)

__all__ = ["selective_scan_triton_nd", "set_config", "clear_config", "set_deterministic", "interpreter_enabled"]


@triton.jit
def _load_dt(delta_ptr, bias_ptr, offs_d, t, mask_d, mask_t, mask_ld, sdd, sdl,
             HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """dt (BLOCK_D, BLOCK_L) after bias and softplus, exactly 0 outside the sequence (``mask_t``);
    and the pre-softplus value (for the softplus derivative). ``mask_ld`` (a superset) says what
    is loaded (the forward reads padded rows whole, see ``_fwd_kernel``)."""
    m = mask_d[:, None] & mask_t[None, :]
    raw = tl.load(delta_ptr + offs_d[:, None] * sdd + t[None, :] * sdl, mask=mask_d[:, None] & mask_ld[None, :],
                  other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[:, None]
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw)
    return tl.where(m, dt, 0.0), raw


@triton.jit
def _reset(seq_ptr, t, L, ssl):
    """True where position t starts a new packed sequence, (BLOCK_L,); never at t = 0 or t >= L."""
    inside = (t > 0) & (t < L)
    cur = tl.load(seq_ptr + t * ssl, mask=inside, other=0)
    prev = tl.load(seq_ptr + (t - 1) * ssl, mask=inside, other=0)
    return inside & (cur != prev)


@triton.jit(do_not_specialize=["n_ck"])
def _fwd_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, seq_ptr,
                out_ptr, last_ptr, ckpt_ptr,
                L, LP, Dm, dg, n_ck,
                sub, sud, sul, sdb, sdd, sdl, sad, san,
                sbb, sbg, sbn, sbl, scb, scg, scn, scl,
                szb, szd, szl, sob, sod, sol, ssb, ssl,
                HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                HAS_H0: tl.constexpr, HAS_SEQ: tl.constexpr, SOFTPLUS: tl.constexpr,
                N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
                CK: tl.constexpr, STORE_CKPT: tl.constexpr, NUM_STAGES: tl.constexpr):
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)         # int64: D*L can pass 2**31
    offs_n = tl.arange(0, BLOCK_N)
    offs_l = tl.arange(0, BLOCK_L)
    mask_d = offs_d < Dm
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]
    grp = ((pid_d * BLOCK_D) // dg).to(tl.int64)                               # one group per block
    n_chunks = tl.cdiv(L, BLOCK_L)
    state_off = (b * Dm + offs_d[:, None]) * N + offs_n[None, :]               # (BD, BN) into (B, D, N)
    ck_off = (b * Dm + offs_d[:, None]) * n_ck * N + offs_n[None, :]          # + k*N into (B, D, n_ck, N)
    A2 = tl.load(A_ptr + offs_d[:, None] * sad + offs_n[None, :] * san, mask=mask_dn,
                 other=0.0).to(tl.float32) * 1.4426950408889634                # A log2(e), (BD, BN)
    if HAS_H0:
        h_carry = tl.load(h0_ptr + state_off, mask=mask_dn, other=0.0).to(tl.float32)
    else:
        h_carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    is_first = (offs_l == 0)[None, None, :]
    is_last = (offs_l == BLOCK_L - 1)[None, None, :]
    u_row = u_ptr + b * sub + offs_d[:, None] * sud                           # (BD, 1)
    z_row = z_ptr + b * szb + offs_d[:, None] * szd
    o_row = out_ptr + b * sob + offs_d[:, None] * sod
    # (BN, BL) tiles are addressed as a scalar chunk base plus int32 offsets (the launcher checks
    # they fit): int64 pointer tiles of this size would hold a lot of registers across the loop.
    B_base = B_ptr + b * sbb + grp * sbg
    C_base = C_ptr + b * scb + grp * scg
    nl_B = offs_n[:, None] * sbn + offs_l[None, :] * sbl                      # (BN, BL) int32
    nl_C = offs_n[:, None] * scn + offs_l[None, :] * scl
    for c in tl.range(0, n_chunks, num_stages=NUM_STAGES):
        # checkpoint(s): the state entering every CK steps (none when no backward will follow)
        if STORE_CKPT:
            _store_checkpoint(ckpt_ptr, ck_off, c, h_carry, mask_dn, N, BLOCK_L, CK)
        t = (c * BLOCK_L + offs_l).to(tl.int64)                                # (BL,)
        # loads read rows up to LP (L rounded up to 16, memory the launcher guarantees): a mask
        # constant over aligned runs of 16 lets them vectorise; past L, u and B are zeroed and
        # dt is 0, so the state does not move, and nothing is stored
        mask_t = t < L
        mask_ld = t < LP
        m_dl = mask_d[:, None] & mask_t[None, :]
        m_ld = mask_d[:, None] & mask_ld[None, :]
        m_nl = mask_n[:, None] & mask_ld[None, :]
        u = tl.load(u_row + t[None, :] * sul, mask=m_ld, other=0.0).to(tl.float32)
        u = tl.where(m_dl, u, 0.0)
        dt, _ = _load_dt(delta_ptr + b * sdb, bias_ptr, offs_d, t, mask_d, mask_t, mask_ld, sdd, sdl,
                         HAS_BIAS, SOFTPLUS)                                   # (BD, BL)
        t0 = c * BLOCK_L                                                       # < L < 2**31
        Bt = tl.load(B_base + t0 * sbl + nl_B, mask=m_nl, other=0.0).to(tl.float32)  # (BN, BL)
        Bt = tl.where(mask_t[None, :], Bt, 0.0)
        Ct = tl.load(C_base + t0 * scl + nl_C, mask=m_nl, other=0.0).to(tl.float32)
        a = tl.exp2(dt[:, None, :] * A2[:, :, None])                            # (BD, BN, BL)
        if HAS_SEQ:
            reset = _reset(seq_ptr + b * ssb, t, L, ssl)
            a = tl.where(reset[None, None, :], 0.0, a)
        # x_t = dt u B_t; the carried state enters as a_t0 h_carry at the chunk's first step
        x = (dt * u)[:, None, :] * Bt[None, :, :] + tl.where(is_first, a * h_carry[:, :, None], 0.0)
        _, h = tl.associative_scan((a, x), axis=2, combine_fn=_combine)       # h_t, (BD, BN, BL)
        y = tl.sum(h * Ct[None, :, :], axis=1)                                 # (BD, BL)
        if STORE_CKPT and CK < BLOCK_L:
            for j in tl.static_range(1, BLOCK_L // CK):
                h_j = tl.sum(tl.where((offs_l == j * CK - 1)[None, None, :], h, 0.0), axis=2)
                k = c * (BLOCK_L // CK) + j
                tl.store(ckpt_ptr + ck_off + k * N, h_j, mask=mask_dn & (k < n_ck))
        # beyond L, dt = 0 so a = 1 and x = 0: the last column holds the state after step L-1
        h_carry = tl.sum(tl.where(is_last, h, 0.0), axis=2)                     # (BD, BN)
        if HAS_D:
            y += Dv[:, None] * u
        if HAS_Z:
            zz = tl.load(z_row + t[None, :] * szl, mask=m_ld, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(o_row + t[None, :] * sol, y.to(out_ptr.dtype.element_ty), mask=m_dl)
    tl.store(last_ptr + state_off, h_carry, mask=mask_dn)


@triton.jit
def _bwd_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, seq_ptr,
                ckpt_ptr, dout_ptr, dlast_ptr,
                du_ptr, ddelta_ptr, dz_ptr, dh0_ptr, dA_ptr, dD_ptr, dbias_ptr, dB_ptr, dC_ptr,
                L, LP, Dm, dg, n_rows,
                sub, sud, sul, sdb, sdd, sdl, sad, san,
                sbb, sbg, sbn, sbl, scb, scg, scn, scl,
                szb, szd, szl, sgb, sgd, sgl, ssb, ssl,
                HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr,
                HAS_SEQ: tl.constexpr, HAS_DLAST: tl.constexpr, SOFTPLUS: tl.constexpr,
                DETERMINISTIC: tl.constexpr,
                N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
                NUM_STAGES: tl.constexpr):
    # Outputs: du, ddelta, dz (B, D, L) with row pitch LP (L rounded up to 16); dA (B, D, N) per-batch partial; dD, dbias
    # (B, D) partials; dh0 (B, D, N). dB, dC float32 (B, n_rows, N, L): n_rows = G with atomic
    # adds, or n_rows = number of channel blocks with plain stores (DETERMINISTIC).
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    offs_n = tl.arange(0, BLOCK_N)
    offs_l = tl.arange(0, BLOCK_L)
    mask_d = offs_d < Dm
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]
    grp = ((pid_d * BLOCK_D) // dg).to(tl.int64)
    if DETERMINISTIC:
        row = pid_d.to(tl.int64)
    else:
        row = grp
    n_chunks = tl.cdiv(L, BLOCK_L)                                             # = checkpoints
    state_off = (b * Dm + offs_d[:, None]) * N + offs_n[None, :]
    ck_off = (b * Dm + offs_d[:, None]) * n_chunks * N + offs_n[None, :]
    A = tl.load(A_ptr + offs_d[:, None] * sad + offs_n[None, :] * san, mask=mask_dn, other=0.0).to(tl.float32)
    A2 = A * 1.4426950408889634
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_DLAST:
        g_carry = tl.load(dlast_ptr + state_off, mask=mask_dn, other=0.0).to(tl.float32)
    else:
        g_carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    is_first = (offs_l == 0)[None, None, :]
    is_last = (offs_l == BLOCK_L - 1)[None, None, :]
    u_row = u_ptr + b * sub + offs_d[:, None] * sud
    z_row = z_ptr + b * szb + offs_d[:, None] * szd
    g_row = dout_ptr + b * sgb + offs_d[:, None] * sgd
    B_base = B_ptr + b * sbb + grp * sbg                                       # see the forward
    C_base = C_ptr + b * scb + grp * scg
    nl_B = offs_n[:, None] * sbn + offs_l[None, :] * sbl                      # (BN, BL) int32
    nl_C = offs_n[:, None] * scn + offs_l[None, :] * scl
    dl_out = (b * Dm + offs_d[:, None]) * LP                                   # rows of (B, D, LP)
    dbc_base = (b * n_rows + row) * N * L                                      # (B, n_rows, N, L)
    nl_out = offs_n[:, None] * L + offs_l[None, :]                            # int32, N*L < 2**31
    for i in tl.range(0, n_chunks, num_stages=NUM_STAGES):
        c = n_chunks - 1 - i
        h_start = tl.load(ckpt_ptr + ck_off + c * N, mask=mask_dn, other=0.0)  # (BD, BN)
        t = (c * BLOCK_L + offs_l).to(tl.int64)
        mask_t = t < L
        m_dl = mask_d[:, None] & mask_t[None, :]
        m_nl = mask_n[:, None] & mask_t[None, :]
        u = tl.load(u_row + t[None, :] * sul, mask=m_dl, other=0.0).to(tl.float32)
        dt, raw = _load_dt(delta_ptr + b * sdb, bias_ptr, offs_d, t, mask_d, mask_t, mask_t, sdd, sdl,
                           HAS_BIAS, SOFTPLUS)
        t_next = t + 1
        dt_next, _ = _load_dt(delta_ptr + b * sdb, bias_ptr, offs_d, t_next, mask_d, t_next < L, t_next < L, sdd, sdl,
                              HAS_BIAS, SOFTPLUS)
        dtu = dt * u
        g = tl.load(g_row + t[None, :] * sgl, mask=m_dl, other=0.0).to(tl.float32)
        if HAS_Z:
            zz = tl.load(z_row + t[None, :] * szl, mask=m_dl, other=0.0).to(tl.float32)
            sig = tl.sigmoid(zz)
            gy = g * zz * sig
        else:
            gy = g
        t0 = c * BLOCK_L                                                       # < L < 2**31
        Bt = tl.load(B_base + t0 * sbl + nl_B, mask=m_nl, other=0.0).to(tl.float32)  # (BN, BL)
        Ct = tl.load(C_base + t0 * scl + nl_C, mask=m_nl, other=0.0).to(tl.float32)

        # 1. recompute the states of the interval from its checkpoint
        a = tl.exp2(dt[:, None, :] * A2[:, :, None])                            # (BD, BN, BL)
        if HAS_SEQ:
            reset = _reset(seq_ptr + b * ssb, t, L, ssl)
            a = tl.where(reset[None, None, :], 0.0, a)
        x = dtu[:, None, :] * Bt[None, :, :]
        _, h = tl.associative_scan((a, x + tl.where(is_first, a * h_start[:, :, None], 0.0)), axis=2,
                                   combine_fn=_combine)
        # everything that needs h, so that h (and a) die before the adjoint scan
        if HAS_Z:
            y_pre = tl.sum(h * Ct[None, :, :], axis=1)                         # (BD, BL)
        dC_blk = tl.sum(h * gy[:, None, :], axis=0)                            # (BN, BL)
        decay_in = h - x                                                       # a_t h_{t-1}

        # 2. adjoint G_t = C_t gy_t + a_{t+1} G_{t+1}; the carry is G at the next interval's start
        a_next = tl.exp2(dt_next[:, None, :] * A2[:, :, None])
        if HAS_SEQ:
            reset_next = _reset(seq_ptr + b * ssb, t_next, L, ssl)
            a_next = tl.where(reset_next[None, None, :], 0.0, a_next)
        c_loc = gy[:, None, :] * Ct[None, :, :] + tl.where(is_last, a_next * g_carry[:, :, None], 0.0)
        a_next = tl.where(is_last, 0.0, a_next)
        _, Gs = tl.associative_scan((a_next, c_loc), axis=2, combine_fn=_combine, reverse=True)
        g_carry = tl.sum(tl.where(is_first, Gs, 0.0), axis=2)                  # G at this interval's start

        # 3. gradients
        P = Gs * decay_in
        dA_acc += tl.sum(P * dt[:, None, :], axis=2)
        GB = tl.sum(Gs * Bt[None, :, :], axis=1)                               # sum_n G B, (BD, BL)
        ddt = tl.sum(P * A[:, :, None], axis=1) + u * GB
        du = dt * GB
        dB_blk = tl.sum(Gs * dtu[:, None, :], axis=0)                          # (BN, BL)
        if DETERMINISTIC:
            tl.store(dB_ptr + dbc_base + t0 + nl_out, dB_blk, mask=m_nl)
            tl.store(dC_ptr + dbc_base + t0 + nl_out, dC_blk, mask=m_nl)
        else:
            tl.atomic_add(dB_ptr + dbc_base + t0 + nl_out, dB_blk, mask=m_nl, sem="relaxed")
            tl.atomic_add(dC_ptr + dbc_base + t0 + nl_out, dC_blk, mask=m_nl, sem="relaxed")
        if HAS_Z:
            if HAS_D:
                y_pre += Dv[:, None] * u
            dz = g * y_pre * sig * (1.0 + zz * (1.0 - sig))
            tl.store(dz_ptr + dl_out + t[None, :], dz.to(dz_ptr.dtype.element_ty), mask=m_dl)
        if HAS_D:
            dD_acc += tl.sum(tl.where(m_dl, gy * u, 0.0), axis=1)
            du += gy * Dv[:, None]
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(raw)
        ddt = tl.where(m_dl, ddt, 0.0)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + dl_out + t[None, :], du.to(du_ptr.dtype.element_ty), mask=m_dl)
        tl.store(ddelta_ptr + dl_out + t[None, :], ddt.to(ddelta_ptr.dtype.element_ty), mask=m_dl)
    if HAS_H0:
        # dL/dh0 = a_0 G_0 (t = 0 never resets)
        raw0 = tl.load(delta_ptr + b * sdb + offs_d * sdd, mask=mask_d, other=0.0).to(tl.float32)
        if HAS_BIAS:
            raw0 += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        dt0 = raw0
        if SOFTPLUS:
            dt0 = _softplus(raw0)
        tl.store(dh0_ptr + state_off, tl.exp2(dt0[:, None] * A2) * g_carry, mask=mask_dn)
    tl.store(dA_ptr + state_off, dA_acc, mask=mask_dn)
    tl.store(dD_ptr + b * Dm + offs_d, dD_acc, mask=mask_d)
    tl.store(dbias_ptr + b * Dm + offs_d, dbias_acc, mask=mask_d)


# Launch configurations (BLOCK_D, BLOCK_L, num_warps, num_stages) per direction; the backward's
# BLOCK_L is also the forward's checkpoint interval. Measured on an H100 at (256, 384, 197, 16),
# bf16, the shape this kernel is dispatched for (results/raw/tune_selective_scan_nd_h100.json):
# the fastest forward of the sweep and the fastest backward, 1.80 ms / 12.6 ms forward+backward
# together. ptxas (sm_90) reports register spills for backward tiles above 4 x 16 x 128.
DEFAULT_CONFIG: dict[str, tuple[int, int, int, int]] = {"fwd": (2, 64, 4, 1), "bwd": (4, 128, 8, 1)}
_CONFIG_OVERRIDE: dict[str, tuple[int, int, int, int]] = {}


def set_config(direction: str, block_d: int, block_l: int, num_warps: int, num_stages: int = 1) -> None:
    """Force the launch configuration of ``direction`` ("fwd" or "bwd"); for tuning and tests.
    ``block_d`` and ``block_l`` must be powers of 2."""
    if direction not in ("fwd", "bwd"):
        raise ValueError(f"direction must be 'fwd' or 'bwd', got {direction!r}")
    for name, v in (("block_d", block_d), ("block_l", block_l)):
        if v < 1 or v & (v - 1):
            raise ValueError(f"{name} must be a power of 2, got {v}")
    _CONFIG_OVERRIDE[direction] = (block_d, block_l, num_warps, num_stages)


def clear_config() -> None:
    _CONFIG_OVERRIDE.clear()


def _launch_config(direction: str, dim: int, groups: int, length: int) -> tuple[int, int, int, int]:
    """``(BLOCK_D, BLOCK_L, num_warps, num_stages)``. A channel block never straddles two groups
    (dB/dC are reduced per block), and BLOCK_L is not much longer than the sequence."""
    block_d, block_l, warps, stages = _CONFIG_OVERRIDE.get(direction, DEFAULT_CONFIG[direction])
    block_l = min(block_l, max(16, triton.next_power_of_2(length)))
    while block_d > 1 and (dim // groups) % block_d:
        block_d //= 2
    return block_d, block_l, warps, stages


def _fit_int32(B: torch.Tensor, C: torch.Tensor, n_state: int, block_l: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernels address a chunk of B/C with int32 offsets ``n * stride_n + l * stride_l``;
    copy an operand whose strides would overflow them (never for ordinary layouts)."""
    def fit(t):
        if n_state * abs(t.stride(2)) + block_l * abs(t.stride(3)) < 2**31:
            return t
        return time_aligned_empty(t, *t.shape).copy_(t)
    return fit(B), fit(C)


def _dummy(device) -> torch.Tensor:
    return torch.zeros(1, 1, dtype=torch.int32, device=device)


def _ckpt_interval(dim: int, groups: int, length: int, store_ckpt: bool) -> int:
    """Checkpoint interval = the backward's BLOCK_L (the forward's when nothing is stored)."""
    return _launch_config("bwd" if store_ckpt else "fwd", dim, groups, length)[1]


# torch.library custom ops: torch.compile keeps a model with the scan in one graph.
@torch.library.custom_op("mambakit::selective_scan_triton_nd_fwd", mutates_args=())
def _fwd_op(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
            D: Optional[torch.Tensor], z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
            initial_state: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor], softplus: bool,
            deterministic: bool, store_ckpt: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(out (B, D, L) in u's dtype, last (B, D, N) fp32, ckpt (B, D, n_ck, N) fp32 or empty)``.
    ``deterministic`` is only carried to the backward."""
    u, delta, B, C, z = (_time_contiguous(t) for t in (u, delta, B, C, z))
    batch, dim, length = u.shape
    groups, n_state = B.shape[1], A.shape[1]
    block_d, block_l, warps, stages = _launch_config("fwd", dim, groups, length)
    ck = _ckpt_interval(dim, groups, length, store_ckpt)
    n_ck = triton.cdiv(length, ck)
    out = time_aligned_empty(u, batch, dim, length)
    last = torch.empty(batch, dim, n_state, device=u.device, dtype=torch.float32)
    ckpt = (torch.empty(batch, dim, n_ck, n_state, device=u.device, dtype=torch.float32) if store_ckpt
            else last.new_empty(0))
    if n_state * length >= 2**31:
        raise ValueError(f"sequence too long for the Triton scan: N * L = {n_state * length} >= 2**31")
    B, C = _fit_int32(B, C, n_state, max(block_l, ck))
    h0 = initial_state.float().contiguous() if initial_state is not None else last
    z_ = z if z is not None else u
    seq = seq_idx if seq_idx is not None else _dummy(u.device)
    grid = (triton.cdiv(dim, block_d), batch)
    _fwd_kernel[grid](
        u, delta, A, B, C, D if D is not None else A, z_, delta_bias if delta_bias is not None else A,
        h0, seq, out, last, ckpt if store_ckpt else last, length, aligned_length(length), dim, dim // groups, n_ck,
        *u.stride(), *delta.stride(), *A.stride(), *B.stride(), *C.stride(), *z_.stride(), *out.stride(),
        *seq.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        HAS_H0=initial_state is not None, HAS_SEQ=seq_idx is not None, SOFTPLUS=bool(softplus),
        N=n_state, BLOCK_D=block_d, BLOCK_L=block_l, BLOCK_N=triton.next_power_of_2(n_state), CK=ck,
        STORE_CKPT=store_ckpt, NUM_STAGES=stages, num_warps=warps)
    return out, last, ckpt


@_fwd_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, softplus, deterministic, store_ckpt):
    batch, dim, length = u.shape
    groups, n_state = B.shape[1], A.shape[1]
    f32 = torch.float32
    n_ck = triton.cdiv(length, _ckpt_interval(dim, groups, length, store_ckpt))
    return (time_aligned_empty(u, batch, dim, length), u.new_empty(batch, dim, n_state, dtype=f32),
            u.new_empty(batch, dim, n_ck, n_state, dtype=f32) if store_ckpt else u.new_empty(0, dtype=f32))


@torch.library.custom_op("mambakit::selective_scan_triton_nd_bwd", mutates_args=())
def _bwd_op(dout: torch.Tensor, dlast: Optional[torch.Tensor], u: torch.Tensor, delta: torch.Tensor,
            A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: Optional[torch.Tensor],
            z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor],
            ckpt: torch.Tensor, softplus: bool, deterministic: bool, has_h0: bool) -> list[torch.Tensor]:
    """``[du, ddelta, dz, dA (D, N), dB, dC (B, G, N, L), dD (D,), dbias (D,), dh0 (B, D, N)]``; the
    reductions stay float32, absent optionals give empty tensors."""
    u, delta, B, C, z, dout = (_time_contiguous(t) for t in (u, delta, B, C, z, dout))
    batch, dim, length = u.shape
    groups, n_state = B.shape[1], A.shape[1]
    block_d, block_l, warps, stages = _launch_config("bwd", dim, groups, length)   # = the checkpoint interval
    B, C = _fit_int32(B, C, n_state, max(_launch_config("fwd", dim, groups, length)[1], block_l))
    dev, f32 = u.device, torch.float32
    n_blocks = triton.cdiv(dim, block_d)
    du = time_aligned_empty(u, batch, dim, length)
    ddelta = time_aligned_empty(delta, batch, dim, length)
    dz = time_aligned_empty(z, batch, dim, length) if z is not None else du.new_empty(0)
    dh0 = torch.empty(batch, dim, n_state, device=dev, dtype=f32) if has_h0 else du.new_empty(0, dtype=f32)
    dA = torch.empty(batch, dim, n_state, device=dev, dtype=f32)
    dD = torch.empty(batch, dim, device=dev, dtype=f32)
    dbias = torch.empty(batch, dim, device=dev, dtype=f32)
    if deterministic:
        # every (block, n, t < L) is written exactly once; summed below in a fixed order
        n_rows = n_blocks
        dB = torch.empty(batch, n_rows, n_state, length, device=dev, dtype=f32)
        dC = torch.empty_like(dB)
    else:
        n_rows = groups
        dB = torch.zeros(batch, n_rows, n_state, length, device=dev, dtype=f32)
        dC = torch.zeros_like(dB)
    z_ = z if z is not None else u
    seq = seq_idx if seq_idx is not None else _dummy(dev)
    dlast_ = dlast.float().contiguous() if dlast is not None else dA
    _bwd_kernel[(n_blocks, batch)](
        u, delta, A, B, C, D if D is not None else A, z_, delta_bias if delta_bias is not None else A,
        seq, ckpt, dout, dlast_, du, ddelta, dz if z is not None else du, dh0 if has_h0 else du,
        dA, dD, dbias, dB, dC, length, aligned_length(length), dim, dim // groups, n_rows,
        *u.stride(), *delta.stride(), *A.stride(), *B.stride(), *C.stride(), *z_.stride(),
        *dout.stride(), *seq.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, HAS_H0=has_h0,
        HAS_SEQ=seq_idx is not None, HAS_DLAST=dlast is not None, SOFTPLUS=softplus,
        DETERMINISTIC=deterministic,
        N=n_state, BLOCK_D=block_d, BLOCK_L=block_l, BLOCK_N=triton.next_power_of_2(n_state),
        NUM_STAGES=stages, num_warps=warps)
    if deterministic:
        # blocks never straddle groups: blocks [g * (n_blocks // G), (g + 1) * ...) make group g
        dB = dB.view(batch, groups, n_blocks // groups, n_state, length).sum(2)
        dC = dC.view(batch, groups, n_blocks // groups, n_state, length).sum(2)
    # absent gradients are fresh empty tensors: a custom op's outputs may not alias each other
    return [du, ddelta, dz, dA.sum(0), dB, dC, dD.sum(0) if D is not None else dA.new_empty(0),
            dbias.sum(0) if delta_bias is not None else dA.new_empty(0), dh0]


@_bwd_op.register_fake
def _(dout, dlast, u, delta, A, B, C, D, z, delta_bias, seq_idx, ckpt, softplus, deterministic, has_h0):
    return fake_grads(u, delta, A, B, D, z, delta_bias, has_h0)


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, softplus, deterministic, store_ckpt = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, seq_idx, output[2])
    ctx.softplus, ctx.deterministic, ctx.store_ckpt = bool(softplus), bool(deterministic), bool(store_ckpt)
    ctx.h0_dtype = initial_state.dtype if initial_state is not None else None


def _backward(ctx, dout, dlast, _dckpt):
    u, delta, A, B, C, D, z, delta_bias, seq_idx, ckpt = ctx.saved_tensors
    if not ctx.store_ckpt:
        raise RuntimeError("selective_scan_triton_nd: the forward ran without checkpoints "
                           "(no input required grad), so it cannot be differentiated")
    if dout is None:
        dout = torch.zeros_like(u)
    du, ddelta, dz, dA, dB, dC, dD, dbias, dh0 = _bwd_op(
        dout, dlast, u, delta, A, B, C, D, z, delta_bias, seq_idx, ckpt, ctx.softplus, ctx.deterministic,
        ctx.h0_dtype is not None)
    return (du, ddelta, dA.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype),
            dD.to(D.dtype) if D is not None else None, dz if z is not None else None,
            dbias.to(delta_bias.dtype) if delta_bias is not None else None,
            dh0.to(ctx.h0_dtype) if ctx.h0_dtype is not None else None, None, None, None, None)


_fwd_op.register_autograd(_backward, setup_context=_setup_context)


def selective_scan_triton_nd(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor, D: Optional[torch.Tensor], z: Optional[torch.Tensor],
                             delta_bias: Optional[torch.Tensor], delta_softplus: bool,
                             initial_state: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor],
                             *, deterministic: Optional[bool] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop-in for ``selective_scan_triton``: validated inputs in (B, C grouped ``(B, G, N, L)``),
    ``(out (B, D, L) in u's dtype, last_state (B, D, N) float32)`` out, differentiable in every
    floating input. ``deterministic`` (default: ``set_deterministic``'s flag, else torch's
    deterministic-algorithms setting) makes the dB/dC reduction over channel blocks ordered."""
    if deterministic is None:
        deterministic = deterministic_mode()
    # Checkpoints only when a backward can follow (ctx.needs_input_grad ignores no_grad).
    store_ckpt = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias, initial_state))
    out, last, _ = _fwd_op(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, bool(delta_softplus),
                           bool(deterministic), store_ckpt)
    return out, last
