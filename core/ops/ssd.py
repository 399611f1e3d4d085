"""Mamba-2 SSD (state space duality): the chunked scan and the one-step decoding update.

Per head ``h`` (one scalar decay per head, shared by all its ``P`` channels and ``N`` states)::

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * x_t ⊗ B_t        # (P, N)
    y_t = h_t · C_t + D * x_t                               # (P,)
    out_t = y_t * silu(z_t)                                 # when z is given

Layouts follow mamba_ssm's ``mamba_chunk_scan_combined`` so results compare number for number:
``x (B, L, H, P)``, ``dt (B, L, H)``, ``A (H,)``, ``B, C (B, L, G, N)`` with head ``h`` reading
group ``h // (H // G)``.

The reference computes the chunked dual form. The sequence is cut into chunks of ``chunk_size``
steps; inside a chunk the output is a masked, attention-like quadratic form whose weights are
``C_i · B_j * exp(dA_{j+1} + ... + dA_i)``; between chunks only the ``(P, N)`` state of each head
is carried, by a short recurrence over the chunks. Decays are always written as ``exp`` of a
difference of cumulative sums that is ``<= 0`` (positions where it would not be are set to
``-inf`` *before* the ``exp``), so nothing overflows and the gradients stay finite.
"""
from __future__ import annotations

import importlib
import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ._checks import (check_finite, check_impl, check_nonempty, check_same_device, check_seq_idx,
                      check_shape, check_tensor)
from .packing import seq_idx_from_cu_seqlens
from .state_update import use_triton

__all__ = ["ssd_chunk_scan", "ssd_state_update"]

_NO_LIMIT = (0.0, float("inf"))
_IMPLS = ("auto", "reference", "triton")


# ----------------------------------------------------------------------------- helpers

def _compute_dtype(*tensors: Optional[torch.Tensor]) -> torch.dtype:
    """float64 if any input is float64, else float32 (fp16/bf16 are computed in float32)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) \
        else torch.float32


def _decay(log_decay: torch.Tensor, drop: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``exp(log_decay)``, exactly 0 where ``drop`` is True and where the decay is negligible.

    Masking happens before the ``exp``, so a dropped entry never overflows and its gradient is 0.
    Decays below ``exp(log(tiny) + 25)`` (about 1e-27 in float32, 1e-297 in float64) are also set
    to 0: they would otherwise produce subnormal floats, which make CPU arithmetic 10-100x slower,
    and what they multiply is negligible at that scale.
    """
    floor = math.log(torch.finfo(log_decay.dtype).tiny) + 25.0
    negligible = log_decay < floor
    drop = negligible if drop is None else drop | negligible
    return torch.exp(log_decay.masked_fill(drop, float("-inf")))


def _process_dt(dt: torch.Tensor, dt_bias: Optional[torch.Tensor], dt_softplus: bool,
                dt_limit: tuple[float, float]) -> torch.Tensor:
    """dt (..., H) -> softplus(dt + dt_bias) clamped to dt_limit, as mamba_ssm does."""
    if dt_bias is not None:
        dt = dt + dt_bias  # (..., H)
    if dt_softplus:
        dt = F.softplus(dt)  # threshold 20, as in the mamba_ssm kernels
    if tuple(dt_limit) != _NO_LIMIT:
        dt = dt.clamp(min=dt_limit[0], max=dt_limit[1])
    return dt


def _skip_and_gate(y: torch.Tensor, x: torch.Tensor, D: Optional[torch.Tensor],
                   z: Optional[torch.Tensor]) -> torch.Tensor:
    """y (..., H, P) -> (y + D * x) * silu(z); D is (H,) or (H, P)."""
    if D is not None:
        y = y + x * (D[:, None] if D.dim() == 1 else D)  # (..., H, P)
    if z is not None:
        y = y * F.silu(z)  # (..., H, P)
    return y


def _check_dt_limit(dt_limit: object) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in dt_limit)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise TypeError(f"dt_limit: expected a pair (min, max) of numbers, "
                        f"got {dt_limit!r}") from None
    if not lo <= hi:
        raise ValueError(f"dt_limit: expected min <= max, got {dt_limit!r}")
    return lo, hi


