"""The (BLOCK_D, BLOCK_N, BLOCK_L)-tile Triton selective scan against the PyTorch reference,
under Triton's CPU interpreter, in a subprocess (the interpreter is chosen at import).

Tiny shapes only: the interpreter checks indexing, masking, the checkpoint bookkeeping and the
math, not speed. Every output and every gradient is compared (relative error in norm).
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent("""
    import json, os, sys, torch
    os.environ["TRITON_INTERPRET"] = "1"
    from mambakit.ops.selective_scan import selective_scan_reference
    from mambakit.ops import triton_selective_scan_nd as nd
    seed = int(sys.argv[1])
    cfg = json.loads(sys.argv[2])
    torch.manual_seed(seed)
    batch, dim, length, n, groups = cfg["shape"]
    if cfg.get("fwd"):
        nd.set_config("fwd", *cfg["fwd"])
    if cfg.get("bwd"):
        nd.set_config("bwd", *cfg["bwd"])
    opt = lambda name: cfg.get(name, True)
    u = torch.randn(batch, dim, length)
    delta = torch.randn(batch, dim, length) * 0.5 if opt("softplus") else torch.rand(batch, dim, length) * 0.5 + 0.05
    A = -torch.rand(dim, n) * 3 - 0.1
    B = torch.randn(batch, groups, n, length)
    C = torch.randn(batch, groups, n, length)
    D = torch.randn(dim) if opt("D") else None
    z = torch.randn(batch, dim, length) if opt("z") else None
    bias = torch.randn(dim) * 0.3 if opt("bias") else None
    h0 = torch.randn(batch, dim, n) if cfg.get("h0") else None
    seq = torch.sort(torch.randint(0, 4, (batch, length)), -1).values.int() if cfg.get("seq") else None
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"]
    vals = [u, delta, A, B, C, D, z, bias, h0]
    gy = torch.randn(batch, dim, length)
    gl = torch.randn(batch, dim, n) if cfg.get("dlast", True) else None
    res = {}
    for impl in ("reference", "triton"):
        dtype = torch.float64 if impl == "reference" else torch.float32
        leaves = [v.to(dtype).requires_grad_() if v is not None else None for v in vals]
        kw = dict(zip(names, leaves))
        if impl == "reference":
            y, last = selective_scan_reference(**kw, delta_softplus=opt("softplus"), seq_idx=seq)
        else:
            y, last = nd.selective_scan_triton_nd(**kw, delta_softplus=opt("softplus"), seq_idx=seq,
                                                  deterministic=cfg.get("det", False))
        outs, grads = [y], [gy.to(dtype)]
        if gl is not None:
            outs.append(last); grads.append(gl.to(dtype))
        live = [x for x in leaves if x is not None]
        got = torch.autograd.grad(outs, live, grads)
        it = iter(got)
        res[impl] = {"out": y, "last": last, **{k: next(it) for k, x in zip(names, leaves) if x is not None}}
    with torch.no_grad():                      # no backward to come: no checkpoints are stored
        y, last = nd.selective_scan_triton_nd(*vals[:8], opt("softplus"), h0, seq)
    res["triton"].update(out_nograd=y, last_nograd=last)
    res["reference"].update(out_nograd=res["reference"]["out"], last_nograd=res["reference"]["last"])
    errs = {}
    for k, ref in res["reference"].items():
        a = res["triton"][k].double()
        errs[k] = float(((a - ref).norm() / ref.norm().clamp_min(1e-30)).detach())
    print(json.dumps(errs))
""")

CASES = {
    # groups, one chunk at the default config, N not a power of 2, every option on
    "groups_n5": dict(shape=[2, 6, 37, 5, 3]),
    # packed sequences with an initial state, several chunks, L not a multiple of BLOCK_L
    "packed_h0_chunks": dict(shape=[2, 4, 70, 16, 1], h0=True, seq=True, fwd=[2, 16, 4, 1], bwd=[1, 16, 4, 1]),
    # forward chunk longer than the checkpoint interval (CK < BLOCK_L), deterministic dB/dC,
    # no D / z / bias / softplus
    "ck_lt_fwd_det_bare": dict(shape=[2, 8, 83, 5, 2], h0=True, fwd=[4, 32, 4, 1], bwd=[2, 16, 4, 1],
                               det=True, D=False, z=False, bias=False, softplus=False),
    # forward chunk shorter than the checkpoint interval (CK > BLOCK_L), packed without h0,
    # no gradient flowing into the last state, z without D, deterministic
    "ck_gt_fwd_seq": dict(shape=[1, 4, 75, 3, 2], seq=True, fwd=[2, 16, 2, 1], bwd=[2, 32, 2, 1],
                          det=True, D=False, dlast=False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_triton_nd_scan_matches_reference_under_interpreter(name):
    seed = int.from_bytes(os.urandom(2), "little")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(seed), json.dumps(CASES[name])], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"seed {seed}: {out.stderr[-3000:]}"
    errs = json.loads(out.stdout.strip().splitlines()[-1])
    expected = {"out", "last", "out_nograd", "last_nograd", "u", "delta", "A", "B", "C"}
    assert expected <= set(errs), errs
    bad = {k: v for k, v in errs.items() if not v <= 1e-4}
    assert not bad, f"seed {seed}, case {name}: relative errors {bad} (all: {errs})"
