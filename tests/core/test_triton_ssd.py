"""The Triton SSD chunked scan against the PyTorch reference, under Triton's CPU interpreter.

Tiny shapes only: the interpreter checks indexing, masking and the math, not speed (and it
multiplies bfloat16 dot operands in float32). The same kernels are checked at scale on a GPU,
against a float64 reference, by benchmarks/kernels.py --sections mamba2.
"""
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
    from mambakit.ops.ssd import _ssd_chunk_scan_reference, ssd_chunk_scan
    from mambakit.ops import triton_ssd as ts
    seed, case = int(sys.argv[1]), sys.argv[2]
    torch.manual_seed(seed)
    INF = float("inf")

    def inputs(b, L, H, G, P, N, dtype=torch.float32, D="H", z=True, bias=True, h0=True):
        rn = lambda *s, sc=1.0: (torch.randn(*s) * sc).to(dtype)
        kw = dict(x=rn(b, L, H, P), B=rn(b, L, G, N, sc=0.7), C=rn(b, L, G, N, sc=0.7),
                  A=-torch.exp(torch.randn(H) * 0.5))
        # raw dt around softplus^-1 of typical steps; positive when used without softplus
        kw["dt"] = (rn(b, L, H, sc=0.5) - 1.0) if bias else (torch.rand(b, L, H) * 0.6 + 0.05).to(dtype)
        kw["D"] = None if D is None else torch.randn(H) if D == "H" else torch.randn(H, P)
        kw["z"] = rn(b, L, H, P) if z else None
        kw["dt_bias"] = torch.randn(H) * 0.5 if bias else None
        kw["initial_states"] = torch.randn(b, H, P, N) if h0 else None
        return kw

    def run(fn, kw, chunk, softplus, limit, seq, final_grad=True):
        leaves = {k: v.detach().clone().requires_grad_() for k, v in kw.items() if v is not None}
        args = dict(kw, **leaves)
        y, fin = fn(args["x"], args["dt"], args["A"], args["B"], args["C"], chunk, args["D"],
                    args["z"], args["dt_bias"], softplus, limit, args["initial_states"], seq)
        g = torch.Generator().manual_seed(seed + 1)
        gy = torch.randn(y.shape, generator=g).to(y.dtype)
        gf = torch.randn(fin.shape, generator=g)
        outs, gouts = ([y, fin], [gy, gf]) if final_grad else ([y], [gy])
        grads = torch.autograd.grad(outs, list(leaves.values()), gouts)
        return dict(y=y, final_states=fin, **{"d" + k: v for k, v in zip(leaves, grads)})

    def compare(name, got, want, tol):
        for k, w in want.items():
            a, w = got[k].double(), w.double()
            assert torch.isfinite(a).all(), f"{name}: {k} not finite"
            err = float((a - w).norm() / w.norm().clamp_min(1e-30))
            assert err <= tol, f"{name}: {k} relative error {err:.2e} > {tol:.0e}"
        print(name, "ok")

    seq_b = torch.tensor([[0] * 16 + [1] * 9 + [2] * 15,       # a reset exactly at a chunk boundary
                          [4] * 5 + [7] * 30 + [4] * 5])         # ids that come back later
    if case == "packed":
        # G < H, D (H,), z, dt_bias + softplus, initial states, seq_idx, L not a multiple of 16
        kw = inputs(2, 40, 4, 2, 8, 16)
        ref = run(_ssd_chunk_scan_reference, kw, 16, True, (0.0, INF), seq_b)
        # dB/dC by the group kernels, both heads of a group in one split
        ts.set_config(bwd_grouped=1)
        got16 = run(ts.ssd_chunk_scan_triton, kw, 16, True, (0.0, INF), seq_b)
        compare("packed chunk16", got16, ref, 1e-4)
        # chunk 32 in two blocks; one head per split, so the group kernels add with atomics
        ts.set_config(block_l=16, block_s=16, bwd_grouped=1, bwd_heads=1)
        got32 = run(ts.ssd_chunk_scan_triton, kw, 32, True, (0.0, INF), seq_b)
        # the output kernel tiled apart from the backward: 32-row blocks of 16 steps in a 64
        # chunk; the per-head backward (dB/dC in the dx/dc kernels), one head per program (atomics)
        ts.set_config(out_block_l=32, out_block_s=16, bwd_grouped=0, hpp=1)
        got64 = run(ts.ssd_chunk_scan_triton, kw, 64, True, (0.0, INF), seq_b)
        ts.clear_config()
        compare("packed chunk64, own output tile, per-head backward", got64, ref, 1e-4)
        compare("packed chunk32 vs reference", got32, ref, 1e-4)
        compare("packed chunk32 vs chunk16", got32, got16, 1e-4)
        # the public entry point dispatches to the kernel
        y = ssd_chunk_scan(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], chunk_size=16, D=kw["D"],
                           z=kw["z"], dt_bias=kw["dt_bias"], dt_softplus=True,
                           initial_states=kw["initial_states"], seq_idx=seq_b, impl="triton")
        assert torch.equal(y, got16["y"].detach()), "impl='triton' did not run the kernel"
        print("dispatch ok")
    elif case == "plain":
        # G = 1 < H, D (H, P), no z, no bias, no softplus, dt_limit clamping, no initial state,
        # gradients from y only; the per-head backward (2 heads per program, atomics) and the
        # group kernels with the 4 heads in 2 splits (atomics)
        kw = inputs(2, 37, 4, 1, 8, 16, D="HP", z=False, bias=False, h0=False)
        for limit, conf in (((0.0, INF), dict(hpp=2, bwd_grouped=0)), ((0.1, 0.45), dict(bwd_grouped=1, bwd_heads=2))):
            ts.clear_config()
            ts.set_config(**conf)
            ref = run(_ssd_chunk_scan_reference, kw, 16, False, limit, None, final_grad=False)
            got = run(ts.ssd_chunk_scan_triton, kw, 16, False, limit, None, final_grad=False)
            compare(f"plain limit={limit} {conf}", got, ref, 1e-4)
        # G = H, no D, a sequence shorter than one chunk, N and P not powers of 2
        ts.clear_config()
        kw = inputs(1, 11, 3, 3, 5, 12, D=None, z=True, bias=True, h0=True)
        ref = run(_ssd_chunk_scan_reference, kw, 16, True, (0.0, INF), None)
        got = run(ts.ssd_chunk_scan_triton, kw, 64, True, (0.0, INF), None)
        compare("short", got, ref, 1e-4)
        # chunk 128 at the default launch config: the forward's own 128 x 32 output tile, two
        # chunks, the second one partial
        ts.clear_config()
        assert ts._launch_config(128, 8, 8, 2)["out_block_l"] == 128
        kw = inputs(1, 150, 2, 1, 8, 8)
        ref = run(_ssd_chunk_scan_reference, kw, 128, True, (0.0, INF), None)
        got = run(ts.ssd_chunk_scan_triton, kw, 128, True, (0.0, INF), None)
        compare("chunk128 default tiles", got, ref, 1e-4)
    elif case == "bf16":
        # bfloat16 activations, float32 A/D/dt_bias; the reference computes in float32 on the
        # same bfloat16 inputs
        kw = inputs(2, 40, 4, 2, 8, 16, dtype=torch.bfloat16)
        ref = run(_ssd_chunk_scan_reference, kw, 16, True, (0.0, 0.8), seq_b)
        got = run(ts.ssd_chunk_scan_triton, kw, 16, True, (0.0, 0.8), seq_b)
        assert got["y"].dtype == torch.bfloat16 and got["final_states"].dtype == torch.float32
        assert got["dx"].dtype == got["dB"].dtype == torch.bfloat16
        compare("bf16", got, ref, 1e-2)
