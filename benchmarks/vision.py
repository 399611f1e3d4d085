"""Vision inference speed: Vim-Tiny and VMamba-T vs timm DeiT-Tiny at growing resolutions.

For each resolution (default 224, 512, 1024, 1248 px) and each model (same batch, bf16 autocast;
DeiT-Tiny uses timm's fused attention, i.e. PyTorch SDPA): images/s from the median forward
time (``triton.testing.do_bench``, ``return_mode="median"``) and the peak GPU memory of one
forward (``torch.cuda.max_memory_allocated`` after a reset, model weights included). A model
that runs out of memory is recorded as ``"oom"``. The table also gives Vim's speed-up and
memory ratio against DeiT, and the crossover: the smallest measured resolution from which Vim
is faster than DeiT.

Usage:
  GPU:  python benchmarks/vision.py --out benchmarks/results            (batch 16, bf16)
  CPU:  python benchmarks/vision.py --cpu-smoke --out /tmp/vision-smoke  (tiny sizes, fp32)
Works with the package installed (``pip install -e .``) or from a bare checkout (the script then
maps ``mambakit`` -> ``core/`` and ``mambakit.vision`` -> ``vision/`` itself).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_ms  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _bootstrap() -> None:
    """Import ``mambakit`` and ``mambakit.vision``, from the checkout if they are not installed."""
    try:
        import mambakit.vision  # noqa: F401
        return
    except ImportError:
        pass
    for name, folder in (("mambakit", REPO / "core"), ("mambakit.vision", REPO / "vision")):
        sys.modules.pop(name, None)
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_bootstrap()
import timm  # noqa: E402

import mambakit.vision  # noqa: E402,F401  (registers the timm models)

MODELS = {"vim_tiny": "vim_tiny_patch16_224", "vmamba_tiny": "vmamba_tiny_224", "deit_tiny": "deit_tiny_patch16_224",
          "vim_tiny_graphed": "vim_tiny_patch16_224", "vmamba_tiny_graphed": "vmamba_tiny_224",
          "deit_tiny_graphed": "deit_tiny_patch16_224", "vim_tiny_unpadded": "vim_tiny_patch16_224"}
# "*_graphed": the same model replayed as a CUDA graph (mambakit.CUDAGraphModule), which removes
# the host's per-kernel launch cost; DeiT gets the same treatment for a fair comparison.
# "vim_tiny_unpadded": Vim-Tiny with its mixers' sequences left unpadded and flipped on the channels
# (the layout before aligned padding; the scan's launcher then copies unaligned inputs), for a
# side-by-side A/B of that layout in one run.


def build(name: str, size: int, smoke: bool) -> torch.nn.Module:
    kwargs = {"img_size": size}
    base = name.removesuffix("_graphed")
    if smoke:  # a few layers keep the CPU run short; the code path is the same
        kwargs.update({"vim_tiny": dict(depth=2), "vmamba_tiny": dict(depths=[1, 1, 1, 1]),
                       "deit_tiny": dict(depth=2), "vim_tiny_unpadded": dict(depth=2)}[base])
    model = timm.create_model(MODELS[name], num_classes=1000, **kwargs).eval()
    if name == "vim_tiny_unpadded":
        from mambakit.vision import MultiOrderMamba
        for module in model.modules():
            if isinstance(module, MultiOrderMamba):
                module.time_align, module.flip_tokens = 1, False
    if name.endswith("_graphed"):
        from mambakit import CUDAGraphModule
        model = CUDAGraphModule(model)
    return model


def time_forward(fn, device: str, reps: int) -> float:
    """Median milliseconds of ``fn()``."""
    return median_ms(fn, device, reps, warmup_ms=25, rep_ms=200)


def measure(name: str, size: int, batch: int, device: str, dtype: torch.dtype, smoke: bool, reps: int) -> dict:
    model = None
    try:
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        model = build(name, size, smoke).to(device)
        x = torch.randn(batch, 3, size, size, device=device)

        def fwd():
            with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
                return model(x)

        out = fwd()
        if not torch.isfinite(out.float()).all():
            raise RuntimeError(f"{name} at {size}px produced non-finite logits")
        peak_gb = None
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            fwd()
            torch.cuda.synchronize()
            peak_gb = torch.cuda.max_memory_allocated() / 2**30
        ms = time_forward(fwd, device, reps)
        return {"model": name, "size": size, "batch": batch, "ms": ms, "images_per_s": batch / ms * 1e3,
                "peak_memory_gb": peak_gb, "params": sum(p.numel() for p in model.parameters())}
    except torch.OutOfMemoryError:
        return {"model": name, "size": size, "batch": batch, "ms": None, "images_per_s": None,
                "peak_memory_gb": None, "status": "oom"}
    finally:
        del model
        if device == "cuda":
            torch.cuda.empty_cache()


def summarise(rows: list[dict], sizes: list[int]) -> dict:
    by = {(r["model"], r["size"]): r for r in rows}
    summary = {}
    for size in sizes:
        for name in ("vim_tiny", "vmamba_tiny", "vim_tiny_graphed", "vmamba_tiny_graphed"):
            deit = by.get(("deit_tiny_graphed" if name.endswith("_graphed") and ("deit_tiny_graphed", size) in by
                           else "deit_tiny", size), {})
            r = by.get((name, size), {})
            if r.get("images_per_s") and deit.get("images_per_s"):
                r["speedup_vs_deit"] = r["images_per_s"] / deit["images_per_s"]
            if r.get("peak_memory_gb") and deit.get("peak_memory_gb"):
                r["memory_ratio_vs_deit"] = r["peak_memory_gb"] / deit["peak_memory_gb"]
    for name in ("vim_tiny", "vmamba_tiny", "vim_tiny_graphed", "vmamba_tiny_graphed"):
        if not any(r["model"] == name for r in rows):
            continue
        faster = [s for s in sizes if (by.get((name, s), {}).get("speedup_vs_deit") or 0) > 1
                  or (by.get(("deit_tiny", s), {}).get("status") == "oom" and by.get((name, s), {}).get("images_per_s"))]
        cross = None
        if faster:
            first = faster[0]
            if all(s in faster for s in sizes if s >= first):
                cross = first
        summary[f"{name}_crossover_px"] = cross
    return summary


def table(rows: list[dict]) -> str:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = ["| px | model | img/s | ms/batch | peak GB | speed-up vs DeiT | memory vs DeiT |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['model']} | {f(r.get('images_per_s'), '.0f') if r.get('status') != 'oom' else 'OOM'} "
                     f"| {f(r.get('ms'), '.2f')} | {f(r.get('peak_memory_gb'), '.3f')} "
                     f"| {f(r.get('speedup_vs_deit'), '.2f')} | {f(r.get('memory_ratio_vs_deit'), '.2f')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for the JSON")
    parser.add_argument("--sizes", default="", help="comma-separated resolutions (default 224,512,1024,1248)")
    parser.add_argument("--batch", type=int, default=0, help="images per batch (default 16; 2 with --cpu-smoke)")
    parser.add_argument("--models", default="vim_tiny,vmamba_tiny,deit_tiny")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes and depths on the CPU, fp32")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions on the CPU")
    args = parser.parse_args(argv)
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU, or pass --cpu-smoke")
    device = "cpu" if smoke else "cuda"
    dtype = torch.float32 if smoke else torch.bfloat16
    sizes = [int(s) for s in args.sizes.split(",") if s] or ([32, 64] if smoke else [224, 512, 1024, 1248])
    batch = args.batch or (2 if smoke else 16)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    rows = []
    for size in sizes:
        for name in models:
            row = measure(name, size, batch, device, dtype, smoke, args.reps)
            rows.append(row)
            print(f"{size:>5}px {name:<12} "
                  + ("OOM" if row.get("status") == "oom" else f"{row['images_per_s']:9.1f} img/s"), flush=True)
    summary = summarise(rows, sizes)
    print(table(rows))
    print(json.dumps(summary))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = None
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    tag = "cpu" if smoke else (gpu or "gpu").lower().replace("nvidia ", "").split()[0]
    record = {
        "name": "vision_inference_speed", "metrics": {"rows": [r for r in rows if not r["model"].startswith("deit_tiny")],
                                                     **summary},
        "baseline": {"name": "timm deit_tiny_patch16_224 (fused SDPA attention)",
                     "rows": [r for r in rows if r["model"].startswith("deit_tiny")]},
        "settings": {"batch": batch, "dtype": str(dtype).replace("torch.", ""), "sizes": sizes, "smoke": smoke,
                     "timing": "triton.testing.do_bench median" if device == "cuda" else f"median of {args.reps}"},
        "machine": {"gpu": gpu, "torch": torch.__version__, "timm": timm.__version__,
                    "python": sys.version.split()[0]},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "git": commit,
        "command": "python " + shlex.join(["benchmarks/vision.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"vision_{tag}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    (out / f"vision_{tag}.md").write_text(table(rows) + "\n\n" + json.dumps(summary) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
