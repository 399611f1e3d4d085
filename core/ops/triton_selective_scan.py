"""Fused Triton selective scan (Mamba-1), forward and backward.

One program owns ``BLOCK_D`` channels of one batch element and walks the sequence in chunks
of ``BLOCK_L`` steps. Inside a chunk the recurrence ``h_t = a_t h_{t-1} + x_t`` (with
``a = exp(dt A)``, ``x = dt u B``) is a parallel associative scan over the
``(BLOCK_D, BLOCK_L, N)`` tile; the state entering the chunk is carried in registers.
Discretisation, the D skip and the SiLU(z) gate are fused; states never go to memory except
the checkpoints ``(B, D, cdiv(L, CK), N)``, the state entering every ``CK`` steps, from which the
backward recomputes them. ``CK`` is the backward's chunk length, so the two directions have
independent launch configurations (the backward is fastest with shorter chunks than the forward).

The backward walks the chunks in reverse: it recomputes the chunk's states from its
checkpoint, runs the adjoint recurrence ``G_t = C_t gy_t + a_{t+1} G_{t+1}`` as a reverse
scan, and forms every gradient from ``G`` and ``h``. It needs ``a_t h_{t-1}``, which is
``h_t - x_t``, so no shifted state is ever loaded. ``dB``/``dC`` are summed over the channels
of a block in registers and added across blocks with float32 atomics spread over a few slices
(relaxed memory order: Triton's default acq_rel fences every atomic, which cost up to 1.5x);
in deterministic mode (``set_deterministic`` or ``torch.use_deterministic_algorithms``) each
block writes its own slice and the slices are summed in a fixed order instead.

Runs on CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1`` (for tests).
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import triton
import triton.language as tl

from .time_layout import TIME_ALIGN, aligned_copy, aligned_length, time_aligned_empty  # noqa: F401  (re-exported)

LOG2E = 1.4426950408889634


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _combine(a1, b1, a2, b2):
    return a1 * a2, b1 * a2 + b2


@triton.jit
def _softplus(x):
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))


@triton.jit
def _load_dt(delta_ptr, bias_ptr, offs_d, t, mask_d, mask_t, mask_ld, sdb, sdd, sdl,
             HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """dt (BLOCK_D, BLOCK_L) after bias and softplus; exactly 0 outside the sequence (``mask_t``).
    ``mask_ld`` (a superset) says what is loaded: see ``_fwd_kernel`` on the padded rows."""
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
def _reset(seq_ptr, t, L, ssl, HAS_SEQ: tl.constexpr):
    """True where position t starts a new packed sequence (BLOCK_L,)."""
    if HAS_SEQ:
        inside = (t > 0) & (t < L)
        cur = tl.load(seq_ptr + t * ssl, mask=inside, other=0)
        prev = tl.load(seq_ptr + (t - 1) * ssl, mask=inside, other=0)
        return inside & (cur != prev)
    else:
        return t < 0


@triton.jit
def _store_checkpoint(ckpt_ptr, ck_off, c, h_carry, mask, N: tl.constexpr, BLOCK_L: tl.constexpr,
                      CK: tl.constexpr):
    """Store the state entering chunk ``c`` (of ``BLOCK_L`` steps) where it starts a checkpoint
    interval of ``CK`` steps; ``ck_off + k * N`` addresses checkpoint ``k`` in ``(B, D, n_ck, N)``.
    With CK < BLOCK_L the caller also stores the states inside the chunk."""
    if CK == BLOCK_L:
        tl.store(ckpt_ptr + ck_off + c * N, h_carry, mask=mask)
    elif CK > BLOCK_L:
        tl.store(ckpt_ptr + ck_off + ((c * BLOCK_L) // CK) * N, h_carry, mask=mask & ((c * BLOCK_L) % CK == 0))
    else:
        tl.store(ckpt_ptr + ck_off + c * (BLOCK_L // CK) * N, h_carry, mask=mask)


@triton.jit
def _column(mat, offs_n, n):
    """Column ``n`` of a ``(BLOCK_D, BLOCK_N)`` register tile, as ``(BLOCK_D,)``."""
    return tl.sum(tl.where(offs_n[None, :] == n, mat, 0.0), axis=1)


@triton.jit
def _set_column(mat, offs_n, n, col):
    return tl.where(offs_n[None, :] == n, col[:, None], mat)


@triton.jit
def _fwd_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, seq_ptr,
                out_ptr, last_ptr, ckpt_ptr,
                L, LP, Dm, dg, n_ck,
                sub, sud, sul, sdb, sdd, sdl, sad, san,
                sbb, sbg, sbn, sbl, scb, scg, scn, scl,
                szb, szd, szl, sob, sod, sol, ssb, ssl,
                HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                HAS_H0: tl.constexpr, HAS_SEQ: tl.constexpr, SOFTPLUS: tl.constexpr, PADDED: tl.constexpr,
                N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
                CK: tl.constexpr, NUM_STAGES: tl.constexpr):
    # Program = BLOCK_D channels of one batch element; the time axis of a chunk is spread over
    # the threads and scanned in parallel, one state index n at a time.
    # Loads read rows up to LP (L rounded up to 16; the launcher guarantees the memory is there):
    # a mask that is constant over aligned runs of 16 lets Triton vectorise them (with `t < L`
    # and L % 16 != 0 the loads were scalar, 2.6x slower). What lies past L is zeroed (u, B) or
    # never stored (the output), and dt is 0 there, so the state does not move. PADDED (L % 16 != 0)
    # compiles that zeroing in only where there is padding to zero.
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)        # int64: D*L can pass 2**31
    offs_n = tl.arange(0, BLOCK_N)
    offs_l = tl.arange(0, BLOCK_L)
    mask_d = offs_d < Dm
    mask_dn = mask_d[:, None] & (offs_n < N)[None, :]
    grp = ((pid_d * BLOCK_D) // dg).to(tl.int64)                              # one group per block
    n_chunks = tl.cdiv(L, BLOCK_L)
    state_off = (b * Dm + offs_d[:, None]) * N + offs_n[None, :]              # (BD, BN) into (B, D, N)
    if HAS_H0:
        h_carry = tl.load(h0_ptr + state_off, mask=mask_dn, other=0.0).to(tl.float32)
    else:
        h_carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    ck_row = (b * Dm + offs_d) * n_ck * N                                      # (BD,): + k*N + n into (B, D, n_ck, N)
    ck_off = ck_row[:, None] + offs_n[None, :]
    for c in tl.range(0, n_chunks, num_stages=NUM_STAGES):
        _store_checkpoint(ckpt_ptr, ck_off, c, h_carry, mask_dn, N, BLOCK_L, CK)   # every CK steps
        t = (c * BLOCK_L + offs_l).to(tl.int64)                               # (BL,)
        mask_t = t < L
        mask_ld = t < LP
        m_dl = mask_d[:, None] & mask_t[None, :]
        m_ld = mask_d[:, None] & mask_ld[None, :]
        u = tl.load(u_ptr + b * sub + offs_d[:, None] * sud + t[None, :] * sul, mask=m_ld, other=0.0).to(tl.float32)
        if PADDED:
            u = tl.where(m_dl, u, 0.0)
        dt, _ = _load_dt(delta_ptr + b * sdb, bias_ptr, offs_d, t, mask_d, mask_t, mask_ld, sdb, sdd, sdl,
                         HAS_BIAS, SOFTPLUS)                                  # (BD, BL)
        dtu = dt * u
        if HAS_SEQ:
            reset = _reset(seq_ptr + b * ssb, t, L, ssl, HAS_SEQ)[None, :]
        y = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
        for n in tl.static_range(N):
            A_n = tl.load(A_ptr + offs_d * sad + n * san, mask=mask_d, other=0.0).to(tl.float32)
            B_n = tl.load(B_ptr + b * sbb + grp * sbg + n * sbn + t * sbl, mask=mask_ld, other=0.0).to(tl.float32)
            if PADDED:
                B_n = tl.where(mask_t, B_n, 0.0)
            C_n = tl.load(C_ptr + b * scb + grp * scg + n * scn + t * scl, mask=mask_ld, other=0.0).to(tl.float32)
            a = tl.exp2(dt * (A_n * 1.4426950408889634)[:, None])                # (BD, BL)
            if HAS_SEQ:
                a = tl.where(reset, 0.0, a)
            a_cum, h_loc = tl.associative_scan((a, dtu * B_n[None, :]), axis=1, combine_fn=_combine)
            h = h_loc + a_cum * _column(h_carry, offs_n, n)[:, None]
            y += h * C_n[None, :]
            if CK < BLOCK_L:     # the states inside the chunk that the backward restarts from
                for j in tl.static_range(1, BLOCK_L // CK):
                    k = c * (BLOCK_L // CK) + j
                    h_j = tl.sum(tl.where((offs_l == j * CK - 1)[None, :], h, 0.0), axis=1)
                    tl.store(ckpt_ptr + ck_row + k * N + n, h_j, mask=mask_d & (k < n_ck))
            h_end = tl.sum(tl.where((offs_l == BLOCK_L - 1)[None, :], h, 0.0), axis=1)
            h_carry = _set_column(h_carry, offs_n, n, h_end)
        if HAS_D:
            y += Dv[:, None] * u
        if HAS_Z:
            zz = tl.load(z_ptr + b * szb + offs_d[:, None] * szd + t[None, :] * szl, mask=m_ld,
                         other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(out_ptr + b * sob + offs_d[:, None] * sod + t[None, :] * sol,
                 y.to(out_ptr.dtype.element_ty), mask=m_dl)
    tl.store(last_ptr + state_off, h_carry, mask=mask_dn)


@triton.jit
def _bwd_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, seq_ptr,
                ckpt_ptr, dout_ptr, dlast_ptr,
                du_ptr, ddelta_ptr, dz_ptr, dh0_ptr, dA_ptr, dD_ptr, dbias_ptr, dB_ptr, dC_ptr,
                L, LP, Dm, dg, G, S,
                sub, sud, sul, sdb, sdd, sdl, sad, san,
                sbb, sbg, sbn, sbl, scb, scg, scn, scl,
                szb, szd, szl, sgb, sgd, sgl, ssb, ssl,
                HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                HAS_SEQ: tl.constexpr, HAS_DLAST: tl.constexpr, SOFTPLUS: tl.constexpr,
                DETERMINISTIC: tl.constexpr, PADDED: tl.constexpr,
                N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
                NUM_STAGES: tl.constexpr):
    # Gradient outputs du, ddelta, dz are (B, D, L) with row pitch LP (L rounded up to 16); dA (B, D, N) partial per batch;
    # dD, dbias (B, D) partial; dh0 (B, D, N); dB, dC (B, S, G, N, LP) float32, accumulated with
    # atomics into S slices (channel block p adds into slice p % S): every element of dB/dC sums
    # over all channels of its group, and S slices cut the atomics that queue on one address S-fold.
    # Like the forward, loads and stores cover whole padded rows (t < LP, vectorisable); what lies
    # past L is zeroed on load, so every gradient written there is 0.
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    offs_n = tl.arange(0, BLOCK_N)
    offs_l = tl.arange(0, BLOCK_L)
    mask_d = offs_d < Dm
    mask_dn = mask_d[:, None] & (offs_n < N)[None, :]
    grp = ((pid_d * BLOCK_D) // dg).to(tl.int64)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    n_chunks = tl.cdiv(L, BLOCK_L)
    state_off = (b * Dm + offs_d[:, None]) * N + offs_n[None, :]
    if HAS_DLAST:
        g_carry = tl.load(dlast_ptr + state_off, mask=mask_dn, other=0.0).to(tl.float32)
    else:
        g_carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dl_out = (b * Dm + offs_d[:, None]) * LP                                  # (BD, 1) rows of (B, D, LP)
    is_last = (offs_l == BLOCK_L - 1)[None, :]
    is_first = (offs_l == 0)[None, :]
    for i in tl.range(0, n_chunks, num_stages=NUM_STAGES):     # n_chunks = checkpoints (BLOCK_L = CK)
        c = n_chunks - 1 - i
        ckpt_row = ((b * Dm + offs_d) * n_chunks + c) * N                     # (BD,) state entering the chunk
        t = (c * BLOCK_L + offs_l).to(tl.int64)
        mask_t = t < L
        mask_ld = t < LP
        m_dl = mask_d[:, None] & mask_t[None, :]
        m_ld = mask_d[:, None] & mask_ld[None, :]
        u = tl.load(u_ptr + b * sub + offs_d[:, None] * sud + t[None, :] * sul, mask=m_ld, other=0.0).to(tl.float32)
        if PADDED:
            u = tl.where(m_dl, u, 0.0)
        dt, raw = _load_dt(delta_ptr + b * sdb, bias_ptr, offs_d, t, mask_d, mask_t, mask_ld, sdb, sdd, sdl,
                           HAS_BIAS, SOFTPLUS)
        dtu = dt * u
        t_next = t + 1
        dt_next, _ = _load_dt(delta_ptr + b * sdb, bias_ptr, offs_d, t_next, mask_d, t_next < L, t_next < L, sdb, sdd, sdl,
                              HAS_BIAS, SOFTPLUS)
        if HAS_SEQ:
            reset = _reset(seq_ptr + b * ssb, t, L, ssl, HAS_SEQ)[None, :]
            reset_next = _reset(seq_ptr + b * ssb, t_next, L, ssl, HAS_SEQ)[None, :]
        g = tl.load(dout_ptr + b * sgb + offs_d[:, None] * sgd + t[None, :] * sgl, mask=m_ld,
                    other=0.0).to(tl.float32)
        if PADDED:
            g = tl.where(m_dl, g, 0.0)
        if HAS_Z:
            zz = tl.load(z_ptr + b * szb + offs_d[:, None] * szd + t[None, :] * szl, mask=m_ld,
                         other=0.0).to(tl.float32)
            if PADDED:
                zz = tl.where(m_dl, zz, 0.0)
            sig = tl.sigmoid(zz)
            gy = g * zz * sig
        else:
            gy = g
        y_pre = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
        du = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
        ddt = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
        for n in tl.static_range(N):
            A_n = tl.load(A_ptr + offs_d * sad + n * san, mask=mask_d, other=0.0).to(tl.float32)
            A2_n = (A_n * 1.4426950408889634)[:, None]
            B_n = tl.load(B_ptr + b * sbb + grp * sbg + n * sbn + t * sbl, mask=mask_ld, other=0.0).to(tl.float32)
            if PADDED:
                B_n = tl.where(mask_t, B_n, 0.0)
            C_n = tl.load(C_ptr + b * scb + grp * scg + n * scn + t * scl, mask=mask_ld, other=0.0).to(tl.float32)
            if PADDED:
                C_n = tl.where(mask_t, C_n, 0.0)
            a = tl.exp2(dt * A2_n)
            a_next = tl.exp2(dt_next * A2_n)
            if HAS_SEQ:
                a = tl.where(reset, 0.0, a)
                a_next = tl.where(reset_next, 0.0, a_next)
            x = dtu * B_n[None, :]
            a_cum, h_loc = tl.associative_scan((a, x), axis=1, combine_fn=_combine)
            # state n entering the chunk, loaded per n (cheaper than a column of a register tile)
            h_start_n = tl.load(ckpt_ptr + ckpt_row + n, mask=mask_d, other=0.0)
            h = h_loc + a_cum * h_start_n[:, None]                             # (BD, BL)
            if HAS_Z:
                y_pre += h * C_n[None, :]
            # adjoint: G_t = C_t gy_t + a_{t+1} G_{t+1}; the chunk's last step takes the carry
            a_next = tl.where(is_last, 0.0, a_next)
            c_loc = gy * C_n[None, :] + tl.where(is_last, _column(g_carry, offs_n, n)[:, None], 0.0)
            _, Gs = tl.associative_scan((a_next, c_loc), axis=1, combine_fn=_combine, reverse=True)
            decay_in = h - x                                                   # a_t h_{t-1}
            ddt += Gs * (A_n[:, None] * decay_in + u * B_n[None, :])
            du += Gs * dt * B_n[None, :]
            dA_acc += tl.where(offs_n[None, :] == n, tl.sum(Gs * dt * decay_in, axis=1)[:, None], 0.0)
            gn_off = (((b * S + pid_d % S) * G + grp) * N + n) * LP + t        # (BL,) into (B, S, G, N, LP)
            if DETERMINISTIC:   # one slice per channel block: this program alone writes here
                tl.store(dB_ptr + gn_off, tl.sum(Gs * dtu, axis=0), mask=mask_ld)
                tl.store(dC_ptr + gn_off, tl.sum(h * gy, axis=0), mask=mask_ld)
            else:
                tl.atomic_add(dB_ptr + gn_off, tl.sum(Gs * dtu, axis=0), mask=mask_ld, sem="relaxed")
                tl.atomic_add(dC_ptr + gn_off, tl.sum(h * gy, axis=0), mask=mask_ld, sem="relaxed")
            g_carry = _set_column(g_carry, offs_n, n, tl.sum(tl.where(is_first, a * Gs, 0.0), axis=1))
        if HAS_Z:
            if HAS_D:
                y_pre += Dv[:, None] * u
            dz = g * y_pre * sig * (1.0 + zz * (1.0 - sig))
            tl.store(dz_ptr + dl_out + t[None, :], dz.to(dz_ptr.dtype.element_ty), mask=m_ld)
        if HAS_D:
            dD_acc += tl.sum(tl.where(m_dl, gy * u, 0.0), axis=1)
            du += gy * Dv[:, None]
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(raw)
        ddt = tl.where(m_dl, ddt, 0.0)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + dl_out + t[None, :], du.to(du_ptr.dtype.element_ty), mask=m_ld)
        tl.store(ddelta_ptr + dl_out + t[None, :], ddt.to(ddelta_ptr.dtype.element_ty), mask=m_ld)
    tl.store(dh0_ptr + state_off, g_carry, mask=mask_dn)
    tl.store(dA_ptr + state_off, dA_acc, mask=mask_dn)
    tl.store(dD_ptr + b * Dm + offs_d, dD_acc, mask=mask_d)
    tl.store(dbias_ptr + b * Dm + offs_d, dbias_acc, mask=mask_d)


# Launch configurations: (BLOCK_D, BLOCK_L, num_warps, num_stages) per direction. The tuning
# script benchmarks/tune_selective_scan.py measures the candidates; set_config() overrides.
_CONFIG_OVERRIDE: dict[str, tuple[int, int, int, int]] = {}


def set_config(direction: str, block_d: int, block_l: int, num_warps: int, num_stages: int = 1) -> None:
    """Force the launch configuration of ``direction`` ("fwd" or "bwd"); for tuning."""
    _CONFIG_OVERRIDE[direction] = (block_d, block_l, num_warps, num_stages)


def clear_config() -> None:
    _CONFIG_OVERRIDE.clear()


def _launch_config(direction: str, dim: int, groups: int, n_state: int, length: int,
                   batch: int = 0, n_sm: int = 0) -> tuple[int, int, int, int, int]:
    """``(BLOCK_D, BLOCK_L, BLOCK_N, num_warps, num_stages)``; a block never straddles two
    groups because dB/dC are reduced per block. With ``batch`` and the GPU's ``n_sm`` given,
    the forward's channel block shrinks until the grid has at least one program per SM (one
    clip of AuM-tiny, 384 channels, ran on 48 programs: 3.8 ms per scan at 15k steps)."""
    block_n = triton.next_power_of_2(n_state)
    if direction in _CONFIG_OVERRIDE:
        block_d, block_l, warps, stages = _CONFIG_OVERRIDE[direction]
    else:  # backward: one channel and one warp per program is 1.6-1.8x faster than 4 channels
        # on 2 warps (H100, results/raw/sweep_bwd_block_h100.json); 128-step chunks beat 256 by
        # 5-14% on the H200 at all four benchmark shapes (results/raw/scan_bwd_chunk_atomics_h200.log).
        # The forward's (4, 128, 1 warp) was 9% faster at (8, 1536, 2048) on the H200
        # (results/raw/tune_fwd_legacy_h200.json) but is not yet measured at other shapes.
        block_d, block_l, warps, stages = (8, 256, 4, 2) if direction == "fwd" else (1, 128, 1, 1)
    block_l = min(block_l, max(16, triton.next_power_of_2(length)))
    while block_d > 1 and (dim // groups) % block_d:
        block_d //= 2
    if direction == "fwd" and direction not in _CONFIG_OVERRIDE:
        while block_d > 1 and batch * triton.cdiv(dim, block_d) < n_sm:
            block_d //= 2
    return block_d, block_l, block_n, warps, stages


def checkpoint_interval(dim: int, groups: int, n_state: int, length: int) -> int:
    """Steps between the forward's checkpoints: the backward's chunk length ``BLOCK_L``."""
    return _launch_config("bwd", dim, groups, n_state, length)[1]


def _sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (0 elsewhere: the interpreter)."""
    if device.type != "cuda":
        return 0
    return torch.cuda.get_device_properties(device).multi_processor_count


