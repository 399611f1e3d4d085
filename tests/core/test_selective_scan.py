"""Mamba-1 selective scan: both implementations ("reference" and the Numba "cpu" kernel)
against a float64 step-by-step recurrence, against each other in float32 (values and all
gradients), gradcheck, packed sequences, stateful chunking and half-precision inputs."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mambakit import selective_scan, seq_idx_from_cu_seqlens
from mambakit.ops import selective_scan_cpu as cpu_mod
from mk_core_oracles import (DIFF_KEYS, F64, grads_of, scan_inputs, selective_scan_recurrence,
                             with_grad)

IMPLS = ("reference", "cpu")
TOL64 = dict(rtol=1e-9, atol=1e-10)
ORACLE_KEYS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "delta_softplus",
               "initial_state", "seq_idx")


def oracle(kw: dict):
    return selective_scan_recurrence(**{k: v for k, v in kw.items() if k in ORACLE_KEYS})


def run(kw: dict, impl: str):
    return selective_scan(**kw, return_last_state=True, impl=impl)


def loss_weights(seed: int, out_shape, state_shape, dtype=F64):
    g = torch.Generator().manual_seed(seed + 1)
    return (torch.randn(*out_shape, generator=g, dtype=F64).to(dtype),
            torch.randn(*state_shape, generator=g, dtype=F64).to(dtype))


def assert_close_scaled(actual, expected, rel, name=""):
    """``|a - e| <= rel * max|e|`` elementwise (a tolerance on the scale of the tensor)."""
    scale = expected.abs().max().clamp(min=1e-6)
    err = (actual.to(F64) - expected.to(F64)).abs().max()
    assert err <= rel * scale, f"{name}: max error {err:.3g} > {rel} * {scale:.3g}"


def assert_is_scan_reference(kw, out, last):
    ref_out, ref_last = oracle(kw)
    torch.testing.assert_close(out, ref_out, **TOL64)
    torch.testing.assert_close(last, ref_last, **TOL64)


# ----------------------------------------------------------------------------- against the recurrence

@st.composite
def scan_cases(draw):
    groups = draw(st.integers(1, 3))
    return dict(
        seed=draw(st.integers(0, 2**31 - 1)),
        batch=draw(st.integers(1, 3)),
        groups=groups,
        dim=groups * draw(st.integers(1, 3)),
        n_state=draw(st.integers(1, 5)),
        length=draw(st.integers(1, 40)),
        bc_rank=draw(st.sampled_from([3, 4])) if groups == 1 else 4,
        D=draw(st.booleans()), z=draw(st.booleans()), delta_bias=draw(st.booleans()),
        softplus=draw(st.booleans()), initial_state=draw(st.booleans()), seq_idx=draw(st.booleans()),
    )


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=20, deadline=None)
@given(case=scan_cases())
def test_matches_recurrence_on_random_shapes(impl, case):
    kw = scan_inputs(**case)
    out, last = run(kw, impl)
    assert out.dtype == F64 and out.shape == kw["u"].shape
    assert last.shape == (case["batch"], case["dim"], case["n_state"])
    assert_is_scan_reference(kw, out, last)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("length", [1, 63, 64, 65, 200])
def test_values_and_gradients_across_checkpoints(impl, packed, length, seed):
    """Lengths around the CPU kernel's 64-step checkpoints: values and every gradient
    (including the initial state's and through the last state) equal the recurrence's."""
    kw = scan_inputs(seed, batch=2, dim=4, n_state=3, length=length, groups=2, seq_idx=packed)
    w_out, w_last = loss_weights(seed, kw["u"].shape, kw["initial_state"].shape)

    mine = with_grad(kw)
    out, last = run(mine, impl)
    ((out * w_out).sum() + (last * w_last).sum()).backward()

    ref = with_grad(kw)
    ref_out, ref_last = oracle(ref)
    ((ref_out * w_out).sum() + (ref_last * w_last).sum()).backward()

    torch.testing.assert_close(out, ref_out, **TOL64)
    torch.testing.assert_close(last, ref_last, **TOL64)
    for k, gref in grads_of(ref).items():
        torch.testing.assert_close(mine[k].grad, gref, rtol=1e-8, atol=1e-9, msg=lambda m: f"d{k}: {m}")


def test_no_last_state_returns_only_output(seed):
    kw = scan_inputs(seed, length=9)
    for impl in IMPLS:
        out = selective_scan(**kw, impl=impl)
        assert isinstance(out, torch.Tensor)
        torch.testing.assert_close(out, oracle(kw)[0], **TOL64)


# ----------------------------------------------------------------------------- cpu vs reference

@pytest.mark.parametrize("length", [1, 63, 64, 65, 200])
@pytest.mark.parametrize("packed", [False, True])
def test_cpu_matches_reference_float32_with_all_gradients(length, packed, seed):
    kw = scan_inputs(seed, batch=2, dim=6, n_state=4, length=length, groups=3, dtype=torch.float32,
                     seq_idx=packed)
    w_out, w_last = loss_weights(seed, kw["u"].shape, kw["initial_state"].shape, torch.float32)
    results = {}
    for impl in IMPLS:
        leaves = with_grad(kw)
        out, last = run(leaves, impl)
        assert out.dtype == torch.float32 and last.dtype == torch.float32
        ((out * w_out).sum() + (last * w_last).sum()).backward()
        results[impl] = (out.detach(), last.detach(), grads_of(leaves))
    (o_r, l_r, g_r), (o_c, l_c, g_c) = results["reference"], results["cpu"]
    assert_close_scaled(o_c, o_r, 1e-5, "out")
    assert_close_scaled(l_c, l_r, 1e-5, "last state")
    assert set(g_c) == set(g_r) == set(DIFF_KEYS)
    for k in DIFF_KEYS:
        assert g_c[k].dtype == torch.float32 and g_c[k].shape == kw[k].shape
        assert_close_scaled(g_c[k], g_r[k], 1e-4, f"d{k}")


def test_last_state_gradient_alone(seed):
    """A loss on the last state only: both impls give the recurrence's gradients."""
    kw = scan_inputs(seed, length=70, z=False)
    ref = with_grad(kw)
    oracle(ref)[1].pow(2).sum().backward()
    for impl in IMPLS:
        mine = with_grad(kw)
        run(mine, impl)[1].pow(2).sum().backward()
        got = grads_of(mine)
        for k, gref in grads_of(ref).items():
            torch.testing.assert_close(got[k], gref, rtol=1e-8, atol=1e-9)
        assert got["delta"].abs().max() > 0 and got["initial_state"].abs().max() > 0


def test_auto_is_the_cpu_kernel_on_cpu(seed, monkeypatch):
    kw = scan_inputs(seed, dtype=torch.float32, length=33)
    calls = []
    real = cpu_mod.selective_scan_cpu

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cpu_mod, "selective_scan_cpu", spy)
    out_auto, last_auto = run(kw, "auto")
    assert calls, "impl='auto' on CPU did not use the Numba kernel"
    out_cpu, last_cpu = run(kw, "cpu")
    assert torch.equal(out_auto, out_cpu) and torch.equal(last_auto, last_cpu)


