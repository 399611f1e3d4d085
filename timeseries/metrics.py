"""Forecasting metrics for the engine: MSE / MAE on the standardised scale (as the published
tables report them) and on the original scale of the data (the scaler's inverse)."""
from __future__ import annotations

import numpy as np
import torch

from mambakit.train import Metric

from .data import StandardScaler


def forecast_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over ``(B, H, C)``; shapes must match."""
    if pred.shape != target.shape:
        raise ValueError(f"forecast {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    return torch.mean((pred.float() - target.float()) ** 2)


class _OriginalScale:
    """``fn(y_true (N, H, C), y_pred (N, H, C))`` after mapping both back to the data's units."""

    def __init__(self, scaler: StandardScaler, index: slice, kind: str) -> None:
        self.mean, self.std, self.kind = scaler.mean[index], scaler.std[index], kind

    def __call__(self, y_true, y_pred) -> float:
        t = np.asarray(y_true, dtype=np.float64) * self.std + self.mean
        p = np.asarray(y_pred, dtype=np.float64) * self.std + self.mean
        err = t - p
        return float(np.mean(err ** 2) if self.kind == "mse" else np.mean(np.abs(err)))


def forecast_metrics(scaler: StandardScaler, index: slice = slice(None)) -> list:
    """``["mse", "mae", mse_original, mae_original]`` for ``fit`` / ``evaluate``; ``index``
    selects the forecast variables among the scaler's (``slice(t, t+1)`` for features "MS")."""
    return ["mse", "mae",
            Metric("mse_original", _OriginalScale(scaler, index, "mse"), greater_is_better=False),
            Metric("mae_original", _OriginalScale(scaler, index, "mae"), greater_is_better=False)]
