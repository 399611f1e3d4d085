"""Long-sequence speed and memory of the genomics models: forward + backward at 131k bases.

    PYTHONPATH=<dir holding the mambakit package> python benchmarks/genomics.py --out benchmarks/results
    python benchmarks/genomics.py --cpu-smoke --out /tmp/genomics-bench      # tiny, on CPU

Times one training step's forward + backward (masked-LM head, cross-entropy over every base) of
a Caduceus-style model (d_model 256, 16 layers by default) for each variant:
``rcps-bimamba`` (RCPS + BiMamba with tied projections, the Caduceus layout), ``bimamba``
(no RCPS) and ``mamba`` (forward only), each with and without per-layer gradient
checkpointing. Reports the median of ``triton.testing.do_bench`` (CUDA; falls back to CUDA
events) or of wall-clock repeats (CPU), peak memory, bases per second, and writes
``<out>/genomics_long_<device>.json``. An out-of-memory configuration is recorded as such.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mambakit.genomics import Caduceus, CaduceusConfig, count_parameters

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import write_rows_record  # noqa: E402

VARIANTS = {
    "rcps-bimamba": dict(rcps=True, bidirectional=True, tie_projections=True),
    "bimamba": dict(rcps=False, bidirectional=True, tie_projections=True),
    "mamba": dict(rcps=False, bidirectional=False),
}


def _median_ms(fn, device: torch.device, warmup: int, reps: int) -> float:
    if device.type == "cuda":
        try:
            from triton.testing import do_bench
            return float(do_bench(fn, warmup=warmup, rep=reps, return_mode="median"))
        except ImportError:
            times = []
            for i in range(warmup + 5):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                if i >= warmup:
                    times.append(start.elapsed_time(end))
            return statistics.median(times)
    for _ in range(max(1, warmup // 25)):
        fn()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_one(variant: str, length: int, d_model: int, n_layer: int, batch: int, ckpt: bool,
              device: torch.device, dtype: torch.dtype, warmup: int, reps: int) -> dict:
    torch.manual_seed(0)
    cfg = CaduceusConfig(d_model=d_model, n_layer=n_layer, task="mlm", gradient_checkpointing=ckpt,
                         **VARIANTS[variant])
    model = Caduceus(cfg).to(device).train()
    ids = torch.randint(4, 9, (batch, length), device=device)
    targets = torch.randint(4, 9, (batch, length), device=device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            logits = model(ids)
        F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()

    row = {"variant": variant, "length": length, "batch": batch, "d_model": d_model, "n_layer": n_layer,
           "checkpointing": ckpt, "dtype": str(dtype).replace("torch.", ""),
           "parameters": count_parameters(model)}
    try:
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        ms = _median_ms(step, device, warmup, reps)
        row.update(fwd_bwd_ms=ms, bases_per_s=batch * length / (ms / 1e3))
        if device.type == "cuda":
            row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    except torch.OutOfMemoryError:
        row["error"] = "out of memory"
    finally:
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for genomics_long_<device>.json")
    parser.add_argument("--lengths", type=int, nargs="+", default=[131072])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--n-layer", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--checkpointing", choices=["both", "on", "off"], default="both")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--warmup", type=int, default=25, help="do_bench warmup (ms)")
    parser.add_argument("--reps", type=int, default=100, help="do_bench repetition time (ms)")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU (for CI)")
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        device, dtype = torch.device("cpu"), torch.float32
        args.lengths, args.d_model, args.n_layer = [256], 16, 2
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: run with --cpu-smoke for a CPU check", file=sys.stderr)
            return 2
        device, dtype = torch.device("cuda"), (torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    ckpts = {"both": [False, True], "on": [True], "off": [False]}[args.checkpointing]
    rows = [bench_one(v, L, args.d_model, args.n_layer, args.batch, c, device, dtype, args.warmup, args.reps)
            for L in args.lengths for v in args.variants for c in ckpts]
    print(f"{'variant':<14}{'length':>8}{'ckpt':>6}{'params':>11}{'fwd+bwd ms':>12}{'Mbases/s':>10}{'peak GiB':>10}")
    for r in rows:
        if "error" in r:
            print(f"{r['variant']:<14}{r['length']:>8}{str(r['checkpointing']):>6}{r['parameters']:>11,}  {r['error']}")
        else:
            print(f"{r['variant']:<14}{r['length']:>8}{str(r['checkpointing']):>6}{r['parameters']:>11,}"
                  f"{r['fwd_bwd_ms']:>12.1f}{r['bases_per_s'] / 1e6:>10.3f}{r.get('peak_memory_gib', float('nan')):>10.2f}")
    write_rows_record(args.out, "genomics_long", "genomics_long_fwd_bwd", rows,
                      "mamba (forward-only) rows in the same table, same shapes", device, "genomics.py", argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
