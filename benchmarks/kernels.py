"""GPU kernels: correctness at scale and speed against the official CUDA/Triton kernels.

Sections (each prints a table; all results go to one JSON):
  correctness  our Triton selective scan vs the PyTorch reference in float64 on fresh random
               inputs (outputs poisoned with NaN first), forward and every gradient, fp32 and
               bf16; a bf16 forward+backward at L = 1,048,576 must stay finite.
  mamba1       forward and forward+backward medians (triton.testing.do_bench) on the issue's
               shapes, ours vs mamba_ssm's CUDA scan when it is available, with the share of
               the memory-bandwidth floor and the peak memory.
  e2e          a 24-layer d_model 768 Mamba-1 language model, forward+backward tokens/s in bf16
               autocast, ours vs mamba_ssm's model.

Usage (GPU machine):
  python benchmarks/kernels.py --mamba-ssm-sdist PATH [--prebuilt DIR] [--save-build DIR] --out DIR
mamba_ssm is optional: without it only our numbers are reported.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from third_party import try_mamba_ssm  # noqa: E402

import mambakit  # noqa: E402
from mambakit.ops.selective_scan import selective_scan, selective_scan_reference  # noqa: E402

MAMBA1_SHAPES = [(8, 1536, 2048, 16), (4, 2048, 8192, 16), (1, 2048, 65536, 16)]


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


def bench_e2e(rows: list, mamba_ssm, batch: int = 8, length: int = 2048) -> None:
    import triton
    torch.manual_seed(0)
    models = {"mambakit": mambakit.MambaLMHeadModel(d_model=768, n_layer=24, vocab_size=256,
                                                    ssm_cfg={"d_state": 16}).cuda()}
    if mamba_ssm is not None:
        from mamba_ssm.models.config_mamba import MambaConfig as TheirConfig
        from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel as TheirLM
        models["mamba_ssm"] = TheirLM(TheirConfig(d_model=768, n_layer=24, vocab_size=256,
                                                  ssm_cfg={"use_fast_path": False})).cuda()
    ids = torch.randint(0, 256, (batch, length), device="cuda")
    result = {}
    for name, model in models.items():
        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(ids)
                logits = out.logits if hasattr(out, "logits") else out
                loss = logits.float().logsumexp(-1).mean()
            loss.backward()
        try:
            ms = triton.testing.do_bench(step, warmup=3, rep=20, grad_to_none=list(model.parameters()),
                                         return_mode="median")
            result[name] = {"ms_per_step": ms, "tokens_per_s": batch * length / (ms * 1e-3)}
        except Exception as err:
            result[name] = {"error": f"{type(err).__name__}: {err}"[:300]}
        print(f"  e2e {name}: {result[name]}", flush=True)
    rows.append({"section": "e2e", "model": "24 x d768 Mamba-1 LM, bf16 autocast", "batch": batch,
                 "length": length, "results": result})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mamba-ssm-sdist", help="path of the mamba-ssm sdist (.tar.gz) to build the baseline")
    parser.add_argument("--prebuilt", help="folder with a previously built selective_scan_cuda*.so")
    parser.add_argument("--save-build", help="copy the built selective_scan_cuda*.so here")
    parser.add_argument("--sections", default="correctness,mamba1,e2e")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("kernels.py needs a CUDA GPU")
    sections = args.sections.split(",")
    gpu = torch.cuda.get_device_name()
    mamba_ssm, note = (None, "not requested")
    if {"mamba1", "e2e"} & set(sections):
        mamba_ssm, note = try_mamba_ssm(args.mamba_ssm_sdist, args.prebuilt, args.save_build)
    print(f"GPU: {gpu}; torch {torch.__version__}; {note}", flush=True)
    rows: list = []
    bandwidth = copy_bandwidth()
    print(f"  device-to-device copy bandwidth {bandwidth / 1e12:.2f} TB/s", flush=True)
    if "correctness" in sections:
        check_correctness(rows)
    if "mamba1" in sections:
        bench_mamba1(rows, mamba_ssm, bandwidth)
    if "e2e" in sections:
        bench_e2e(rows, mamba_ssm)
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
                         for r in rows if r["section"] == "mamba1" for k, v in r.get("ratio_ours_over_theirs", {}).items()}
    tag = gpu.replace("NVIDIA ", "").replace(" ", "_").lower()
    out = Path(args.out) / f"kernels_{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {out}")
    print("\nsection  shape                 ours fwd/fb ms      theirs fwd/fb ms    ratio fwd/fb")
    for r in rows:
        if r["section"] == "mamba1":
            o = r["results"]["mambakit"]
            t = r["results"].get("mamba_ssm")
            ratio = r.get("ratio_ours_over_theirs", {})
            print(f"mamba1   {'x'.join(map(str, r['shape'])):20s}  {o['fwd_ms']:7.3f}/{o['fwd_bwd_ms']:8.3f}   "
                  + (f"{t['fwd_ms']:7.3f}/{t['fwd_bwd_ms']:8.3f}    {ratio['fwd_ms']:.2f}/{ratio['fwd_bwd_ms']:.2f}" if t else "-"))


if __name__ == "__main__":
    main()
