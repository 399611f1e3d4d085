"""selective_state_update (one decoding step of the Mamba-1 scan) against the recurrence and
against selective_scan over whole sequences."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mambakit import selective_scan, selective_state_update
from mk_core_oracles import F64, scan_inputs, selective_scan_recurrence

TOL64 = dict(rtol=1e-10, atol=1e-12)


def step_args(kw: dict, t: int) -> dict:
    """Slice time step ``t`` of selective_scan's arguments into selective_state_update's."""
    B, C = kw["B"][..., t], kw["C"][..., t]                        # (b, n) or (b, g, n)
    return dict(x=kw["u"][..., t], dt=kw["delta"][..., t], A=kw["A"], B=B, C=C, D=kw.get("D"),
                z=kw["z"][..., t] if "z" in kw else None, dt_bias=kw.get("delta_bias"),
                dt_softplus=kw["delta_softplus"])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 3), groups=st.integers(1, 3),
       per_group=st.integers(1, 3), n_state=st.integers(1, 4), length=st.integers(1, 10),
       bc_rank=st.sampled_from([3, 4]), D=st.booleans(), z=st.booleans(), delta_bias=st.booleans(),
       softplus=st.booleans())
def test_steps_equal_the_recurrence(seed, batch, groups, per_group, n_state, length, bc_rank, D, z,
                                    delta_bias, softplus):
    if bc_rank == 3:
        groups = 1
    kw = scan_inputs(seed, batch=batch, dim=groups * per_group, n_state=n_state, length=length,
                     groups=groups, bc_rank=bc_rank, D=D, z=z, delta_bias=delta_bias, softplus=softplus)
    ref_out, ref_last = selective_scan_recurrence(**kw)
    state = kw["initial_state"].clone()
    outs = []
    for t in range(length):
        y = selective_state_update(state, **step_args(kw, t))
        assert y.shape == (batch, groups * per_group) and y.dtype == F64
        outs.append(y)
    torch.testing.assert_close(torch.stack(outs, -1), ref_out, **TOL64)
    torch.testing.assert_close(state, ref_last, **TOL64)  # updated in place


@pytest.mark.parametrize("impl", ["reference", "cpu"])
def test_prefill_then_steps_equal_one_scan(impl, seed):
    """selective_scan on a prefix, then one token at a time from its last state, equals the scan
    of the whole sequence."""
    kw = scan_inputs(seed, batch=2, dim=6, n_state=4, length=40, groups=3)
    full, full_last = selective_scan(**kw, return_last_state=True, impl=impl)
    prefix = {k: (v[..., :25] if k in ("u", "delta", "z", "B", "C") else v) for k, v in kw.items()}
    out, state = selective_scan(**prefix, return_last_state=True, impl=impl)
    outs = [out]
    for t in range(25, 40):
        outs.append(selective_state_update(state, **step_args(kw, t)).unsqueeze(-1))
    torch.testing.assert_close(torch.cat(outs, -1), full, **TOL64)
    torch.testing.assert_close(state, full_last, **TOL64)


def test_float32_state_with_half_inputs(seed):
    kw = scan_inputs(seed, batch=2, dim=4, n_state=3, length=12)
    ref_out, ref_last = selective_scan_recurrence(**kw)
    state = kw["initial_state"].float().clone()
    outs = []
    for t in range(12):
        args = step_args(kw, t)
        args = {k: (v.to(torch.bfloat16) if isinstance(v, torch.Tensor) and k in ("x", "dt", "z", "B", "C")
                    else v) for k, v in args.items()}
        y = selective_state_update(state, **args)
        assert y.dtype == torch.bfloat16 and state.dtype == torch.float32
        outs.append(y)
    out = torch.stack(outs, -1).double()
    assert (out - ref_out).abs().max() <= 0.05 * ref_out.abs().max()
    assert (state.double() - ref_last).abs().max() <= 0.05 * ref_last.abs().max()
