"""The Triton selective scan against the PyTorch reference, under Triton's CPU interpreter.

Tiny shapes only: the interpreter checks indexing, masking and the math, not speed. The same
kernels are checked at scale on a GPU by benchmarks/kernels.py.
"""
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent("""
    import os, sys, torch
    os.environ["TRITON_INTERPRET"] = "1"
    from mambakit.ops.selective_scan import selective_scan
    from mambakit.ops import triton_selective_scan as tss
    torch.manual_seed(int(sys.argv[1]))
    batch, dim, length, n, groups, block_l = map(int, sys.argv[2:8])
    packed = sys.argv[8] == "1"
    tss.set_atomic_slices(int(sys.argv[9]))
    tss.set_deterministic(sys.argv[10] == "1")
    bwd_block_l = int(sys.argv[11]) or block_l        # the checkpoint interval
    if block_l:
        tss.set_config("fwd", 2, block_l, 4, 1)
        tss.set_config("bwd", 1, bwd_block_l, 4, 1)
    u = torch.randn(batch, dim, length, requires_grad=True)
    delta = (torch.randn(batch, dim, length) * 0.5).requires_grad_()
    A = (-torch.rand(dim, n) * 3 - 0.1).requires_grad_()
    B = torch.randn(batch, groups, n, length, requires_grad=True)
    C = torch.randn(batch, groups, n, length, requires_grad=True)
    D = torch.randn(dim, requires_grad=True)
    z = torch.randn(batch, dim, length, requires_grad=True)
    bias = torch.randn(dim, requires_grad=True)
    h0 = torch.randn(batch, dim, n, requires_grad=True) if packed else None
    seq = torch.sort(torch.randint(0, 3, (batch, length)), -1).values if packed else None
    leaves = [u, delta, A, B, C, D, z, bias] + ([h0] if packed else [])
    gy = torch.randn(batch, dim, length)
    gl = torch.randn(batch, dim, n)
    res = {}
    for impl in ("reference", "triton"):
        y, last = selective_scan(u, delta, A, B, C, D, z, bias, True, return_last_state=True,
                                 initial_state=h0, seq_idx=seq, impl=impl)
        res[impl] = [y, last, *torch.autograd.grad([y, last], leaves, [gy, gl])]
    worst = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(res["triton"], res["reference"]))
    if sys.argv[10] == "1":   # deterministic: a second run gives bitwise the same gradients
        y, last = selective_scan(u, delta, A, B, C, D, z, bias, True, return_last_state=True,
                                 initial_state=h0, seq_idx=seq, impl="triton")
        again = torch.autograd.grad([y, last], leaves, [gy, gl])
        assert all(torch.equal(a, b) for a, b in zip(again, res["triton"][2:]))
    print(worst)
""")


@pytest.mark.parametrize("case", [
    (2, 6, 37, 5, 3, 0, 0, 0, 0, 0),      # groups, one chunk, N not a power of 2
    (1, 4, 48, 4, 1, 16, 0, 0, 0, 0),     # a length that needs no row padding (L % 16 == 0)
    (1, 4, 70, 16, 1, 16, 1, 0, 0, 0),    # several chunks, packed sequences and an initial state
    (2, 8, 40, 4, 2, 16, 0, 3, 0, 0),     # dB/dC atomics spread over 3 slices (channel blocks of 1)
    (2, 8, 40, 4, 2, 16, 1, 0, 1, 0),     # deterministic: a slice per channel block, plain stores
    (1, 4, 150, 4, 1, 64, 1, 0, 0, 16),   # backward chunks 4x shorter than the forward's (checkpoints inside)
    (1, 4, 75, 4, 1, 16, 0, 0, 0, 32),    # backward chunks 2x longer (a checkpoint every other chunk)
])
def test_triton_scan_matches_reference_under_interpreter(case):
    seed = int.from_bytes(os.urandom(2), "little")
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(seed), *map(str, case)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    worst = float(out.stdout.strip().splitlines()[-1])
    assert worst < 1e-4, f"seed {seed}: max relative difference {worst}"


