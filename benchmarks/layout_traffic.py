"""Activation traffic of one Vim (and one VMamba SS2D) layer outside the scan and the GEMMs, on the CPU.

The GPU profile of Vim-Tiny at 1248 px (``results/raw/profile_h200.json``) spends a third of its
kernel time in copies, flips and concatenations around the scan. This script counts them without a
GPU: it runs one ``MultiOrderMamba`` layer through the Triton code path on CPU tensors
(``TRITON_INTERPRET=1``) with the Triton kernel launches replaced by no-ops (so nothing is
interpreted; outputs are garbage, only the ops around the kernels run), and records every copy-like
aten op (copy_, cat, flip, index ops, elementwise add/mul/div) on tensors of at least a tenth of
``(B, d_inner, L)``, with the bytes each reads and writes, in units of one ``(B, d_inner, L)`` bf16
tensor, and the copies the scan's launcher makes of inputs whose rows are not aligned
(``align_copy``; they run inside the custom op, out of the dispatch mode's sight). Kernel time is not measured here (see ``benchmarks/vision.py`` and ``profile_gpu.py``).

    python benchmarks/layout_traffic.py --length 6085 --json results/raw/layout_traffic_cpu.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import Counter
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"   # before triton is imported: CPU tensors take the Triton path

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

COPY_LIKE = {"copy_", "cat", "flip", "index_select", "gather", "index", "sum", "add", "mul", "div", "clone", "constant_pad_nd",
             "stack", "index_put_", "index_add_", "zeros_like", "fill_", "slice_scatter", "select_scatter"}


class _NoLaunch:
    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


class _Traffic(TorchDispatchMode):
    def __init__(self, unit: int) -> None:
        super().__init__()
        self.unit, self.rows = unit, Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in COPY_LIKE:
            ins = [a for a in list(args) + list((kwargs or {}).values()) if isinstance(a, torch.Tensor)]
            ins += [t for a in args if isinstance(a, (list, tuple)) for t in a if isinstance(t, torch.Tensor)]
            outs = out if isinstance(out, (list, tuple)) else [out]
            written = sum(t.numel() * 2 for t in outs if isinstance(t, torch.Tensor))   # as bf16
            read = sum(t.numel() * 2 for t in ins if t.is_floating_point())   # not the int64 indices
            if name == "copy_":
                read, written = ins[1].numel() * 2, ins[0].numel() * 2
            if written >= self.unit / 10:
                self.rows[name] += (read + written) / self.unit
        return out


def _stub_kernels() -> None:
    """No Triton launches, and no NaN check of the scan's inputs: the stubbed conv leaves its
    output buffer uninitialised (whatever memory held), which the check would reject."""
    import importlib

    from mambakit.ops import triton_conv1d, triton_selective_scan

    triton_selective_scan._fwd_kernel = _NoLaunch()
    triton_conv1d._conv1d_fwd_kernel = _NoLaunch()
    # the module (mambakit.ops re-exports the function under the same name)
    importlib.import_module("mambakit.ops.selective_scan").check_finite = lambda name, t: None


def _traffic(mixer: torch.nn.Module, x: torch.Tensor, unit: int) -> dict:
    """Copy-like traffic of ``mixer(x)`` in units of ``unit`` bytes."""
    from mambakit.ops.time_layout import record_layout_copies

    with torch.no_grad(), _Traffic(unit) as mode, record_layout_copies() as copied:
        mixer(x)
    if copied:    # each read and written once, counted as bf16
        mode.rows["align_copy"] += sum(2 * math.prod(shape) * 2 for shape in copied) / unit
    rows = {k: round(v, 2) for k, v in sorted(mode.rows.items())}
    return {"per_op_units": rows, "total_units": round(sum(mode.rows.values()), 2)}


def vim_layer_traffic(length: int, batch: int, d_model: int, time_align, flip_tokens) -> dict:
    """One Vim mixer on ``(batch, length, d_model)`` tokens, in units of ``(batch, d_inner, length)``."""
    from mambakit.vision import MultiOrderMamba, bidirectional_orders

    _stub_kernels()
    mixer = MultiOrderMamba(d_model, bidirectional_orders(), d_state=16, d_conv=4, expand=2, impl="triton")
    mixer.time_align, mixer.flip_tokens = time_align, flip_tokens
    return _traffic(mixer, torch.randn(batch, length, d_model), batch * mixer.d_inner * length * 2)


def ss2d_layer_traffic(side: int, batch: int, d_model: int) -> dict:
    """One VMamba SS2D on a ``side x side`` map, in units of ``(batch, d_inner, side**2)``."""
    from mambakit.vision import SS2D

    _stub_kernels()
    mixer = SS2D(d_model, d_state=1, impl="triton")
    return _traffic(mixer, torch.randn(batch, side, side, d_model), batch * mixer.d_inner * side * side * 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=6085, help="tokens per image (Vim-Tiny 1248 px: 6085)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=192)
    parser.add_argument("--ss2d-side", type=int, default=39, help="SS2D map side (VMamba-Tiny stage 1 at 1248 px: 312)")
    parser.add_argument("--ss2d-d-model", type=int, default=96)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    setups = {"no padding, flip channels (CPU default)": (1, False),
              "padded to 16, flip channels": (16, False),
              "padded to 16, flip tokens (GPU default)": (16, True)}
    results = {}
    print(f"one bidirectional Vim layer, L={args.length}, d_model={args.d_model}: copy-like traffic in units of "
          f"one (B, d_inner, L) tensor read or written")
    for name, (align, flip) in setups.items():
        results[name] = vim_layer_traffic(args.length, args.batch, args.d_model, align, flip)
        print(f"{name:50s} {results[name]['total_units']:6.1f}  {results[name]['per_op_units']}")
    name = f"VMamba SS2D, {args.ss2d_side}x{args.ss2d_side} map, d_model {args.ss2d_d_model}"
    results[name] = ss2d_layer_traffic(args.ss2d_side, args.batch, args.ss2d_d_model)
    print(f"{name:50s} {results[name]['total_units']:6.1f}  {results[name]['per_op_units']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"name": "layout_traffic", "length": args.length, "batch": args.batch,
                                         "d_model": args.d_model, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
