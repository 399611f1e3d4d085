"""The Time-Series-Library CSV loader, splits, scaler, windows, metrics and bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mambakit.timeseries import ForecastDataset, forecast_loss, forecast_metrics, read_tsl_csv, split_borders
from mambakit.train import compute_metrics
from mambakit.train.metrics import resolve_metrics


def _write_csv(path: Path, values: np.ndarray, columns=("a", "b", "OT"), header_first="date") -> Path:
    lines = [",".join([header_first, *columns])]
    for i, row in enumerate(values):
        lines.append(",".join([f"2020-01-01 {i:05d}", *["" if np.isnan(v) else repr(float(v)) for v in row]]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def custom_csv(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(400, 3)) * np.array([1.0, 5.0, 0.2]) + np.array([0.0, 10.0, -3.0])
    return _write_csv(tmp_path / "toy.csv", values), values


def test_custom_split_scaler_and_windows(custom_csv):
    path, values = custom_csv
    train = ForecastDataset(path, split="train", seq_len=24, pred_len=12)
    test = ForecastDataset(path, split="test", seq_len=24, pred_len=12)
    val = ForecastDataset(path, split="val", seq_len=24, pred_len=12)
    assert split_borders("custom", 400, 24) == {"train": (0, 280), "val": (256, 320), "test": (296, 400)}
    assert len(train) == 280 - 36 + 1 and len(val) == 64 - 36 + 1 and len(test) == 104 - 36 + 1
    np.testing.assert_allclose(train.scaler.mean, values[:280].mean(0))       # fitted on train rows only
    np.testing.assert_allclose(train.scaler.std, values[:280].std(0))
    np.testing.assert_allclose(test.scaler.mean, train.scaler.mean)
    x, y = test[3]
    assert x.shape == (24, 3) and y.shape == (12, 3)
    expected = (values[296 + 3:296 + 3 + 36] - train.scaler.mean) / train.scaler.std
    np.testing.assert_allclose(torch.cat([x, y]).numpy(), expected, rtol=1e-5, atol=1e-5)
    back = train.scaler.inverse_transform(torch.cat([x, y]).double()).numpy()
    np.testing.assert_allclose(back, values[299:335], rtol=1e-5, atol=1e-5)


def test_features_s_and_ms(custom_csv):
    path, _ = custom_csv
    s = ForecastDataset(path, split="train", seq_len=24, pred_len=12, features="S")
    assert s[0][0].shape == (24, 1) and s.columns == ("OT",)
    ms = ForecastDataset(path, split="train", seq_len=24, pred_len=12, features="MS")
    x, y = ms[0]
    assert x.shape == (24, 3) and y.shape == (12, 1)
    torch.testing.assert_close(y[:, 0], ms[24][0][:12, 2])


def test_bad_input_messages(tmp_path, custom_csv):
    path, values = custom_csv
    with pytest.raises(ValueError, match="'date' column"):
        ForecastDataset(_write_csv(tmp_path / "nodate.csv", values, header_first="time"), split="train")
    bad = tmp_path / "text.csv"
    bad.write_text("date,a,OT\n2020,1.0,2.0\n2021,abc,3.0\n")
    with pytest.raises(ValueError, match=r"column 'a', row 3: non-numeric value 'abc'"):
        read_tsl_csv(bad)
    with pytest.raises(ValueError, match="too short for one window"):
        ForecastDataset(path, split="val", seq_len=24, pred_len=60)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        ForecastDataset(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="target column 'Y'"):
        ForecastDataset(path, target="Y")
    with pytest.raises(ValueError, match="split"):
        ForecastDataset(path, split="dev")


def test_missing_values_error_or_forward_fill(tmp_path):
    rng = np.random.default_rng(2)
    values = rng.normal(size=(200, 3))
    values[[0, 10, 11], 1] = np.nan
    path = _write_csv(tmp_path / "gaps.csv", values)
    with pytest.raises(ValueError, match=r"missing values \{'b': 3\}.*ffill"):
        read_tsl_csv(path)
    table = read_tsl_csv(path, fill="ffill")
    assert not np.isnan(table.values).any()
    assert table.values[10, 1] == table.values[11, 1] == pytest.approx(values[9, 1])
    assert table.values[0, 1] == pytest.approx(values[1, 1])                  # leading gap: back-filled


def test_constant_columns(tmp_path):
    rng = np.random.default_rng(3)
    values = rng.normal(size=(200, 3))
    values[:, 0] = 4.0
    path = _write_csv(tmp_path / "const.csv", values)
    with pytest.raises(ValueError, match=r"constant over the training split: \['a'\]"):
        ForecastDataset(path, seq_len=16, pred_len=8)
    dropped = ForecastDataset(path, seq_len=16, pred_len=8, on_constant="drop")
    assert dropped.columns == ("b", "OT")
    kept = ForecastDataset(path, seq_len=16, pred_len=8, on_constant="keep")
    assert kept.n_vars == 3 and torch.isfinite(kept[0][0]).all()


def test_metrics_normalised_and_original_scale(custom_csv):
    path, _ = custom_csv
    ds = ForecastDataset(path, split="test", seq_len=24, pred_len=12)
    y_true = np.stack([ds[i][1].numpy() for i in range(5)])                  # (5, 12, 3)
    y_pred = y_true + np.random.default_rng(4).normal(size=y_true.shape).astype(np.float32) * 0.1
    out = compute_metrics(resolve_metrics(forecast_metrics(ds.scaler)), y_true, y_pred)
    assert out["mse"] == pytest.approx(np.mean((y_true - y_pred) ** 2), rel=1e-5)
    err = (y_true - y_pred) * ds.scaler.std
    assert out["mse_original"] == pytest.approx(np.mean(err ** 2), rel=1e-5)
    assert out["mae_original"] == pytest.approx(np.mean(np.abs(err)), rel=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        forecast_loss(torch.randn(2, 3, 4), torch.randn(2, 3, 5))


ETT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "timeseries" / "ETT-small"


@pytest.mark.skipif(not (ETT / "ETTh1.csv").is_file(), reason=f"ETT data not found at {ETT}")
def test_etth1_standard_protocol():
    train = ForecastDataset(ETT, "ETTh1", "train", seq_len=96, pred_len=96)
    test = ForecastDataset(ETT, "ETTh1", "test", seq_len=96, pred_len=96)
    assert train.columns == ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
    assert len(train) == 8640 - 192 + 1 and len(test) == 2880 + 96 - 192 + 1 == 2785
    assert abs(float(train.data.mean())) < 1e-3                              # standardised on train
    table = read_tsl_csv(ETT / "ETTh1.csv")
    raw = (table.values[11520 - 96] - train.scaler.mean) / train.scaler.std
    np.testing.assert_allclose(test[0][0][0].numpy(), raw, rtol=1e-5, atol=1e-5)
