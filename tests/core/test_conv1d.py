"""Causal depthwise conv1d and its decoding update against a float64 tap-by-tap recurrence."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from mambakit import causal_conv1d, causal_conv1d_update, seq_idx_from_cu_seqlens
from mk_core_oracles import F64, causal_conv1d_recurrence, random_seq_idx

TOL64 = dict(rtol=1e-10, atol=1e-12)


def conv_inputs(seed, batch=2, dim=3, length=11, width=4, dtype=F64, bias=True, initial_state=True,
                seq_idx=False):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=F64).to(dtype)

    kw = dict(x=rnd(batch, dim, length), weight=rnd(dim, width))
    if bias:
        kw["bias"] = rnd(dim)
    if initial_state:
        kw["initial_state"] = rnd(batch, dim, width - 1)
    if seq_idx:
        kw["seq_idx"] = random_seq_idx(g, batch, length)
    return kw


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 3), dim=st.integers(1, 5),
       length=st.integers(1, 12), width=st.integers(1, 5), bias=st.booleans(),
       initial_state=st.booleans(), seq_idx=st.booleans(),
       activation=st.sampled_from([None, "silu", "swish"]))
def test_matches_recurrence_on_random_shapes(seed, batch, dim, length, width, bias, initial_state,
                                             seq_idx, activation):
    kw = conv_inputs(seed, batch, dim, length, width, bias=bias, initial_state=initial_state,
                     seq_idx=seq_idx)
    out, final = causal_conv1d(**kw, activation=activation, return_final_state=True)
    ref_out, ref_final = causal_conv1d_recurrence(**kw, activation=activation)
    assert out.dtype == F64 and out.shape == (batch, dim, length)
    assert final.shape == (batch, dim, width - 1)
    torch.testing.assert_close(out, ref_out, **TOL64)
    torch.testing.assert_close(final, ref_final, **TOL64)
    plain = causal_conv1d(**kw, activation=activation)
    assert isinstance(plain, torch.Tensor)
    torch.testing.assert_close(plain, out, rtol=0, atol=0)


def test_matches_padded_nn_conv1d_like_mamba_ssm(seed):
    """mamba_ssm's slow path: ``conv1d(x)[..., :L]`` with padding W - 1 and no initial state."""
    kw = conv_inputs(seed, batch=2, dim=6, length=20, width=4, initial_state=False)
    conv = nn.Conv1d(6, 6, 4, groups=6, padding=3, dtype=F64)
    with torch.no_grad():
        conv.weight.copy_(kw["weight"].unsqueeze(1))
        conv.bias.copy_(kw["bias"])
    expected = torch.nn.functional.silu(conv(kw["x"])[..., :20])
    torch.testing.assert_close(causal_conv1d(**kw, activation="silu"), expected, **TOL64)


@pytest.mark.parametrize("packed", [False, True])
def test_gradcheck(packed, seed):
    kw = conv_inputs(seed, batch=2, dim=2, length=6, width=3, seq_idx=packed)
    seq = kw.pop("seq_idx", None)
    names = list(kw)
    leaves = tuple(kw[k].clone().requires_grad_(True) for k in names)

    def fn(*ts):
        return causal_conv1d(**dict(zip(names, ts)), activation="silu", return_final_state=True,
                             seq_idx=seq)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_gradients_match_recurrence(seed):
    kw = conv_inputs(seed, batch=2, dim=3, length=15, width=4, seq_idx=True)
    w = torch.randn(2, 3, 15, dtype=F64, generator=torch.Generator().manual_seed(seed + 1))
    grads = []
    for fn in (causal_conv1d, causal_conv1d_recurrence):
        leaves = {k: (v.clone().requires_grad_(True) if v.is_floating_point() else v) for k, v in kw.items()}
        res = fn(**leaves, activation="silu")
        out = res[0] if isinstance(res, tuple) else res
        (out * w).sum().backward()
        grads.append({k: v.grad for k, v in leaves.items() if v.is_floating_point()})
    for k in grads[1]:
        torch.testing.assert_close(grads[0][k], grads[1][k], **TOL64)


