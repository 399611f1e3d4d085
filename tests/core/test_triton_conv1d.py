"""The fused Triton causal conv1d against the PyTorch reference in float64, forward and every
gradient, under Triton's CPU interpreter (subprocesses: the interpreter is chosen at import)."""
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent("""
    import os, sys, torch
    os.environ["TRITON_INTERPRET"] = "1"
    from mambakit.ops.conv1d import causal_conv1d
    seed, batch, dim, length, width, silu, full, packed, layout = map(int, sys.argv[1:])
    torch.manual_seed(seed)
    rel = lambda a, b: float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))

    def leaf(*shape):
        return torch.randn(*shape).requires_grad_()
    if layout == 1:   # Mamba-2's layout: channels contiguous, time strided
        x = torch.randn(batch, length, dim).transpose(1, 2).requires_grad_()
    else:
        x = leaf(batch, dim, length)
    weight, bias = leaf(dim, width), (leaf(dim) if full else None)
    h0 = leaf(batch, dim, width - 1) if full else None
    seq_idx = None
    if packed:        # three packed sequences per row, boundaries at random places
        cuts = torch.sort(torch.randint(1, length, (batch, 2)), dim=1).values
        pos = torch.arange(length)
        seq_idx = (pos >= cuts[:, :1]).int() + (pos >= cuts[:, 1:]).int()
    act = "silu" if silu else None
    leaves = [t for t in (x, weight, bias, h0) if t is not None]

    def run(impl, cast):
        args = [t.detach().to(cast).requires_grad_() if t is not None else None for t in (x, weight, bias, h0)]
        out, final = causal_conv1d(args[0], args[1], args[2], act, initial_state=args[3],
                                   return_final_state=True, seq_idx=seq_idx, impl=impl)
        # the same cotangents for both runs, whatever memory layout each output has
        g = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).to(cast)
        gf = torch.randn(final.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1)).to(cast)
        grads = torch.autograd.grad((out * g).sum() + (final * gf).sum(), [a for a in args if a is not None])
        return out, final, grads
    ref_out, ref_final, ref_grads = run("reference", torch.float64)
    out, final, grads = run("triton", torch.float32)
    assert out.dtype == torch.float32 and out.shape == x.shape
    worst = max(rel(out, ref_out), rel(final, ref_final) if final.numel() else 0.0)
    for name, a, b in zip(["dx", "dweight", "dbias", "dinitial_state"][:len(grads)] if full else ["dx", "dweight"],
                          grads, ref_grads):
        assert a.shape == b.shape, (name, a.shape, b.shape)
        if b.numel():
            worst = max(worst, rel(a, b))
    # bf16 activations with float32 weights (what autocast gives the mixers): bf16 out, fp32 weight grads
    xb = x.detach().bfloat16().requires_grad_()
    wb = weight.detach().clone().requires_grad_()
    ob = causal_conv1d(xb, wb, None if bias is None else bias.detach(), act, seq_idx=seq_idx, impl="triton")
    ob.float().sum().backward()
    assert ob.dtype == torch.bfloat16 and xb.grad.dtype == torch.bfloat16 and wb.grad.dtype == torch.float32
    print(worst)
""")


@pytest.mark.parametrize("case", [
    # batch, dim, length, width, silu, full (bias + initial state), packed, layout (0: (B,D,L), 1: strided)
    (2, 12, 37, 4, 1, 1, 0, 0),
    (1, 9, 300, 4, 1, 1, 1, 0),      # two time tiles, packed sequences
    (2, 70, 75, 4, 1, 1, 1, 1),      # Mamba-2 layout: several channel and time tiles
    (2, 8, 20, 2, 0, 0, 0, 0),       # no activation, no bias, no state
    (1, 5, 9, 1, 1, 1, 0, 1),        # width 1: an empty state
    (1, 6, 3, 4, 1, 1, 1, 0),        # shorter than the kernel
])
def test_triton_conv1d_matches_reference_under_interpreter(case):
    seed = int.from_bytes(os.urandom(2), "little")
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(seed), *map(str, case)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"seed {seed}: " + out.stderr[-3000:]
    worst = float(out.stdout.strip().splitlines()[-1])
    assert worst < 1e-5, f"seed {seed}: max relative difference {worst}"


COMPILE_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    os.environ["TRITON_INTERPRET"] = "1"
    from mambakit.ops import triton_conv1d as mod
    torch.manual_seed(int(sys.argv[1]))
    full = sys.argv[2] == "1"
    x = torch.randn(2, 6, 20, requires_grad=True)
    w = torch.randn(6, 4, requires_grad=True)
    b = torch.randn(6, requires_grad=True) if full else None
    h0 = torch.randn(2, 6, 3, requires_grad=True) if full else None
    seq = torch.tensor([[0] * 8 + [1] * 12, [0] * 20]) if full else None
    result = torch.library.opcheck(mod._fwd_op, (x, w, b, h0, seq, True))
    assert all(v == "SUCCESS" for v in result.values()), result
    leaves = [t for t in (x, w, b, h0) if t is not None]

    def fn(x, w, b, h0):
        return mod.causal_conv1d_triton(x, w, b, h0, seq, True).square().sum()
    eager = torch.autograd.grad(fn(x, w, b, h0), leaves)
    compiled = torch.autograd.grad(torch.compile(fn, fullgraph=True, backend="aot_eager")(x, w, b, h0), leaves)
    for a, e in zip(compiled, eager):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)
    print("ok")
""")


@pytest.mark.parametrize("full", [True, False], ids=["all-optionals", "no-optionals"])
def test_triton_conv1d_is_a_custom_op_that_compiles_in_one_graph(full):
    seed = int.from_bytes(os.urandom(2), "little")
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT, str(seed), "1" if full else "0"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), f"seed {seed}: " + out.stderr[-3000:]


def test_auto_takes_the_reference_off_gpu_and_forced_triton_checks_its_limits():
    import torch

    from mambakit.ops.conv1d import _use_triton, causal_conv1d

    x = torch.randn(1, 4, 10)
    assert not _use_triton("auto", x, 4)                  # CPU tensors: the reference
    assert not _use_triton("reference", x, 4)
    with pytest.raises(ValueError, match="impl"):
        causal_conv1d(x, torch.randn(4, 4), impl="fast")
    if os.environ.get("TRITON_INTERPRET") != "1":
        with pytest.raises(NotImplementedError, match="CUDA"):
            causal_conv1d(x, torch.randn(4, 4), impl="triton")