def _atomic_slices(n_blocks: int, dim: int, groups: int, n_state: int) -> int:
    """How many slices the dB/dC atomics are spread over (see ``_bwd_kernel``).

    Up to 16, never more than the channel blocks, and few enough that the slices of dB and dC
    together (``2 S G N`` values per position) hold no more than u itself (``D`` per position).
    On an H100 at (256, 768, 197, 16), atomics into a single slice took 60% of the backward.
    """
    if _SLICES_OVERRIDE:
        return max(1, min(_SLICES_OVERRIDE[0], n_blocks))
    return max(1, min(16, n_blocks, dim // (2 * groups * n_state)))


_SLICES_OVERRIDE: list[int] = []
_DETERMINISTIC: list[bool] = []


def set_deterministic(flag: Optional[bool]) -> None:
    """Force (True/False) or release (None) the deterministic backward; by default it follows
    ``torch.use_deterministic_algorithms``."""
    _DETERMINISTIC.clear()
    if flag is not None:
        _DETERMINISTIC.append(bool(flag))


def deterministic_mode() -> bool:
    return _DETERMINISTIC[0] if _DETERMINISTIC else torch.are_deterministic_algorithms_enabled()


def set_atomic_slices(n: int) -> None:
    """Force the number of dB/dC slices (benchmarks); ``0`` restores the default."""
    _SLICES_OVERRIDE.clear()
    if n:
        _SLICES_OVERRIDE.append(int(n))


def _time_contiguous(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The kernels read along time: make that the contiguous axis and align the other strides
    (a no-op when they are; otherwise one copy, cheaper than unvectorised loads)."""
    if t is None:
        return None
    if t.stride(-1) == 1 and all(s % TIME_ALIGN == 0 for s in t.stride()[:-1]) and _rows_padded(t):
        return t
    return aligned_copy(t)


def _rows_padded(t: torch.Tensor) -> bool:
    """Whether reading every row of ``t`` up to ``aligned_length`` stays inside its storage (the
    forward kernels load whole padded rows)."""
    if t.numel() == 0:
        return True
    last = sum((n - 1) * s for n, s in zip(t.shape[:-1], t.stride()[:-1])) + aligned_length(t.shape[-1])
    return (t.storage_offset() + last) * t.element_size() <= t.untyped_storage().nbytes()


# The kernels are torch.library custom ops, so torch.compile keeps a model with them in one graph
# (shapes come from the fake implementations) instead of breaking it at every scan.
@torch.library.custom_op("mambakit::selective_scan_triton_fwd", mutates_args=())
def _fwd_op(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
            D: Optional[torch.Tensor], z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
            initial_state: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor], softplus: bool
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(out (B, D, L) in u's dtype, last (B, D, N) fp32, ckpt (B, D, cdiv(L, CK), N) fp32)`` with
    ``CK = checkpoint_interval(...)``, the backward's chunk length."""
    u, delta, B, C, z = (_time_contiguous(t) for t in (u, delta, B, C, z))
    batch, dim, length = u.shape
    groups, n_state = B.shape[1], A.shape[1]
    block_d, block_l, block_n, warps, stages = _launch_config("fwd", dim, groups, n_state, length, batch,
                                                              _sm_count(u.device))
    ck = checkpoint_interval(dim, groups, n_state, length)
    n_ck = triton.cdiv(length, ck)
    out = time_aligned_empty(u, batch, dim, length)
    last = torch.empty(batch, dim, n_state, device=u.device, dtype=torch.float32)
    ckpt = torch.empty(batch, dim, n_ck, n_state, device=u.device, dtype=torch.float32)
    h0 = initial_state.float().contiguous() if initial_state is not None else last
    z_ = z if z is not None else u
    seq = seq_idx if seq_idx is not None else torch.zeros(1, 1, dtype=torch.int32, device=u.device)
    grid = (triton.cdiv(dim, block_d), batch)
    _fwd_kernel[grid](
        u, delta, A, B, C, D if D is not None else A, z_, delta_bias if delta_bias is not None else A,
        h0, seq, out, last, ckpt, length, aligned_length(length), dim, dim // groups, n_ck,
        *u.stride(), *delta.stride(), *A.stride(), *B.stride(), *C.stride(), *z_.stride(), *out.stride(),
        *seq.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        HAS_H0=initial_state is not None, HAS_SEQ=seq_idx is not None, SOFTPLUS=bool(softplus),
        PADDED=length % TIME_ALIGN != 0, N=n_state, BLOCK_D=block_d, BLOCK_L=block_l, BLOCK_N=block_n, CK=ck,
        NUM_STAGES=stages, num_warps=warps)
    return out, last, ckpt


@_fwd_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, softplus):
    batch, dim, length = u.shape
    groups, n_state = B.shape[1], A.shape[1]
    n_chunks = triton.cdiv(length, checkpoint_interval(dim, groups, n_state, length))
    return (time_aligned_empty(u, batch, dim, length), u.new_empty(batch, dim, n_state, dtype=torch.float32),
            u.new_empty(batch, dim, n_chunks, n_state, dtype=torch.float32))


@torch.library.custom_op("mambakit::selective_scan_triton_bwd", mutates_args=())
def _bwd_op(dout: torch.Tensor, dlast: Optional[torch.Tensor], u: torch.Tensor, delta: torch.Tensor,
            A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: Optional[torch.Tensor],
            z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor],
            ckpt: torch.Tensor, softplus: bool, block_l: int) -> list[torch.Tensor]:
    """``[du, ddelta, dz, dA (D, N), dB, dC (B, G, N, L), dD (D,), dbias (D,), dh0 (B, D, N)]``; the
    float32 reductions stay float32, absent optionals give empty tensors. ``block_l`` is the
    checkpoint interval of the forward (the backward's chunk length)."""
    u, delta, B, C, z, dout = (_time_contiguous(t) for t in (u, delta, B, C, z, dout))
    batch, dim, length = u.shape
    groups, n_state = B.shape[1], A.shape[1]
    block_d, _, block_n, warps, stages = _launch_config("bwd", dim, groups, n_state, length)
    dev, f32 = u.device, torch.float32
    # Per-element gradients are written in the inputs' dtypes (no float32 copies).
    du = time_aligned_empty(u, batch, dim, length)
    ddelta = time_aligned_empty(delta, batch, dim, length)
    dz = time_aligned_empty(z, batch, dim, length) if z is not None else du.new_empty(0)
    dh0 = torch.empty(batch, dim, n_state, device=dev, dtype=f32)
    dA = torch.empty(batch, dim, n_state, device=dev, dtype=f32)
    dD = torch.empty(batch, dim, device=dev, dtype=f32)
    dbias = torch.empty(batch, dim, device=dev, dtype=f32)
    deterministic = deterministic_mode()
    # Deterministic: one slice per channel block, written with plain stores and summed in a
    # fixed order (memory: 2 x blocks x B x G x N x L floats); else atomics into a few slices.
    n_slices = triton.cdiv(dim, block_d) if deterministic else \
        _atomic_slices(triton.cdiv(dim, block_d), dim, groups, n_state)
    dB = torch.zeros(batch, n_slices, groups, n_state, aligned_length(length), device=dev, dtype=f32)
    dC = torch.zeros_like(dB)
    z_ = z if z is not None else u
    seq = seq_idx if seq_idx is not None else torch.zeros(1, 1, dtype=torch.int32, device=dev)
    dlast_ = dlast.float().contiguous() if dlast is not None else dh0
    grid = (triton.cdiv(dim, block_d), batch)
    _bwd_kernel[grid](
        u, delta, A, B, C, D if D is not None else A, z_, delta_bias if delta_bias is not None else A,
        seq, ckpt, dout, dlast_, du, ddelta, dz if z is not None else du, dh0, dA, dD, dbias, dB, dC,
        length, aligned_length(length), dim, dim // groups, groups, n_slices,
        *u.stride(), *delta.stride(), *A.stride(), *B.stride(), *C.stride(), *z_.stride(),
        *dout.stride(), *seq.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        HAS_SEQ=seq_idx is not None, HAS_DLAST=dlast is not None, SOFTPLUS=softplus,
        DETERMINISTIC=deterministic, PADDED=length % TIME_ALIGN != 0,
        N=n_state, BLOCK_D=block_d, BLOCK_L=block_l, BLOCK_N=block_n, NUM_STAGES=stages, num_warps=warps)
    # absent gradients are fresh empty tensors: a custom op's outputs may not alias each other
    return [du, ddelta, dz, dA.sum(0), dB[..., :length].sum(1), dC[..., :length].sum(1), dD.sum(0) if D is not None else dA.new_empty(0),
            dbias.sum(0) if delta_bias is not None else dA.new_empty(0), dh0]


def fake_grads(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, D: Optional[torch.Tensor],
               z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor], has_h0: bool) -> list[torch.Tensor]:
    """Shapes/dtypes of the backward ops' outputs ``[du, ddelta, dz, dA, dB, dC, dD, dbias, dh0]``
    (the fake implementation of both Mamba-1 kernels' backward custom ops)."""
    batch, dim, length = u.shape
    groups, n_state = B.shape[1], A.shape[1]
    f32 = torch.float32
    return [time_aligned_empty(u, batch, dim, length), time_aligned_empty(delta, batch, dim, length),
            time_aligned_empty(z, batch, dim, length) if z is not None else u.new_empty(0),
            u.new_empty(dim, n_state, dtype=f32), u.new_empty(batch, groups, n_state, length, dtype=f32),
            u.new_empty(batch, groups, n_state, length, dtype=f32),
            u.new_empty(dim, dtype=f32) if D is not None else u.new_empty(0, dtype=f32),
            u.new_empty(dim, dtype=f32) if delta_bias is not None else u.new_empty(0, dtype=f32),
            u.new_empty(batch, dim, n_state, dtype=f32) if has_h0 else u.new_empty(0, dtype=f32)]


