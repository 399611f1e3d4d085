"""Small helpers shared by the tabs: top-k tables, figures, the examples folder, threads."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

EXAMPLES = Path(__file__).resolve().parent / "examples"


def top_k(probs: torch.Tensor | np.ndarray | Sequence[float], labels: Sequence[str], k: int = 5) -> dict[str, float]:
    """Probabilities ``(C,)`` -> the ``k`` largest as ``{label: p}``, largest first."""
    p = np.asarray(probs.detach().cpu() if isinstance(probs, torch.Tensor) else probs, dtype=np.float64)
    if p.ndim != 1 or len(p) != len(labels):
        raise ValueError(f"expected {len(labels)} probabilities, got shape {p.shape}")
    order = np.argsort(-p, kind="stable")[:k]
    return {labels[i]: float(p[i]) for i in order}


def figure(width: float, height: float, left: float = 0.8, right: float = 0.2, top: float = 0.4,
           bottom: float = 0.55, hspace: float = 0.2):
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches with fixed margins (inches).

    Not registered with pyplot, so it is freed with its last reference (no global figure list
    growing with every request). Fixed margins instead of a layout engine: drawing is 2x faster.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                        bottom=bottom / height, hspace=hspace)
    return fig


def examples(kind: str, suffixes: Sequence[str]) -> list[Path]:
    """The bundled example files of ``kind`` (``apps/examples/<kind>/``), sorted by name."""
    folder = EXAMPLES / kind
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes) if folder.is_dir() else []
