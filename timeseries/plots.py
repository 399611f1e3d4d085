"""Forecast-vs-truth plots (matplotlib, imported on use)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from .data import ForecastDataset


@torch.no_grad()
def plot_forecasts(models: dict[str, nn.Module], dataset: ForecastDataset, path: str | Path,
                   indices: Optional[Sequence[int]] = None, variable: str = "OT", title: str = "") -> Path:
    """Plot the look-back, the truth and each model's forecast of ``variable`` for a few test
    windows (rows of the figure), in the data's original units. Writes a PNG to ``path``.

    ``models``: ``{label: forecaster}`` taking ``(B, seq_len, n_vars)``; ``indices``: window
    indices (default: four spread over the split).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not models:
        raise ValueError("models: expected at least one {label: model}")
    if variable not in dataset.columns:
        raise ValueError(f"variable {variable!r} not among {dataset.columns}")
    j = dataset.columns.index(variable)
    if indices is None:
        indices = np.linspace(0, len(dataset) - 1, 4).astype(int).tolist()
    mean, std = dataset.scaler.mean[j], dataset.scaler.std[j]
    fig, axes = plt.subplots(len(indices), 1, figsize=(10, 2.6 * len(indices)), squeeze=False)
    L, H = dataset.seq_len, dataset.pred_len
    for ax, idx in zip(axes[:, 0], indices):
        x, y = dataset[idx]
        t_in, t_out = np.arange(-L, 0), np.arange(H)
        ax.plot(t_in, x[:, j].numpy() * std + mean, color="0.5", lw=1, label="look-back")
        y_j = y[:, j if y.shape[-1] > 1 else 0]
        ax.plot(t_out, y_j.numpy() * std + mean, color="k", lw=1.5, label="truth")
        for label, model in models.items():
            model.eval()
            pred = model(x.unsqueeze(0))[0]
            p = pred[:, j if pred.shape[-1] > 1 else 0]
            ax.plot(t_out, p.numpy() * std + mean, lw=1.2, label=label)
        ax.axvline(0, color="0.8", lw=0.8)
        ax.set_ylabel(f"{variable}")
        ax.set_title(f"{dataset.name} {dataset.split} window {idx} ({dataset.dates[idx + L] if idx + L < len(dataset.dates) else ''})",
                     fontsize=9)
    axes[0, 0].legend(fontsize=8, ncol=len(models) + 2, loc="upper left")
    axes[-1, 0].set_xlabel("hours from forecast start")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