@_bwd_op.register_fake
def _(dout, dlast, u, delta, A, B, C, D, z, delta_bias, seq_idx, ckpt, softplus, block_l):
    return fake_grads(u, delta, A, B, D, z, delta_bias, has_h0=True)


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, softplus = inputs
    ckpt = output[2]
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, seq_idx, ckpt)
    ctx.softplus = bool(softplus)
    ctx.h0_dtype = initial_state.dtype if initial_state is not None else None
    batch, dim, length = u.shape
    ctx.block_l = checkpoint_interval(dim, B.shape[1], A.shape[1], length)


def _backward(ctx, dout, dlast, _dckpt):
    u, delta, A, B, C, D, z, delta_bias, seq_idx, ckpt = ctx.saved_tensors
    if dout is None:
        dout = torch.zeros_like(u)
    du, ddelta, dz, dA, dB, dC, dD, dbias, dh0 = _bwd_op(dout, dlast, u, delta, A, B, C, D, z, delta_bias,
                                                        seq_idx, ckpt, ctx.softplus, ctx.block_l)
    return (du, ddelta, dA.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype),
            dD.to(D.dtype) if D is not None else None, dz if z is not None else None,
            dbias.to(delta_bias.dtype) if delta_bias is not None else None,
            dh0.to(ctx.h0_dtype) if ctx.h0_dtype is not None else None, None, None)


_fwd_op.register_autograd(_backward, setup_context=_setup_context)


def selective_scan_triton(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                          C: torch.Tensor, D: Optional[torch.Tensor], z: Optional[torch.Tensor],
                          delta_bias: Optional[torch.Tensor], delta_softplus: bool,
                          initial_state: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor]
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated inputs in (B, C grouped ``(B, G, N, L)``), ``(out (B, D, L) in u's dtype,
    last_state (B, D, N) float32)`` out. Differentiable in every floating input."""
    out, last, _ = _fwd_op(u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx, bool(delta_softplus))
    return out, last
