"""Block-level forward latency against sequence length: Mamba-1 and Mamba-2 blocks (ours and
mamba_ssm's) beside a causal attention block of the same width on PyTorch SDPA (flash).

d_model 768, batch 1, bf16 weights and activations, forward only (inference), lengths 1K .. 1M.
Rows "(CUDA graph)" replay the same block as one captured graph (``mambakit.CUDAGraphModule``):
at short lengths a block is launch-bound, and this removes the host's per-kernel cost.
A length that runs out of memory is recorded as such. Medians of triton.testing.do_bench.

Usage (GPU): python benchmarks/blocks.py [--mamba-ssm-sdist PATH] [--prebuilt DIR] [--out DIR]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from third_party import try_mamba_ssm  # noqa: E402

import mambakit  # noqa: E402

LENGTHS = [1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20]
D_MODEL = 768


class AttentionBlock(nn.Module):
    """Causal multi-head self-attention block of width ``d_model`` (qkv + SDPA + out proj)."""

    def __init__(self, d_model: int = D_MODEL, n_heads: int = 12) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape
        q, k, v = self.qkv(x).view(b, l, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, l, d))


def build_blocks(mamba_ssm) -> dict:
    blocks = {
        "mambakit Mamba": lambda: mambakit.Mamba(D_MODEL, d_state=16),
        "mambakit Mamba2": lambda: mambakit.Mamba2(D_MODEL, d_state=128, headdim=64),
        "attention (SDPA)": lambda: AttentionBlock(),
        "mambakit Mamba (CUDA graph)": lambda: mambakit.CUDAGraphModule(mambakit.Mamba(D_MODEL, d_state=16)),
        "mambakit Mamba2 (CUDA graph)": lambda: mambakit.CUDAGraphModule(
            mambakit.Mamba2(D_MODEL, d_state=128, headdim=64)),
        "attention (SDPA, CUDA graph)": lambda: mambakit.CUDAGraphModule(AttentionBlock()),
    }
    if mamba_ssm is not None:
        from mamba_ssm.modules.mamba2 import Mamba2 as TheirMamba2
        from mamba_ssm.modules.mamba_simple import Mamba as TheirMamba
        blocks["mamba_ssm Mamba"] = lambda: TheirMamba(D_MODEL, d_state=16, use_fast_path=False)
        # the fused path needs the causal_conv1d CUDA package; the split path runs without it
        blocks["mamba_ssm Mamba2"] = lambda: TheirMamba2(D_MODEL, d_state=128, headdim=64, use_mem_eff_path=False)
    return blocks


def peak_forward_mb(block: nn.Module, x: torch.Tensor) -> float:
    """MB one forward of ``block`` on ``x`` allocates at its peak beyond what is already held
    (the weights and ``x``); after a warm-up call, so one-time workspaces are not counted twice.
    A graphed block allocates nothing new when it replays: for it, the peak of its first call (warm-up
    and capture, whose memory the graph then keeps) is what it costs."""
    if not isinstance(block, mambakit.CUDAGraphModule):             # a graphed one: each length captures
        block(x)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    block(x)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mamba-ssm-sdist")
    parser.add_argument("--prebuilt")
    parser.add_argument("--max-log2-length", type=int, default=20)
    parser.add_argument("--blocks", default="", help="comma-separated block names to run (default: all)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    import triton
    mamba_ssm, note = try_mamba_ssm(args.mamba_ssm_sdist, args.prebuilt)
    print(f"GPU: {torch.cuda.get_device_name()}; {note}", flush=True)
    lengths = [n for n in LENGTHS if n <= 1 << args.max_log2_length]
    results: dict = {}
    tag = torch.cuda.get_device_name().replace("NVIDIA ", "").replace(" ", "_").lower()
    out = Path(args.out) / f"blocks_{tag}.json"

    peaks: dict = {}

    def write(res: dict) -> None:
        record = {"name": "blocks", "machine": torch.cuda.get_device_name(), "date": _dt.date.today().isoformat(),
                  "torch": torch.__version__, "baseline": note, "d_model": D_MODEL, "batch": 1, "dtype": "bfloat16",
                  "forward_ms": res, "peak_mb": peaks,
                  "note": "peak_mb: the most memory one forward allocates beyond the block's weights and its input "
                          "(CUDA-graph rows: their first call, warm-up and capture, whose memory the graph keeps)",
                  "command": "python benchmarks/blocks.py " + " ".join(sys.argv[1:])}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")

    chosen = [b for b in args.blocks.split(",") if b]
    for name, make in build_blocks(mamba_ssm).items():
        if chosen and name not in chosen:
            continue
        torch.manual_seed(0)
        block = make().cuda().to(torch.bfloat16).eval()
        results[name], peaks[name] = {}, {}
        for length in lengths:
            x = torch.randn(1, length, D_MODEL, device="cuda", dtype=torch.bfloat16)
            try:
                with torch.no_grad():
                    peaks[name][length] = peak_forward_mb(block, x)
                    ms = triton.testing.do_bench(lambda: block(x), warmup=3, rep=20 if length < 1 << 18 else 5,
                                                 return_mode="median")
                results[name][length] = ms
            except torch.OutOfMemoryError:
                results[name][length] = peaks[name][length] = "OOM"
            except Exception as err:  # a failing baseline must not stop the table
                results[name][length] = peaks[name][length] = f"{type(err).__name__}: {err}"[:120]
            del x
            torch.cuda.empty_cache()
            print(f"  {name:18s} L={length:8d}: {results[name][length]}", flush=True)
            write(results)  # after every measurement: a later crash of a baseline keeps the table
        del block
    print("\nforward ms, batch 1, d_model 768, bf16")
    print("block".ljust(20) + "".join(f"{n >> 10:>9}K" for n in lengths))
    for name, row in results.items():
        cells = [f"{v:10.3f}" if isinstance(v, float) else f"{str(v)[:9]:>10}" for v in row.values()]
        print(name.ljust(20) + "".join(cells))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
