"""Measure the Triton selective scans on the local GPU: the existing kernel
(``mambakit/ops/triton_selective_scan.py``, default launch config) side by side with the
state-in-tile variant (``mambakit/ops/triton_selective_scan_nd.py``) over a grid of launch
configurations, so that defaults and the dispatch can be chosen from measurements.

Per shape (bf16 u/delta/B/C/z, fp32 A/D, with D, z, delta_bias, softplus) it times, as
``triton.testing.do_bench`` medians, the forward under ``no_grad`` and forward+backward:

* ``old``          the existing kernel at its default configuration,
* ``nd fwd cfg``   the nd forward at each forward configuration (inference: no checkpoints),
* ``nd bwd cfg``   nd forward (default config) + backward at each backward configuration,
* ``nd best``      the best forward and best backward configuration together,
* ``cuda``         mamba_ssm's selective_scan_fn, when it is importable.

Every timed configuration is first checked on a small bf16 problem against the reference
evaluated in float64 (same compiled kernels as the timing), and each variant at its default
configuration (the existing one with --check-old-fp32) on a float32 problem with groups, packed
sequences and an initial state (1e-4).
A configuration that fails to compile is skipped and recorded.

``--quick`` (default): a curated grid on the first shape, the best few of those plus the
defaults on the others; ``--full``: every (BLOCK_D, BLOCK_L, num_warps) in {1,2,4,8} x
{64,128,256} x {2,4,8} that is not hopelessly register-bound, on every shape. ``--budget-s``
stops sweeping (with what was measured kept) when the script has run that long.

Usage: python benchmarks/tune_selective_scan.py [--out results.json] [--full] [--budget-s 210]
           [--mamba-ssm-sdist SDIST --prebuilt DIR]     (mamba_ssm's CUDA scan as a third column)
       TRITON_INTERPRET=1 python benchmarks/tune_selective_scan.py --dry-run   (CPU: checks the
           script end to end on tiny shapes, times nothing meaningful)
       python benchmarks/tune_selective_scan.py --legacy [--out DIR]   (old config sweep of the
           existing kernel only)
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import mambakit  # noqa: F401
except ImportError:  # not installed: load the package from the checkout (core/ is mambakit)
    import importlib.util
    _spec = importlib.util.spec_from_file_location("mambakit", ROOT / "core" / "__init__.py",
                                                   submodule_search_locations=[str(ROOT / "core")])
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["mambakit"] = _mod
    _spec.loader.exec_module(_mod)

from mambakit.ops import triton_selective_scan as tss  # noqa: E402
from mambakit.ops import triton_selective_scan_nd as nd  # noqa: E402
from mambakit.ops.selective_scan import selective_scan_reference  # noqa: E402

SHAPES = [(8, 1536, 2048, 16), (4, 2048, 8192, 16), (1, 2048, 65536, 16), (256, 384, 197, 16)]
CHECK_SHAPE = (2, 256, 1024, 16)             # bf16 check: same kernel specialisation as the timing
CHECK32_SHAPE = (2, 128, 300, 16, 2)         # float32 check with groups, packing and h0
# (BLOCK_D, BLOCK_L, num_warps). Quick grids: configurations that compile without spills on
# sm_90 plus a few neighbours with small spills (ptxas -v, Triton 3.8).
QUICK_FWD = [(4, 128, 8), (2, 128, 4), (2, 128, 8), (4, 64, 4), (8, 64, 8), (2, 64, 4), (1, 128, 4),
             (4, 256, 8)]
QUICK_BWD = [(2, 128, 8), (4, 64, 8), (2, 64, 4), (1, 128, 8), (1, 64, 4), (2, 128, 4), (4, 128, 8),
             (1, 256, 8)]
TOP_K = 3                                    # quick mode: configs carried from the first shape


def full_grid(direction: str, n_state: int = 16) -> list[tuple[int, int, int]]:
    """All combinations whose 3-D tile is at most 64 (bwd) / 128 (fwd) fp32 values per thread."""
    cap = 128 if direction == "fwd" else 64
    block_n = 1 << max(0, math.ceil(math.log2(n_state)))
    return [(bd, bl, w) for bd in (1, 2, 4, 8) for bl in (64, 128, 256) for w in (2, 4, 8)
            if bd * block_n * bl // (32 * w) <= cap]


DEVICE = "cuda"                              # "cpu" only for --dry-run under TRITON_INTERPRET=1


def make_inputs(batch, dim, length, n_state, dtype, groups=1, seed=0, device=None):
    """Mamba-like inputs: A = -(1..N) jittered, dt_bias = softplus^-1 of log-uniform [1e-3, 1e-1]."""
    device = device or DEVICE
    g = torch.Generator(device=device)
    g.manual_seed(seed)

    def rn(*shape, dt=dtype, scale=1.0):
        return (torch.randn(*shape, generator=g, device=device) * scale).to(dt)

    A = -(torch.arange(1, n_state + 1, device=device, dtype=torch.float32).repeat(dim, 1)
          * (0.5 + torch.rand(dim, n_state, generator=g, device=device)))
    dt0 = torch.exp(torch.rand(dim, generator=g, device=device) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    return dict(u=rn(batch, dim, length), delta=rn(batch, dim, length, scale=0.5), A=A,
                B=rn(batch, groups, n_state, length), C=rn(batch, groups, n_state, length),
                D=rn(dim, dt=torch.float32), z=rn(batch, dim, length),
                delta_bias=(dt0 + torch.log(-torch.expm1(-dt0))).float())


def call(variant: str, inp: dict, h0=None, seq=None):
    """(out, last) of one implementation; inputs as make_inputs (B, C grouped)."""
    args = (inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"], inp["delta_bias"], True,
            h0, seq)
    if variant == "old":
        return tss.selective_scan_triton(*args)
    if variant == "nd":
        return nd.selective_scan_triton_nd(*args)
    if variant == "cuda":
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        B, C = inp["B"], inp["C"]
        out, last = selective_scan_fn(inp["u"], inp["delta"], inp["A"], B, C, inp["D"], inp["z"],
                                      inp["delta_bias"], delta_softplus=True, return_last_state=True)
        return out, last
    if variant == "reference":
        return selective_scan_reference(*args[:8], True, h0, seq)
    raise ValueError(variant)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


_REF_CACHE: dict[tuple, dict] = {}


def check(variant: str, shape, dtype, packed: bool, seed: int = 1) -> float:
    """Worst relative error (in norm) of out, last state and every gradient against the reference
    evaluated in float64 on the same (rounded) inputs."""
    batch, dim, length, n, groups = shape
    inp = make_inputs(batch, dim, length, n, dtype, groups, seed=seed)
    g = torch.Generator(device=DEVICE)
    g.manual_seed(seed + 1)
    h0 = torch.randn(batch, dim, n, device=DEVICE, generator=g) if packed else None
    seq = (torch.sort(torch.randint(0, 5, (batch, length), device=DEVICE, generator=g), -1).values.int()
           if packed else None)
    gy = torch.randn(batch, dim, length, device=DEVICE, generator=g).to(dtype)   # same values for both
    gl = torch.randn(batch, dim, n, device=DEVICE, generator=g)
    res = {}
    key = (tuple(shape), dtype, packed, seed)
    if key in _REF_CACHE:
        res["reference"] = _REF_CACHE[key]
    for impl, dt in ((variant, None), ("reference", torch.float64)):
        if impl in res:
            continue
        leaves = {k: (v.to(dt) if dt else v.clone()).requires_grad_() for k, v in inp.items()}
        hh = (h0.to(dt) if dt else h0.clone()).requires_grad_() if packed else None
        out, last = call(impl, leaves, hh, seq)
        names = list(leaves) + (["h0"] if packed else [])
        grads = torch.autograd.grad([out, last], [*leaves.values()] + ([hh] if packed else []),
                                    [gy.to(out.dtype), gl.to(last.dtype)])
        res[impl] = dict(out=out.detach(), last=last.detach(), **dict(zip(names, grads)))
        del out, last, grads
    _REF_CACHE[key] = res["reference"]
    return max(rel(res[variant][k], res["reference"][k]) for k in res["reference"])


def do_bench(fn, warmup: int, rep: int, grad_to_none=None) -> float:
    if DEVICE != "cuda":                     # dry run: one call, wall clock
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    import triton.testing
    return triton.testing.do_bench(fn, warmup=warmup, rep=rep, grad_to_none=grad_to_none, return_mode="median")


def bench_fwd(variant: str, inp: dict, warmup: int, rep: int) -> float:
    def run():
        with torch.no_grad():
            call(variant, inp)
    return do_bench(run, warmup, rep)


def bench_fwdbwd(variant: str, inp: dict, grad: torch.Tensor, warmup: int, rep: int) -> float:
    leaves = [v for v in inp.values() if v.requires_grad]

    def run():
        out, _ = call(variant, inp)
        out.backward(grad)
    return do_bench(run, warmup, rep, grad_to_none=leaves)


class Runner:
    def __init__(self, args):
        self.args = args
        self.t0 = time.time()
        self.rows: list[dict] = []
        self.skipped: list[str] = []

    def over_budget(self) -> bool:
        return time.time() - self.t0 > self.args.budget_s

    def record(self, **row) -> dict:
        row["t_s"] = round(time.time() - self.t0, 1)
        self.rows.append(row)
        ms = lambda k: f"{row[k]:8.3f}" if isinstance(row.get(k), float) else f"{'-':>8}"
        err = row.get("err")
        print(f"  {str(row['shape']):22s} {row['variant']:5s} {row['dir']:6s} {str(row.get('cfg', '')):16s}"
              f" fwd {ms('fwd_ms')}  fwd+bwd {ms('fwdbwd_ms')}  err {err if err is None else f'{err:.1e}'}"
              f"{'  ' + row['error'] if row.get('error') else ''}", flush=True)
        return row


def load_mamba_ssm(args) -> bool:
    """mamba_ssm's CUDA scan as a baseline: already importable, or from --mamba-ssm-sdist (with a
    --prebuilt directory holding selective_scan_cuda*.so; building it takes minutes)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
        return True
    except Exception:  # noqa: BLE001
        pass
    if not args.mamba_ssm_sdist:
        return False
    from third_party import try_mamba_ssm
    module, note = try_mamba_ssm(args.mamba_ssm_sdist, args.prebuilt)
    print(note, flush=True)
    return module is not None


