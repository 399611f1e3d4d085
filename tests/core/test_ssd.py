"""Mamba-2 SSD ops against a plain step-by-step recurrence in float64."""
from __future__ import annotations

import math
from typing import Optional

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mambakit.ops.ssd import ssd_chunk_scan, ssd_state_update

F64 = torch.float64


# ----------------------------------------------------------------------------- oracle

def ssd_recurrence_reference(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: Optional[torch.Tensor] = None, z: Optional[torch.Tensor] = None,
    dt_bias: Optional[torch.Tensor] = None, dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, math.inf),
    initial_states: Optional[torch.Tensor] = None, seq_idx: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One time step at a time, in float64. Returns ``y (b, L, H, P)`` and the last state."""
    x, dt, A, B, C = (t.double() for t in (x, dt, A, B, C))
    batch, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    if dt_bias is not None:
        dt = dt + dt_bias.double()
    if dt_softplus:
        dt = torch.where(dt <= 20, torch.log1p(torch.exp(dt)), dt)
    if tuple(dt_limit) != (0.0, math.inf):
        dt = dt.clamp(dt_limit[0], dt_limit[1])
    h = x.new_zeros(batch, H, P, N) if initial_states is None else initial_states.double()
    ys = []
    for t in range(L):
        if seq_idx is not None and t > 0:
            new_seq = seq_idx[:, t] != seq_idx[:, t - 1]  # (b,)
            h = torch.where(new_seq[:, None, None, None], torch.zeros_like(h), h)
        Bt = B[:, t].repeat_interleave(H // G, dim=1)  # (b, H, N)
        Ct = C[:, t].repeat_interleave(H // G, dim=1)  # (b, H, N)
        h = torch.exp(dt[:, t] * A)[:, :, None, None] * h \
            + (dt[:, t, :, None] * x[:, t])[:, :, :, None] * Bt[:, :, None, :]
        y = (h * Ct[:, :, None, :]).sum(-1)  # (b, H, P)
        if D is not None:
            y = y + x[:, t] * (D.double()[:, None] if D.dim() == 1 else D.double())
        if z is not None:
            zt = z[:, t].double()
            y = y * zt * torch.sigmoid(zt)
        ys.append(y)
    return torch.stack(ys, dim=1), h


# ----------------------------------------------------------------------------- inputs

def make_inputs(seed: int, batch: int = 2, L: int = 12, H: int = 4, G: int = 2, P: int = 3,
                N: int = 5, dtype: torch.dtype = F64, D: Optional[str] = "H", z: bool = True,
                dt_bias: bool = True, initial_states: bool = True) -> dict:
    """Random, never-zero inputs. ``D`` is None, "H" for (H,) or "HP" for (H, P)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=F64) * scale).to(dtype)

    kw = dict(
        x=rnd(batch, L, H, P),
        # raw dt around softplus^-1 of typical steps; positive when used without softplus
        dt=(rnd(batch, L, H, scale=0.5) - 1.0) if dt_bias else
        (torch.rand(batch, L, H, generator=g, dtype=F64) * 0.6 + 0.05).to(dtype),
        A=(-torch.exp(torch.randn(H, generator=g, dtype=F64) * 0.5)).to(dtype),
        B=rnd(batch, L, G, N, scale=0.7),
        C=rnd(batch, L, G, N, scale=0.7),
    )
    if D == "H":
        kw["D"] = rnd(H)
    elif D == "HP":
        kw["D"] = rnd(H, P)
    if z:
        kw["z"] = rnd(batch, L, H, P)
    if dt_bias:
        kw["dt_bias"] = rnd(H, scale=0.5)
        kw["dt_softplus"] = True
    if initial_states:
        kw["initial_states"] = rnd(batch, H, P, N)
    return kw


def _oracle_kwargs(kw: dict) -> dict:
    return {k: v for k, v in kw.items() if k not in ("chunk_size", "return_final_states", "impl")}


def assert_close64(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10) -> None:
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- against the oracle

