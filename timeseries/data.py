"""Time-Series-Library CSVs, the standard long-term forecasting splits, and sliding windows.

The layout (Informer / Time-Series-Library): a header row, a ``date`` column first, then one
numeric column per variable, the target (``OT`` by default) among them. Splits:

- ``ETTh*``: train = first 12 months of hourly rows (8640), val = next 4 months (2880),
  test = next 4 months (2880); rows after 20 months are unused.
- ``ETTm*``: the same months at 15-minute resolution (x4 rows).
- any other CSV (``custom``): 70 % / 10 % / 20 % of the rows.

Validation and test start ``seq_len`` rows before their border so that their first window's
look-back lies in the previous split (as the published tables do). The scaler (mean / std per
variable) is fitted on the training rows only. A window is ``x (seq_len, C)`` followed by
``y (pred_len, C_out)``.

Bad input: a missing ``date`` column, a non-numeric cell, too few rows for one window raise
``ValueError`` naming the problem. Missing values (empty cells, ``nan``) raise by default;
``fill="ffill"`` fills each column forward (then backward for leading gaps) instead. Columns
that are constant over the training rows raise by default (their standardised value is
undefined); ``on_constant="drop"`` removes them, ``"keep"`` scales them by 1.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")
FEATURES = ("M", "S", "MS")
HOURS_PER_MONTH = 30 * 24


@dataclass(frozen=True)
class SeriesTable:
    """A parsed CSV: ``dates`` (N,) strings, ``values (N, C)`` float64, ``columns`` (C,) names."""

    dates: tuple[str, ...]
    values: np.ndarray
    columns: tuple[str, ...]

    def __len__(self) -> int:
        return self.values.shape[0]


def read_tsl_csv(path: str | Path, fill: str = "error") -> SeriesTable:
    """Read a Time-Series-Library CSV (``date`` first, then numeric columns).

    ``fill``: ``"error"`` (raise on missing values) or ``"ffill"`` (forward fill, then back
    fill leading gaps). Raises ``FileNotFoundError`` / ``ValueError`` with the file, column and
    row of the problem.
    """
    if fill not in ("error", "ffill"):
        raise ValueError(f"fill: expected 'error' or 'ffill', got {fill!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"time-series CSV not found: {path}")
    return _read_cached(str(path.resolve()), path.stat().st_mtime_ns, fill)


@lru_cache(maxsize=16)
def _read_cached(path: str, mtime: int, fill: str) -> SeriesTable:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path}: the file is empty")
    header = [h.strip() for h in rows[0]]
    if not header or header[0].lower() != "date":
        raise ValueError(f"{path}: expected a 'date' column first (Time-Series-Library layout), "
                         f"got columns {header[:5]}")
    if len(header) < 2:
        raise ValueError(f"{path}: no variable columns after 'date'")
    body = [r for r in rows[1:] if r]
    if not body:
        raise ValueError(f"{path}: no data rows")
    values = np.empty((len(body), len(header) - 1), dtype=np.float64)
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise ValueError(f"{path}: row {i + 2} has {len(row)} fields, the header has {len(header)}")
        for j, cell in enumerate(row[1:]):
            cell = cell.strip()
            if cell == "" or cell.lower() in ("nan", "na", "null"):
                values[i, j] = math.nan
                continue
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise ValueError(f"{path}: column {header[j + 1]!r}, row {i + 2}: non-numeric value "
                                 f"{cell!r}") from None
    missing = np.isnan(values)
    if missing.any():
        if fill == "error":
            counts = {header[j + 1]: int(n) for j, n in enumerate(missing.sum(0)) if n}
            raise ValueError(f"{path}: missing values {counts}; pass fill='ffill' to forward-fill them")
        values = _ffill(values)
        if np.isnan(values).any():
            empty = [header[j + 1] for j in np.where(np.isnan(values).all(0))[0]]
            raise ValueError(f"{path}: columns with no values at all: {empty}")
    return SeriesTable(tuple(r[0] for r in body), values, tuple(header[1:]))


def _ffill(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    for j in range(out.shape[1]):
        col = out[:, j]
        ok = ~np.isnan(col)
        if not ok.any():
            continue
        idx = np.where(ok, np.arange(len(col)), 0)
        np.maximum.accumulate(idx, out=idx)
        col = col[idx]
        first = int(np.argmax(ok))
        col[:first] = col[first]
        out[:, j] = col
    return out


def split_borders(kind: str, n_rows: int, seq_len: int) -> dict[str, tuple[int, int]]:
    """Row ranges ``[start, end)`` of each split, each start moved back by ``seq_len`` rows
    (except train). ``kind``: ``"ETTh"``, ``"ETTm"`` or ``"custom"`` (70/10/20)."""
    if kind in ("ETTh", "ETTm"):
        per_month = HOURS_PER_MONTH * (4 if kind == "ETTm" else 1)
        ends = [12 * per_month, 16 * per_month, 20 * per_month]
        if n_rows < ends[2]:
            raise ValueError(f"{kind} split needs {ends[2]} rows (20 months), the file has {n_rows}")
    elif kind == "custom":
        n_train, n_test = int(n_rows * 0.7), int(n_rows * 0.2)
        ends = [n_train, n_rows - n_test, n_rows]
    else:
        raise ValueError(f"split kind: expected 'ETTh', 'ETTm' or 'custom', got {kind!r}")
    starts = [0, ends[0] - seq_len, ends[1] - seq_len]
    if starts[1] < 0:
        raise ValueError(f"seq_len={seq_len} is longer than the training split ({ends[0]} rows)")
    return dict(zip(SPLITS, zip(starts, ends)))


def split_kind(name: str) -> str:
    """``ETTh1`` -> ``ETTh``, ``ETTm2`` -> ``ETTm``, anything else -> ``custom``."""
    stem = Path(name).stem
    for kind in ("ETTh", "ETTm"):
        if stem.startswith(kind):
            return kind
    return "custom"


@dataclass
class StandardScaler:
    """Per-variable mean / std, ``fit`` on the training rows; ``(…, C)`` arrays or tensors."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, on_constant: str = "error", columns: Sequence[str] = ()) -> "StandardScaler":
        mean, std = values.mean(0), values.std(0)
        const = std < 1e-12
        if const.any():
            names = [columns[j] if j < len(columns) else str(j) for j in np.where(const)[0]]
            if on_constant == "error":
                raise ValueError(f"columns constant over the training split: {names}; pass "
                                 "on_constant='drop' or 'keep'")
            std = np.where(const, 1.0, std)
        return cls(mean, std)

    def transform(self, x):
        return (x - _like(self.mean, x)) / _like(self.std, x)

    def inverse_transform(self, x):
        return x * _like(self.std, x) + _like(self.mean, x)