def set_nd(fwd=None, bwd=None):
    nd.clear_config()
    if fwd:
        nd.set_config("fwd", fwd[0], fwd[1], fwd[2], 1)
    if bwd:
        nd.set_config("bwd", bwd[0], bwd[1], bwd[2], 1)


def short_error(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"


def compare(args) -> dict:
    r = Runner(args)
    warmup, rep = args.warmup_ms, args.rep_ms
    dev = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (dry run, Triton interpreter)"
    print(f"device {dev}, torch {torch.__version__}, triton {__import__('triton').__version__}", flush=True)
    # float32 correctness of both variants at their defaults, with groups, packing and h0
    for variant in (("old", "nd") if args.check_old_fp32 else ("nd",)):
        nd.clear_config()
        try:
            err = check(variant, CHECK32_SHAPE, torch.float32, packed=True)
            r.record(shape=CHECK32_SHAPE, variant=variant, dir="check32", err=err, ok=err < 1e-4)
        except Exception as e:  # noqa: BLE001
            r.record(shape=CHECK32_SHAPE, variant=variant, dir="check32", error=short_error(e), ok=False)
    have_cuda = load_mamba_ssm(args)
    grids = {"fwd": full_grid("fwd") if args.full else QUICK_FWD, "bwd": full_grid("bwd") if args.full else QUICK_BWD}
    checked: dict[tuple, float] = {}
    first_timed: dict[str, list] = {}

    def checked_ok(direction, cfg) -> tuple[bool, float | None, str | None]:
        """bf16 check of one nd configuration (compiles it); cached per (direction, cfg)."""
        key = (direction, cfg)
        if key not in checked:
            set_nd(**{direction: cfg})
            try:
                checked[key] = check("nd", (*CHECK_SHAPE, 1), torch.bfloat16, packed=False)
            except Exception as e:  # noqa: BLE001 -- does not compile (resources) or fails
                checked[key] = short_error(e)
        v = checked[key]
        return (isinstance(v, float) and v < args.tol_bf16), (v if isinstance(v, float) else None), \
            (v if isinstance(v, str) else None)

    for si, (batch, dim, length, n) in enumerate(SHAPES):
        if r.over_budget():
            r.skipped.append(f"shape {(batch, dim, length, n)}")
            continue
        shape = (batch, dim, length, n)
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
        inp = make_inputs(batch, dim, length, n, torch.bfloat16, seed=si)
        for v in inp.values():
            v.requires_grad_(True)
        grad = torch.randn(batch, dim, length, device=DEVICE, dtype=torch.bfloat16)
        variants = ["old"] + (["cuda"] if have_cuda else [])
        for variant in variants:
            try:
                err = None
                if si == 0:
                    err = check(variant, (*CHECK_SHAPE, 1), torch.bfloat16, packed=False)
                f = bench_fwd(variant, inp, warmup, rep)
                fb = bench_fwdbwd(variant, inp, grad, warmup, rep)
                r.record(shape=shape, variant=variant, dir="both", cfg="default", fwd_ms=f, fwdbwd_ms=fb, err=err)
            except Exception as e:  # noqa: BLE001
                r.record(shape=shape, variant=variant, dir="both", cfg="default", error=short_error(e))
        best = {}
        for direction in ("fwd", "bwd"):
            if si == 0 or args.full:
                cfgs = list(grids[direction])
            else:  # the best few of the first shape, plus the default
                cfgs = [cfg for _, cfg in sorted(first_timed.get(direction, []))[:TOP_K]]
                dflt = tuple(nd.DEFAULT_CONFIG[direction][:3])
                cfgs += [dflt] if dflt not in cfgs else []
            timed = []
            for cfg in cfgs:
                if r.over_budget():
                    r.skipped.append(f"{shape} {direction} {cfg}")
                    continue
                ok, err, error = checked_ok(direction, cfg)
                if error or not ok:
                    r.record(shape=shape, variant="nd", dir=direction, cfg=list(cfg), err=err,
                             error=error or "wrong result", ok=False)
                    continue
                set_nd(**{direction: cfg})
                try:
                    if direction == "fwd":
                        ms = bench_fwd("nd", inp, warmup, rep)
                        r.record(shape=shape, variant="nd", dir="fwd", cfg=list(cfg), fwd_ms=ms, err=err, ok=True)
                    else:
                        ms = bench_fwdbwd("nd", inp, grad, warmup, rep)
                        r.record(shape=shape, variant="nd", dir="bwd", cfg=list(cfg), fwdbwd_ms=ms, err=err, ok=True)
                    timed.append((ms, cfg))
                except Exception as e:  # noqa: BLE001
                    r.record(shape=shape, variant="nd", dir=direction, cfg=list(cfg), error=short_error(e), ok=False)
            if timed:
                best[direction] = min(timed)[1]
            if si == 0:
                first_timed[direction] = timed
        if len(best) == 2 and not r.over_budget():
            set_nd(fwd=best["fwd"], bwd=best["bwd"])
            try:
                f = bench_fwd("nd", inp, warmup, rep)
                fb = bench_fwdbwd("nd", inp, grad, warmup, rep)
                r.record(shape=shape, variant="nd", dir="best", cfg=[list(best["fwd"]), list(best["bwd"])],
                         fwd_ms=f, fwdbwd_ms=fb, ok=True)
            except Exception as e:  # noqa: BLE001
                r.record(shape=shape, variant="nd", dir="best", error=short_error(e), ok=False)
        nd.clear_config()
        del inp, grad
    nd.clear_config()
    summary = summarize(r.rows)
    return dict(device=dev, torch=torch.__version__, triton=__import__("triton").__version__,
                mode="full" if args.full else "quick", wall_s=round(time.time() - r.t0, 1),
                skipped=r.skipped, rows=r.rows, summary=summary)


def summarize(rows: list[dict]) -> list[dict]:
    """Per shape: old default vs the nd best forward / best forward+backward."""
    out = []
    print("\nshape                   old fwd  nd fwd (cfg)              old f+b  nd f+b (bwd cfg)        "
          "nd best-pair f / f+b   cuda f / f+b")
    for shape in dict.fromkeys(x["shape"] for x in rows if x["dir"] in ("both", "fwd", "bwd", "best")):
        sel = [x for x in rows if x["shape"] == shape]
        old = next((x for x in sel if x["variant"] == "old" and "fwd_ms" in x), None)
        cuda = next((x for x in sel if x["variant"] == "cuda" and "fwd_ms" in x), None)
        fwd = min((x for x in sel if x["dir"] == "fwd" and "fwd_ms" in x), key=lambda x: x["fwd_ms"], default=None)
        bwd = min((x for x in sel if x["dir"] == "bwd" and "fwdbwd_ms" in x), key=lambda x: x["fwdbwd_ms"],
                  default=None)
        pair = next((x for x in sel if x["dir"] == "best" and "fwd_ms" in x), None)
        f = lambda x, k: f"{x[k]:8.3f}" if x and k in x else f"{'-':>8}"
        c = lambda x: str(tuple(x["cfg"])) if x else ""
        print(f"{str(shape):22s} {f(old, 'fwd_ms')} {f(fwd, 'fwd_ms')} {c(fwd):14s}  {f(old, 'fwdbwd_ms')} "
              f"{f(bwd, 'fwdbwd_ms')} {c(bwd):14s}  {f(pair, 'fwd_ms')} {f(pair, 'fwdbwd_ms')}"
              f"     {f(cuda, 'fwd_ms')} {f(cuda, 'fwdbwd_ms')}")
        out.append(dict(shape=shape, old=old and [old["fwd_ms"], old["fwdbwd_ms"]],
                        nd_best_fwd=fwd and [fwd["cfg"], fwd["fwd_ms"]],
                        nd_best_bwd=bwd and [bwd["cfg"], bwd["fwdbwd_ms"]],
                        nd_pair=pair and [pair["cfg"], pair["fwd_ms"], pair["fwdbwd_ms"]],
                        cuda=cuda and [cuda["fwd_ms"], cuda["fwdbwd_ms"]]))
    return out


# ---- legacy: sweep launch configurations of the existing kernel ---------------------------------
LEGACY_SHAPES = [(8, 1536, 2048, 16)]
LEGACY_BLOCK_L = (256, 128, 64)
# one warp per backward program was best on the H100; BLOCK_D > 1 on one warp sums that many channels
# in-thread before the dB/dC atomics, which were half the backward on an H200
# (results/raw/scan_bwd_ablation_h200.log)
LEGACY_BLOCK_D_WARPS = {"fwd": [(1, 1), (2, 1), (4, 1), (2, 2), (4, 4), (8, 8), (4, 2), (8, 4), (16, 8)],
                        "bwd": [(1, 1), (2, 1), (4, 1), (2, 2), (4, 2)]}
LEGACY_STAGES = (1, 2)


def legacy(args) -> None:
    import triton.testing
    from mambakit.ops.selective_scan import selective_scan

    def time_fwd(inp) -> float:
        with torch.no_grad():
            return triton.testing.do_bench(lambda: selective_scan(**inp, delta_softplus=True, impl="triton"),
                                           warmup=5, rep=25, return_mode="median")

    def time_bwd(inp, grad) -> float:
        out = selective_scan(**inp, delta_softplus=True, impl="triton")
        return triton.testing.do_bench(lambda: torch.autograd.backward(out, grad, retain_graph=True), warmup=3,
                                       rep=15, grad_to_none=list(inp.values()), return_mode="median")

    results = []
    started = time.time()
    for shape in LEGACY_SHAPES:
        inp = make_inputs(*shape, torch.bfloat16)
        for v in inp.values():
            v.requires_grad_(True)
        grad = torch.randn(shape[0], shape[1], shape[2], device="cuda", dtype=torch.bfloat16)
        for bl in LEGACY_BLOCK_L:
            for direction in args.directions.split(","):
                for (bd, w), st in [(c, st) for c in LEGACY_BLOCK_D_WARPS[direction] for st in LEGACY_STAGES]:
                    if bd * bl > 8192 or (direction == "bwd" and st > 1):
                        continue
                    if time.time() - started > args.budget_s:
                        print(f"  budget of {args.budget_s:.0f} s spent: sweep stopped", flush=True)
                        break
                    # the backward's chunk is the forward's checkpoint interval, independent of
                    # the forward's own chunk: each direction is swept with the other at its default
                    tss.clear_config()
                    tss.set_config(direction, bd, bl, w, st)
                    try:
                        ms = time_fwd(inp) if direction == "fwd" else time_bwd(inp, grad)
                    except Exception as err:  # a config that does not compile (resources) is skipped
                        print(f"  {shape} {direction} bd{bd} bl{bl} w{w}: {type(err).__name__}", flush=True)
                        continue
                    results.append({"shape": shape, "dir": direction, "cfg": [bd, bl, w, st], "ms": ms})
                    print(f"  {shape} {direction} bd{bd} bl{bl} w{w} s{st}: {ms:.3f} ms", flush=True)
        del inp
        torch.cuda.empty_cache()
    tss.clear_config()
    if args.out:
        out = Path(args.out)
        out = out if out.suffix == ".json" else out / "tune_selective_scan.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    for shape in LEGACY_SHAPES:
        for d in ("fwd", "bwd"):
            rows = sorted((r for r in results if r["shape"] == shape and r["dir"] == d), key=lambda r: r["ms"])[:3]
            print(shape, d, [(r["cfg"], round(r["ms"], 3)) for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="JSON file (or directory, for tune_selective_scan.json)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", default=True, help="small grid (default)")
    mode.add_argument("--full", action="store_true", help="full grid on every shape (slow)")
    parser.add_argument("--budget-s", type=float, default=210.0, help="stop sweeping after this many seconds")
    parser.add_argument("--tol-bf16", type=float, default=2e-2, help="bf16 check tolerance (relative, in norm)")
    parser.add_argument("--warmup-ms", type=int, default=25, help="do_bench warmup (ms)")
    parser.add_argument("--rep-ms", type=int, default=100, help="do_bench repetition time (ms)")
    parser.add_argument("--check-old-fp32", action="store_true",
                        help="also check the existing kernel in float32 with packing (compiles it twice more)")
    parser.add_argument("--mamba-ssm-sdist", default=None, help="mamba_ssm sdist for the CUDA baseline (optional)")
    parser.add_argument("--prebuilt", default=None, help="directory with a prebuilt selective_scan_cuda*.so")
    parser.add_argument("--legacy", action="store_true", help="the old config sweep of the existing kernel")
    parser.add_argument("--directions", default="fwd,bwd", help="--legacy: which directions to sweep (fwd,bwd)")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU tensors under TRITON_INTERPRET=1, tiny shapes: checks the script, times nothing")
    args = parser.parse_args()
    if args.dry_run:
        import os
        if os.environ.get("TRITON_INTERPRET") != "1":
            raise SystemExit("--dry-run needs TRITON_INTERPRET=1 in the environment")
        global DEVICE, SHAPES, CHECK_SHAPE, CHECK32_SHAPE, QUICK_FWD, QUICK_BWD
        DEVICE = "cpu"
        SHAPES = [(2, 8, 96, 16), (3, 4, 37, 16)]
        CHECK_SHAPE, CHECK32_SHAPE = (1, 8, 64, 16), (1, 8, 50, 16, 2)
        QUICK_FWD, QUICK_BWD = [(4, 32, 4), (2, 16, 4)], [(2, 32, 4), (1, 16, 4)]
        args.check_old_fp32 = True
    elif not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    if args.legacy:
        legacy(args)
        return
    result = compare(args)
    if args.out:
        out = Path(args.out)
        out = out if out.suffix == ".json" else out / "tune_selective_scan.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=str))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
