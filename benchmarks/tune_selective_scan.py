"""Measure launch configurations of the Triton selective scan on the local GPU.

Prints, for each shape, forward and backward kernel medians per configuration, so that the
defaults in ``mambakit/ops/triton_selective_scan.py`` can be chosen from measurements.
Usage: python benchmarks/tune_selective_scan.py [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernels import make_inputs  # noqa: E402

from mambakit.ops import triton_selective_scan as tss  # noqa: E402
from mambakit.ops.selective_scan import selective_scan  # noqa: E402

SHAPES = [(8, 1536, 2048, 16)]
BLOCK_L = (64, 128, 256)
BLOCK_D_WARPS = [(2, 2), (4, 4), (8, 8), (4, 2), (8, 4), (16, 8)]
STAGES = (1, 2)


def time_fwd(inp) -> float:
    with torch.no_grad():
        return triton.testing.do_bench(lambda: selective_scan(**inp, delta_softplus=True, impl="triton"),
                                       warmup=5, rep=25, return_mode="median")


def time_bwd(inp, grad) -> float:
    out = selective_scan(**inp, delta_softplus=True, impl="triton")
    return triton.testing.do_bench(lambda: torch.autograd.backward(out, grad, retain_graph=True), warmup=3,
                                   rep=15, grad_to_none=list(inp.values()), return_mode="median")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = []
    for shape in SHAPES:
        inp = make_inputs(*shape, torch.bfloat16, requires_grad=True)
        grad = torch.randn(shape[0], shape[1], shape[2], device="cuda", dtype=torch.bfloat16)
        for bl in BLOCK_L:
            for direction in ("fwd", "bwd"):
                for (bd, w), st in [(c, st) for c in BLOCK_D_WARPS for st in STAGES]:
                    if bd * bl > 8192 or (direction == "bwd" and st > 1):
                        continue
                    tss.clear_config()
                    tss.set_config("fwd", 4, bl, 4, 1)
                    tss.set_config(direction, bd, bl, w, st)
                    try:
                        ms = time_fwd(inp) if direction == "fwd" else time_bwd(inp, grad)
                    except Exception as err:  # a config that does not compile (resources) is skipped
                        print(f"  {shape} {direction} bd{bd} bl{bl} w{w}: {type(err).__name__}", flush=True)
                        continue
                    results.append({"shape": shape, "dir": direction, "cfg": [bd, bl, w, st], "ms": ms})
                    print(f"  {shape} {direction} bd{bd} bl{bl} w{w} s{st}: {ms:.3f} ms", flush=True)
        del inp
        torch.cuda.empty_cache()
    tss.clear_config()
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "tune_selective_scan.json").write_text(json.dumps(results, indent=1))
    for shape in SHAPES:
        for d in ("fwd", "bwd"):
            rows = sorted((r for r in results if r["shape"] == shape and r["dir"] == d), key=lambda r: r["ms"])[:3]
            print(shape, d, [(r["cfg"], round(r["ms"], 3)) for r in rows])


if __name__ == "__main__":
    main()