@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 2),
    L=st.integers(1, 40),
    H=st.sampled_from([1, 2, 4]),
    g_div=st.sampled_from([1, 2, 4]),
    P=st.integers(1, 4),
    N=st.integers(1, 8),
    chunk_size=st.sampled_from([1, 3, 4, 8, 16]),
    D=st.sampled_from([None, "H", "HP"]),
    z=st.booleans(),
    dt_bias=st.booleans(),
    dt_limit=st.sampled_from([(0.0, math.inf), (0.05, 0.5)]),
    initial_states=st.booleans(),
)
def test_matches_recurrence(seed, batch, L, H, g_div, P, N, chunk_size, D, z, dt_bias, dt_limit,
                            initial_states):
    G = H // g_div if H % g_div == 0 else H
    kw = make_inputs(seed, batch, L, H, G, P, N, D=D, z=z, dt_bias=dt_bias,
                     initial_states=initial_states)
    kw["dt_limit"] = dt_limit
    y, final = ssd_chunk_scan(**kw, chunk_size=chunk_size, return_final_states=True)
    y_ref, final_ref = ssd_recurrence_reference(**kw)
    assert y.shape == (batch, L, H, P) and y.dtype == F64
    assert final.shape == (batch, H, P, N) and final.dtype == F64
    assert_close64(y, y_ref)
    assert_close64(final, final_ref)


def test_returns_only_y_by_default():
    kw = make_inputs(0)
    y = ssd_chunk_scan(**kw, chunk_size=4)
    assert isinstance(y, torch.Tensor) and y.shape == kw["x"].shape


def test_impl_dispatch():
    kw = make_inputs(1)
    y_auto = ssd_chunk_scan(**kw, chunk_size=4)
    y_ref = ssd_chunk_scan(**kw, chunk_size=4, impl="reference")
    assert torch.equal(y_auto, y_ref)
    from mambakit.ops import triton_ssd
    from mambakit.ops.ssd import _resolve_impl
    assert _resolve_impl("triton", kw["x"].device) is triton_ssd.ssd_chunk_scan_triton
    with pytest.raises(ValueError, match="impl"):
        ssd_chunk_scan(**kw, impl="cuda")


# ----------------------------------------------------------------------------- chunking

def test_chunk_size_invariance():
    seq_idx = torch.tensor([[0] * 13 + [1] * 20 + [2] * 17, [0] * 50])
    kw = make_inputs(2, batch=2, L=50, H=4, G=2, P=3, N=6, D="HP")
    kw["dt_limit"] = (0.01, 2.0)
    outs = [ssd_chunk_scan(**kw, seq_idx=seq_idx, chunk_size=c, return_final_states=True)
            for c in (1, 7, 64)]
    for y, final in outs[1:]:
        assert_close64(y, outs[0][0], 1e-12)
        assert_close64(final, outs[0][1], 1e-12)


@pytest.mark.parametrize("dtype,tol", [(F64, 1e-10), (torch.float32, 1e-5)])
def test_stable_with_strong_decay(dtype, tol):
    # cumulative log-decays of -1e4 inside a chunk: exp of the (masked) positive differences
    # would overflow, so the results and gradients must still be finite and exact. The middle
    # head decays through the subnormal range, which the op flushes to 0.
    kw = make_inputs(3, batch=1, L=32, H=3, G=1, P=2, N=3, dt_bias=False, dtype=dtype)
    kw["A"] = torch.tensor([-1000.0, -10.0, -0.1], dtype=dtype)
    leaves = {k: kw[k].requires_grad_() for k in ("x", "dt", "A", "B", "C", "initial_states")}
    y, final = ssd_chunk_scan(**kw, chunk_size=32, return_final_states=True)
    (y.sum() + final.sum()).backward()
    for name, t in leaves.items():
        assert torch.isfinite(t.grad).all(), name
    y_ref, final_ref = ssd_recurrence_reference(**{k: v.detach() if isinstance(v, torch.Tensor)
                                                   else v for k, v in kw.items()})
    torch.testing.assert_close(y.detach().double(), y_ref, rtol=tol, atol=tol)
    torch.testing.assert_close(final.detach().double(), final_ref, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- packed sequences

def _packed_case(seed: int, lengths: list[int]) -> tuple[dict, torch.Tensor]:
    L = sum(lengths)
    kw = make_inputs(seed, batch=1, L=L, H=2, G=1, P=3, N=4, D="H")
    seq_idx = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))[None]
    return kw, seq_idx


