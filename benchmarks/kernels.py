"""GPU kernels: correctness at scale and speed against the official CUDA/Triton kernels.

Sections (each prints a table; all results go to one JSON):
  correctness  our Triton selective scan vs the PyTorch reference in float64 on fresh random
               inputs (outputs poisoned with NaN first), forward and every gradient, fp32 and
               bf16; a bf16 forward+backward at L = 1,048,576 must stay finite.
  mamba1       forward and forward+backward medians (triton.testing.do_bench) on the issue's
               shapes, ours vs mamba_ssm's CUDA scan when it is available, with the share of
               the memory-bandwidth floor and the peak memory.
  mamba2_correctness  the Mamba-2 SSD chunked scan: our Triton kernels (impl="triton") vs the
               PyTorch reference in float64, forward, final states and every gradient, fp32 and
               bf16, packed sequences included, and a finite bf16 forward+backward at
               L = 1,048,576.
  mamba2       the Mamba-2 SSD chunked scan: forward and forward+backward medians on the issue's shapes
               (bf16 activations, fp32 A/D/dt_bias, with D, z, dt_bias, softplus, chunk 256):
               ours, the PyTorch reference, mamba_ssm's mamba_chunk_scan_combined and fla's
               chunk_simple_gla (the bare scan: q=C, k=B, v=x*dt, g=A*dt, scale=1), each when
               available.
  e2e          24-layer d_model 768 language models (Mamba-1 and Mamba-2 layers, ``--e2e-layers``),
               forward+backward tokens/s in bf16 autocast, ours vs mamba_ssm's model.

Usage (GPU machine):
  python benchmarks/kernels.py --mamba-ssm-sdist PATH [--prebuilt DIR] [--save-build DIR]
                               [--fla-wheels DIR] [--sections correctness,mamba1,mamba2_correctness,mamba2,e2e] --out DIR
mamba_ssm and fla are optional: without them only our numbers are reported. The Mamba-2
baselines need only mamba_ssm's Python (Triton) code, so they run even when its CUDA scan does
not build, or with ``--no-cuda-build`` (no build; no Mamba-1 baselines). ``--ssd-config`` and
``--scan-config`` set our kernels' launch settings (A/B runs).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from third_party import import_mamba_ssm_python_only, try_fla, try_mamba_ssm  # noqa: E402
from timing import gpu_tag  # noqa: E402

import mambakit  # noqa: E402
from mambakit.ops.selective_scan import selective_scan, selective_scan_reference  # noqa: E402
from mambakit.ops.ssd import ssd_chunk_scan  # noqa: E402

MAMBA1_SHAPES = [(8, 1536, 2048, 16), (4, 2048, 8192, 16), (1, 2048, 65536, 16)]
# (batch, L, heads, headdim P, state N); one group, chunk 256
MAMBA2_SHAPES = [(4, 4096, 64, 64, 128), (1, 65536, 64, 64, 128), (8, 2048, 48, 64, 64)]
MAMBA2_CHUNK = 256


def poison_allocator(gb: float = 8.0) -> None:
    """Fill free cached memory with NaN so that any output element a kernel forgets to write
    shows up as NaN."""
    try:
        x = torch.full((int(gb * 2**30 / 4),), float("nan"), device="cuda")
        del x
    except torch.OutOfMemoryError:
        pass


def make_inputs(batch, dim, length, n_state, dtype, groups=1, seed=None, requires_grad=False):
    g = torch.Generator(device="cuda")
    g.manual_seed(seed if seed is not None else int(time.time_ns() % 2**31))
    dev = "cuda"

    def rn(*shape, dt=dtype, scale=1.0):
        return (torch.randn(*shape, generator=g, device=dev, dtype=torch.float32) * scale).to(dt)

    A = -(torch.arange(1, n_state + 1, device=dev, dtype=torch.float32).repeat(dim, 1)
          * (0.5 + torch.rand(dim, n_state, generator=g, device=dev)))
    dt0 = torch.exp(torch.rand(dim, generator=g, device=dev) * (torch.log(torch.tensor(0.1)) - torch.log(torch.tensor(0.001)))
                    + torch.log(torch.tensor(0.001)))
    inputs = dict(u=rn(batch, dim, length), delta=rn(batch, dim, length, scale=0.5), A=A,
                  B=rn(batch, groups, n_state, length), C=rn(batch, groups, n_state, length),
                  D=rn(dim, dt=torch.float32), z=rn(batch, dim, length),
                  delta_bias=(dt0 + torch.log(-torch.expm1(-dt0))).float())
    if requires_grad:
        for v in inputs.values():
            v.requires_grad_(True)
    return inputs


def rel(a, b) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def check_correctness(rows: list) -> None:
    cases = [((2, 256, 2048, 16, 1), False), ((2, 192, 1000, 16, 3), True), ((1, 128, 4096, 7, 1), True)]
    for (batch, dim, length, n, groups), packed in cases:
        for dtype in (torch.float32, torch.bfloat16):
            inp = make_inputs(batch, dim, length, n, dtype, groups, requires_grad=True)
            h0 = torch.randn(batch, dim, n, device="cuda", requires_grad=True) if packed else None
            seq = (torch.sort(torch.randint(0, 5, (batch, length), device="cuda"), -1).values.int()
                   if packed else None)
            kw = dict(delta_softplus=True, return_last_state=True, initial_state=h0, seq_idx=seq)
            poison_allocator(2)
            out, last = selective_scan(**inp, impl="triton", **kw)
            gy = torch.randn_like(out, dtype=torch.float32).to(out.dtype)
            gl = torch.randn_like(last)
            names = list(inp) + (["initial_state"] if packed else [])
            leaves = list(inp.values()) + ([h0] if packed else [])
            grads = torch.autograd.grad([out, last], leaves, [gy, gl])
            ref64 = {k: v.detach().double().requires_grad_() for k, v in inp.items()}
            h064 = h0.detach().double().requires_grad_() if packed else None
            ref_out, ref_last = selective_scan_reference(
                ref64["u"], ref64["delta"], ref64["A"], ref64["B"], ref64["C"], ref64["D"], ref64["z"],
                ref64["delta_bias"], True, h064, seq)
            ref_grads = torch.autograd.grad([ref_out, ref_last], list(ref64.values()) + ([h064] if packed else []),
                                            [gy.double(), gl.double()])
            errs = {"out": rel(out, ref_out), "last_state": rel(last, ref_last)}
            errs.update({f"d{k}": rel(g, r) for k, g, r in zip(names, grads, ref_grads)})
            finite = bool(torch.isfinite(out).all()) and all(bool(torch.isfinite(g).all()) for g in grads)
            tol = 1e-3 if dtype == torch.float32 else 1e-2
            worst = max(errs, key=errs.get)
            ok = finite and errs[worst] <= tol
            rows.append({"section": "correctness", "shape": [batch, dim, length, n, groups], "packed": packed,
                         "dtype": str(dtype).split(".")[-1], "rel_err": errs, "finite": finite, "tol": tol,
                         "pass": ok})
            print(f"  correctness {batch}x{dim}x{length} N{n} G{groups} packed={packed} "
                  f"{str(dtype)[6:]:8s} worst {worst}={errs[worst]:.2e} finite={finite} {'PASS' if ok else 'FAIL'}",
                  flush=True)
    # 1M tokens in bf16: finite forward and backward
    inp = make_inputs(1, 32, 1 << 20, 16, torch.bfloat16, requires_grad=True)
    out = selective_scan(**inp, delta_softplus=True, impl="triton")
    out.float().square().mean().backward()
    finite = bool(torch.isfinite(out).all()) and all(bool(torch.isfinite(v.grad).all()) for v in inp.values())
    rows.append({"section": "correctness", "shape": [1, 32, 1 << 20, 16, 1], "dtype": "bfloat16",
                 "finite": finite, "pass": finite})
    print(f"  correctness L=1M bf16 forward+backward finite={finite}", flush=True)


def copy_bandwidth() -> float:
    x = torch.empty(2**28, device="cuda", dtype=torch.float32)
    y = torch.empty_like(x)
    import triton
    ms = triton.testing.do_bench(lambda: y.copy_(x), warmup=10, rep=50, return_mode="median")
    return 2 * x.numel() * 4 / (ms * 1e-3)


def bench_mamba1(rows: list, mamba_ssm, bandwidth: float) -> None:
    import triton
    fn_theirs = None
    if mamba_ssm is not None:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as fn_theirs
    for batch, dim, length, n in MAMBA1_SHAPES:
        inp = make_inputs(batch, dim, length, n, torch.bfloat16, requires_grad=True)
        elems, bc = batch * dim * length, batch * n * length
        floor_fwd = (4 * elems * 2 + 2 * bc * 2) / bandwidth * 1e3            # ms: u, delta, z, out; B, C
        floor_fb = floor_fwd + (7 * elems * 2 + 4 * bc * 2) / bandwidth * 1e3  # + dout, reread u/delta/z, du/ddelta/dz, B/C, dB/dC
        impls = {"mambakit": lambda: selective_scan(**inp, delta_softplus=True, impl="triton")}
        if fn_theirs is not None:
            impls["mamba_ssm"] = lambda: fn_theirs(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"],
                                                   inp["z"], inp["delta_bias"], True)
        result = {}
        for name, fn in impls.items():
            grad = torch.randn(batch, dim, length, device="cuda", dtype=torch.bfloat16)
            with torch.no_grad():
                fwd = triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")

            def fb():
                torch.autograd.backward(fn(), grad)
            fb_ms = triton.testing.do_bench(fb, warmup=5, rep=30, grad_to_none=list(inp.values()),
                                            return_mode="median")
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fb()
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
            result[name] = {"fwd_ms": fwd, "fwd_bwd_ms": fb_ms, "peak_mb": peak,
                            "fwd_floor_share": floor_fwd / fwd, "fwd_bwd_floor_share": floor_fb / fb_ms}
        row = {"section": "mamba1", "shape": [batch, dim, length, n], "dtype": "bfloat16", "results": result,
               "floor_ms": {"fwd": floor_fwd, "fwd_bwd": floor_fb}}
        if "mamba_ssm" in result:
            row["ratio_ours_over_theirs"] = {k: result["mambakit"][k] / result["mamba_ssm"][k]
                                             for k in ("fwd_ms", "fwd_bwd_ms", "peak_mb")}
        rows.append(row)
        desc = "  ".join(f"{k}: fwd {v['fwd_ms']:.3f} ms fwd+bwd {v['fwd_bwd_ms']:.3f} ms peak {v['peak_mb']:.0f} MB"
                         for k, v in result.items())
        print(f"  mamba1 {batch}x{dim}x{length}x{n}: {desc}", flush=True)
        del inp
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- Mamba-2 (SSD)

def make_mamba2_inputs(batch, length, heads, headdim, n_state, dtype, groups=1, seed=None,
                       packed=False, requires_grad=False) -> dict:
    """Keyword arguments of ssd_chunk_scan: activations in ``dtype``; A, D, dt_bias float32
    initialised as in Mamba-2 (A in -[1, 16], dt = softplus(dt_raw + dt_bias) around 0.001-0.1).
    ``packed`` adds initial states and seq_idx with a few packed sequences per row."""
    g = torch.Generator(device="cuda")
    g.manual_seed(seed if seed is not None else int(time.time_ns() % 2**31))
    dev, f32 = "cuda", torch.float32

    def rn(*shape, dt=dtype, scale=1.0):
        return (torch.randn(*shape, generator=g, device=dev, dtype=f32) * scale).to(dt)

    dt0 = torch.exp(torch.rand(heads, generator=g, device=dev) * (math.log(0.1) - math.log(0.001))
                    + math.log(0.001))
    kw = dict(x=rn(batch, length, heads, headdim), dt=rn(batch, length, heads, scale=0.5),
              A=-(1 + 15 * torch.rand(heads, generator=g, device=dev)),
              B=rn(batch, length, groups, n_state), C=rn(batch, length, groups, n_state),
              D=rn(heads, dt=f32), z=rn(batch, length, heads, headdim),
              dt_bias=(dt0 + torch.log(-torch.expm1(-dt0))).float())
    if packed:
        kw["initial_states"] = rn(batch, heads, headdim, n_state, dt=f32)
    if requires_grad:
        for v in kw.values():
            v.requires_grad_(True)
    if packed:
        cuts = torch.sort(torch.randint(0, length, (batch, 4), generator=g, device=dev), -1).values
        kw["seq_idx"] = (torch.arange(length, device=dev)[None, :, None] >= cuts[:, None, :]).sum(-1).int()
    return kw


def check_mamba2_correctness(rows: list) -> None:
    """impl="triton" against the reference in float64, forward and every gradient."""
    # (batch, L, heads, headdim, N, groups), packed, chunk
    cases = [((2, 2048, 16, 64, 128, 1), False, 256), ((2, 1500, 12, 64, 64, 4), True, 256),
             ((1, 1000, 8, 48, 96, 2), True, 128), ((3, 700, 4, 32, 256, 4), True, 64)]
    for (batch, length, heads, headdim, n, groups), packed, chunk in cases:
        for dtype in (torch.float32, torch.bfloat16):
            kw = make_mamba2_inputs(batch, length, heads, headdim, n, dtype, groups, packed=packed,
                                    requires_grad=True)
            names = [k for k, v in kw.items() if v.is_floating_point()]
            common = dict(chunk_size=chunk, dt_softplus=True, return_final_states=True)
            poison_allocator(2)
            out, final = ssd_chunk_scan(**kw, **common, impl="triton")
            gy = torch.randn_like(out, dtype=torch.float32).to(out.dtype)
            gf = torch.randn_like(final)
            grads = torch.autograd.grad([out, final], [kw[k] for k in names], [gy, gf])
            kw64 = {k: (v.detach().double().requires_grad_() if v.is_floating_point() else v)
                    for k, v in kw.items()}
            ref_out, ref_final = ssd_chunk_scan(**kw64, **common, impl="reference")
            ref_grads = torch.autograd.grad([ref_out, ref_final], [kw64[k] for k in names],
                                            [gy.double(), gf.double()])
            errs = {"out": rel(out, ref_out), "final_states": rel(final, ref_final)}
            errs.update({f"d{k}": rel(a, b) for k, a, b in zip(names, grads, ref_grads)})
            finite = bool(torch.isfinite(out).all()) and all(bool(torch.isfinite(v).all()) for v in grads)
            tol = 1e-3 if dtype == torch.float32 else 2e-2
            worst = max(errs, key=errs.get)
            ok = finite and errs[worst] <= tol
            rows.append({"section": "mamba2_correctness", "shape": [batch, length, heads, headdim, n, groups],
                         "chunk": chunk, "packed": packed, "dtype": str(dtype).split(".")[-1],
                         "rel_err": errs, "finite": finite, "tol": tol, "pass": ok})
            print(f"  mamba2 correctness {batch}x{length}x{heads}x{headdim} N{n} G{groups} chunk {chunk} "
                  f"packed={packed} {str(dtype)[6:]:8s} worst {worst}={errs[worst]:.2e} finite={finite} "
                  f"{'PASS' if ok else 'FAIL'}", flush=True)
            del kw, kw64, grads, ref_grads
    # 1M tokens in bf16: finite forward and backward
    kw = make_mamba2_inputs(1, 1 << 20, 8, 64, 128, torch.bfloat16, requires_grad=True)
    out = ssd_chunk_scan(**kw, chunk_size=MAMBA2_CHUNK, dt_softplus=True, impl="triton")
    out.float().square().mean().backward()
    finite = bool(torch.isfinite(out).all()) and all(bool(torch.isfinite(v.grad).all()) for v in kw.values())
    rows.append({"section": "mamba2_correctness", "shape": [1, 1 << 20, 8, 64, 128, 1], "dtype": "bfloat16",
                 "finite": finite, "pass": finite})
    print(f"  mamba2 correctness L=1M bf16 forward+backward finite={finite}", flush=True)
    del kw, out
    torch.cuda.empty_cache()


def load_mamba2_baseline(mamba_ssm, sdist: Optional[str]):
    """``(mamba_chunk_scan_combined or None, note)``. Only mamba_ssm's Triton code is needed, so
    when mamba_ssm was not loaded (its CUDA scan not built or not asked for) its SSD module is
    imported from the sdist's sources without running the package's ``__init__``."""
    try:
        if mamba_ssm is None and "mamba_ssm" not in sys.modules:
            pkg, note = import_mamba_ssm_python_only(sdist)
            if pkg is None:
                return None, note
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
        version = getattr(sys.modules["mamba_ssm"], "__version__", "?")
        return mamba_chunk_scan_combined, f"mamba_ssm {version} (Triton SSD)"
    except Exception as err:  # a baseline that fails to import must not stop our measurements
        return None, f"mamba_ssm SSD unavailable: {type(err).__name__}: {err}"[:400]


def load_fla_baseline(wheel_dir: Optional[str]):
    """``(chunk_simple_gla or None, note)``; skipped when fla is absent."""
    try:
        fla, note = try_fla(wheel_dir)
        if fla is None:
            return None, note
        from fla.ops.simple_gla import chunk_simple_gla
        return chunk_simple_gla, note
    except ImportError as err:
        return None, f"fla unavailable: {err}"[:300]
    except Exception as err:
        return None, f"fla unavailable: {type(err).__name__}: {err}"[:300]


def _fla_call(fn, q, k, v, g):
    """chunk_simple_gla in the (batch, T, heads, dim) layout, scale 1, across fla versions."""
    import inspect
    kw = dict(q=q, k=k, v=v, g=g, scale=1.0, output_final_state=False)
    if "head_first" in inspect.signature(fn).parameters:
        kw["head_first"] = False
    out = fn(**kw)
    return out[0] if isinstance(out, tuple) else out


def _time_fwd_bwd(fn, grad, leaves) -> dict:
    """Forward and forward+backward medians (ms) and the peak memory of one forward+backward."""
    import triton
    with torch.no_grad():
        fwd = triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")

    def fb():
        torch.autograd.backward(fn(), grad)
    fb_ms = triton.testing.do_bench(fb, warmup=5, rep=30, grad_to_none=leaves, return_mode="median")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fb()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return {"fwd_ms": fwd, "fwd_bwd_ms": fb_ms, "peak_mb": peak}


def bench_mamba2(rows: list, mamba2_fn, fla_fn, bandwidth: float, with_reference: bool = True) -> None:
    for batch, length, heads, headdim, n in MAMBA2_SHAPES:
        kw = make_mamba2_inputs(batch, length, heads, headdim, n, torch.bfloat16, requires_grad=True)
        leaves = list(kw.values())
        elems, bc = batch * length * heads * headdim, batch * length * n
        # x, z, y (2 bytes) + B, C + dt; backward adds dy, re-reads x/z/B/C, writes dx/dz/dB/dC/ddt
        floor_fwd = (3 * elems * 2 + 2 * bc * 2 + batch * length * heads * 2) / bandwidth * 1e3
        floor_fb = floor_fwd + (6 * elems * 2 + 4 * bc * 2 + 2 * batch * length * heads * 2) / bandwidth * 1e3
        grad = torch.randn(batch, length, heads, headdim, device="cuda", dtype=torch.bfloat16)
        ours = dict(chunk_size=MAMBA2_CHUNK, dt_softplus=True)
        impls = {"mambakit": lambda: ssd_chunk_scan(**kw, **ours, impl="triton")}
        if with_reference:
            impls["reference"] = lambda: ssd_chunk_scan(**kw, **ours, impl="reference")
        if mamba2_fn is not None:
            impls["mamba_ssm"] = lambda: mamba2_fn(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], MAMBA2_CHUNK,
                                                   D=kw["D"], z=kw["z"], dt_bias=kw["dt_bias"], dt_softplus=True)
        result = {}
        for name, fn in impls.items():
            try:
                result[name] = _time_fwd_bwd(fn, grad, leaves)
                result[name].update(fwd_floor_share=floor_fwd / result[name]["fwd_ms"],
                                    fwd_bwd_floor_share=floor_fb / result[name]["fwd_bwd_ms"])
            except torch.OutOfMemoryError as err:
                result[name] = {"error": f"OutOfMemoryError: {err}"[:200]}
            except Exception as err:  # a failing baseline must not stop the others
                result[name] = {"error": f"{type(err).__name__}: {err}"[:300]}
            for v in leaves:
                v.grad = None
            torch.cuda.empty_cache()
        if fla_fn is not None:
            # The bare scan (no dt processing, D or gate), with GQA groups expanded to the heads.
            try:
                with torch.no_grad():
                    dtp = torch.nn.functional.softplus(kw["dt"].float() + kw["dt_bias"])
                    q = kw["C"].repeat_interleave(heads // kw["C"].shape[2], dim=2).contiguous()
                    k = kw["B"].repeat_interleave(heads // kw["B"].shape[2], dim=2).contiguous()
                    v = (kw["x"].float() * dtp[..., None]).to(torch.bfloat16)
                    g = (dtp * kw["A"]).contiguous()
                fla_leaves = [t.requires_grad_(True) for t in (q, k, v, g)]
                with torch.no_grad():  # same math as ours without D and z
                    y_fla = _fla_call(fla_fn, q, k, v, g)
                    y_ours = ssd_chunk_scan(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], dt_bias=kw["dt_bias"],
                                            **ours, impl="triton")
                note = dict(note="bare scan: no dt processing, D or gate", rel_err_vs_ours=rel(y_fla, y_ours))
                try:
                    result["fla"] = {**_time_fwd_bwd(lambda: _fla_call(fla_fn, q, k, v, g), grad, fla_leaves), **note}
                except RuntimeError as err:  # fla refuses its gated backward on some Triton/GPU pairs
                    import triton
                    with torch.no_grad():
                        fwd = triton.testing.do_bench(lambda: _fla_call(fla_fn, q, k, v, g), warmup=10, rep=50,
                                                      return_mode="median")
                    result["fla"] = {"fwd_ms": fwd, "fwd_only": True, "error": f"backward: {err}"[:300], **note}
                del q, k, v, g, fla_leaves, y_fla, y_ours
            except Exception as err:
                result["fla"] = {"error": f"{type(err).__name__}: {err}"[:300]}
            torch.cuda.empty_cache()
        row = {"section": "mamba2", "shape": [batch, length, heads, headdim, n], "chunk": MAMBA2_CHUNK,
               "dtype": "bfloat16", "results": result, "floor_ms": {"fwd": floor_fwd, "fwd_bwd": floor_fb}}
        if "fwd_ms" in result.get("mamba_ssm", {}) and "fwd_ms" in result["mambakit"]:
            row["ratio_ours_over_theirs"] = {k: result["mambakit"][k] / result["mamba_ssm"][k]
                                             for k in ("fwd_ms", "fwd_bwd_ms", "peak_mb")}
        rows.append(row)
        desc = "  ".join(f"{k}: fwd {v['fwd_ms']:.3f} ms fwd+bwd {v['fwd_bwd_ms']:.3f} ms peak {v['peak_mb']:.0f} MB"
                         if "fwd_bwd_ms" in v else f"{k}: fwd {v['fwd_ms']:.3f} ms, {v['error'][:60]}"
                         if "fwd_ms" in v else f"{k}: {v['error'][:80]}" for k, v in result.items())
        print(f"  mamba2 {batch}x{length}x{heads}x{headdim}x{n}: {desc}", flush=True)
        del kw, leaves, grad
        torch.cuda.empty_cache()


E2E_LAYERS = {  # our ssm_cfg, mamba_ssm's ssm_cfg (its unfused paths need no causal_conv1d)
    "Mamba-1": ({"d_state": 16}, {"use_fast_path": False}),
    "Mamba-2": ({"layer": "Mamba2", "d_state": 128, "headdim": 64},
                {"layer": "Mamba2", "d_state": 128, "headdim": 64, "use_mem_eff_path": False}),
}


def bench_e2e(rows: list, mamba_ssm, sdist: Optional[str], layers: list, batch: int = 8,
              length: int = 2048) -> None:
    """A 24-layer d_model 768 language model of each layer kind, forward+backward in bf16 autocast.
    ``mamba_ssm`` is the package with its CUDA scan built, or None: their Mamba-2 model then runs
    from the sdist's Python/Triton code and their Mamba-1 model is left out."""
    import triton
    cuda_scan = mamba_ssm is not None
    if mamba_ssm is None:
        mamba_ssm, note = import_mamba_ssm_python_only(sdist)
        print(f"  e2e baseline: {note}", flush=True)
    ids = torch.randint(0, 256, (batch, length), device="cuda")
    for layer in layers:
        ours_cfg, their_cfg = E2E_LAYERS[layer]
        torch.manual_seed(0)
        models = {"mambakit": lambda: mambakit.MambaLMHeadModel(
            d_model=768, n_layer=24, vocab_size=256, ssm_cfg=dict(ours_cfg))}
        if mamba_ssm is not None and (cuda_scan or their_cfg.get("layer") == "Mamba2"):
            from mamba_ssm.models.config_mamba import MambaConfig as TheirConfig
            from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel as TheirLM
            models["mamba_ssm"] = lambda: TheirLM(TheirConfig(d_model=768, n_layer=24, vocab_size=256,
                                                              ssm_cfg=dict(their_cfg)))
        result = {}
        for name, build in models.items():
            try:
                model = build().cuda()

                def step():
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        out = model(ids)
                        logits = out.logits if hasattr(out, "logits") else out
                        loss = logits.float().logsumexp(-1).mean()
                    loss.backward()
                torch.cuda.reset_peak_memory_stats()
                ms = triton.testing.do_bench(step, warmup=3, rep=20, grad_to_none=list(model.parameters()),
                                             return_mode="median")
                result[name] = {"ms_per_step": ms, "tokens_per_s": batch * length / (ms * 1e-3),
                                "peak_mb": torch.cuda.max_memory_allocated() / 2**20}
                del model
            except Exception as err:
                result[name] = {"error": f"{type(err).__name__}: {err}"[:300]}
            torch.cuda.empty_cache()
            print(f"  e2e {layer} {name}: {result[name]}", flush=True)
        rows.append({"section": "e2e", "model": f"24 x d768 {layer} LM, bf16 autocast", "batch": batch,
                     "length": length, "results": result})


