"""Time-series models on the mambakit core (patching, RevIN, variate tokens).

- ``RevIN``: reversible instance normalisation around any forecaster.
- Tokenizers: ``PatchTokenizer`` (channel-independent patches), ``VariateTokenizer`` (one token
  per variable), ``TimeStepTokenizer`` (one token per step, causal).
- Forecasters ``(B, seq_len, n_vars) -> (B, pred_len, n_vars)``: ``PatchMamba``,
  ``VariateMamba`` (S-Mamba style), ``TimeStepMamba`` (streaming ``step``), and the baselines
  ``DLinear`` and ``PatchTST``; ``SeriesClassifier`` for classification.
- Data: ``ForecastDataset`` (Time-Series-Library CSVs, standard splits, scaler on train),
  ``read_tsl_csv``; metrics ``forecast_metrics`` (normalised and original scale); plots
  ``plot_forecasts``.
- Recipes ``etth{1,2}-{smamba,patchmamba,dlinear,patchtst}-h{96,192,336,720}`` (in ``recipes``,
  loaded by ``mambakit train timeseries ...``).
"""
from .data import ForecastDataset, SeriesTable, StandardScaler, read_tsl_csv, split_borders, split_kind
from .metrics import forecast_loss, forecast_metrics
from .models import (MODELS, DLinear, FlattenHead, Forecaster, MovingAverage, PatchMamba, PatchTST,
                     SeriesClassifier, TimeStepMamba, TSConfig, VariateMamba, create_model)
from .revin import RevIN
from .tokenizers import PatchTokenizer, TimeStepTokenizer, VariateTokenizer, num_patches

__all__ = [
    "RevIN", "PatchTokenizer", "VariateTokenizer", "TimeStepTokenizer", "num_patches",
    "TSConfig", "Forecaster", "PatchMamba", "VariateMamba", "TimeStepMamba", "DLinear", "PatchTST",
    "SeriesClassifier", "FlattenHead", "MovingAverage", "MODELS", "create_model",
    "ForecastDataset", "SeriesTable", "StandardScaler", "read_tsl_csv", "split_borders", "split_kind",
    "forecast_loss", "forecast_metrics",
]