@pytest.mark.parametrize("chunk_size", [1, 4, 6, 64])
def test_seq_idx_equals_separate_sequences(chunk_size):
    lengths = [5, 1, 9, 3, 6]
    kw, seq_idx = _packed_case(4, lengths)
    y, final = ssd_chunk_scan(**kw, seq_idx=seq_idx, chunk_size=chunk_size,
                              return_final_states=True)
    start = 0
    for i, n in enumerate(lengths):
        part = {k: (v[:, start:start + n] if k in ("x", "dt", "B", "C", "z") else v)
                for k, v in kw.items()}
        if i > 0:  # the initial state belongs to the first sequence only
            part.pop("initial_states")
        y_i, final_i = ssd_chunk_scan(**part, chunk_size=chunk_size, return_final_states=True)
        assert_close64(y[:, start:start + n], y_i)
        start += n
    assert_close64(final, final_i)  # the state after the last sequence
    y_ref, final_ref = ssd_recurrence_reference(**kw, seq_idx=seq_idx)
    assert_close64(y, y_ref)
    assert_close64(final, final_ref)


def test_seq_idx_per_row_and_repeated_ids():
    # rows pack differently; an id that comes back later is still a new sequence
    kw = make_inputs(5, batch=2, L=14, H=4, G=2, P=2, N=3)
    seq_idx = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 2, 2, 2, 2],
                            [3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 7]], dtype=torch.int32)
    y, final = ssd_chunk_scan(**kw, seq_idx=seq_idx, chunk_size=4, return_final_states=True)
    y_ref, final_ref = ssd_recurrence_reference(**kw, seq_idx=seq_idx)
    assert_close64(y, y_ref)
    assert_close64(final, final_ref)


def test_cu_seqlens_equals_seq_idx():
    lengths = [4, 7, 2, 5]
    kw, seq_idx = _packed_case(6, lengths)
    cu = torch.tensor([0, 4, 11, 13, 18])
    y_a, f_a = ssd_chunk_scan(**kw, seq_idx=seq_idx, chunk_size=5, return_final_states=True)
    y_b, f_b = ssd_chunk_scan(**kw, cu_seqlens=cu, chunk_size=5, return_final_states=True)
    assert_close64(y_a, y_b, 0.0)
    assert_close64(f_a, f_b, 0.0)
    # cu_seqlens ending before L: the tail is a sequence of its own
    y_c = ssd_chunk_scan(**kw, cu_seqlens=torch.tensor([0, 4, 11]), chunk_size=5)
    y_ref, _ = ssd_recurrence_reference(**kw, seq_idx=torch.tensor([[0] * 4 + [1] * 7 + [2] * 7]))
    assert_close64(y_c, y_ref)


# ----------------------------------------------------------------------------- autograd

GRAD_ARGS = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states")
TIME_ARGS = ("x", "dt", "B", "C", "z")


@pytest.mark.parametrize("packed", [False, True])
def test_split_in_two_matches_one_call(packed):
    L, cut, chunk = 23, 9, 4
    kw = make_inputs(7, batch=2, L=L, H=4, G=2, P=3, N=4, D="HP")
    # packed: the cut falls inside sequence 1, which the second call continues
    seq_idx = torch.tensor([[0] * 6 + [1] * 12 + [2] * 5] * 2) if packed else None
    g = torch.Generator().manual_seed(8)
    w_y = torch.randn(2, L, 4, 3, generator=g, dtype=F64)
    w_f = torch.randn(2, 4, 3, 4, generator=g, dtype=F64)

    def run(split: bool):
        leaves = {k: kw[k].clone().requires_grad_() for k in GRAD_ARGS}
        args = {**kw, **leaves}
        if not split:
            y, final = ssd_chunk_scan(**args, seq_idx=seq_idx, chunk_size=chunk,
                                      return_final_states=True)
        else:
            first = {k: (v[:, :cut] if k in TIME_ARGS else v) for k, v in args.items()}
            second = {k: (v[:, cut:] if k in TIME_ARGS else v) for k, v in args.items()}
            s1 = None if seq_idx is None else seq_idx[:, :cut]
            s2 = None if seq_idx is None else seq_idx[:, cut:]
            y1, mid = ssd_chunk_scan(**first, seq_idx=s1, chunk_size=chunk,
                                     return_final_states=True)
            second["initial_states"] = mid
            y2, final = ssd_chunk_scan(**second, seq_idx=s2, chunk_size=chunk,
                                       return_final_states=True)
            y = torch.cat([y1, y2], dim=1)
        ((y * w_y).sum() + (final * w_f).sum()).backward()
        return y.detach(), final.detach(), {k: t.grad for k, t in leaves.items()}

    y_one, f_one, g_one = run(split=False)
    y_two, f_two, g_two = run(split=True)
    assert_close64(y_two, y_one)
    assert_close64(f_two, f_one)
    for k in GRAD_ARGS:
        assert g_one[k] is not None and torch.isfinite(g_one[k]).all(), k
        assert_close64(g_two[k], g_one[k])