def _check_heads_params(H: int, P: int, A: torch.Tensor, D: Optional[torch.Tensor],
                        dt_bias: Optional[torch.Tensor]) -> None:
    """A (H,), D (H,) or (H, P), dt_bias (H,)."""
    check_tensor("A", A, ndim=1)
    check_shape("A", A, (H,))
    if D is not None:
        check_tensor("D", D, ndim=(1, 2))
        check_shape("D", D, (H,) if D.dim() == 1 else (H, P))
    if dt_bias is not None:
        check_tensor("dt_bias", dt_bias, ndim=1)
        check_shape("dt_bias", dt_bias, (H,))


def _check_groups(H: int, G: int) -> None:
    if H % G != 0:
        raise ValueError(f"B/C: the number of groups G={G} must divide the number of heads H={H} "
                         f"(from x)")


def _match(name: str, size: int, what: str, other: str, other_size: int) -> None:
    """Raise when dimension ``what`` of ``name`` disagrees with the same dimension of ``other``."""
    if size != other_size:
        raise ValueError(f"{name}: {what} is {size} but {other} has {what} {other_size}")


# ----------------------------------------------------------------------------- chunked scan

def ssd_chunk_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = 256,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    dt_bias: Optional[torch.Tensor] = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    initial_states: Optional[torch.Tensor] = None,
    seq_idx: Optional[torch.Tensor] = None,
    cu_seqlens: Optional[torch.Tensor] = None,
    return_final_states: bool = False,
    impl: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mamba-2 selective scan over a whole sequence (``mamba_chunk_scan_combined`` semantics).

    Args:
        x: ``(batch, L, H, P)`` inputs, ``H`` heads of ``P`` channels.
        dt: ``(batch, L, H)`` step sizes (before ``dt_bias``/softplus/limit).
        A: ``(H,)`` decay rates, negative (``A = -exp(A_log)``).
        B: ``(batch, L, G, N)`` input projections; ``G`` groups, ``H % G == 0``.
        C: ``(batch, L, G, N)`` output projections.
        chunk_size: steps per chunk of the dual form; changes speed and rounding, not results.
        D: ``(H,)`` or ``(H, P)`` skip connection, ``y += D * x``.
        z: ``(batch, L, H, P)`` gate, ``out = y * silu(z)``.
        dt_bias: ``(H,)`` added to ``dt`` first.
        dt_softplus: apply ``softplus`` to ``dt + dt_bias``.
        dt_limit: ``(min, max)`` clamp applied last (skipped for the default ``(0, inf)``).
        initial_states: ``(batch, H, P, N)`` state before position 0 (of the first sequence of
            each row when packed).
        seq_idx: ``(batch, L)`` integer ids of packed sequences; the state is reset wherever the
            id changes from one position to the next.
        cu_seqlens: ``(n_seqs + 1,)`` cumulative lengths, for ``batch == 1``; another way to give
            ``seq_idx`` (not both).
        return_final_states: also return the state after the last position.
        impl: ``"auto"`` (Triton on CUDA when available, else reference), ``"reference"`` or
            ``"triton"``.

    Returns:
        ``y (batch, L, H, P)`` in ``x.dtype``; with ``return_final_states``, ``(y, final_states)``
        where ``final_states (batch, H, P, N)`` is float32 (float64 for float64 inputs).
    """
    # --- validation at the boundary
    check_tensor("x", x, ndim=4)
    check_tensor("dt", dt, ndim=3)
    check_tensor("B", B, ndim=4)
    check_tensor("C", C, ndim=4)
    batch, L, H, P = x.shape
    check_nonempty("x", L)
    _match("dt", dt.shape[0], "batch size", "x", batch)
    _match("dt", dt.shape[1], "length L", "x", L)
    _match("dt", dt.shape[2], "number of heads H", "x", H)
    _match("B", B.shape[0], "batch size", "x", batch)
    _match("B", B.shape[1], "length L", "x", L)
    G, N = B.shape[2], B.shape[3]
    _match("C", C.shape[0], "batch size", "x", batch)
    _match("C", C.shape[1], "length L", "x", L)
    _match("C", C.shape[2], "number of groups G", "B", G)
    _match("C", C.shape[3], "state size N", "B", N)
    _check_groups(H, G)
    _check_heads_params(H, P, A, D, dt_bias)
    if z is not None:
        check_tensor("z", z, ndim=4)
        check_shape("z", z, (batch, L, H, P))
    if initial_states is not None:
        check_tensor("initial_states", initial_states, ndim=4)
        check_shape("initial_states", initial_states, (batch, H, P, N))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    dt_limit = _check_dt_limit(dt_limit)
    if cu_seqlens is not None and seq_idx is not None:
        raise ValueError("seq_idx and cu_seqlens: give one of them, not both")
    check_seq_idx(seq_idx, batch, L)
    device = check_same_device(x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias,
                               initial_states=initial_states, seq_idx=seq_idx)
    if cu_seqlens is not None:
        if batch != 1:
            raise ValueError(f"cu_seqlens: expected batch size 1 (one packed row), got x with "
                             f"batch size {batch}")
        cu_seqlens = torch.as_tensor(cu_seqlens)
        if cu_seqlens.dim() == 1 and cu_seqlens.numel() > 0 and int(cu_seqlens[-1]) > L:
            raise ValueError(f"cu_seqlens: last entry {int(cu_seqlens[-1])} exceeds the sequence "
                             f"length L={L} of x")
        seq_idx = seq_idx_from_cu_seqlens(cu_seqlens, total_len=L).to(device)
    check_finite("x", x)
    check_finite("dt", dt)

    kernel = _resolve_impl(impl, device)
    y, final_states = kernel(x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus, dt_limit,
                             initial_states, seq_idx)
    return (y, final_states) if return_final_states else y


def _load_triton_kernel() -> Optional[Callable]:
    """The Triton SSD kernel, or None while ``mambakit.ops.triton_ssd`` (or triton) is missing."""
    try:
        module = importlib.import_module("mambakit.ops.triton_ssd")
    except ModuleNotFoundError as e:
        if e.name in ("mambakit.ops.triton_ssd", "triton"):
            return None
        raise
    return module.ssd_chunk_scan_triton


def _resolve_impl(impl: str, device: torch.device) -> Callable:
    """Pick the implementation. Every one takes the arguments of ``_ssd_chunk_scan_reference``."""
    check_impl(impl, _IMPLS)
    if impl == "reference":
        return _ssd_chunk_scan_reference
    kernel = _load_triton_kernel()
    if impl == "triton":
        if kernel is None:
            raise NotImplementedError("ssd_chunk_scan(impl='triton'): Triton SSD kernel not "
                                      "available yet (no module mambakit.ops.triton_ssd)")
        return kernel
    return kernel if (kernel is not None and device.type == "cuda") else _ssd_chunk_scan_reference


def _ssd_chunk_scan_reference(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    chunk_size: int, D: Optional[torch.Tensor], z: Optional[torch.Tensor],
    dt_bias: Optional[torch.Tensor], dt_softplus: bool, dt_limit: tuple[float, float],
    initial_states: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked dual form in plain PyTorch, on validated inputs. Returns ``(y, final_states)``.

    Shape letters: b batch, l/s positions inside a chunk (l: output, s: source), c chunk,
    k chunk length, h heads, g groups, p head channels, n state size.
    """
    out_dtype = x.dtype
    cdt = _compute_dtype(x, dt, A, B, C, D, z, dt_bias, initial_states)
    batch, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    k = min(chunk_size, L)  # a chunk longer than the sequence only pads
    n_chunks = -(-L // k)
    pad = n_chunks * k - L

    x_c = x.to(cdt)
    dt = _process_dt(dt.to(cdt), None if dt_bias is None else dt_bias.to(cdt),
                     dt_softplus, dt_limit)  # (b, L, h)
    A = A.to(cdt)
    B = B.to(cdt).repeat_interleave(H // G, dim=2)  # (b, L, h, n)
    C = C.to(cdt).repeat_interleave(H // G, dim=2)  # (b, L, h, n)

    # Segment ids: 0, 0, 1, 1, 1, 2, ... counting changes of seq_idx, so that "no state across a
    # change" becomes "equal ids" (and also holds for ids that repeat later in the row).
    seg = None
    if seq_idx is not None:
        changes = (seq_idx[:, 1:] != seq_idx[:, :-1]).to(torch.int64)  # (b, L-1)
        seg = F.pad(changes.cumsum(dim=1), (1, 0))  # (b, L)

    # Pad to whole chunks with dt = 0: no decay, no input, so the state passes the pads untouched.
    if pad:
        x_c = F.pad(x_c, (0, 0, 0, 0, 0, pad))  # (b, c*k, h, p)
        dt = F.pad(dt, (0, 0, 0, pad))  # (b, c*k, h)
        B = F.pad(B, (0, 0, 0, 0, 0, pad))  # (b, c*k, h, n)
        C = F.pad(C, (0, 0, 0, 0, 0, pad))  # (b, c*k, h, n)
        if seg is not None:
            seg = torch.cat([seg, seg[:, -1:].expand(batch, pad)], dim=1)  # (b, c*k), last id

    xs = x_c.reshape(batch, n_chunks, k, H, P)  # (b, c, k, h, p)
    Bs = B.reshape(batch, n_chunks, k, H, N)  # (b, c, k, h, n)
    Cs = C.reshape(batch, n_chunks, k, H, N)  # (b, c, k, h, n)
    dts = dt.reshape(batch, n_chunks, k, H).permute(0, 3, 1, 2)  # (b, h, c, k)
    dA_cs = torch.cumsum(dts * A[:, None, None], dim=-1)  # (b, h, c, k), cumulative log-decay
    segs = None if seg is None else seg.reshape(batch, n_chunks, k)  # (b, c, k)

    # 1. Inside each chunk: y_l = sum_{s <= l} (C_l · B_s) exp(cs_l - cs_s) dt_s x_s.
    causal = torch.ones(k, k, dtype=torch.bool, device=x.device).tril()  # (l, s)
    keep = causal if segs is None else \
        (causal & (segs[:, :, :, None] == segs[:, :, None, :]))[:, None]  # (b, 1, c, l, s)
    log_decay = dA_cs[..., :, None] - dA_cs[..., None, :]  # (b, h, c, l, s)
    decay = _decay(log_decay, ~keep)  # (b, h, c, l, s)
    scores = torch.einsum("bclhn,bcshn->bhcls", Cs, Bs)  # (b, h, c, l, s)
    weights = scores * decay * dts[:, :, :, None, :]  # (b, h, c, l, s)
    y = torch.einsum("bhcls,bcshp->bclhp", weights, xs)  # (b, c, k, h, p)

    # 2. The state each chunk adds by its own end: sum_s exp(cs_last - cs_s) dt_s x_s ⊗ B_s.
    other_seg = None if segs is None else (segs != segs[..., -1:])[:, None]  # (b, 1, c, k)
    to_end = _decay(dA_cs[..., -1:] - dA_cs, other_seg)  # (b, h, c, k)
    chunk_states = torch.einsum("bhcs,bcshp,bcshn->bchpn", to_end * dts, xs, Bs)  # (b, c, h, p, n)

    # 3. Between chunks: S_c = exp(cs_last of c) * S_{c-1} + chunk_states_c. The state entering
    # chunk c belongs to the segment of the last position of chunk c-1 (of position 0 for c = 0)
    # and survives chunk c only if that segment is still running at its end.
    seg_in = None if segs is None else \
        torch.cat([segs[:, :1, 0], segs[:, :-1, -1]], dim=1)  # (b, c)
    ended = None if segs is None else (segs[:, :, -1] != seg_in)[:, None]  # (b, 1, c)
    carry = _decay(dA_cs[..., -1], ended)  # (b, h, c), decay over the whole chunk
    state = x_c.new_zeros(batch, H, P, N) if initial_states is None \
        else initial_states.to(cdt)  # (b, h, p, n)
    entering = []
    for c in range(n_chunks):
        entering.append(state)
        state = carry[:, :, c, None, None] * state + chunk_states[:, c]  # (b, h, p, n)
    final_states = state  # (b, h, p, n)
    states_in = torch.stack(entering, dim=1)  # (b, c, h, p, n)

    # 4. What the entering state gives each position of its segment: exp(cs_l) * (S_{c-1} · C_l).
    not_in = None if segs is None else (segs != seg_in[..., None])[:, None]  # (b, 1, c, k)
    from_start = _decay(dA_cs, not_in)  # (b, h, c, k)
    y = y + torch.einsum("bclhn,bchpn,bhcl->bclhp", Cs, states_in, from_start)  # (b, c, k, h, p)

    y = y.reshape(batch, n_chunks * k, H, P)[:, :L]  # (b, L, h, p)
    y = _skip_and_gate(y, x.to(cdt), None if D is None else D.to(cdt),
                       None if z is None else z.to(cdt))
    return y.to(out_dtype), final_states


# ----------------------------------------------------------------------------- decoding step

def ssd_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    dt_bias: Optional[torch.Tensor] = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    impl: str = "auto",
) -> torch.Tensor:
    """One decoding step of the SSD recurrence; ``state`` is updated in place.

    Args:
        state: ``(batch, H, P, N)`` recurrent state, overwritten with the new state.
        x: ``(batch, H, P)`` input of this step.
        dt: ``(batch, H)`` step size (before ``dt_bias``/softplus/limit).
        A: ``(H,)`` decay rates.
        B, C: ``(batch, G, N)``, ``H % G == 0``.
        D: ``(H,)`` or ``(H, P)``; z: ``(batch, H, P)``; dt_bias: ``(H,)``; dt_softplus, dt_limit:
            as in :func:`ssd_chunk_scan`.
        impl: ``"auto"`` (one fused Triton kernel for CUDA tensors without gradients, else the
            reference), ``"reference"`` or ``"triton"``.

    Returns:
        ``out (batch, H, P)`` in ``x.dtype``, equal to one step of :func:`ssd_chunk_scan`.
    """
    check_tensor("state", state, ndim=4)
    check_tensor("x", x, ndim=3)
    check_tensor("dt", dt, ndim=2)
    check_tensor("B", B, ndim=3)
    check_tensor("C", C, ndim=3)
    batch, H, P = x.shape
    G, N = B.shape[1], B.shape[2]
    _match("dt", dt.shape[0], "batch size", "x", batch)
    _match("dt", dt.shape[1], "number of heads H", "x", H)
    _match("B", B.shape[0], "batch size", "x", batch)
    _match("C", C.shape[0], "batch size", "x", batch)
    _match("C", C.shape[1], "number of groups G", "B", G)
    _match("C", C.shape[2], "state size N", "B", N)
    _check_groups(H, G)
    check_shape("state", state, (batch, H, P, N))
    _check_heads_params(H, P, A, D, dt_bias)
    if z is not None:
        check_tensor("z", z, ndim=3)
        check_shape("z", z, (batch, H, P))
    dt_limit = _check_dt_limit(dt_limit)
    check_same_device(state=state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)
    if use_triton(impl, state, x, dt, A, B, C, D, z, dt_bias):
        from .triton_state_update import ssd_state_update_triton
        return ssd_state_update_triton(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_limit)

    cdt = _compute_dtype(state, x, dt, A, B, C, D, z, dt_bias)
    x_c = x.to(cdt)
    dt = _process_dt(dt.to(cdt), None if dt_bias is None else dt_bias.to(cdt),
                     dt_softplus, dt_limit)  # (b, h)
    B = B.to(cdt).repeat_interleave(H // G, dim=1)  # (b, h, n)
    C = C.to(cdt).repeat_interleave(H // G, dim=1)  # (b, h, n)
    decay = _decay(dt * A.to(cdt))  # (b, h)
    new_state = decay[:, :, None, None] * state.to(cdt) \
        + (dt[:, :, None] * x_c)[..., None] * B[:, :, None, :]  # (b, h, p, n)
    state.copy_(new_state)
    y = torch.einsum("bhpn,bhn->bhp", new_state, C)  # (b, h, p)
    y = _skip_and_gate(y, x_c, None if D is None else D.to(cdt), None if z is None else z.to(cdt))
    return y.to(x.dtype)
