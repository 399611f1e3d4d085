"""Forecasters and a series classifier on the mambakit backbone, and the baselines.

Every forecaster maps a look-back window ``x (B, seq_len, n_vars)`` to a forecast
``(B, pred_len, n_vars)`` (or ``(B, pred_len, 1)`` with ``output_index``), on the scale of its
input: RevIN normalises each window inside the model and maps the forecast back.

- ``PatchMamba``: channel-independent patches -> Mamba backbone (forward or bidirectional over
  patches) -> flatten + linear head.
- ``VariateMamba``: S-Mamba style; each variable is a token, a bidirectional Mamba mixes the
  variables, a gated MLP mixes within each token, a linear head maps each token to its horizon.
- ``TimeStepMamba``: one token per time step, causal; ``step`` updates the forecast with one
  new observation from the recurrent state (streaming), equal to the parallel forward.
- ``DLinear`` and ``PatchTST`` (a Transformer over the same patches): baselines.
- ``SeriesClassifier``: any tokenizer -> backbone -> mean pool -> linear classifier.

``linear_path=True`` adds a linear map of the normalised window (look-back -> horizon, shared over
variables) to a forecaster's output, as RLinear does on its own: the network then learns what the
linear forecast misses.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn as nn

from mambakit import MambaBackbone, MambaConfig, PretrainedMixin
from mambakit.modules.inference import InferenceParams

from .revin import RevIN
from .tokenizers import PatchTokenizer, TimeStepTokenizer, VariateTokenizer, _check_window


@dataclass
class TSConfig:
    """Sizes and options shared by the time-series models (unused fields are ignored)."""

    seq_len: int = 96
    pred_len: int = 96
    n_vars: int = 7
    d_model: int = 128
    n_layer: int = 2
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    layer: str = "Mamba1"
    d_intermediate: int = 0          # gated MLP width in each block (0: none)
    patch_len: int = 16
    stride: int = 8
    bidirectional: bool = True
    revin: bool = True
    revin_affine: bool = False
    linear_path: bool = False        # add a linear map of the (normalised) window to the forecast
    linear_init: str = "default"     # "least_squares": the recipe fits the linear path on the training
                                     # windows and zeroes the network's output layer before training
    dropout: float = 0.1
    head_dropout: float = 0.0
    output_index: Optional[int] = None   # forecast one variable (features "MS")
    # PatchTST / DLinear / classifier
    n_heads: int = 4
    d_ff: int = 256
    moving_avg: int = 25
    tokenizer: str = "patch"
    num_classes: int = 0

    def __post_init__(self) -> None:
        for name in ("seq_len", "pred_len", "n_vars", "d_model", "n_layer", "d_state", "patch_len", "stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        if not 0 <= self.dropout < 1 or not 0 <= self.head_dropout < 1:
            raise ValueError(f"dropout / head_dropout must lie in [0, 1), got {self.dropout}, {self.head_dropout}")
        if self.output_index is not None and not 0 <= self.output_index < self.n_vars:
            raise ValueError(f"output_index {self.output_index} out of range for {self.n_vars} variables")
        if self.tokenizer not in ("patch", "variate", "timestep"):
            raise ValueError(f"tokenizer: expected 'patch', 'variate' or 'timestep', got {self.tokenizer!r}")
        if self.linear_init not in ("default", "least_squares"):
            raise ValueError(f"linear_init: expected 'default' or 'least_squares', got {self.linear_init!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TSConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"model_type"})
        if unknown:
            raise ValueError(f"TSConfig: unknown fields {unknown}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def backbone(self, scan_orders: list, d_intermediate: Optional[int] = None) -> MambaBackbone:
        return MambaBackbone(MambaConfig(
            d_model=self.d_model, n_layer=self.n_layer,
            d_intermediate=self.d_intermediate if d_intermediate is None else d_intermediate,
            ssm_cfg={"layer": self.layer, "d_state": self.d_state, "d_conv": self.d_conv, "expand": self.expand},
            scan_orders=scan_orders))


def _config(config: Optional[TSConfig], overrides: dict) -> TSConfig:
    if config is None:
        return TSConfig(**overrides)
    if not isinstance(config, TSConfig):
        raise TypeError(f"config: expected a TSConfig, got {type(config).__name__}")
    return TSConfig.from_dict({**config.to_dict(), **overrides}) if overrides else config


class Forecaster(PretrainedMixin, nn.Module):
    """Base class: checks the window, applies RevIN around ``forecast_normalized``.

    Subclasses implement ``forecast_normalized(x (B, L, C)) -> (B, H, C)``.
    """

    config_class = TSConfig
    model_type = "ts_forecaster"

    def __init__(self, config: Optional[TSConfig] = None, **overrides) -> None:
        super().__init__()
        self.config = _config(config, overrides)
        c = self.config
        self.revin = RevIN(c.n_vars, affine=c.revin_affine) if c.revin else None
        # A linear look-back -> horizon map shared over variables, summed with the network's
        # forecast: it carries level and trend (what RLinear/DLinear get right at long horizons)
        # and leaves the network the non-linear remainder.
        self.linear = nn.Linear(c.seq_len, c.pred_len) if c.linear_path else None

    def forecast_normalized(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def output_layer(self) -> Optional[nn.Linear]:
        """The network's last linear map (zeroed by ``fit_linear_path``); ``None`` if it has none."""
        head = getattr(self, "head", None)
        if isinstance(head, FlattenHead):
            return head.proj
        if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
            return head[-1]
        return head if isinstance(head, nn.Linear) else None

    @torch.no_grad()
    def fit_linear_path(self, series: torch.Tensor, ridge: float = 1e-4, zero_network: bool = True,
                        max_windows: int = 20000) -> dict[str, float]:
        """Fit the linear path by least squares on every window of ``series (T, n_vars)`` (the
        standardised training split), on the scale the model forecasts (after RevIN), so that the
        forecaster starts as the best linear map of the window and the network learns what remains.

        ``ridge``: Tikhonov term relative to the mean diagonal of the normal equations (float64).
        ``zero_network``: zero the network's output layer, so the initial forecast is the linear
        one exactly. Windows are taken with a stride that keeps at most ``max_windows``. Returns the
        training MSE of the fitted map (on the series' scale, as the training loss) and the number
        of windows used.
        """
        c = self.config
        if self.linear is None:
            raise ValueError("fit_linear_path: the model has no linear path (set linear_path=True)")
        if not isinstance(series, torch.Tensor) or series.dim() != 2 or series.shape[1] != c.n_vars:
            raise ValueError(f"fit_linear_path: expected series (T, {c.n_vars}), got "
                             f"{tuple(series.shape) if isinstance(series, torch.Tensor) else type(series).__name__}")
        span = c.seq_len + c.pred_len
        if series.shape[0] < span:
            raise ValueError(f"fit_linear_path: {series.shape[0]} rows, fewer than one window of "
                             f"seq_len + pred_len = {span}")
        if not torch.isfinite(series).all():
            raise ValueError("fit_linear_path: series contains NaN or Inf")
        n_windows = series.shape[0] - span + 1
        stride = max(1, -(-n_windows // max_windows))
        series = series.to(self.linear.weight.device, torch.float64)
        windows = series.unfold(0, span, stride).transpose(1, 2)                # (n, span, C)
        x, y = windows[:, :c.seq_len], windows[:, c.seq_len:]
        scale = torch.ones_like(x[:, :1])                                    # (n, 1, C)
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
            y, _ = self.revin.normalize(y, stats)
            # The loss is taken after denormalising: a window's errors count times its std (and
            # near-constant windows, whose normalised values are huge, count for nearly nothing).
            scale = stats[1] / (self.revin.affine_weight.double() if self.revin.affine else 1.0)
        if c.output_index is not None:                # only the target's map is scored
            keep = slice(c.output_index, c.output_index + 1)
            x, y, scale = x[..., keep], y[..., keep], scale[..., keep]
        weight = scale.transpose(1, 2).reshape(-1, 1)                          # (n*C, 1)
        rows = torch.cat([x.transpose(1, 2).reshape(-1, c.seq_len), x.new_ones(x.shape[0] * x.shape[2], 1)], 1)
        targets = y.transpose(1, 2).reshape(-1, c.pred_len)
        rows, targets = rows * weight, targets * weight
        gram = rows.T @ rows
        gram += ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        solution = torch.linalg.solve(gram, rows.T @ targets)                 # (L + 1, H)
        self.linear.weight.copy_(solution[:-1].T)
        self.linear.bias.copy_(solution[-1])
        if zero_network:
            out = self.output_layer()
            if out is None:
                raise ValueError(f"fit_linear_path: {type(self).__name__} has no output layer to zero")
            out.weight.zero_()
            if out.bias is not None:
                out.bias.zero_()
        mse = ((rows @ solution - targets) ** 2).mean().item()
        return {"train_mse": mse, "windows": int(windows.shape[0])}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, seq_len, n_vars)`` -> forecast ``(B, pred_len, n_vars)`` (``(B, pred_len, 1)``
        with ``output_index``)."""
        _check_window(x, self.config.seq_len, self.config.n_vars)
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        y = self.forecast_normalized(x)                                       # (B, H, C)
        if self.linear is not None:
            y = y + self.linear(x.transpose(1, 2)).transpose(1, 2)
        if stats is not None:
            y = self.revin.denormalize(y, stats)
        if self.config.output_index is not None:
            y = y[..., self.config.output_index:self.config.output_index + 1]
        return y


class FlattenHead(nn.Module):
    """``(B*C, N, D)`` tokens -> ``(B*C, H)``: flatten the patches and one linear map."""

    def __init__(self, n_tokens: int, d_model: int, pred_len: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(n_tokens * d_model, pred_len)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.drop(tokens.flatten(1)))


class PatchMamba(Forecaster):
    """Channel-independent patches -> Mamba (bidirectional over patches if configured) -> head."""

    model_type = "patch_mamba"

    def __init__(self, config: Optional[TSConfig] = None, **overrides) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.tokenizer = PatchTokenizer(c.seq_len, c.patch_len, c.stride, c.d_model, dropout=c.dropout)
        self.backbone = c.backbone(["bidirectional"] if c.bidirectional else ["forward"])
        self.head = FlattenHead(self.tokenizer.num_patches, c.d_model, c.pred_len, c.head_dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``x (B, L, C)`` -> patch features ``(B*C, N, d_model)``."""
        return self.backbone(self.tokenizer(x))

    def forecast_normalized(self, x: torch.Tensor) -> torch.Tensor:
        B, _, C = x.shape
        y = self.head(self.forward_features(x))                               # (B*C, H)
        return y.view(B, C, -1).transpose(1, 2)                               # (B, H, C)


class VariateMamba(Forecaster):
    """S-Mamba style: variate tokens, bidirectional Mamba over variates, per-token linear head."""

    model_type = "variate_mamba"

    def __init__(self, config: Optional[TSConfig] = None, **overrides) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.tokenizer = VariateTokenizer(c.seq_len, c.d_model, dropout=c.dropout)
        self.backbone = c.backbone(["bidirectional"] if c.bidirectional else ["forward"])
        self.head = nn.Sequential(nn.Dropout(c.head_dropout), nn.Linear(c.d_model, c.pred_len))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``x (B, L, C)`` -> variate features ``(B, C, d_model)``."""
        return self.backbone(self.tokenizer(x))

    def forecast_normalized(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)).transpose(1, 2)           # (B, H, C)


class TimeStepMamba(Forecaster):
    """Causal time-step tokens; the last token's state forecasts the next ``pred_len`` steps.

    No RevIN (a window statistic cannot be updated causally without re-reading the window):
    inputs should already be standardised (the datasets are). ``forward`` accepts any look-back
    length; ``step`` consumes one observation ``(B, C)`` and returns the updated forecast.
    """

    model_type = "timestep_mamba"

    def __init__(self, config: Optional[TSConfig] = None, **overrides) -> None:
        overrides = {**overrides, "revin": False, "bidirectional": False, "linear_path": False}
        super().__init__(config, **overrides)
        c = self.config
        self.tokenizer = TimeStepTokenizer(c.n_vars, c.d_model, dropout=c.dropout)
        self.backbone = c.backbone(["forward"])
        self.head = nn.Linear(c.d_model, c.pred_len * c.n_vars)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, L, n_vars)`` for any ``L >= 1`` -> ``(B, pred_len, n_vars)``."""
        _check_window(x, n_vars=self.config.n_vars)
        return self._head(self.backbone(self.tokenizer(x))[:, -1])

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        y = self.head(h).view(h.shape[0], self.config.pred_len, self.config.n_vars)
        if self.config.output_index is not None:
            y = y[..., self.config.output_index:self.config.output_index + 1]
        return y

    def allocate_inference_cache(self, batch_size: int) -> InferenceParams:
        """A zero recurrent state for ``batch_size`` streams (size independent of history)."""
        return self.backbone.allocate_inference_cache(batch_size)

    @torch.no_grad()
    def step(self, obs: torch.Tensor, cache: InferenceParams) -> torch.Tensor:
        """One new observation ``obs (B, n_vars)`` (or a chunk ``(B, T, n_vars)``) -> the forecast
        ``(B, pred_len, n_vars)`` after it; ``cache`` is updated in place."""
        if obs.dim() == 2:
            obs = obs.unsqueeze(1)
        _check_window(obs, n_vars=self.config.n_vars)
        h = self.backbone(self.tokenizer(obs), inference_params=cache)        # (B, T, D)
        cache.seqlen_offset += obs.shape[1]
        return self._head(h[:, -1])


class MovingAverage(nn.Module):
    """Moving average over time with the ends padded by repetition: ``(B, L, C) -> (B, L, C)``."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"moving_avg kernel must be an odd int >= 1, got {kernel_size}")
        self.kernel_size = kernel_size
        self.pool = nn.AvgPool1d(kernel_size, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = (self.kernel_size - 1) // 2
        x = torch.cat([x[:, :1].expand(-1, half, -1), x, x[:, -1:].expand(-1, half, -1)], 1)
        return self.pool(x.transpose(1, 2)).transpose(1, 2)


class DLinear(Forecaster):
    """DLinear baseline: trend (moving average) and remainder each mapped ``L -> H`` by one
    linear layer shared over variables. No RevIN by default (as published)."""

    model_type = "dlinear"

    def __init__(self, config: Optional[TSConfig] = None, **overrides) -> None:
        overrides = {"revin": False, **overrides, "linear_path": False}   # it is linear already
        super().__init__(config, **overrides)
        c = self.config
        self.decomp = MovingAverage(c.moving_avg)
        self.trend = nn.Linear(c.seq_len, c.pred_len)
        self.seasonal = nn.Linear(c.seq_len, c.pred_len)
        with torch.no_grad():  # start as the window mean, as DLinear does
            self.trend.weight.fill_(1.0 / c.seq_len)
            self.seasonal.weight.fill_(1.0 / c.seq_len)

    def forecast_normalized(self, x: torch.Tensor) -> torch.Tensor:
        trend = self.decomp(x)
        out = self.trend(trend.transpose(1, 2)) + self.seasonal((x - trend).transpose(1, 2))   # (B, C, H)
        return out.transpose(1, 2)


class PatchTST(Forecaster):
    """PatchTST-style baseline: the same RevIN and patches, a pre-norm Transformer encoder with
    learned positions instead of the Mamba backbone, and the same flatten head."""

    model_type = "patchtst"

    def __init__(self, config: Optional[TSConfig] = None, **overrides) -> None:
        super().__init__(config, **overrides)
        c = self.config
        if c.d_model % c.n_heads:
            raise ValueError(f"d_model={c.d_model} must be divisible by n_heads={c.n_heads}")
        self.tokenizer = PatchTokenizer(c.seq_len, c.patch_len, c.stride, c.d_model, pos_embed=True,
                                        dropout=c.dropout)
        layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.n_layer, norm=nn.LayerNorm(c.d_model),
                                             enable_nested_tensor=False)
        self.head = FlattenHead(self.tokenizer.num_patches, c.d_model, c.pred_len, c.head_dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.tokenizer(x))                                # (B*C, N, D)

    def forecast_normalized(self, x: torch.Tensor) -> torch.Tensor:
        B, _, C = x.shape
        return self.head(self.forward_features(x)).view(B, C, -1).transpose(1, 2)


class SeriesClassifier(PretrainedMixin, nn.Module):
    """Series classification: ``x (B, seq_len, n_vars)`` -> logits ``(B, num_classes)``.

    ``config.tokenizer``: ``"patch"`` (channel-independent patches; features pooled over
    patches and variables), ``"variate"`` (bidirectional over variables) or ``"timestep"``
    (bidirectional over time unless ``bidirectional=False``). RevIN (normalise only) optional.
    """

    config_class = TSConfig
    model_type = "ts_classifier"

    def __init__(self, config: Optional[TSConfig] = None, **overrides) -> None:
        super().__init__()
        self.config = c = _config(config, overrides)
        if c.num_classes < 1:
            raise ValueError(f"num_classes: expected an int >= 1, got {c.num_classes!r}")
        self.revin = RevIN(c.n_vars, affine=c.revin_affine) if c.revin else None
        if c.tokenizer == "patch":
            self.tokenizer = PatchTokenizer(c.seq_len, c.patch_len, c.stride, c.d_model, dropout=c.dropout)
        elif c.tokenizer == "variate":
            self.tokenizer = VariateTokenizer(c.seq_len, c.d_model, dropout=c.dropout)
        else:
            self.tokenizer = TimeStepTokenizer(c.n_vars, c.d_model, dropout=c.dropout)
        self.backbone = c.backbone(["bidirectional"] if c.bidirectional else ["forward"])
        self.head_drop = nn.Dropout(c.head_dropout)
        self.head = nn.Linear(c.d_model, c.num_classes)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def num_features(self) -> int:
        return self.config.d_model

    def reset_classifier(self, num_classes: int) -> None:
        self.config.num_classes = num_classes
        self.head = nn.Linear(self.config.d_model, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, L, C)`` -> token features ``(B, T, d_model)`` (``(B*C, N, d_model)`` for patches)."""
        _check_window(x, self.config.seq_len, self.config.n_vars)
        if self.revin is not None:
            x, _ = self.revin.normalize(x)
        return self.backbone(self.tokenizer(x))

    def forward_head(self, feats: torch.Tensor, batch_size: int, pre_logits: bool = False) -> torch.Tensor:
        pooled = feats.mean(1)                                                # (B or B*C, D)
        if self.config.tokenizer == "patch":
            pooled = pooled.view(batch_size, -1, pooled.shape[-1]).mean(1)    # (B, D)
        pooled = self.head_drop(pooled)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x), x.shape[0])


MODELS = {"patchmamba": PatchMamba, "smamba": VariateMamba, "stepmamba": TimeStepMamba,
          "dlinear": DLinear, "patchtst": PatchTST}


def create_model(name: str, **kwargs) -> Forecaster:
    """A forecaster by name (``MODELS``) with ``TSConfig`` fields as keyword arguments."""
    if name not in MODELS:
        raise ValueError(f"unknown time-series model {name!r}; available: {', '.join(MODELS)}")
    return MODELS[name](TSConfig(**kwargs))