@pytest.mark.parametrize("packed", [False, True])
def test_gradcheck(packed):
    kw = make_inputs(9, batch=1, L=5, H=2, G=1, P=2, N=2, D="H")
    seq_idx = torch.tensor([[0, 0, 1, 1, 1]]) if packed else None
    names = list(GRAD_ARGS)
    inputs = tuple(kw[k].clone().requires_grad_() for k in names)

    def f(*tensors):
        args = {**kw, **dict(zip(names, tensors))}
        return ssd_chunk_scan(**args, seq_idx=seq_idx, chunk_size=2, return_final_states=True)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- low precision

@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 5e-3),
                                       (torch.bfloat16, 3e-2)])
def test_low_precision_inputs(dtype, tol):
    kw = make_inputs(10, batch=2, L=30, H=4, G=2, P=4, N=8, dtype=dtype)
    y, final = ssd_chunk_scan(**kw, chunk_size=8, return_final_states=True)
    assert y.dtype == dtype
    assert final.dtype == torch.float32
    y_ref, final_ref = ssd_recurrence_reference(**kw)  # same (rounded) inputs, in float64
    torch.testing.assert_close(y.double(), y_ref, rtol=tol, atol=tol)
    torch.testing.assert_close(final.double(), final_ref, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- decoding step

@pytest.mark.parametrize("D", ["H", "HP"])
def test_state_update_steps_equal_scan(D):
    L = 11
    kw = make_inputs(11, batch=2, L=L, H=4, G=2, P=3, N=5, D=D)
    kw["dt_limit"] = (0.05, 1.0)
    y_scan, final_scan = ssd_chunk_scan(**kw, chunk_size=4, return_final_states=True)
    state = kw["initial_states"].clone()
    ref = state
    step = {k: kw[k] for k in ("A", "D", "dt_bias", "dt_softplus", "dt_limit")}
    ys = []
    for t in range(L):
        ys.append(ssd_state_update(state, kw["x"][:, t], kw["dt"][:, t], B=kw["B"][:, t],
                                   C=kw["C"][:, t], z=kw["z"][:, t], **step))
    assert state is ref  # updated in place
    assert_close64(torch.stack(ys, dim=1), y_scan)
    assert_close64(state, final_scan)


def test_state_update_low_precision():
    kw = make_inputs(12, batch=1, L=1, H=2, G=1, P=4, N=3, dtype=torch.bfloat16)
    state = torch.randn(1, 2, 4, 3)
    y_scan, final = ssd_chunk_scan(**{**kw, "initial_states": state}, return_final_states=True)
    out = ssd_state_update(state, kw["x"][:, 0], kw["dt"][:, 0], kw["A"], kw["B"][:, 0],
                           kw["C"][:, 0], D=kw["D"], z=kw["z"][:, 0], dt_bias=kw["dt_bias"],
                           dt_softplus=True)
    assert out.dtype == torch.bfloat16 and state.dtype == torch.float32
    torch.testing.assert_close(out, y_scan[:, 0], rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(state, final, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- bad input

def _bad(**changes):
    kw = make_inputs(13, batch=2, L=6, H=4, G=2, P=3, N=5)
    kw.update(changes)
    return kw


_x = make_inputs(13, batch=2, L=6, H=4, G=2, P=3, N=5)


@pytest.mark.parametrize("changes,exc,match", [
    (dict(x=_x["x"][0]), ValueError, r"x: expected a 4-D tensor"),
    (dict(dt=_x["dt"][..., None]), ValueError, r"dt: expected a 3-D tensor"),
    (dict(A=_x["A"][None]), ValueError, r"A: expected a 1-D tensor"),
    (dict(dt=_x["dt"][:, :, :3]), ValueError, r"dt: number of heads H is 3 but x has"),
    (dict(dt=_x["dt"][:, :5]), ValueError, r"dt: length L is 5 but x has length L 6"),
    (dict(B=_x["B"][:, :4]), ValueError, r"B: length L is 4 but x has"),
    (dict(C=_x["C"][..., :4]), ValueError, r"C: state size N is 4 but B has state size N 5"),
    (dict(C=_x["C"][:, :, :1]), ValueError, r"C: number of groups G is 1 but B has"),
    (dict(B=torch.randn(2, 6, 3, 5, dtype=F64), C=torch.randn(2, 6, 3, 5, dtype=F64)),
     ValueError, r"G=3 must divide .* H=4"),
    (dict(A=_x["A"][:3]), ValueError, r"A: expected shape \(4\)"),
    (dict(D=torch.ones(4, 2, dtype=F64)), ValueError, r"D: expected shape \(4, 3\)"),
    (dict(dt_bias=torch.ones(2, dtype=F64)), ValueError, r"dt_bias: expected shape \(4\)"),
    (dict(z=_x["z"][:, :, :2]), ValueError, r"z: expected shape"),
    (dict(initial_states=torch.zeros(2, 4, 3, 4, dtype=F64)), ValueError,
     r"initial_states: expected shape \(2, 4, 3, 5\)"),
    (dict(x=torch.ones(2, 6, 4, 3, dtype=torch.int64)), TypeError,
     r"x: expected a floating-point tensor"),
    (dict(x=_x["x"].tolist()), TypeError, r"x: expected a torch.Tensor"),
    (dict(x=_x["x"][:, :0], dt=_x["dt"][:, :0], B=_x["B"][:, :0], C=_x["C"][:, :0],
          z=_x["z"][:, :0]), ValueError, r"x: expected a sequence of length >= 1"),
    (dict(x=_x["x"].clone().index_put_((torch.tensor(0),), torch.tensor(math.nan, dtype=F64))),
     ValueError, r"x: contains NaN"),
    (dict(dt=torch.full_like(_x["dt"], math.inf)), ValueError, r"dt: contains NaN or Inf"),
    (dict(chunk_size=0), ValueError, r"chunk_size: expected a positive int, got 0"),
    (dict(chunk_size=2.0), ValueError, r"chunk_size: expected a positive int"),
    (dict(dt_limit=(1.0, 0.5)), ValueError, r"dt_limit: expected min <= max"),
    (dict(seq_idx=torch.zeros(2, 6, dtype=torch.long), cu_seqlens=torch.tensor([0, 6])),
     ValueError, r"seq_idx and cu_seqlens"),
    (dict(cu_seqlens=torch.tensor([0, 6])), ValueError, r"cu_seqlens: expected batch size 1"),
    (dict(seq_idx=torch.zeros(2, 5, dtype=torch.long)), ValueError, r"seq_idx: expected shape"),
    (dict(seq_idx=torch.zeros(2, 6)), TypeError, r"seq_idx: expected an integer tensor"),
])
def test_bad_input(changes, exc, match):
    with pytest.raises(exc, match=match):
        ssd_chunk_scan(**_bad(**changes))


def test_bad_cu_seqlens_too_long():
    kw = make_inputs(14, batch=1, L=6)
    with pytest.raises(ValueError, match=r"cu_seqlens: last entry 9 exceeds .* L=6"):
        ssd_chunk_scan(**kw, cu_seqlens=torch.tensor([0, 4, 9]))


def test_state_update_bad_input():
    kw = make_inputs(15, batch=2, L=1, H=4, G=2, P=3, N=5)
    state = torch.zeros(2, 4, 3, 5, dtype=F64)
    x, dt, A, B, C = kw["x"][:, 0], kw["dt"][:, 0], kw["A"], kw["B"][:, 0], kw["C"][:, 0]
    with pytest.raises(ValueError, match=r"state: expected shape \(2, 4, 3, 5\)"):
        ssd_state_update(state[..., :4], x, dt, A, B, C)
    with pytest.raises(ValueError, match=r"x: expected a 3-D tensor"):
        ssd_state_update(state, x[None], dt, A, B, C)
    with pytest.raises(ValueError, match=r"dt: number of heads H is 2 but x has"):
        ssd_state_update(state, x, dt[:, :2], A, B, C)
    with pytest.raises(ValueError, match=r"C: state size N is 4 but B has"):
        ssd_state_update(state, x, dt, A, B, C[..., :4])
    with pytest.raises(TypeError, match=r"B: expected a floating-point tensor"):
        ssd_state_update(state, x, dt, A, B.long(), C)