@pytest.mark.parametrize("width", [1, 2, 4])
def test_chunked_equals_one_piece_values_and_gradients(width, seed):
    """Carrying the final state into the next chunk reproduces the one-piece outputs and
    gradients (including those of the initial state)."""
    length = 23
    kw = conv_inputs(seed, batch=2, dim=3, length=length, width=width)
    w = torch.randn(2, 3, length, dtype=F64, generator=torch.Generator().manual_seed(seed + 1))
    bounds = [0, 1, 2, 9, 16, length]  # includes chunks shorter than W - 1

    def leaves():
        return {k: v.clone().requires_grad_(True) for k, v in kw.items()}

    whole = leaves()
    out, final = causal_conv1d(**whole, activation="silu", return_final_state=True)
    ((out * w).sum() + final.pow(2).sum()).backward()

    parts = leaves()
    state, outs = parts["initial_state"], []
    for a, b in zip(bounds[:-1], bounds[1:]):
        o, state = causal_conv1d(parts["x"][..., a:b], parts["weight"], parts["bias"], "silu",
                                 initial_state=state, return_final_state=True)
        outs.append(o)
    out_c = torch.cat(outs, -1)
    ((out_c * w).sum() + state.pow(2).sum()).backward()
    torch.testing.assert_close(out_c, out, **TOL64)
    torch.testing.assert_close(state, final, **TOL64)
    for k in kw:
        torch.testing.assert_close(parts[k].grad, whole[k].grad, **TOL64)


def test_packed_equals_separate_sequences(seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 8, (4,), generator=g).tolist()
    cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist())
    kw = conv_inputs(seed, batch=1, dim=3, length=int(cu[-1]), width=4, initial_state=False)
    out = causal_conv1d(**kw, activation="silu", seq_idx=seq_idx_from_cu_seqlens(cu))
    pieces = [causal_conv1d(kw["x"][..., a:b], kw["weight"], kw["bias"], "silu")
              for a, b in zip(cu[:-1].tolist(), cu[1:].tolist())]
    torch.testing.assert_close(out, torch.cat(pieces, -1), **TOL64)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_output_dtype_and_accuracy(dtype, seed):
    kw = conv_inputs(seed, batch=2, dim=4, length=30, width=4, dtype=dtype)
    out = causal_conv1d(**kw, activation="silu")
    assert out.dtype == dtype
    ref, _ = causal_conv1d_recurrence(**kw, activation="silu")
    rel = {torch.float16: 5e-3, torch.bfloat16: 3e-2, torch.float32: 1e-5}[dtype]
    assert (out.double() - ref).abs().max() <= rel * ref.abs().max()


# ----------------------------------------------------------------------------- decoding update

@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("bias", [False, True])
def test_update_over_a_sequence_equals_the_parallel_conv(activation, bias, seed):
    """``conv_state (B, D, W)`` holds the last W inputs; stepping token by token gives the
    parallel output, and the state ends as the last W inputs."""
    width, length = 4, 13
    kw = conv_inputs(seed, batch=2, dim=3, length=length, width=width, bias=bias)
    expected, final = causal_conv1d(**kw, activation=activation, return_final_state=True)
    g = torch.Generator().manual_seed(seed + 3)
    oldest = torch.randn(2, 3, 1, dtype=F64, generator=g)  # leaves the window at the first step
    conv_state = torch.cat([oldest, kw["initial_state"]], -1).contiguous()
    outs = []
    for t in range(length):
        y = causal_conv1d_update(kw["x"][:, :, t], conv_state, kw["weight"], kw.get("bias"), activation)
        assert y.shape == (2, 3) and y.dtype == F64
        outs.append(y)
    torch.testing.assert_close(torch.stack(outs, -1), expected, **TOL64)
    torch.testing.assert_close(conv_state, kw["x"][..., -width:], rtol=0, atol=0)
    torch.testing.assert_close(conv_state[..., 1:], final, rtol=0, atol=0)


def test_update_keeps_input_dtype_and_state_dtype(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, generator=g).to(torch.bfloat16)
    state = torch.randn(2, 3, 4, generator=g)
    weight = torch.randn(3, 4, generator=g)
    expected_state = torch.cat([state[..., 1:], x.float().unsqueeze(-1)], -1)
    y = causal_conv1d_update(x, state, weight, None, "silu")
    assert y.dtype == torch.bfloat16 and state.dtype == torch.float32
    torch.testing.assert_close(state, expected_state, rtol=0, atol=0)
    torch.testing.assert_close(y.float(), torch.nn.functional.silu((expected_state * weight).sum(-1)),
                               rtol=1e-2, atol=1e-2)
