"""One timing rule for every benchmark script: the median in milliseconds.

On CUDA it is ``triton.testing.do_bench`` (device events, warm-up, many repeats); on CPU a
warm-up call and then ``reps`` timed calls with ``time.perf_counter``.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable


def median_ms(fn: Callable[[], object], device: str, reps: int = 5, warmup_ms: int = 25,
              rep_ms: int = 100) -> float:
    """Median milliseconds of ``fn()`` on ``device`` ("cuda" or "cpu")."""
    if str(device).startswith("cuda"):
        from triton.testing import do_bench
        return float(do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))
    fn()
    times = []
    for _ in range(max(1, reps)):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def device_tag(device) -> str:
    """``cpu``, or the GPU's model in lower case (``h100`` for "NVIDIA H100 80GB HBM3", ``h200``)."""
    import torch

    device = torch.device(device)
    return "cpu" if device.type == "cpu" else gpu_tag(torch.cuda.get_device_name(device))


def gpu_tag(name: str) -> str:
    """The model word of a GPU name (a letter then digits: H100, A100, L40S), else its last word."""
    import re

    words = re.split(r"[\s-]+", name.strip())
    model = next((w for w in words if re.fullmatch(r"[A-Za-z]{1,2}\d{2,4}[A-Za-z]?", w)), words[-1])
    return model.lower()


def write_rows_record(out_dir: str, stem: str, name: str, rows: list, baseline: str, device, script: str,
                      argv) -> "Path":
    """Write ``<out_dir>/<stem>_<device tag>.json`` atomically: the rows, what they compare
    against, machine, date, commit and the command line; returns the path."""
    import json
    import os
    import sys
    import tempfile
    from pathlib import Path

    from mambakit.train.records import git_commit, machine_info, now_iso

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "metrics": {"rows": rows}, "baseline": baseline, "machine": machine_info(device),
              "date": now_iso(), "git": git_commit(),
              "command": f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])}
    path = out / f"{stem}_{device_tag(device)}.json"
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{stem}-", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"written {path}")
    return path
