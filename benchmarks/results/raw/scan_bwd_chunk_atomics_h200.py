"""Mamba-1 Triton backward on the H200: launch config, atomic slices and PTX red vs atom (timing).

Produced scan_bwd_chunk_atomics_h200.log (git 3fdde45). "red" is the kernel with its two
tl.atomic_add calls replaced by inline-asm `red.global.gpu.relaxed.add.f32` (no return value);
it was 1.5-2.8x slower and was dropped. Run from the repository root on a GPU."""
import importlib.util, json, os, sys
from pathlib import Path
import torch, triton
sys.path.insert(0, "benchmarks")
from kernels import make_inputs

def load(name, path):
    s = Path(path).read_text().replace("mambakit::selective_scan_triton_", f"diag_{name}::selective_scan_triton_")
    d = Path("/tmp/diag_mods"); d.mkdir(exist_ok=True)
    f = d / f"diag_{name}.py"; f.write_text(s)
    spec = importlib.util.spec_from_file_location(f"diag_{name}", f)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

RED = '''
@triton.jit
def _red_add(ptr, val, mask):
    tl.inline_asm_elementwise(
        asm="{ .reg .pred p; setp.ne.b32 p, $3, 0; @p red.global.gpu.relaxed.add.f32 [$1], $2; mov.u32 $0, 0; }",
        constraints="=r,l,r,r", args=[ptr.to(tl.int64), val, mask.to(tl.int32)], dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def _bwd_kernel('''
src = Path("core/ops/triton_selective_scan.py").read_text()
red = src.replace("\n@triton.jit\ndef _bwd_kernel(", RED, 1)
for x in ("dB", "dC"):
    red = red.replace(f"tl.atomic_add({x}_ptr + gn_off, ", f"_red_add({x}_ptr + gn_off, ").replace(', mask=mask_ld, sem="relaxed")', ", mask_ld)")
Path("/tmp/tss_red.py").write_text(red)
MODS = {"atom": load("atom", "core/ops/triton_selective_scan.py"), "red": load("red", "/tmp/tss_red.py")}
SHAPES = [(8, 1536, 2048, 16), (4, 2048, 8192, 16), (1, 2048, 65536, 16), (16, 768, 6085, 16)]
CASES = [("atom", (1, 256, 1, 1), 0), ("atom", (1, 128, 1, 1), 0), ("red", (1, 128, 1, 1), 0),
         ("red", (1, 256, 1, 1), 0), ("atom", (1, 128, 1, 1), 1), ("red", (1, 128, 1, 1), 1),
         ("red", (1, 128, 1, 1), 4), ("red", (1, 128, 1, 1), 64), ("red", (2, 128, 1, 1), 0), ("red", (1, 64, 1, 1), 0)]
rows = []
for shape in SHAPES:
    b, d, l, n = shape
    inp = make_inputs(b, d, l, n, torch.bfloat16)
    u, delta, A, B, C, D, z, bias = (inp[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"))
    ref = None
    for name, cfg, slices in CASES:
        mod = MODS[name]
        mod.clear_config(); mod.set_config("bwd", *cfg); mod.set_atomic_slices(slices)
        out, last, ckpt = mod._fwd_op(u, delta, A, B, C, D, z, bias, None, None, True)
        dout = mod.time_aligned_empty(out, *out.shape).copy_(torch.randn(out.shape, device="cuda", generator=torch.Generator("cuda").manual_seed(0)).to(out.dtype))
        ck = mod.checkpoint_interval(d, B.shape[1], n, l)
        f = lambda: mod._bwd_op(dout, None, u, delta, A, B, C, D, z, bias, None, ckpt, True, ck)
        grads = f()
        g = [x.float() for x in grads[:6]]
        if ref is None:
            ref = g; err = 0.0
        else:
            err = max(((a - r).norm() / r.norm().clamp_min(1e-30)).item() for a, r in zip(g, ref))
        ms = triton.testing.do_bench(f, warmup=10, rep=60, return_mode="median")
        rows.append({"shape": shape, "atomic": name, "cfg": cfg, "slices": slices or "default", "bwd_ms": round(ms, 4), "rel_err_vs_first": err})
        print(f"{str(shape):24} {name:5} {str(cfg):16} S={slices or 'def':4} bwd {ms:7.3f} ms  err {err:.1e}", flush=True)
        mod.set_atomic_slices(0); mod.clear_config()
    del inp; torch.cuda.empty_cache()
Path(os.environ.get("OUT", "/tmp"), "diag_bwd3_h200.json").write_text(json.dumps(rows, indent=1))