def apply_scan_config(spec: str) -> None:
    """Set the Mamba-1 scan's launch configuration per direction from ``"fwd=8,256,4,2;bwd=1,128,1"``."""
    from mambakit.ops import triton_selective_scan as tss
    for part in filter(None, spec.split(";")):
        direction, _, values = part.partition("=")
        numbers = [int(v) for v in values.split(",")]
        if direction not in ("fwd", "bwd") or len(numbers) not in (3, 4):
            raise SystemExit(f"--scan-config: expected 'fwd=BD,BL,W[,S]' or 'bwd=...', got {part!r}")
        tss.set_config(direction, *numbers)
        print(f"scan launch config {direction}: {numbers}", flush=True)


def apply_ssd_config(spec: str) -> None:
    """Set the SSD kernels' launch settings from ``"bwd_grouped=1,bwd_heads=8"``."""
    from mambakit.ops import triton_ssd
    settings = {}
    for part in filter(None, spec.split(",")):
        key, _, value = part.partition("=")
        if not value.lstrip("-").isdigit():
            raise SystemExit(f"--ssd-config: expected 'key=integer', got {part!r}")
        settings[key.strip()] = int(value)
    triton_ssd.set_config(**settings)
    print(f"SSD launch settings: {settings}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mamba-ssm-sdist", help="path of the mamba-ssm sdist (.tar.gz) to build the baseline")
    parser.add_argument("--prebuilt", help="folder with a previously built selective_scan_cuda*.so")
    parser.add_argument("--save-build", help="copy the built selective_scan_cuda*.so here")
    parser.add_argument("--fla-wheels", help="folder with an fla_core-*.whl to install (optional)")
    parser.add_argument("--no-reference", action="store_true",
                        help="mamba2: skip timing the PyTorch reference")
    parser.add_argument("--sections", default="correctness,mamba1,mamba2_correctness,mamba2,e2e")
    parser.add_argument("--ssd-config", default="",
                        help="Mamba-2 SSD launch settings to use instead of the defaults, e.g. "
                             "'bwd_grouped=1,bwd_heads=8' (keys of mambakit.ops.triton_ssd.set_config)")
    parser.add_argument("--no-cuda-build", action="store_true",
                        help="do not build mamba_ssm's CUDA scan: no Mamba-1 baselines; the Mamba-2 "
                             "baselines still run from its Triton code")
    parser.add_argument("--e2e-layers", default=",".join(E2E_LAYERS),
                        help=f"e2e: which language models, from {','.join(E2E_LAYERS)}")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--scan-config", default=None,
                        help="Mamba-1 scan launch configs to use instead of the defaults, e.g. "
                             "'bwd=2,128,1' or 'fwd=8,256,4,2;bwd=1,128,1' (BLOCK_D,BLOCK_L,warps[,stages])")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("kernels.py needs a CUDA GPU")
    if args.scan_config:
        apply_scan_config(args.scan_config)
    sections = args.sections.split(",")
    gpu = torch.cuda.get_device_name()
    mamba_ssm, note = (None, "not requested")
    if args.ssd_config:
        apply_ssd_config(args.ssd_config)
    e2e_layers = [name for name in args.e2e_layers.split(",") if name]
    if set(e2e_layers) - set(E2E_LAYERS):
        parser.error(f"--e2e-layers: unknown {sorted(set(e2e_layers) - set(E2E_LAYERS))}; "
                     f"choose from {list(E2E_LAYERS)}")
    if {"mamba1", "e2e"} & set(sections) and not args.no_cuda_build:
        mamba_ssm, note = try_mamba_ssm(args.mamba_ssm_sdist, args.prebuilt, args.save_build)
    mamba2_fn, fla_fn = None, None
    if "mamba2" in sections:
        mamba2_fn, note2 = load_mamba2_baseline(mamba_ssm, args.mamba_ssm_sdist)
        fla_fn, note_fla = load_fla_baseline(args.fla_wheels)
        note = f"{note}; {note2}; {note_fla}"
    print(f"GPU: {gpu}; torch {torch.__version__}; {note}", flush=True)
    rows: list = []
    bandwidth = copy_bandwidth()
    print(f"  device-to-device copy bandwidth {bandwidth / 1e12:.2f} TB/s", flush=True)
    if "correctness" in sections:
        check_correctness(rows)
    if "mamba1" in sections:
        bench_mamba1(rows, mamba_ssm, bandwidth)
    if "mamba2_correctness" in sections:
        check_mamba2_correctness(rows)
    if "mamba2" in sections:
        bench_mamba2(rows, mamba2_fn, fla_fn, bandwidth, with_reference=not args.no_reference)
    if "e2e" in sections:
        bench_e2e(rows, mamba_ssm, args.mamba_ssm_sdist, e2e_layers)
    import triton
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    record = {"name": "kernels", "machine": gpu, "date": _dt.date.today().isoformat(), "git": commit,
              "torch": torch.__version__, "triton": triton.__version__, "baseline": note,
              "copy_bandwidth_tb_s": bandwidth / 1e12, "rows": rows,
              "command": "python benchmarks/kernels.py " + " ".join(sys.argv[1:])}
    record["metrics"] = {f"{r['section']}/{'x'.join(map(str, r['shape']))}/{k}": v
                         for r in rows if r["section"] in ("mamba1", "mamba2")
                         for k, v in r.get("ratio_ours_over_theirs", {}).items()}
    tag = gpu_tag(gpu)
    out = Path(args.out) / f"kernels_{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {out}")
    print("\nsection  shape                 ours fwd/fb ms      theirs fwd/fb ms    ratio fwd/fb")
    for r in rows:
        if r["section"] in ("mamba1", "mamba2") and "fwd_ms" not in r["results"]["mambakit"]:
            print(f"{r['section']:8s} {'x'.join(map(str, r['shape'])):20s}  ours failed: "
                  f"{r['results']['mambakit'].get('error', '?')[:60]}")
        elif r["section"] in ("mamba1", "mamba2"):
            o = r["results"]["mambakit"]
            t = r["results"].get("mamba_ssm")
            t = t if t and "fwd_ms" in t else None
            ratio = r.get("ratio_ours_over_theirs", {})
            print(f"{r['section']:8s} {'x'.join(map(str, r['shape'])):20s}  {o['fwd_ms']:7.3f}/{o['fwd_bwd_ms']:8.3f}   "
                  + (f"{t['fwd_ms']:7.3f}/{t['fwd_bwd_ms']:8.3f}    {ratio['fwd_ms']:.2f}/{ratio['fwd_bwd_ms']:.2f}" if t else "-"))


if __name__ == "__main__":
    main()
