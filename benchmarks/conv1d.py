"""Causal depthwise conv1d + SiLU: the fused Triton kernel against the eager alternatives.

For each shape (bf16 activations, float32 weight and bias, width 4) and each implementation,
forward and forward+backward medians (``triton.testing.do_bench``) side by side in one run:
  * ``triton``     mambakit's fused kernel (``causal_conv1d(..., impl="triton")``);
  * ``taps``       mambakit's PyTorch reference (W shifted multiply-adds, bias, SiLU);
  * ``F.conv1d``   PyTorch's depthwise ``F.conv1d`` (cuDNN), padded and cut to be causal, then SiLU.
Also the share of the memory floor: bytes that must move (read x, write out; backward also reads
x and dout and writes dx) over the measured copy bandwidth.

Usage (GPU):  python benchmarks/conv1d.py [--out benchmarks/results]
Writes ``conv1d_<gpu>.json`` and prints a table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_ms, write_rows_record  # noqa: E402

from mambakit.ops.conv1d import causal_conv1d  # noqa: E402

# (batch, channels, length, layout): "bdl" is Mamba-1's time-contiguous (B, D, L); "bld" is
# Mamba-2's (B, L, D) buffer read as (B, D, L); Vim-Tiny at 1248 px is (16, 2 x 384, 6085).
SHAPES = [(8, 1536, 2048, "bdl"), (4, 2048, 8192, "bdl"), (16, 768, 6085, "bdl"), (4, 4352, 4096, "bld")]
WIDTH = 4


def _input(batch: int, dim: int, length: int, layout: str) -> torch.Tensor:
    if layout == "bld":
        return torch.randn(batch, length, dim, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
    return torch.randn(batch, dim, length, device="cuda", dtype=torch.bfloat16)


def _conv1d_cudnn(x, w, b):
    length = x.shape[-1]
    out = F.conv1d(x, w.to(x.dtype).unsqueeze(1), b.to(x.dtype), padding=w.shape[1] - 1, groups=x.shape[1])
    return F.silu(out[..., :length])


IMPLS = {
    "triton": lambda x, w, b: causal_conv1d(x, w, b, "silu", impl="triton"),
    "taps": lambda x, w, b: causal_conv1d(x, w, b, "silu", impl="reference"),
    "F.conv1d": _conv1d_cudnn,
}


def copy_bandwidth() -> float:
    """Device-to-device copy, bytes read + written per second."""
    src = torch.empty(2**28, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), "cuda")
    return 2 * src.numel() * 4 / (ms * 1e-3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    bandwidth = copy_bandwidth()
    rows = []
    for batch, dim, length, layout in SHAPES:
        torch.manual_seed(0)
        x = _input(batch, dim, length, layout).requires_grad_()
        w = torch.randn(dim, WIDTH, device="cuda", requires_grad=True)
        b = torch.randn(dim, device="cuda", requires_grad=True)
        dout = torch.randn(batch, dim, length, device="cuda", dtype=torch.bfloat16)
        act_bytes = x.numel() * 2
        row = {"shape": [batch, dim, length, WIDTH], "layout": layout, "results": {}}
        for name, fn in IMPLS.items():
            with torch.no_grad():
                fwd = median_ms(lambda: fn(x, w, b), "cuda")

            def fwd_bwd():
                torch.autograd.grad(fn(x, w, b), (x, w, b), dout)
            fb = median_ms(fwd_bwd, "cuda")
            row["results"][name] = {"fwd_ms": fwd, "fwd_bwd_ms": fb,
                                    "fwd_floor_share": 2 * act_bytes / bandwidth / (fwd * 1e-3),
                                    "fwd_bwd_floor_share": 5 * act_bytes / bandwidth / (fb * 1e-3)}
        rows.append(row)
        torch.cuda.empty_cache()
    print(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    print(f"{'shape':24s} {'layout':6s} " + "  ".join(f"{n:>18s}" for n in IMPLS) + "   (fwd / fwd+bwd ms)")
    for r in rows:
        cells = "  ".join(f"{r['results'][n]['fwd_ms']:7.3f} / {r['results'][n]['fwd_bwd_ms']:7.3f}" for n in IMPLS)
        print(f"{'x'.join(map(str, r['shape'])):24s} {r['layout']:6s} {cells}")
    write_rows_record(args.out, "conv1d", "causal_conv1d_silu", rows,
                      "taps (mambakit's PyTorch reference) and F.conv1d (cuDNN depthwise) + SiLU, same run",
                      torch.device("cuda"), "conv1d.py", argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
