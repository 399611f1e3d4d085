"""Optional third-party baselines for the GPU benchmarks, loaded only when present.

* ``mamba_ssm`` (the official package): its Python code from the PyPI sdist, and its Mamba-1
  CUDA scan built from the sdist's ``csrc/selective_scan`` for the local GPU's architecture
  only, with ``torch.utils.cpp_extension.load``. The built module can be saved and reloaded
  so that later runs skip the build.
* ``fla`` (``fla-core``): pure Triton, installed from a wheel.

Nothing here downloads anything: the sdist and wheels are files the caller provides.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import re
import tarfile
import time
import types
from pathlib import Path
from typing import Optional

SELECTIVE_SCAN_FLAGS = [
    "-O3", "-std=c++17", "--use_fast_math", "--expt-relaxed-constexpr", "--expt-extended-lambda",
    "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
]


def install_mamba_ssm_python(sdist: str, workdir: str = "/tmp/mamba_ssm_src") -> Path:
    """Unpack the sdist and put its Python package on ``sys.path`` (its setup.py would try to
    download a prebuilt wheel). Returns the source dir."""
    work = Path(workdir)
    if not work.exists():
        with tarfile.open(sdist) as tar:
            tar.extractall(work)
    src = next(work.iterdir())
    sys.path.insert(0, str(src))
    return src


def load_selective_scan_cuda(src: Path, prebuilt_dir: Optional[str], save_dir: Optional[str]):
    """The ``selective_scan_cuda`` extension: reloaded from ``prebuilt_dir`` if a .so is there,
    otherwise built (sm of the current GPU only) and, if ``save_dir`` is given, copied there."""
    import torch
    if prebuilt_dir:
        found = glob.glob(os.path.join(prebuilt_dir, "selective_scan_cuda*.so"))
        if found:
            spec = importlib.util.spec_from_file_location("selective_scan_cuda", found[0])
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules["selective_scan_cuda"] = module
            return module, 0.0
    from torch.utils.cpp_extension import load
    major, minor = torch.cuda.get_device_capability()
    os.environ["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}"
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 8))
    csrc = src / "csrc" / "selective_scan"
    sources = [str(csrc / "selective_scan.cpp")] + sorted(str(p) for p in csrc.glob("*.cu"))
    build_dir = "/tmp/selective_scan_build"
    os.makedirs(build_dir, exist_ok=True)
    start = time.perf_counter()
    module = load(name="selective_scan_cuda", sources=sources, extra_cflags=["-O3", "-std=c++17"],
                  extra_cuda_cflags=SELECTIVE_SCAN_FLAGS, extra_include_paths=[str(csrc)],
                  build_directory=build_dir, verbose=False)
    seconds = time.perf_counter() - start
    sys.modules["selective_scan_cuda"] = module
    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
        for so in glob.glob(os.path.join(build_dir, "selective_scan_cuda*.so")):
            shutil.copy(so, save_dir)
    return module, seconds


def try_mamba_ssm(sdist: Optional[str], prebuilt_dir: Optional[str] = None, save_dir: Optional[str] = None):
    """Return ``(mamba_ssm module or None, note)``."""
    if not sdist or not os.path.exists(sdist):
        return None, "mamba_ssm sdist not given"
    try:
        src = install_mamba_ssm_python(sdist)
        _, build_s = load_selective_scan_cuda(src, prebuilt_dir, save_dir)
        import mamba_ssm  # noqa: F401
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
        return mamba_ssm, f"mamba_ssm {mamba_ssm.__version__}, CUDA scan build {build_s:.0f} s"
    except Exception as err:  # a baseline that fails to build must not stop our own measurements
        return None, f"mamba_ssm unavailable: {type(err).__name__}: {err}"[:400]


def import_mamba_ssm_python_only(sdist: Optional[str], workdir: str = "/tmp/mamba_ssm_src"):
    """mamba_ssm's pure-Python/Triton code (its Mamba-2, RMSNorm and LM classes) without its CUDA
    scan: the package's ``__init__`` (which imports the CUDA extension and every model) is replaced
    by a bare package object, and ``selective_scan_cuda`` by a module that refuses every use, so a
    Mamba-1 layer of theirs fails loudly instead of running something else. Returns
    ``(package or None, note)``; a package already imported is returned as it is."""
    if "mamba_ssm" in sys.modules:
        return sys.modules["mamba_ssm"], "mamba_ssm already imported"
    if not sdist or not os.path.exists(sdist):
        return None, "mamba_ssm sdist not given"
    try:
        src = install_mamba_ssm_python(sdist, workdir)
        pkg = types.ModuleType("mamba_ssm")
        pkg.__path__ = [str(src / "mamba_ssm")]
        found = re.search(r'__version__\s*=\s*"([^"]+)"', (src / "mamba_ssm" / "__init__.py").read_text())
        pkg.__version__ = found.group(1) if found else "?"
        sys.modules["mamba_ssm"] = pkg
        if "selective_scan_cuda" not in sys.modules:
            sys.modules["selective_scan_cuda"] = _UnbuiltExtension("selective_scan_cuda")
        return pkg, f"mamba_ssm {pkg.__version__} (Python/Triton code only, CUDA scan not built)"
    except Exception as err:  # a baseline that fails to import must not stop our measurements
        return None, f"mamba_ssm unavailable: {type(err).__name__}: {err}"[:400]


class _UnbuiltExtension(types.ModuleType):
    """Stands in for a CUDA extension that was not built; any attribute use raises."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(f"{self.__name__} was not built (run without --no-cuda-build)")


def try_fla(wheel_dir: Optional[str]):
    if wheel_dir:
        wheels = glob.glob(os.path.join(wheel_dir, "fla_core-*.whl"))
        if wheels:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", wheels[0]], check=False)
    try:
        import fla  # noqa: F401
        return fla, f"fla {getattr(fla, '__version__', '?')}"
    except Exception as err:
        return None, f"fla unavailable: {type(err).__name__}: {err}"[:300]
