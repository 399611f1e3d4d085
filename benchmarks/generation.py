"""Generation throughput and memory: Mamba's recurrent state against a Transformer's KV cache.

For each batch size, a random prompt of --prompt-length tokens is prefilled and --new-tokens
tokens are generated greedily, by
  * mambakit's ``MambaLMHeadModel.generate`` (Mamba-1 and Mamba-2 layers): one parallel prefill,
    then one constant-cost ``step`` per token on a state whose size does not depend on length;
  * a same-width causal Transformer LM with a KV cache on torch SDPA
    (``mambakit.train.synthetic_recipes.CausalTransformerLM``), half as many layers with a 4x MLP,
    so that the two have about the same parameter count (a Transformer layer holds about twice a
    Mamba block's parameters; the parameter counts are recorded).
Mamba models decode with CUDA-graph replay (``generate``'s default on a GPU; rows named
``mamba1``/``mamba2``) and without it (rows ``mamba1 eager``/``mamba2 eager``), see --cuda-graph.
Recorded per (model, batch): generated tokens/s over the whole call (prefill included), the
prefill time, decode tokens/s, peak GPU memory and the size of the state / cache. Times are
medians of --reps runs after a warm-up. A batch that runs out of memory is recorded as such.

Usage:
    python benchmarks/generation.py                 # GPU: d_model 768, 24 Mamba layers, prompt 2048, 128 new
    python benchmarks/generation.py --cpu-smoke     # a tiny run on the CPU to check the script
Writes benchmarks/results/generation_<machine>.json (see --out) and prints a table.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from mambakit.models import MambaConfig, MambaLMHeadModel
from mambakit.models import CausalTransformerLM

RESULTS = Path(__file__).resolve().parent / "results"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def build(arch: str, args) -> torch.nn.Module:
    torch.manual_seed(0)
    if arch == "transformer":
        return CausalTransformerLM(args.vocab, args.d_model, max(1, args.n_layer // 2), max(1, args.d_model // 64),
                                   4 * args.d_model)
    layer = {"mamba1": "Mamba1", "mamba2": "Mamba2"}[arch]
    ssm_cfg = {"layer": layer}
    if layer == "Mamba2":
        ssm_cfg["headdim"] = min(64, 2 * args.d_model)
    return MambaLMHeadModel(MambaConfig(d_model=args.d_model, n_layer=args.n_layer, vocab_size=args.vocab,
                                        ssm_cfg=ssm_cfg))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def prefill(model: torch.nn.Module, prompt: torch.Tensor, total: int):
    """One forward over the prompt with a fresh cache; returns the cache and its size in bytes."""
    if isinstance(model, CausalTransformerLM):
        cache = model.allocate_kv_cache(prompt.shape[0], total)
        model(prompt, cache, num_last_tokens=1)
        return cache, cache.nbytes()
    cache = model.allocate_inference_cache(prompt.shape[0], total)
    model(prompt, inference_params=cache, num_last_tokens=1)
    return cache, cache.state_bytes()


def timed(fn, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def measure(model: torch.nn.Module, batch: int, args, cuda_graph: bool = False) -> dict:
    device = args.device
    prompt = torch.randint(0, args.vocab, (batch, args.prompt_length), device=device)
    total = args.prompt_length + args.new_tokens
    kwargs = {} if isinstance(model, CausalTransformerLM) else {"cuda_graph": cuda_graph}
    generate = (lambda: model.generate(prompt, max_new_tokens=args.new_tokens, **kwargs))
    # warm-up at the timed shapes: Triton compiles per length class, cuBLAS picks kernels per shape,
    # and with cuda_graph the decoding step is captured (kept for the timed calls)
    model.generate(prompt, max_new_tokens=2, **kwargs)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    gen_s = statistics.median(timed(generate, device) for _ in range(args.reps))
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    cache_bytes = prefill(model, prompt, total)[1]
    pre_s = statistics.median(timed(lambda: prefill(model, prompt, total), device) for _ in range(args.reps))
    decode_s = max(gen_s - pre_s, 1e-9)
    return {"batch": batch, "tokens_per_s": round(batch * args.new_tokens / gen_s, 1),
            "decode_tokens_per_s": round(batch * args.new_tokens / decode_s, 1),
            "generate_s": round(gen_s, 4), "prefill_s": round(pre_s, 4),
            "peak_mb": round(peak, 1) if peak is not None else None, "cache_mb": round(cache_bytes / 2**20, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["mamba1", "mamba2", "transformer"],
                        choices=["mamba1", "mamba2", "transformer"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--prompt-length", type=int, default=2048)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--n-layer", type=int, default=24, help="Mamba layers (the Transformer gets half)")
    parser.add_argument("--vocab", type=int, default=50277)
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny models and lengths on the CPU (checks the script; not a measurement)")
    parser.add_argument("--cuda-graph", default="both", choices=["both", "on", "off"],
                        help="Mamba decoding with CUDA-graph replay ('mamba1'), without ('mamba1 eager'), or both")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.cpu_smoke:
        args.device, args.dtype, args.reps = "cpu", "fp32", 1
        args.d_model, args.n_layer, args.vocab = 64, 2, 256
        args.prompt_length, args.new_tokens = 32, 8
        args.batches = [b for b in args.batches if b <= 4] or [1]
    if not args.device.startswith("cuda") and not args.cpu_smoke:
        print("note: no GPU; CPU numbers are not comparable to the recorded GPU table", file=sys.stderr)
    for name, value in (("--prompt-length", args.prompt_length), ("--new-tokens", args.new_tokens),
                        ("--reps", args.reps)):
        if value < 1:
            parser.error(f"{name} must be >= 1, got {value}")
    if args.device.startswith("cuda"):
        gpu = torch.cuda.get_device_name()
        tag, machine = gpu.replace("NVIDIA ", "").replace(" ", "_").lower(), gpu
    else:
        tag, machine = "cpu", f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    out_path = Path(args.out) / f"generation_{tag}.json"
    record = {"name": "generation", "machine": machine, "device": args.device, "date": _dt.date.today().isoformat(),
              "torch": torch.__version__, "smoke": bool(args.cpu_smoke), "prompt_length": args.prompt_length,
              "new_tokens": args.new_tokens, "d_model": args.d_model, "n_layer": args.n_layer, "vocab": args.vocab,
              "dtype": args.dtype, "reps": args.reps, "models": {}, "rows": [],
              "command": "python benchmarks/generation.py " + " ".join(sys.argv[1:])}

    def write() -> None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(f".{out_path.name}.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, out_path)

    for arch in args.archs:
        model = build(arch, args).to(args.device, DTYPES[args.dtype]).eval()
        n_layer = len(model.layers) if isinstance(model, CausalTransformerLM) else args.n_layer
        record["models"][arch] = {"parameters": sum(p.numel() for p in model.parameters()), "n_layer": n_layer}
        modes = [False]
        if arch != "transformer" and args.device.startswith("cuda"):
            modes = {"both": [True, False], "on": [True], "off": [False]}[args.cuda_graph]
        for graph in modes:
            name = arch if graph or arch == "transformer" or args.cuda_graph == "off" else f"{arch} eager"
            for batch in args.batches:
                try:
                    row = {"model": name, "cuda_graph": graph, **measure(model, batch, args, graph)}
                except torch.OutOfMemoryError as err:
                    row = {"model": name, "batch": batch, "status": "out of memory", "detail": str(err)[:200]}
                    torch.cuda.empty_cache()
                record["rows"].append(row)
                write()
                shown = (f"{row['tokens_per_s']:>10.1f} tok/s  prefill {row['prefill_s']:.3f} s  "
                         f"cache {row['cache_mb']:.2f} MB" + (f"  peak {row['peak_mb']:.0f} MB" if row.get("peak_mb") else "")
                         if "tokens_per_s" in row else row["status"])
                print(f"{name:14s} batch {batch:3d}: {shown}", flush=True)
        del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