""")


@pytest.mark.parametrize("case", ["packed", "plain", "bf16"])
def test_triton_ssd_matches_reference_under_interpreter(case):
    seed = int.from_bytes(os.urandom(2), "little")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(seed), case], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"seed {seed}: {out.stderr[-3000:]}"


def test_dispatch_and_fallbacks():
    from mambakit.ops import triton_ssd
    from mambakit.ops.ssd import _resolve_impl, _ssd_chunk_scan_reference

    assert _resolve_impl("triton", torch.device("cpu")) is triton_ssd.ssd_chunk_scan_triton
    assert _resolve_impl("auto", torch.device("cuda")) is triton_ssd.ssd_chunk_scan_triton
    assert _resolve_impl("auto", torch.device("cpu")) is _ssd_chunk_scan_reference
    x, dt = torch.randn(1, 20, 2, 4), torch.rand(1, 20, 2)
    A, B, C = -torch.rand(2), torch.randn(1, 20, 1, 8), torch.randn(1, 20, 1, 8)
    args = (None, None, None, False, (0.0, float("inf")), None, None)
    # chunk sizes the kernels do not take fall back to the reference, with no error
    for chunk in (12, 8):
        y, fin = triton_ssd.ssd_chunk_scan_triton(x, dt, A, B, C, chunk, *args)
        y_ref, fin_ref = _ssd_chunk_scan_reference(x, dt, A, B, C, chunk, *args)
        assert torch.equal(y, y_ref) and torch.equal(fin, fin_ref)
    if not triton_ssd.interpreter_enabled():
        with pytest.raises(NotImplementedError, match="CUDA"):
            triton_ssd.ssd_chunk_scan_triton(x, dt, A, B, C, 16, *args)


COMPILE_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    os.environ["TRITON_INTERPRET"] = "1"
    from mambakit.ops import triton_ssd as ts
    torch.manual_seed(int(sys.argv[1]))
    full = sys.argv[2] == "1"
    b, L, H, G, P, N = 2, 20, 4, 2, 8, 16
    def t(*shape, scale=1.0):
        return (torch.randn(*shape) * scale).requires_grad_()
    x, dt = t(b, L, H, P), t(b, L, H, scale=0.5)
    A = (-torch.exp(torch.randn(H) * 0.5)).requires_grad_()
    B, C = t(b, L, G, N, scale=0.7), t(b, L, G, N, scale=0.7)
    D, z, bias, h0 = (t(H), t(b, L, H, P), t(H, scale=0.5), t(b, H, P, N)) if full else (None,) * 4
    if not full:
        dt = (torch.rand(b, L, H) * 0.6 + 0.05).requires_grad_()   # positive steps without softplus
    result = torch.library.opcheck(ts._fwd_op, (x, dt, A, B, C, D, z, bias, h0, None, 16, full, 0.0, float("inf")))
    assert all(v == "SUCCESS" for v in result.values()), result
    leaves = [v for v in (x, dt, A, B, C, D, z, bias, h0) if v is not None]

    def fn(x, dt, A, B, C, D, z, bias, h0):
        y, final = ts.ssd_chunk_scan_triton(x, dt, A, B, C, 16, D, z, bias, full, (0.0, float("inf")), h0, None)
        return y.square().sum() + final.sum()
    args = (x, dt, A, B, C, D, z, bias, h0)
    eager = torch.autograd.grad(fn(*args), leaves)
    compiled = torch.autograd.grad(torch.compile(fn, fullgraph=True, backend="aot_eager")(*args), leaves)
    for a, e in zip(compiled, eager):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)
    print("ok")
""")


@pytest.mark.parametrize("full", [True, False], ids=["all-optionals", "no-optionals"])
def test_triton_ssd_is_a_custom_op_that_compiles_in_one_graph(full):
    seed = int.from_bytes(os.urandom(2), "little")
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT, str(seed), "1" if full else "0"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), f"seed {seed}: " + out.stderr[-3000:]
