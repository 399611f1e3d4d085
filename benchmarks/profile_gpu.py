"""Where a model's time goes on the GPU: kernels, launches and host overhead, per workload.

For each workload it runs a few warm-up iterations, then
  * the wall time of one iteration (host clock around a synchronised call, median of --reps),
  * the GPU time of the same iteration (CUDA events), so ``wall - gpu`` is what the host adds,
  * one iteration under ``torch.profiler``: the number of kernel launches and the kernels that
    take the most device time (name, calls, total ms), and the host ops that issue the most calls.
A workload whose wall time is far above its GPU time is launch-bound: fewer, larger kernels or
CUDA graphs help it; one whose GPU time is dominated by a few kernels needs those kernels faster.

Workloads (``--workloads``, comma-separated):
  vim224, vim1248          Vim-Tiny forward, batch 16, bf16 autocast, at 224 / 1248 px
  lm_train                 24-layer d_model 768 Mamba-1 LM, forward+backward, batch 8 x 2048, bf16
  decode                   the same LM, one recurrent decoding step at batch 1
  block4k                  one Mamba-1 block, d_model 768, batch 1, L 4096, forward, bf16
  block4k_m2               the same with a Mamba-2 block (d_state 128, headdim 64)
  ssd_fb                   the SSD scan, forward+backward, (4, 4096, 64 heads x 64, N 128), bf16
  ssd_fb_mamba_ssm         the same with mamba_ssm's Triton SSD (needs --mamba-ssm-sdist)

Usage (GPU):  python benchmarks/profile_gpu.py --out DIR [--workloads vim224,decode]
              python benchmarks/profile_gpu.py --workloads ssd_fb,ssd_fb_mamba_ssm --mamba-ssm-sdist F.tar.gz
Writes ``DIR/profile_<gpu>.json`` and prints one table per workload.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import device_tag  # noqa: E402

import mambakit  # noqa: E402


def _vim(size: int) -> Callable[[], object]:
    import timm

    import mambakit.vision  # noqa: F401  (registers the timm models)

    model = timm.create_model("vim_tiny_patch16_224", img_size=size, num_classes=1000).cuda().eval()
    x = torch.randn(16, 3, size, size, device="cuda")

    def run():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return model(x)
    return run


def _lm(n_layer: int = 24, d_model: int = 768) -> mambakit.MambaLMHeadModel:
    torch.manual_seed(0)
    return mambakit.MambaLMHeadModel(d_model=d_model, n_layer=n_layer, vocab_size=50277,
                                     ssm_cfg={"layer": "Mamba1"}).cuda()


def _lm_train() -> Callable[[], object]:
    model = _lm()
    ids = torch.randint(0, 50277, (8, 2048), device="cuda")

    def run():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(ids)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids.flatten())
        loss.backward()
    return run


def _decode() -> Callable[[], object]:
    model = _lm().to(torch.bfloat16).eval()
    cache = model.allocate_inference_cache(1, 4096)
    token = torch.randint(0, 50277, (1, 1), device="cuda")

    def run():
        with torch.inference_mode():
            return model(token, inference_params=cache)
    return run


def _block4k(layer: str = "Mamba1") -> Callable[[], object]:
    block = (mambakit.Mamba(768) if layer == "Mamba1" else mambakit.Mamba2(768, d_state=128, headdim=64))
    block = block.cuda().to(torch.bfloat16).eval()
    x = torch.randn(1, 4096, 768, device="cuda", dtype=torch.bfloat16)

    def run():
        with torch.no_grad():
            return block(x)
    return run


SSD_SHAPE = (4, 4096, 64, 64, 128)   # batch, L, heads, headdim, N: the first Mamba-2 shape of kernels.py
_MAMBA_SSM_SDIST: list[str] = []     # --mamba-ssm-sdist, for the ssd_fb_mamba_ssm workload


def _ssd_fb(theirs: bool) -> Callable[[], object]:
    """SSD forward+backward at ``SSD_SHAPE`` in bf16 (D, z, dt_bias, softplus), ours or mamba_ssm's."""
    from kernels import MAMBA2_CHUNK, load_mamba2_baseline, make_mamba2_inputs

    from mambakit.ops.ssd import ssd_chunk_scan

    kw = make_mamba2_inputs(*SSD_SHAPE, torch.bfloat16, requires_grad=True)
    grad = torch.randn(*SSD_SHAPE[:4], device="cuda", dtype=torch.bfloat16)
    if theirs:
        fn, note = load_mamba2_baseline(None, _MAMBA_SSM_SDIST[0] if _MAMBA_SSM_SDIST else None)
        if fn is None:
            raise RuntimeError(f"ssd_fb_mamba_ssm needs --mamba-ssm-sdist: {note}")

        def forward():
            return fn(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], MAMBA2_CHUNK, D=kw["D"], z=kw["z"],
                      dt_bias=kw["dt_bias"], dt_softplus=True)
    else:
        def forward():
            return ssd_chunk_scan(**kw, chunk_size=MAMBA2_CHUNK, dt_softplus=True, impl="triton")

    def run():
        forward().backward(grad)
        for v in kw.values():
            v.grad = None
    return run


