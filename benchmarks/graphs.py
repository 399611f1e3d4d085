"""Graph-Mamba vs the GraphGPS-style model as graphs grow: time and memory, 100 -> 100k nodes.

    python benchmarks/graphs.py --out benchmarks/results                 # GPU
    python benchmarks/graphs.py --cpu-smoke --out /tmp/graphs-bench      # tiny, on CPU

One training step (forward + backward, node classification, cross-entropy over every node) of
each model on one random sparse graph of N nodes (each node joined to ``--degree`` random
others, edges in both directions; PATTERN-like categorical node features), at the same
~500k-parameter budget as the PATTERN recipes (``config_for_budget``). The two models share
every part but the global mixer: bidirectional Mamba over degree-ordered nodes vs full
multi-head attention within the graph (GraphGPS). Also ``gatedgcn`` (no global mixer) as the
floor. Reports median milliseconds (``benchmarks/timing.median_ms``), nodes per second and
peak memory; an out-of-memory size is recorded as such. Writes
``<out>/graphs_scaling_<device>.json``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_ms, write_rows_record  # noqa: E402

from mambakit.graphs.models import GraphModel, config_for_budget  # noqa: E402

MODELS = {
    "graph-mamba": ("graph_mamba", {"num_layers": 6, "bidirectional": True}),
    "graphgps": ("graphgps", {"num_layers": 6}),
    "gatedgcn": ("gatedgcn", {"num_layers": 16}),
}


def random_graph(num_nodes: int, degree: int, seed: int = 0) -> Batch:
    """One undirected random graph: node ``i`` linked to ``degree`` uniform random nodes."""
    g = torch.Generator().manual_seed(seed)
    src = torch.arange(num_nodes).repeat_interleave(degree)
    dst = torch.randint(0, num_nodes, (num_nodes * degree,), generator=g)
    keep = src != dst
    edge_index = torch.stack([torch.cat([src[keep], dst[keep]]), torch.cat([dst[keep], src[keep]])])
    data = Data(x=torch.randint(0, 3, (num_nodes,), generator=g), edge_index=edge_index,
                y=torch.randint(0, 2, (num_nodes,), generator=g))
    return Batch.from_data_list([data])


def bench_one(name: str, num_nodes: int, degree: int, device: torch.device, dtype: torch.dtype,
              reps: int) -> dict:
    preset, overrides = MODELS[name]
    torch.manual_seed(0)
    model = GraphModel(config_for_budget(preset, 500_000, node_in=3, task="node", num_classes=2,
                                         **overrides)).to(device).train()
    batch = random_graph(num_nodes, degree).to(device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            logits = model(batch)
        F.cross_entropy(logits.float(), batch.y).backward()

    row = {"model": name, "nodes": num_nodes, "edges": int(batch.edge_index.shape[1]),
           "parameters": sum(p.numel() for p in model.parameters()), "dtype": str(dtype).replace("torch.", "")}
    try:
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        ms = median_ms(step, device.type, reps=reps)
        row.update(fwd_bwd_ms=ms, nodes_per_s=num_nodes / (ms / 1e3))
        if device.type == "cuda":
            row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    except torch.OutOfMemoryError:
        row["error"] = "out of memory"
    finally:
        del model, batch
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for graphs_scaling_<device>.json")
    parser.add_argument("--nodes", type=int, nargs="+", default=[100, 1000, 10_000, 30_000, 100_000])
    parser.add_argument("--degree", type=int, default=8, help="random links per node (average degree ~2x)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--reps", type=int, default=5, help="timed repeats on CPU (GPU: do_bench)")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU (for CI)")
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        device, dtype = torch.device("cpu"), torch.float32
        args.nodes, args.reps = [50, 200], 1
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: run with --cpu-smoke for a CPU check", file=sys.stderr)
            return 2
        device, dtype = torch.device("cuda"), (torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    rows = [bench_one(m, n, args.degree, device, dtype, args.reps) for n in args.nodes for m in args.models]
    print(f"{'model':<13}{'nodes':>9}{'edges':>11}{'params':>10}{'fwd+bwd ms':>12}{'Mnodes/s':>10}{'peak GiB':>10}")
    for r in rows:
        head = f"{r['model']:<13}{r['nodes']:>9}{r['edges']:>11}{r['parameters']:>10,}"
        if "error" in r:
            print(f"{head}  {r['error']}")
        else:
            print(f"{head}{r['fwd_bwd_ms']:>12.1f}{r['nodes_per_s'] / 1e6:>10.3f}"
                  f"{r.get('peak_memory_gib', float('nan')):>10.2f}")
    write_rows_record(args.out, "graphs_scaling", "graphs_scaling_fwd_bwd", rows,
                      "graphgps (attention within the graph) and gatedgcn rows, same graphs and budget",
                      device, "graphs.py", argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