# ----------------------------------------------------------------------------- gradcheck

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", [
    dict(softplus=True, bc_rank=4, groups=2, seq_idx=False),
    dict(softplus=False, bc_rank=3, groups=1, seq_idx=False),
    dict(softplus=True, bc_rank=4, groups=2, seq_idx=True),
])
def test_gradcheck(impl, config, seed):
    kw = scan_inputs(seed, batch=1, dim=2, n_state=2, length=6, **config)
    leaves = with_grad(kw)
    names = [k for k in DIFF_KEYS if k in leaves]
    rest = {k: v for k, v in leaves.items() if k not in names}

    def fn(*tensors):
        return selective_scan(**dict(zip(names, tensors)), **rest, return_last_state=True, impl=impl)

    # the CPU kernel's backward is hand-written: check every Jacobian entry; the reference is
    # plain autograd, a random projection of the Jacobian is enough there
    assert torch.autograd.gradcheck(fn, tuple(leaves[k] for k in names), eps=1e-6, atol=1e-6, rtol=1e-5,
                                    fast_mode=impl == "reference")


# ----------------------------------------------------------------------------- packed sequences

@pytest.mark.parametrize("impl", IMPLS)
def test_packed_sequences_equal_separate_runs(impl, seed):
    """cu_seqlens == seq_idx == running each sequence on its own (the initial state belongs to
    the first sequence; the last state is the last sequence's)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 30, (4,), generator=g).tolist()
    total = sum(lengths)
    kw = scan_inputs(seed, batch=1, length=total)
    cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist())
    out_cu, last_cu = run(dict(kw, cu_seqlens=cu), impl)
    out_si, last_si = run(dict(kw, seq_idx=seq_idx_from_cu_seqlens(cu)), impl)
    assert torch.equal(out_cu, out_si) and torch.equal(last_cu, last_si)

    pieces, state = [], None
    for i, (a, b) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
        part = {k: (v[..., a:b] if k in ("u", "delta", "z", "B", "C") else v) for k, v in kw.items()}
        if i > 0:
            part.pop("initial_state")
        o, state = oracle(part)
        pieces.append(o)
    torch.testing.assert_close(out_cu, torch.cat(pieces, -1), **TOL64)
    torch.testing.assert_close(last_cu, state, **TOL64)


def test_cu_seqlens_with_padding_tail(seed):
    """Positions after cu_seqlens[-1] form their own sequence and do not see the others."""
    kw = scan_inputs(seed, batch=1, length=20, initial_state=False)
    out = selective_scan(**kw, cu_seqlens=torch.tensor([0, 7, 15]), impl="cpu")
    tail = {k: (v[..., 15:] if k in ("u", "delta", "z", "B", "C") else v) for k, v in kw.items()}
    torch.testing.assert_close(out[..., 15:], oracle(tail)[0], **TOL64)


def test_seq_idx_from_cu_seqlens():
    ids = seq_idx_from_cu_seqlens(torch.tensor([0, 2, 2, 5]), 7)
    assert ids.dtype == torch.int32 and ids.shape == (1, 7)
    assert ids.tolist() == [[0, 0, 2, 2, 2, 3, 3]]


# ----------------------------------------------------------------------------- stateful chunking

@pytest.mark.parametrize("impl", IMPLS)
def test_chunked_equals_one_piece_values_and_gradients(impl, seed):
    """Splitting a sequence and carrying the last state as the next initial state gives the
    same outputs and the same gradients (initial_state receives them; last state is
    differentiable) as one call."""
    length = 150
    kw = scan_inputs(seed, batch=2, dim=4, n_state=3, length=length, groups=2)
    g = torch.Generator().manual_seed(seed + 7)
    cuts = sorted(set(torch.randint(1, length, (4,), generator=g).tolist()) | {64})
    bounds = [0, *cuts, length]
    w_out, w_last = loss_weights(seed, kw["u"].shape, kw["initial_state"].shape)

    whole = with_grad(kw)
    out, last = run(whole, impl)
    ((out * w_out).sum() + (last * w_last).sum()).backward()

    parts = with_grad(kw)
    state, outs = parts["initial_state"], []
    for a, b in zip(bounds[:-1], bounds[1:]):
        piece = {k: (v[..., a:b] if k in ("u", "delta", "z", "B", "C") else v) for k, v in parts.items()}
        piece["initial_state"] = state
        o, state = run(piece, impl)
        outs.append(o)
    out_c = torch.cat(outs, -1)
    ((out_c * w_out).sum() + (state * w_last).sum()).backward()

    torch.testing.assert_close(out_c, out, **TOL64)
    torch.testing.assert_close(state, last, **TOL64)
    for k, gw in grads_of(whole).items():
        torch.testing.assert_close(parts[k].grad, gw, rtol=1e-8, atol=1e-9, msg=lambda m: f"d{k}: {m}")


# ----------------------------------------------------------------------------- half precision

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype,rel", [(torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
def test_half_precision_inputs(impl, dtype, rel, seed):
    kw = scan_inputs(seed, batch=2, dim=4, n_state=3, length=80, dtype=dtype)
    leaves = with_grad(kw)
    out, last = run(leaves, impl)
    assert out.dtype == dtype and last.dtype == torch.float32
    ref_out, ref_last = oracle(kw)  # the same (rounded) inputs, in float64
    assert_close_scaled(out, ref_out, rel, "out")
    assert_close_scaled(last, ref_last, 1e-4, "last state")  # the state is kept in float32
    out.float().sum().backward()
    for k in DIFF_KEYS:
        assert leaves[k].grad is not None and leaves[k].grad.dtype == dtype
        assert torch.isfinite(leaves[k].grad.float()).all()