WORKLOADS = {"vim224": lambda: _vim(224), "vim1248": lambda: _vim(1248), "lm_train": _lm_train,
             "decode": _decode, "block4k": _block4k, "block4k_m2": lambda: _block4k("Mamba2"),
             "ssd_fb": lambda: _ssd_fb(False),
             "ssd_fb_mamba_ssm": lambda: _ssd_fb(True)}


def _kernel_rows(prof, top: int) -> tuple[list[dict], int, float]:
    """Device-side events grouped by name: ``(rows, launches, total device ms)``."""
    by_name: dict[str, list[float]] = {}
    for evt in prof.events():
        if evt.device_type != torch.autograd.DeviceType.CUDA:
            continue
        by_name.setdefault(evt.name, []).append(evt.device_time / 1e3)
    rows = [{"kernel": name[:110], "calls": len(ts), "total_ms": sum(ts)} for name, ts in by_name.items()]
    rows.sort(key=lambda r: -r["total_ms"])
    launches = sum(r["calls"] for r in rows)
    return rows[:top], launches, sum(r["total_ms"] for r in rows)


def _host_rows(prof, top: int) -> list[dict]:
    """Top-level host ops (no parent) by count: what the Python side asks for most often."""
    counts: dict[str, int] = {}
    for evt in prof.events():
        if evt.device_type == torch.autograd.DeviceType.CPU and evt.cpu_parent is None:
            counts[evt.name] = counts.get(evt.name, 0) + 1
    return [{"op": k, "calls": v} for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:top]]


def profile(name: str, reps: int, top: int) -> dict:
    run = WORKLOADS[name]()
    for _ in range(3):
        run()
    torch.cuda.synchronize()
    walls, gpus = [], []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        start.record()
        run()
        end.record()
        torch.cuda.synchronize()
        walls.append((time.perf_counter() - t0) * 1e3)
        gpus.append(start.elapsed_time(end))
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    kernels, launches, kernel_ms = _kernel_rows(prof, top)
    return {"workload": name, "wall_ms": statistics.median(walls), "events_ms": statistics.median(gpus),
            "kernel_ms": kernel_ms, "launches": launches, "top_kernels": kernels,
            "top_host_ops": _host_rows(prof, top)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", default=".")
    parser.add_argument("--mamba-ssm-sdist", default=None,
                        help="mamba-ssm sdist (.tar.gz) whose Triton SSD the ssd_fb_mamba_ssm workload runs")
    args = parser.parse_args(argv)
    if args.mamba_ssm_sdist:
        _MAMBA_SSM_SDIST.append(args.mamba_ssm_sdist)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    names = [w for w in args.workloads.split(",") if w]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {list(WORKLOADS)}")
    results = []
    for name in names:
        r = profile(name, args.reps, args.top)
        results.append(r)
        print(f"\n== {name}: wall {r['wall_ms']:.2f} ms, GPU (events) {r['events_ms']:.2f} ms, "
              f"kernels {r['kernel_ms']:.2f} ms in {r['launches']} launches")
        for k in r["top_kernels"]:
            print(f"  {k['total_ms']:8.3f} ms {k['calls']:5d}x  {k['kernel']}")
        print("  host ops by count: " + ", ".join(f"{h['op']} {h['calls']}" for h in r["top_host_ops"][:10]))
        torch.cuda.empty_cache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"profile_{device_tag('cuda')}.json"
    path.write_text(json.dumps({"name": "gpu_profile", "gpu": torch.cuda.get_device_name(0),
                                "torch": torch.__version__, "results": results}, indent=2) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
