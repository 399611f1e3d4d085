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