def _like(a: np.ndarray, x):
    if isinstance(x, torch.Tensor):
        return torch.as_tensor(a, dtype=x.dtype, device=x.device)
    return a


class ForecastDataset(Dataset):
    """Sliding windows of one split of a Time-Series-Library CSV.

    ``root``: the folder with the CSV (e.g. ``shared/data/timeseries/ETT-small``) or the CSV
    itself; ``name``: the file stem (``"ETTh1"``). Items are ``(x (seq_len, C_in),
    y (pred_len, C_out))`` float32 on the standardised scale; ``features``: ``"M"`` (all
    variables in and out), ``"S"`` (target only), ``"MS"`` (all in, target out).
    ``transform(x, y) -> (x, y)`` is applied to each item. ``scaler`` maps back to the
    original scale; ``columns`` names the variables of ``x``.
    """

    def __init__(self, root: str | Path, name: str = "ETTh1", split: str = "train", seq_len: int = 96,
                 pred_len: int = 96, features: str = "M", target: str = "OT", kind: Optional[str] = None,
                 fill: str = "error", on_constant: str = "error", stride: int = 1,
                 transform: Optional[Callable] = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        if features not in FEATURES:
            raise ValueError(f"features: expected one of {FEATURES}, got {features!r}")
        for arg, value in (("seq_len", seq_len), ("pred_len", pred_len), ("stride", stride)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{arg}: expected an int >= 1, got {value!r}")
        if on_constant not in ("error", "drop", "keep"):
            raise ValueError(f"on_constant: expected 'error', 'drop' or 'keep', got {on_constant!r}")
        root = Path(root)
        path = root if root.suffix == ".csv" else root / f"{name}.csv"
        table = read_tsl_csv(path, fill=fill)
        columns, values = list(table.columns), table.values
        if target not in columns:
            raise ValueError(f"{path}: target column {target!r} not among {columns}")
        kind = kind or split_kind(path.name)
        borders = split_borders(kind, len(table), seq_len)
        train_rows = values[borders["train"][0]:borders["train"][1]]
        if on_constant == "drop":
            keep = train_rows.std(0) >= 1e-12
            if not keep[columns.index(target)]:
                raise ValueError(f"{path}: target column {target!r} is constant over the training split")
            columns = [c for c, k in zip(columns, keep) if k]
            values, train_rows = values[:, keep], train_rows[:, keep]
        if features == "S":
            t = columns.index(target)
            columns, values, train_rows = [target], values[:, t:t + 1], train_rows[:, t:t + 1]
        self.scaler = StandardScaler.fit(train_rows, "keep" if on_constant == "keep" else "error", columns)
        start, end = borders[split]
        self.data = self.scaler.transform(values[start:end]).astype(np.float32)   # (T, C)
        self.dates = table.dates[start:end]
        n = (len(self.data) - seq_len - pred_len) // stride + 1
        if n < 1:
            raise ValueError(f"{path}: split {split!r} has {len(self.data)} rows, too short for one window of "
                             f"seq_len + pred_len = {seq_len + pred_len}")
        self.columns = tuple(columns)
        self.target_index = self.columns.index(target)
        self.out_index = slice(self.target_index, self.target_index + 1) if features == "MS" else slice(None)
        self.name, self.split, self.features, self.kind = path.stem, split, features, kind
        self.seq_len, self.pred_len, self.stride, self.n_windows = seq_len, pred_len, stride, n
        self.transform = transform
        self._tensor = torch.from_numpy(self.data)

    @property
    def n_vars(self) -> int:
        return len(self.columns)

    def __len__(self) -> int:
        return self.n_windows

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        if idx < 0:
            idx += self.n_windows
        if not 0 <= idx < self.n_windows:
            raise IndexError(f"window {idx} out of range for {self.n_windows} windows")
        s = idx * self.stride
        x = self._tensor[s:s + self.seq_len]                                        # (L, C)
        y = self._tensor[s + self.seq_len:s + self.seq_len + self.pred_len, self.out_index]   # (H, C_out)
        if self.transform is not None:
            x, y = self.transform(x, y)
        return x, y

    def __repr__(self) -> str:
        return (f"ForecastDataset({self.name}, split={self.split!r}, windows={self.n_windows}, "
                f"seq_len={self.seq_len}, pred_len={self.pred_len}, vars={self.n_vars})")
