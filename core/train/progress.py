"""Progress display: a tqdm bar (loss, lr, throughput, ETA) or plain log lines (quiet mode).

Only the main process shows anything. Quiet mode prints one line per ``log_every`` steps to
stderr, e.g. ``step 120/1000 (ep 0) loss 1.3813 lr 9.8e-04 | 4.1k tok/s | eta 3m35s``.
"""
from __future__ import annotations

import sys
import time
from typing import Optional

from tqdm.auto import tqdm


def format_duration(seconds: float) -> str:
    """``3725 -> '1h02m05s'``; ``'?'`` for unknown."""
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def format_rate(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.1f}"


class Progress:
    """Tracks optimizer steps from ``initial`` to ``total`` and reports them.

    ``update(step, loss=..., lr=..., samples=..., tokens=...)`` is called after every optimizer
    step with the samples / tokens processed (all processes) since the previous call.
    """

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, quiet: bool = False,
                 log_every: int = 10, stream=None) -> None:
        self.total, self.step = total, initial
        self.enabled, self.quiet, self.log_every = enabled, quiet, max(1, log_every)
        self.stream = stream or sys.stderr
        self.start_time = time.perf_counter()
        self.start_step = initial
        self._window_time = self.start_time
        self._window_samples = 0
        self._window_tokens = 0
        self.samples_per_s = 0.0
        self.tokens_per_s = 0.0
        self.bar: Optional[tqdm] = None
        if enabled and not quiet:
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=self.stream,
                            smoothing=0.1)

    def update(self, step: int, loss: float, lr: float, samples: int = 0, tokens: int = 0) -> None:
        self._window_samples += samples
        self._window_tokens += tokens
        delta = step - self.step
        self.step = step
        now = time.perf_counter()
        elapsed = now - self._window_time
        if elapsed > 0.5 or step == self.total or not self.samples_per_s:
            self.samples_per_s = self._window_samples / max(elapsed, 1e-9)
            self.tokens_per_s = self._window_tokens / max(elapsed, 1e-9)
            self._window_time, self._window_samples, self._window_tokens = now, 0, 0
        if not self.enabled:
            return
        rate = (f"{format_rate(self.tokens_per_s)} tok/s" if self.tokens_per_s
                else f"{format_rate(self.samples_per_s)} samples/s")
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss:.4f} lr {lr:.2e} {rate}", refresh=False)
            self.bar.update(delta)
        elif step % self.log_every == 0 or step == self.total:
            self.write(f"step {step}/{self.total} loss {loss:.4f} lr {lr:.2e} | {rate} | "
                       f"eta {format_duration(self.eta())}")

    def set_total(self, total: int) -> None:
        """A new end (a time budget cut the run short)."""
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def eta(self) -> float:
        done = self.step - self.start_step
        if done <= 0:
            return float("nan")
        per_step = (time.perf_counter() - self.start_time) / done
        return per_step * (self.total - self.step)

    def write(self, message: str) -> None:
        """Print a line without breaking the bar (main process only)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
