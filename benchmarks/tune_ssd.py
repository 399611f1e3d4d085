"""Sweep the launch configurations of the Triton SSD chunked scan (``mambakit/ops/triton_ssd.py``)
on the local GPU, so that its defaults are chosen from measurements.

Per shape (bf16 activations, fp32 A/D/dt_bias, with D, z, dt_bias, softplus, chunk 256) it times,
as ``triton.testing.do_bench`` medians:

* ``default``  forward and forward+backward at the default configuration;
* ``out``      the forward at each output-kernel tile (``out_block_l`` x ``out_block_s``,
               ``warps_out``, ``stages_out``), the backward untouched;
* ``bwd``      forward+backward at each backward tile (``block_l`` x ``block_s``, ``warps_dx``,
               ``warps_dc``, ``stages_dx``); the forward's output kernel keeps its default tile
               (``block_l`` / ``block_s`` also tile the forward's small C.B and chunk-state kernels).

Every configuration is first checked on a small bf16 problem (packed sequences, initial states)
against the reference evaluated in float64 (relative error <= 2e-2 on the output and every
gradient); a configuration that fails the check or does not compile is recorded and skipped.

Usage: python benchmarks/tune_ssd.py [--out results/raw/tune_ssd_<gpu>.json] [--budget-s 300]
       TRITON_INTERPRET=1 python benchmarks/tune_ssd.py --dry-run   (CPU: runs the script end to
           end on tiny shapes with two configurations each; times nothing meaningful)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import device_tag  # noqa: E402

from mambakit.ops import triton_ssd  # noqa: E402
from mambakit.ops.ssd import ssd_chunk_scan  # noqa: E402

# (batch, L, heads, headdim, N): the Mamba-2 shapes
SHAPES = [(4, 4096, 64, 64, 128), (1, 65536, 64, 64, 128), (8, 2048, 48, 64, 64)]
CHUNK = 256
OUT_GRID = dict(out_block_l=[64, 128], out_block_s=[32, 64, 128], warps_out=[4, 8], stages_out=[1, 2])
BWD_GRID = dict(bwd_grouped=[1], block_l=[32, 64], bwd_heads=[8, 16], warps_dx=[4, 8], warps_dcb=[4, 8], warps_dbc=[4, 8])


def make_inputs(batch, length, heads, headdim, n, dtype, device, packed=False, seed=0) -> dict:
    """Keyword arguments of ``ssd_chunk_scan``, all floating tensors requiring grad."""
    g = torch.Generator(device=device).manual_seed(seed)

    def rn(*shape, dt=dtype, scale=1.0):
        return (torch.randn(*shape, generator=g, device=device) * scale).to(dt).requires_grad_()

    kw = dict(x=rn(batch, length, heads, headdim), dt=rn(batch, length, heads, scale=0.5),
              A=(-(1 + 15 * torch.rand(heads, generator=g, device=device))).requires_grad_(),
              B=rn(batch, length, 1, n), C=rn(batch, length, 1, n), D=rn(heads, dt=torch.float32),
              z=rn(batch, length, heads, headdim), dt_bias=rn(heads, dt=torch.float32, scale=0.5))
    if packed:
        kw["initial_states"] = rn(batch, heads, headdim, n, dt=torch.float32)
        cuts = torch.tensor([length // 3, length // 2], device=device)
        seq = (torch.arange(length, device=device)[:, None] >= cuts).sum(-1).int()      # (L,): 3 sequences
        kw["seq_idx"] = seq.expand(batch, -1).contiguous()
    return kw


def _leaves(kw: dict) -> list:
    return [v for v in kw.values() if v.is_floating_point()]


def check_config(device: str, chunk: int) -> float:
    """Worst relative error of output and gradients vs the float64 reference at the current config."""
    kw = make_inputs(2, 3 * chunk // 2, 4, 32, 32, torch.bfloat16, device, packed=True, seed=1)
    out = ssd_chunk_scan(**kw, chunk_size=chunk, dt_softplus=True, impl="triton")
    gy = torch.randn_like(out)
    got = [out, *torch.autograd.grad(out, _leaves(kw), gy)]
    kw64 = {k: (v.detach().double().requires_grad_() if v.is_floating_point() else v) for k, v in kw.items()}
    ref = ssd_chunk_scan(**kw64, chunk_size=chunk, dt_softplus=True, impl="reference")
    want = [ref, *torch.autograd.grad(ref, _leaves(kw64), gy.double())]
    return max(float((a.double() - b).norm() / b.norm().clamp_min(1e-30)) for a, b in zip(got, want))


def time_config(kw: dict, grad: torch.Tensor, backward: bool, reps_ms: int, chunk: int = CHUNK) -> float:
    import triton

    def fwd():
        return ssd_chunk_scan(**kw, chunk_size=chunk, dt_softplus=True, impl="triton")
    if kw["x"].device.type != "cuda":   # the dry run: one wall-clock pass, nothing meaningful
        start = time.perf_counter()
        with torch.set_grad_enabled(backward):
            out = fwd()
            if backward:
                torch.autograd.backward(out, grad)
        return (time.perf_counter() - start) * 1e3
    if not backward:
        with torch.no_grad():
            return triton.testing.do_bench(fwd, warmup=5, rep=reps_ms, return_mode="median")
    return triton.testing.do_bench(lambda: torch.autograd.backward(fwd(), grad), warmup=3, rep=reps_ms,
                                   grad_to_none=_leaves(kw), return_mode="median")


def sweep(grid: dict, backward: bool, kw: dict, grad, device: str, chunk: int, reps_ms: int,
          deadline: float, limit: int = 0) -> list[dict]:
    rows = []
    combos = list(itertools.product(*grid.values()))
    for values in combos[:limit] if limit else combos:
        cfg = dict(zip(grid, values))
        if time.time() > deadline:
            rows.append({**cfg, "skipped": "time budget"})
            continue
        triton_ssd.clear_config()
        triton_ssd.set_config(**cfg)
        try:
            err = check_config(device, chunk)
            row = {**cfg, "check_rel_err": err}
            if err <= 2e-2:
                row["fwd_bwd_ms" if backward else "fwd_ms"] = time_config(kw, grad, backward, reps_ms, chunk)
            else:
                row["failed"] = "check"
        except Exception as exc:  # e.g. out of shared memory for a large tile
            row = {**cfg, "failed": f"{type(exc).__name__}: {exc}"[:200]}
        rows.append(row)
        print("  ", row, flush=True)
    triton_ssd.clear_config()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None)
    parser.add_argument("--budget-s", type=float, default=300.0)
    parser.add_argument("--shapes", type=int, default=2, help="how many of SHAPES to sweep (default: 2)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    dry = args.dry_run
    if dry:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    elif not torch.cuda.is_available():
        sys.exit("tune_ssd.py needs a CUDA GPU (or --dry-run with TRITON_INTERPRET=1)")
    device = "cpu" if dry else "cuda"
    shapes = [(1, 64, 2, 16, 16)] if dry else SHAPES[:args.shapes]
    chunk, reps_ms, limit = (32, 1, 2) if dry else (CHUNK, 40, 0)
    deadline = time.time() + args.budget_s
    record = {"name": "tune_ssd", "machine": "cpu (dry run)" if dry else torch.cuda.get_device_name(),
              "date": _dt.date.today().isoformat(), "torch": torch.__version__, "shapes": []}
    for shape in shapes:
        kw = make_inputs(*shape, torch.bfloat16, device)
        grad = torch.randn_like(kw["x"])
        if dry:
            triton_ssd.set_config(block_l=16, block_s=16)   # small tiles for the tiny chunk
        entry = {"shape": list(shape), "default": {
            "fwd_ms": time_config(kw, grad, False, reps_ms) if not dry else None,
            "fwd_bwd_ms": time_config(kw, grad, True, reps_ms) if not dry else None}}
        print(f"{shape}: default {entry['default']}", flush=True)
        out_grid = {k: [min(v, chunk) for v in vs] for k, vs in OUT_GRID.items()} if dry else OUT_GRID
        bwd_grid = {k: [min(v, chunk // 2) for v in vs] for k, vs in BWD_GRID.items()} if dry else BWD_GRID
        entry["out"] = sweep(out_grid, False, kw, grad, device, chunk, reps_ms, deadline, limit)
        entry["bwd"] = sweep(bwd_grid, True, kw, grad, device, chunk, reps_ms, deadline, limit)
        record["shapes"].append(entry)
        del kw, grad
    out = Path(args.out or Path(__file__).resolve().parent / "results" / "raw" /
               f"tune_ssd_{'dryrun' if dry else device_tag('cuda')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(out)
    print(f"\nwrote {out}\n\n| shape | default fwd / fwd+bwd ms | best output tile (fwd ms) | best backward tile (fwd+bwd ms) |")
    print("| --- | --- | --- | --- |")
    for entry in record["shapes"]:
        best_out = min((r for r in entry["out"] if r.get("fwd_ms")), key=lambda r: r["fwd_ms"], default=None)
        best_bwd = min((r for r in entry["bwd"] if r.get("fwd_bwd_ms")), key=lambda r: r["fwd_bwd_ms"], default=None)
        d = entry["default"]
        print(f"| {entry['shape']} | {d['fwd_ms']} / {d['fwd_bwd_ms']} | {best_out} | {best_bwd} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
