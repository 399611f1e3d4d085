"""Time series: a 96-hour forecast of the 7 ETTh1 variables with S-Mamba (variate tokens).

The model reads the last 96 hourly values of 7 variables and forecasts the next 96. A series
is a CSV with exactly 7 numeric columns (an optional date/time column is used for the axis);
the slider holds out the last K rows as the truth to compare with (0: forecast beyond the end).

Scaling, as in training (``ForecastDataset``): the values are standardised per variable before
the model and mapped back after. When the columns are ETTh1's (HUFL ... OT) the ETTh1
training-split scaler is used (shipped in the checkpoint's ``card.json``), so errors are on
the scale of the recorded test metrics; for other columns the mean/std of the history rows
given are used. RevIN inside the model re-normalises each window anyway, so the forecast in
data units barely depends on this choice; it does set the scale of the shown MSE/MAE.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

import mambakit.timeseries
from mambakit.timeseries.models import VariateMamba

from ..cards import card_markdown, card_updater
from ..common import examples, figure
from ..limits import MAX_CSV_ROWS, InputError, check_upload, ui_errors
from ..models import ShippedModel

NAME = "timeseries"
TITLE = "Time series"
MODEL = ShippedModel(
    key="etth1-smamba-h96",
    directory=Path(mambakit.timeseries.__file__).resolve().parent / "checkpoints" / "etth1-smamba-h96",
    load=VariateMamba.from_pretrained,
    typical_input=lambda m: (torch.zeros(1, m.config.seq_len, m.config.n_vars),),
    latency_input="one window (96 steps x 7 variables)",
)
MODELS = [MODEL]
DEFAULT_HOLDOUT = 96
MAX_PLOTTED = 7


@dataclass
class Series:
    """A parsed CSV: ``values (N, C)`` float64, ``columns``, ``times`` (N,) labels or None."""

    name: str
    values: np.ndarray
    columns: list[str]
    times: Optional[list[str]]
    notes: list[str] = field(default_factory=list)


@dataclass
class Forecast:
    """History ``(L, C)``, forecast ``(H, C)`` and truth ``(K <= H, C)`` in data units."""

    series: Series
    history: np.ndarray
    forecast: np.ndarray
    truth: Optional[np.ndarray]
    origin: int
    scaling: str
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)


def read_series(path: Optional[str]) -> Series:
    """A CSV file -> ``Series``. Raises ``ValueError`` (readable) for a wrong type, empty file,
    text that is not CSV, no numeric columns, too many rows."""
    import pandas as pd

    p = check_upload(path, "csv", "CSV file")
    sep = "\t" if p.suffix.lower() == ".tsv" else ","
    try:
        df = pd.read_csv(p, sep=sep, nrows=MAX_CSV_ROWS + 1)
    except pd.errors.EmptyDataError:
        raise InputError(f"'{p.name}' has no data (empty or only blank lines)") from None
    except UnicodeDecodeError:
        raise InputError(f"'{p.name}' is not a text CSV file") from None
    except (pd.errors.ParserError, ValueError) as err:
        raise InputError(f"'{p.name}' could not be read as CSV: {str(err).splitlines()[0]}") from None
    if len(df) > MAX_CSV_ROWS:
        raise InputError(f"'{p.name}' has more than {MAX_CSV_ROWS:,} rows; the limit here is {MAX_CSV_ROWS:,}")
    if len(df) == 0:
        raise InputError(f"'{p.name}' has a header but no data rows")
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    if not numeric:
        raise InputError(f"'{p.name}' has no numeric columns (columns: {', '.join(map(str, df.columns[:8]))}); "
                         "expected one column per variable with numbers")
    notes = []
    other = [c for c in df.columns if c not in numeric]
    times = None
    if other:
        times = [str(v) for v in df[other[0]].tolist()]
        notes.append(f"time axis from column '{other[0]}'")
    values = df[numeric].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        counts = {str(numeric[j]): int(n) for j, n in enumerate(bad.sum(0)) if n}
        if bad.all(0).any():
            empty = [str(numeric[j]) for j in np.flatnonzero(bad.all(0))]
            raise InputError(f"'{p.name}': columns with no numbers at all: {', '.join(empty)}")
        values = pd.DataFrame(np.where(bad, np.nan, values)).ffill().bfill().to_numpy()
        notes.append(f"missing values filled forward: {counts}")
    return Series(p.name, values, [str(c) for c in numeric], times, notes)


def _scaler(series: Series, history: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    scaler = MODEL.card_facts().get("input_scaler")
    if scaler and list(scaler["columns"]) == series.columns:
        return np.asarray(scaler["mean"]), np.asarray(scaler["std"]), "ETTh1 training-split scaler (columns match)"
    mean, std = history.mean(0), history.std(0)
    std = np.where(std < 1e-12, 1.0, std)
    return mean, std, "mean/std of the history rows given (columns differ from ETTh1's)"


def forecast_series(path: Optional[str], holdout: int = DEFAULT_HOLDOUT) -> Forecast:
    """Forecast the 96 steps after the history that ends ``holdout`` rows before the end."""
    model = MODEL.model()
    L, H, C = model.config.seq_len, model.config.pred_len, model.config.n_vars
    if not isinstance(holdout, (int, float)) or holdout < 0 or int(holdout) != holdout:
        raise InputError(f"held-out rows: expected a whole number >= 0, got {holdout!r}")
    holdout = int(holdout)
    series = read_series(path)
    if len(series.columns) != C:
        raise InputError(f"'{series.name}' has {len(series.columns)} numeric column(s) "
                         f"({', '.join(series.columns[:8])}); this model forecasts {C} variables together "
                         "(the ETTh1 layout: HUFL, HULL, MUFL, MULL, LUFL, LULL, OT)")
    n = len(series.values)
    origin = n - holdout
    if origin < L:
        raise InputError(f"'{series.name}' has {n} rows: holding out {holdout} leaves {max(origin, 0)}, but the "
                         f"model needs {L} rows of history")
    history = series.values[origin - L:origin]                                 # (L, C)
    mean, std, scaling = _scaler(series, series.values[:origin])
    x = torch.from_numpy(((history - mean) / std).astype(np.float32)).unsqueeze(0)   # (1, L, C)
    with torch.inference_mode():
        y = model(x)[0].double().numpy()                                        # (H, C) standardised
    pred = y * std + mean
    truth, metrics = None, {}
    if holdout:
        truth = series.values[origin:origin + H]                                # (K, C)
        k = len(truth)
        err = (y[:k] - (truth - mean) / std)
        metrics = {"mse": float((err ** 2).mean()), "mae": float(np.abs(err).mean()),
                   "mae_original": float(np.abs(pred[:k] - truth).mean()), "steps": k}
    notes = list(series.notes)
    if 0 < holdout < H:
        notes.append(f"only {holdout} held-out rows: the truth covers the first {holdout} of {H} forecast steps")
    return Forecast(series, history, pred, truth, origin, scaling, metrics, notes)


def forecast_figure(fc: Forecast):
    """One panel per variable: history (grey), forecast (orange), truth (black) where known."""
    C = min(len(fc.series.columns), MAX_PLOTTED)
    L, H = len(fc.history), len(fc.forecast)
    fig = figure(10.0, 1.3 * C + 0.9, left=0.75, hspace=0.12)
    axes = fig.subplots(C, 1, sharex=True, squeeze=False)[:, 0]
    t_hist, t_pred = np.arange(-L, 0), np.arange(H)
    for j, ax in enumerate(axes):
        ax.plot(t_hist, fc.history[:, j], color="0.55", lw=1.0, label="history")
        if fc.truth is not None:
            ax.plot(t_pred[:len(fc.truth)], fc.truth[:, j], color="k", lw=1.2, label="truth")
        ax.plot(t_pred, fc.forecast[:, j], color="tab:orange", lw=1.5, label="forecast")
        ax.axvline(-0.5, color="0.8", lw=0.8)
        ax.set_ylabel(fc.series.columns[j], fontsize=8, rotation=0, ha="right", va="center")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
    axes[0].legend(fontsize=7, ncol=3, loc="upper left")
    start = fc.series.times[fc.origin] if fc.series.times and fc.origin < len(fc.series.times) else None
    where = f"forecast from {start}" if start else f"forecast from row {fc.origin}"
    axes[0].set_title(f"{fc.series.name}: {where} ({L} steps of history -> {H} steps ahead)", fontsize=9)
    axes[-1].set_xlabel("steps (hours) from the forecast start")
    return fig


def summary(fc: Forecast) -> str:
    lines = [f"Forecast of {len(fc.forecast)} steps from {len(fc.history)} steps of history "
             f"(rows {fc.origin - len(fc.history)}-{fc.origin - 1} of {len(fc.series.values)})."]
    if fc.metrics:
        m = fc.metrics
        lines.append(f"**Against the {m['steps']} held-out rows:** MSE {m['mse']:.3f}, MAE {m['mae']:.3f} "
                     f"(standardised), MAE {m['mae_original']:.3f} in data units.")
    else:
        lines.append("Nothing held out: the forecast goes beyond the end of the series (no truth to compare).")
    lines.append(f"- scaling: {fc.scaling}")
    lines += [f"- {n}" for n in fc.notes]
    return "\n\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:])


# ---- Gradio handlers -----------------------------------------------------------------------------
@ui_errors
def ui_forecast(csv: Optional[str], holdout: float = DEFAULT_HOLDOUT) -> tuple[Any, str]:
    fc = forecast_series(csv, int(holdout) if holdout is not None else DEFAULT_HOLDOUT)
    return forecast_figure(fc), summary(fc)


def build() -> None:
    """The tab's components (inside an open ``gr.Tab``)."""
    import gradio as gr

    gr.Markdown("Upload a CSV with 7 numeric columns (hourly, ETTh1 layout: HUFL, HULL, MUFL, MULL, LUFL, LULL, "
                "OT; a date column is optional) or pick a slice of the ETTh1 test period. The last 96 rows "
                "before the held-out part are the history. As in training, values are standardised per column "
                "before the model: with ETTh1's training-split statistics when the columns are ETTh1's, else "
                "with the mean and std of your rows before the held-out part.")
    with gr.Row():
        with gr.Column(scale=1):
            file = gr.File(label="Series (CSV)", file_types=[".csv", ".tsv", ".txt"], type="filepath",
                           elem_id="ts-input")
            holdout = gr.Slider(0, 288, value=DEFAULT_HOLDOUT, step=24, label="Hold out the last K rows as truth "
                                "(0: forecast beyond the end)", elem_id="ts-holdout")
            button = gr.Button("Forecast", variant="primary", elem_id="ts-run")
            gr.Examples([[str(p)] for p in examples("timeseries", (".csv",))], inputs=[file],
                        label="Examples (ETTh1 test period, CC BY-ND 4.0)")
        with gr.Column(scale=2):
            info = gr.Markdown(label="Details", elem_id="ts-info")
    plot = gr.Plot(label="Forecast", elem_id="ts-plot", format="png")
    button.click(ui_forecast, inputs=[file, holdout], outputs=[plot, info], api_name="forecast")
    card = gr.Markdown(card_markdown(MODELS, measure=False), elem_id="ts-card", elem_classes=["model-card"])
    gr.on(None, card_updater(MODELS), outputs=[card], api_name="card_timeseries", show_progress="hidden")
