"""CPU speed and memory of a Mamba stack: mambakit vs mambapy (and Hugging Face transformers).

Times forward and forward+backward of
  * a 2-layer stack, d_model 256, d_state 16, expand 2, on (batch 2, length 512) tokens, and
  * a 4-layer stack of the same width on (8, 1024) tokens,
for mambakit's ``MambaBackbone`` (the fused Numba CPU scan and, for reference, the pure
PyTorch reference scan), the PyPI package ``mambapy`` (pure-PyTorch parallel scan,
``pscan=True``) and, for the 2-layer case, ``transformers``' ``MambaModel`` without kernels.
All with random weights and inputs. Each (library, case) runs in a fresh process so that its
peak memory (max RSS above the RSS after building the model and inputs) is its own. Timings are
medians of several runs after a warm-up.

Usage:  python benchmarks/cpu.py [--quick] [--skip-transformers]
Writes: benchmarks/results/cpu_<machine>.json and prints a table.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "2x256_b2_l512": dict(n_layer=2, d_model=256, batch=2, length=512),
    "4x256_b8_l1024": dict(n_layer=4, d_model=256, batch=8, length=1024),
}
D_STATE, EXPAND = 16, 2
RESULTS = Path(__file__).resolve().parent / "results"


def build(lib: str, n_layer: int, d_model: int):
    """The model under test as a callable ``(B, L, d_model) -> (B, L, d_model)``."""
    import torch
    torch.manual_seed(0)
    if lib.startswith("mambakit"):
        import mambakit
        impl = "reference" if lib == "mambakit-reference" else "cpu"
        return mambakit.MambaBackbone(d_model=d_model, n_layer=n_layer,
                                      ssm_cfg={"d_state": D_STATE, "expand": EXPAND, "impl": impl})
    if lib == "mambapy":
        from mambapy.mamba import Mamba, MambaConfig
        return Mamba(MambaConfig(d_model=d_model, n_layers=n_layer, d_state=D_STATE,
                                 expand_factor=EXPAND, pscan=True))
    if lib == "transformers":
        # this script's folder (on sys.path) holds kernels.py, which would shadow the `kernels`
        # package that transformers imports
        here = Path(__file__).resolve().parent
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
        from transformers import MambaConfig, MambaModel
        model = MambaModel(MambaConfig(hidden_size=d_model, num_hidden_layers=n_layer, state_size=D_STATE,
                                       expand=EXPAND, vocab_size=16, use_mambapy=False))
        return lambda x: model(inputs_embeds=x).last_hidden_state
    raise ValueError(f"unknown library {lib!r}")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (Linux) and return the current RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kb("VmRSS") * 1024


def peak_rss_bytes() -> int:
    return _status_kb("VmHWM") * 1024


def measure(lib: str, case: str, mode: str, repeats: int) -> dict:
    """Run in this process: build, warm up, time ``repeats`` runs, report median and peak memory."""
    import torch
    spec = CASES[case]
    model = build(lib, spec["n_layer"], spec["d_model"])
    x = torch.randn(spec["batch"], spec["length"], spec["d_model"], requires_grad=(mode == "fwd+bwd"))

    def run() -> None:
        if mode == "fwd":
            with torch.no_grad():
                model(x)
        else:
            model(x).float().pow(2).mean().backward()

    start = time.perf_counter()
    run()                                            # warm-up (JIT compile, allocator)
    first = time.perf_counter() - start
    import gc
    gc.collect()
    base = reset_peak_rss()
    times = []
    n = repeats if first < 5 else max(1, min(repeats, 2))
    for _ in range(n):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {"lib": lib, "case": case, "mode": mode, "median_s": statistics.median(times),
            "runs_s": times, "first_s": first, "peak_mem_mb": (peak_rss_bytes() - base) / 2**20}


def spawn(lib: str, case: str, mode: str, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--child", lib, case, mode, str(repeats)]
    # Large blocks always through mmap, so freed activations leave the RSS and the peak of the
    # timed runs is not hidden by memory glibc kept from the warm-up.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"lib": lib, "case": case, "mode": mode, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        return "unknown"


def machine_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=4, metavar=("LIB", "CASE", "MODE", "REPEATS"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="only the 2-layer case, 3 repeats")
    parser.add_argument("--skip-transformers", action="store_true", help="leave out transformers' MambaModel")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    args = parser.parse_args()
    if args.child:
        lib, case, mode, repeats = args.child
        print(json.dumps(measure(lib, case, mode, int(repeats))))
        return

    repeats = 3 if args.quick else args.repeats
    rows = []
    for case in (["2x256_b2_l512"] if args.quick else list(CASES)):
        libs = ["mambakit", "mambapy"]
        if case == "2x256_b2_l512":
            # The reference (pairwise within chunks) is the specification, not a training path:
            # at (8, 1024) its backward would need about 40 GB. Shown for the small case only.
            libs.insert(1, "mambakit-reference")
            if not args.skip_transformers:
                libs.append("transformers")
        for lib in libs:
            for mode in ("fwd", "fwd+bwd"):
                r = spawn(lib, case, mode, repeats if lib != "transformers" else 1)
                rows.append(r)
                status = r.get("error") or f"{r['median_s']:.3f} s, peak {r['peak_mem_mb']:.0f} MB"
                print(f"  {case:16s} {lib:20s} {mode:8s} {status}", flush=True)

    def get(lib, case, mode):
        return next((r for r in rows if r["lib"] == lib and r["case"] == case and r["mode"] == mode
                     and "error" not in r), None)

    print("\ncase              mode      library              median s   peak MB   mambapy/ours")
    metrics, baseline = {}, {}
    for case in dict.fromkeys(r["case"] for r in rows):
        for mode in ("fwd", "fwd+bwd"):
            ours = get("mambakit", case, mode)
            for lib in ("mambakit", "mambakit-reference", "mambapy", "transformers"):
                r = get(lib, case, mode)
                if r is None:
                    continue
                ratio = f"{r['median_s'] / ours['median_s']:.2f}x" if ours else ""
                print(f"{case:17s} {mode:9s} {lib:20s} {r['median_s']:9.3f} {r['peak_mem_mb']:9.0f}   {ratio}")
                key = f"{case}/{mode}/{lib}"
                target = metrics if lib.startswith("mambakit") else baseline
                target[f"{key}/seconds"] = round(r["median_s"], 4)
                target[f"{key}/peak_mem_mb"] = round(r["peak_mem_mb"], 1)
            mp = get("mambapy", case, mode)
            if ours and mp:
                metrics[f"{case}/{mode}/speedup_vs_mambapy"] = round(mp["median_s"] / ours["median_s"], 2)
                metrics[f"{case}/{mode}/memory_ratio_vs_mambapy"] = round(
                    ours["peak_mem_mb"] / max(mp["peak_mem_mb"], 1e-9), 2)
    record = {
        "name": "cpu", "metrics": metrics, "baseline": baseline, "runs": rows,
        "machine": machine_name(), "date": _dt.date.today().isoformat(), "git": git_commit(),
        "torch_threads": int(__import__("torch").get_num_threads()),
        "command": "python benchmarks/cpu.py" + (" --quick" if args.quick else "")
                   + (" --skip-transformers" if args.skip_transformers else ""),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("cpu_quick.json" if args.quick else "cpu_cpu.json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
