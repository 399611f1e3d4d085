"""Training to a wall-clock budget: cut the step count to what the measured speed allows.

The learning-rate schedule is a function of ``step / total_steps``; stopping a run early at a
deadline would leave it mid-schedule (a high learning rate, an un-annealed model). Instead the
total is re-estimated as the run goes, from the speed measured so far (evaluations and
checkpoints included), and the schedule is told the new end, so a run that fits its budget
finishes annealed. The total only ever shrinks, so a run never takes more steps than its config.
"""
from __future__ import annotations

import math
import time
from typing import Optional

import torch

from .distributed import DistInfo

#: Steps left out of the speed measurement: start-up (kernel compilation, autotuning, the first
#: DataLoader workers) can take minutes on a GPU and would make the run look far slower than it is.
WARMUP_STEPS = 10
#: Steps measured (after the warm-up steps) before the first estimate.
MIN_MEASURED_STEPS = 20
#: Fraction of the remaining time planned for steps; the rest covers the final evaluation,
#: the test pass and speed changes later in the run.
SAFETY = 0.92


class TimeBudget:
    """Re-estimates the total step count of a run limited to ``minutes`` of wall-clock time."""

    def __init__(self, minutes: float, first_step: int, info: DistInfo) -> None:
        self.seconds = float(minutes) * 60.0
        self.first_step = first_step
        self.start = time.perf_counter()
        self.info = info
        self.rate_start: Optional[tuple[int, float]] = None  # (step, time) where speed is measured from

    def observe(self, step: int) -> None:
        """Call after every optimizer step: starts the speed measurement once start-up is over."""
        if self.rate_start is None and step - self.first_step >= WARMUP_STEPS:
            self.rate_start = (step, time.perf_counter())

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def estimate_total(self, step: int, total_steps: int) -> int:
        """The total step count the run should now have, in ``[step, total_steps]``.

        ``step`` once the budget is spent (stop now), ``total_steps`` while too few steps are
        measured, else what the measured speed fits into the time left. In a distributed run every
        process computes its own and the smallest wins, so all processes stop at the same step.
        """
        if self.over():
            estimate = step
        elif self.rate_start is None or step - self.rate_start[0] < MIN_MEASURED_STEPS:
            estimate = total_steps
        else:
            elapsed = self.elapsed()
            seconds_per_step = (time.perf_counter() - self.rate_start[1]) / (step - self.rate_start[0])
            remaining = max(self.seconds - elapsed, 0.0) * SAFETY
            estimate = min(total_steps, max(step + 1, step + int(remaining / seconds_per_step)))
        if self.info.distributed:
            value = torch.tensor(float(estimate), dtype=torch.float64, device=self.info.device)
            torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
            estimate = int(value.item())
        return estimate

    def over(self) -> bool:
        """True once the whole budget is spent (a hard stop after a sudden slowdown)."""
        return self.elapsed() >= self.seconds


def shrink_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR, total_steps: int) -> None:
    """Point every ``WarmupSchedule`` of ``scheduler`` at a new (smaller) ``total_steps``."""
    for schedule in scheduler.lr_lambdas:
        if hasattr(schedule, "total_steps"):
            schedule.total_steps = int(total_steps)
            schedule.warmup_steps = min(schedule.warmup_steps, max(int(total_steps) - 1, 0))
    # The rate of the next step was computed with the old end: recompute it.
    step = scheduler.last_epoch
    for group, base_lr, schedule in zip(scheduler.optimizer.param_groups, scheduler.base_lrs,
                                        scheduler.lr_lambdas):
        group["lr"] = base_lr * schedule(step)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def budget_or_none(minutes: float, first_step: int, info: DistInfo) -> Optional[TimeBudget]:
    return TimeBudget(minutes, first_step, info) if minutes and math.isfinite(minutes) and minutes > 0 else None