COMPILE_SCRIPT = textwrap.dedent("""
    import importlib, os, sys, torch
    os.environ["TRITON_INTERPRET"] = "1"
    mod = importlib.import_module("mambakit.ops." + sys.argv[2])
    scan = mod.selective_scan_triton_nd if hasattr(mod, "selective_scan_triton_nd") else mod.selective_scan_triton
    torch.manual_seed(int(sys.argv[1]))
    full = sys.argv[3] == "1"
    batch, dim, length, n, groups = 2, 4, 24, 4, 2
    def t(*shape, scale=1.0):
        return (torch.randn(*shape) * scale).requires_grad_()
    u, delta = t(batch, dim, length), t(batch, dim, length, scale=0.5)
    A = (-torch.rand(dim, n) - 0.1).requires_grad_()
    B, C = t(batch, groups, n, length), t(batch, groups, n, length)
    D, z, bias, h0 = (t(dim), t(batch, dim, length), t(dim), t(batch, dim, n)) if full else (None,) * 4
    # op flags: softplus (+ deterministic, store checkpoints for the nd kernel)
    flags = (full, False, True) if hasattr(mod, "selective_scan_triton_nd") else (full,)
    result = torch.library.opcheck(mod._fwd_op, (u, delta, A, B, C, D, z, bias, h0, None, *flags))
    assert all(v == "SUCCESS" for v in result.values()), result
    leaves = [x for x in (u, delta, A, B, C, D, z, bias, h0) if x is not None]

    def fn(u, delta, A, B, C, D, z, bias, h0):
        y, last = scan(u, delta, A, B, C, D, z, bias, full, h0, None)
        return y.square().sum() + last.sum()
    args = (u, delta, A, B, C, D, z, bias, h0)
    eager = torch.autograd.grad(fn(*args), leaves)
    compiled_fn = torch.compile(fn, fullgraph=True, backend="aot_eager")   # no graph break at the scan
    compiled = torch.autograd.grad(compiled_fn(*args), leaves)
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    print("ok")
""")


@pytest.mark.parametrize("module", ["triton_selective_scan", "triton_selective_scan_nd"])
@pytest.mark.parametrize("full", [True, False], ids=["all-optionals", "no-optionals"])
def test_triton_scans_are_custom_ops_that_compile_in_one_graph(module, full):
    seed = int.from_bytes(os.urandom(2), "little")
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT, str(seed), module, "1" if full else "0"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), f"seed {seed}: " + out.stderr[-3000:]


def test_forward_channel_block_fills_the_gpu():
    """The forward's channel block shrinks until there is a program per SM; never the backward's
    or a forced configuration, and a block always divides the channels of a group."""
    from mambakit.ops import triton_selective_scan as tss

    cfg = tss._launch_config
    assert cfg("fwd", 1536, 1, 16, 2048, batch=8, n_sm=132)[0] == 8          # 1536 programs already
    assert cfg("fwd", 384, 1, 16, 15000, batch=1, n_sm=132)[0] == 2          # 48 -> 192 programs
    assert cfg("fwd", 64, 1, 16, 100, batch=1, n_sm=132)[0] == 1             # as small as it goes
    assert cfg("fwd", 384, 1, 16, 15000)[0] == 8                             # no device: unchanged
    assert cfg("bwd", 384, 1, 16, 15000, batch=1, n_sm=132)[0] == 1
    for dim, groups in [(384, 3), (96, 4), (40, 1)]:
        assert (dim // groups) % cfg("fwd", dim, groups, 16, 1000, batch=1, n_sm=132)[0] == 0
    try:
        tss.set_config("fwd", 8, 64, 4, 1)
        assert cfg("fwd", 384, 1, 16, 15000, batch=1, n_sm=132)[0] == 8
    finally:
        tss.clear_config()
