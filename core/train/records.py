"""Results on record: the JSON file a recipe run leaves in ``benchmarks/results/recipes/``.

Fields (ARCHITECTURE.md, "Results on record"): ``name``, ``dataset``, ``split``, ``metrics``,
``baseline``, ``machine``, ``date``, ``git``, ``command``; plus the recipe key, the full
config, model size and training throughput.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Optional

import torch


def git_commit(folder: Optional[str | os.PathLike] = None) -> dict[str, Any]:
    """``{"commit": sha or "unknown", "dirty": bool | None}`` of the checkout holding ``folder``."""
    folder = str(folder or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", folder, "status", "--porcelain"], capture_output=True, text=True,
                                timeout=10, check=True).stdout
        return {"commit": sha, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def machine_info(device: Optional[torch.device] = None, world_size: int = 1) -> dict[str, Any]:
    """Where a result was produced: CPU / GPU, counts, library versions."""
    info: dict[str, Any] = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "torch": torch.__version__, "world_size": world_size,
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_count"] = torch.cuda.device_count()
    else:
        info["gpu"] = None
    return info


def write_record(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` as indented JSON (temp file + rename). Checks the required fields."""
    required = ("name", "dataset", "split", "metrics", "baseline", "machine", "date", "git", "command")
    missing = [k for k in required if k not in record]
    if missing:
        raise ValueError(f"result record is missing {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
