"""Audio speed benchmarks: patch Mamba vs the AST-style Transformer over clip length, and
streaming latency / memory over a long stream.

1. ``length``: inference time (median) and peak memory of ``AudioMamba`` (bidirectional),
   ``FrameMamba`` (causal frames) and ``PatchTransformer`` (AST-style, timm ViT blocks, same
   patches) on 1 s ... 10 min of 16 kHz audio (100 fbank frames per second, 128 bins; the
   patch grid is sized to the clip). The papers' claim: Mamba linear, attention quadratic.
2. ``stream``: a ``StreamingClassifier`` fed ``--stream-seconds`` of audio in 100 ms chunks;
   per-chunk latency (median of each tenth of the stream) and memory (recurrent-state bytes,
   CUDA peak / process RSS) must stay flat from the first minute to the last.

GPU (the lead's command, on an H100)::

    PYTHONPATH=$PWD/.. python benchmarks/audio.py --out benchmarks/results   # with mambakit installed, or
    PYTHONPATH=<dir that maps mambakit> python benchmarks/audio.py --out benchmarks/results

CPU smoke test (tiny sizes, seconds)::

    python benchmarks/audio.py --cpu-smoke --out /tmp/audio_bench

Timing: ``triton.testing.do_bench`` (median) on CUDA, else the median of ``--reps`` wall-clock
runs. Writes ``audio_<device>.json`` to ``--out`` and prints a table.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import device_tag, median_ms  # noqa: E402


def _bench(fn, device: torch.device, reps: int) -> float:
    """Median milliseconds of ``fn()``."""
    return median_ms(fn, device.type, reps, warmup_ms=max(1, reps // 4), rep_ms=max(50, reps * 20))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_length(args, device: torch.device, dtype: torch.dtype) -> list[dict]:
    from mambakit.audio.models import AudioModelConfig, build_model

    rows = []
    for arch in args.archs:
        depth = args.n_layer if arch != "patch_transformer" else max(1, args.n_layer // 2)
        for seconds in args.seconds:
            frames = int(seconds * 100)
            cfg = AudioModelConfig(arch=arch, num_classes=35, d_model=args.d_model, n_layer=depth,
                                   num_heads=args.num_heads, max_frames=frames,
                                   pooling="last" if arch == "frame_mamba" else "cls")
            row = {"arch": arch, "seconds": seconds, "frames": frames, "d_model": args.d_model, "n_layer": depth}
            try:
                model = build_model(cfg).to(device=device, dtype=dtype).eval()
                row["parameters"] = sum(p.numel() for p in model.parameters())
                row["tokens"] = (frames if arch == "frame_mamba" else model.tokenizer.seq_len)
                x = torch.randn(args.batch, frames, 128, device=device, dtype=dtype)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats(device)
                    base = torch.cuda.memory_allocated(device)

                def run():
                    with torch.no_grad():
                        model(x)

                row["ms"] = round(_bench(run, device, args.reps), 3)
                if device.type == "cuda":
                    row["peak_mem_mb"] = round((torch.cuda.max_memory_allocated(device) - base) / 2**20, 1)
                else:
                    row["peak_rss_mb"] = round(_rss_mb(), 1)
            except torch.cuda.OutOfMemoryError:
                row["ms"], row["error"] = None, "out of memory"
            except RuntimeError as err:
                if "out of memory" not in str(err).lower():
                    raise
                row["ms"], row["error"] = None, "out of memory"
            finally:
                model = x = None
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
            print(f"  {arch:<18} {seconds:>7g} s {row.get('tokens', '-'):>7} tokens "
                  f"{row['ms'] if row['ms'] is not None else 'OOM':>10} ms "
                  f"{row.get('peak_mem_mb', row.get('peak_rss_mb', '-'))} MB", flush=True)
    return rows


def bench_stream(args, device: torch.device) -> dict:
    from mambakit.audio.models import AudioModelConfig, FrameMamba, load_model
    from mambakit.audio.streaming import StreamingClassifier

    if args.checkpoint:
        model = load_model(args.checkpoint, device=device)
    else:
        model = FrameMamba(AudioModelConfig(arch="frame_mamba", num_classes=10, d_model=args.stream_d_model,
                                            n_layer=args.stream_n_layer, pooling="last")).to(device).eval()
    stream = StreamingClassifier(model)
    rate = model.fbank.config.sample_rate
    chunk = int(rate * args.chunk_ms / 1000)
    n_chunks = int(args.stream_seconds * 1000 / args.chunk_ms)
    gen = torch.Generator().manual_seed(0)
    lat, state, mem = [], [], []
    t_audio = torch.arange(chunk) / rate
    for i in range(n_chunks):
        x = (0.1 * torch.sin(2 * math.pi * 300 * (t_audio + i * args.chunk_ms / 1000))
             + 0.02 * torch.randn(chunk, generator=gen)).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        p = stream.feed(x)
        if device.type == "cuda":
            p.sum().item()  # wait for the result, as a live consumer would
        lat.append((time.perf_counter() - t) * 1e3)
        state.append(stream.state_bytes())
        if i % max(1, n_chunks // 50) == 0:
            mem.append(torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else _rss_mb())
    tenths = [lat[k * n_chunks // 10:(k + 1) * n_chunks // 10] for k in range(10)]
    medians = [round(statistics.median(t), 3) for t in tenths if t]
    out = {"stream_seconds": args.stream_seconds, "chunk_ms": args.chunk_ms, "chunks": n_chunks,
           "parameters": sum(p.numel() for p in model.parameters()),
           "latency_ms_median_per_tenth": medians,
           "latency_ms_p99": round(sorted(lat)[int(0.99 * (len(lat) - 1))], 3),
           "latency_drift_last_vs_first_tenth": round(medians[-1] / medians[0], 3) if medians else None,
           "state_bytes_first": state[0], "state_bytes_last": state[-1], "state_bytes_max": max(state),
           "memory_mb_first": round(mem[0], 1), "memory_mb_last": round(mem[-1], 1),
           "memory_kind": "cuda allocated" if device.type == "cuda" else "process max RSS",
           "real_time_factor": round(sum(lat) / (args.stream_seconds * 1000), 5)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results", help="folder for audio_<device>.json")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU (a test of this script)")
    ap.add_argument("--seconds", type=float, nargs="+", default=[1, 10, 30, 60, 120, 300, 600])
    ap.add_argument("--archs", nargs="+", default=["audio_mamba", "patch_transformer", "frame_mamba"])
    ap.add_argument("--d-model", type=int, default=192, help="AuM-tiny width")
    ap.add_argument("--n-layer", type=int, default=24, help="Mamba layers (the Transformer gets half)")
    ap.add_argument("--num-heads", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--dtype", default="bf16", choices=["fp32", "bf16"], help="GPU dtype (CPU: fp32)")
    ap.add_argument("--stream-seconds", type=float, default=3600.0)
    ap.add_argument("--chunk-ms", type=float, default=100.0)
    ap.add_argument("--stream-d-model", type=int, default=64)
    ap.add_argument("--stream-n-layer", type=int, default=2)
    ap.add_argument("--checkpoint", default="", help="a saved FrameMamba to stream with (default: random init)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["length", "stream"])
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu_smoke else "cpu")
    if args.cpu_smoke:
        args.seconds, args.d_model, args.n_layer, args.num_heads = [1, 2, 4], 32, 2, 2
        args.reps, args.stream_seconds = 3, 20.0
    dtype = torch.bfloat16 if device.type == "cuda" and args.dtype == "bf16" else torch.float32
    torch.manual_seed(0)
    record = {"name": "audio_speed", "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "dtype": str(dtype).replace("torch.", ""), "timing": "triton do_bench median" if device.type == "cuda"
              else f"median of {args.reps} wall-clock runs", "batch": args.batch,
              "machine": {"platform": platform.platform(), "torch": torch.__version__, "cpu_count": os.cpu_count()},
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    try:
        record["git"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                       cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        record["git"] = "unknown"
    if "length" not in args.skip:
        print(f"inference vs clip length on {record['device']} ({record['dtype']}, batch {args.batch}):")
        record["length"] = bench_length(args, device, dtype)
        print("\n| arch | " + " | ".join(f"{s:g} s" for s in args.seconds) + " |")
        print("|---|" + "---|" * len(args.seconds))
        for arch in args.archs:
            cells = [r for r in record["length"] if r["arch"] == arch]
            print(f"| {arch} | " + " | ".join(f"{r['ms']:.2f} ms" if r["ms"] is not None else "OOM"
                                             for r in cells) + " |")
    if "stream" not in args.skip:
        print(f"\nstreaming {args.stream_seconds:g} s in {args.chunk_ms:g} ms chunks:")
        record["stream"] = bench_stream(args, device)
        for k, v in record["stream"].items():
            print(f"  {k}: {v}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = device_tag(device)
    path = out / f"audio_{tag}{'_smoke' if args.cpu_smoke else ''}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
