"""The metrics history of a run: a list of records, mirrored to ``metrics.jsonl``.

One JSON object per line, e.g. ``{"split": "train", "step": 100, "epoch": 0, "loss": 1.38,
"lr": 0.001, ...}`` or ``{"split": "eval", "step": 100, "loss": 1.37, "bits_per_base": 1.98}``.
Only the main process writes; every line is flushed as it is written, so a crashed run keeps
its history up to the crash.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN / Infinity
    return value


class History:
    """Records of a run. ``path=None`` keeps them in memory only (non-main processes)."""

    def __init__(self, path: Optional[str | os.PathLike] = None, resume_step: Optional[int] = None) -> None:
        self.path = Path(path) if path is not None else None
        self.records: list[dict[str, Any]] = []
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            # keep what happened up to the checkpoint; drop records of the lost steps after it
            for line in self.path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    if record.get("step", 0) <= resume_step:
                        self.records.append(record)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        os.replace(tmp, self.path)

    def append(self, record: dict[str, Any]) -> None:
        record = {k: _clean(v) for k, v in record.items()}
        self.records.append(record)
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def last(self, split: str) -> Optional[dict[str, Any]]:
        for record in reversed(self.records):
            if record.get("split") == split:
                return record
        return None
