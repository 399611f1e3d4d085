"""The fused Triton decoding steps against the PyTorch references, under Triton's CPU interpreter."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("triton")

SCRIPT = textwrap.dedent("""
    import os, sys, torch
    os.environ["TRITON_INTERPRET"] = "1"
    from mambakit.ops.state_update import selective_state_update
    from mambakit.ops.ssd import ssd_state_update
    torch.manual_seed(int(sys.argv[1]))
    rel = lambda a, b: float((a.double() - b.double()).norm() / b.double().norm())
    worst = 0.0
    # Mamba-1: groups, N not a power of 2, with and without D / z / bias+softplus
    for (batch, dim, n, groups, full) in [(3, 12, 5, 3, True), (2, 8, 16, 1, False)]:
        state = torch.randn(batch, dim, n)
        kw = dict(x=torch.randn(batch, dim), dt=torch.randn(batch, dim) * 0.5, A=-torch.rand(dim, n) - 0.1,
                  B=torch.randn(batch, groups, n), C=torch.randn(batch, groups, n))
        if full:
            kw.update(D=torch.randn(dim), z=torch.randn(batch, dim), dt_bias=torch.randn(dim), dt_softplus=True)
        else:
            kw["dt"] = torch.rand(batch, dim) * 0.5
        s_ref, s_tri = state.clone(), state.clone()
        y_ref = selective_state_update(s_ref, **kw, impl="reference")
        y_tri = selective_state_update(s_tri, **kw, impl="triton")
        worst = max(worst, rel(y_tri, y_ref), rel(s_tri, s_ref))
    # Mamba-2: groups, P and N not powers of 2, D per head or per channel, dt_limit
    for (batch, H, P, n, G, D_kind, limit) in [(2, 6, 5, 7, 2, "H", (0.05, 0.4)), (1, 4, 8, 16, 4, "HP", (0.0, float("inf")))]:
        state = torch.randn(batch, H, P, n)
        kw = dict(x=torch.randn(batch, H, P), dt=torch.randn(batch, H) * 0.5, A=-torch.rand(H) - 0.1,
                  B=torch.randn(batch, G, n), C=torch.randn(batch, G, n),
                  D=torch.randn(H) if D_kind == "H" else torch.randn(H, P), z=torch.randn(batch, H, P),
                  dt_bias=torch.randn(H), dt_softplus=True, dt_limit=limit)
        s_ref, s_tri = state.clone(), state.clone()
        y_ref = ssd_state_update(s_ref, **kw, impl="reference")
        y_tri = ssd_state_update(s_tri, **kw, impl="triton")
        worst = max(worst, rel(y_tri, y_ref), rel(s_tri, s_ref))
    # a bfloat16 state stays bfloat16 and is updated in place
    state = torch.randn(2, 8, 16).to(torch.bfloat16)
    before = state.clone()
    y = selective_state_update(state, torch.randn(2, 8), torch.rand(2, 8), -torch.rand(8, 16), torch.randn(2, 16),
                               torch.randn(2, 16), impl="triton")
    assert state.dtype == torch.bfloat16 and not torch.equal(state, before) and y.shape == (2, 8)
    print(worst)
""")


def test_triton_decoding_steps_match_the_references_under_interpreter():
    seed = int.from_bytes(os.urandom(2), "little")
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(seed)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, f"seed {seed}: " + out.stderr[-3000:]
    worst = float(out.stdout.strip().splitlines()[-1])
    assert worst < 1e-5, f"seed {seed}: relative error {worst}"


def test_auto_keeps_the_differentiable_reference_on_cpu():
    from mambakit.ops.state_update import selective_state_update, use_triton

    state = torch.zeros(1, 2, 3)
    x = torch.randn(1, 2, requires_grad=True)
    y = selective_state_update(state, x, torch.rand(1, 2), -torch.rand(2, 3), torch.randn(1, 3), torch.randn(1, 3))
    y.sum().backward()
    assert x.grad is not None
    assert not use_triton("auto", state)
    with pytest.raises(ValueError, match="impl"):
        use_triton("cuda", state)
