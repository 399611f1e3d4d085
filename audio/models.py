"""Audio classifiers on the core backbone, and the AST-style Transformer baseline.

- ``AudioMamba`` (AuM / SSAMBA-like): fbank patches -> bidirectional Mamba (forward + reverse
  scan orders from the core) -> class token or mean pooling -> linear head.
- ``FrameMamba``: one token per 10 ms frame -> causal (forward-only) Mamba -> running
  prediction; streams chunk by chunk on the recurrent state (``mambakit.audio.streaming``).
- ``PatchTransformer`` (AST-style baseline): the same patches through timm ViT ``Block``s.

Every model answers timm's calls (``forward_features``, ``forward_head``, ``reset_classifier``,
``num_classes``, ``num_features``), takes normalised features ``(B, T, F)`` and returns logits
``(B, num_classes)``, saves as ``config.json`` + ``model.safetensors`` (the frontend settings
and dataset statistics travel in the config), and classifies raw waveforms with
``classify(waveform, sample_rate)``.

Length limits: patch models have a position embedding for ``max_frames`` frames. Their
``forward`` pads shorter inputs (with 0, the normalised mean) and **refuses** longer ones with
``ValueError``; ``classify`` **chunks** a long clip into windows of ``max_frames`` and averages
the logits. ``FrameMamba`` has no limit.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mambakit.hub import PretrainedMixin
from mambakit.models import MambaBackbone, MambaConfig

from .frontend import Fbank, FbankConfig, prepare_waveform
from .tokenizers import CLS_POSITIONS, FrameTokenizer, PatchTokenizer

ARCHS = ("audio_mamba", "frame_mamba", "patch_transformer")
POOLINGS = ("cls", "mean", "last")

# AuM / Vim sizes (d_model, layers) and the ViT heads for the same width.
SIZES = {"tiny": (192, 24, 3), "small": (384, 24, 6), "base": (768, 24, 12)}


@dataclass
class AudioModelConfig:
    """Sizes and options of an audio classifier (all three architectures).

    ``max_frames`` fixes the patch grid (patch models); ``pooling`` is ``"cls"`` (patch models
    with a class token), ``"mean"`` or ``"last"`` (frame model: the last frame's prediction).
    ``frontend`` holds ``FbankConfig`` fields, dataset mean/std included.
    """

    arch: str = "audio_mamba"
    num_classes: int = 10
    d_model: int = 192
    n_layer: int = 24
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    num_heads: int = 3
    mlp_ratio: float = 4.0
    max_frames: int = 128
    patch_size: list = field(default_factory=lambda: [16, 16])
    patch_stride: list = field(default_factory=lambda: [16, 16])
    cls_position: str = "middle"
    pooling: str = "cls"
    drop_rate: float = 0.0
    frontend: dict = field(default_factory=lambda: FbankConfig().to_dict())

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch: expected one of {ARCHS}, got {self.arch!r}")
        for name in ("num_classes", "d_model", "n_layer", "d_state", "d_conv", "expand", "num_heads", "max_frames"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if self.cls_position not in CLS_POSITIONS:
            raise ValueError(f"cls_position: expected one of {CLS_POSITIONS}, got {self.cls_position!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {self.pooling!r}")
        if self.arch == "frame_mamba" and self.pooling == "cls":
            raise ValueError("frame_mamba pools with 'last' or 'mean' (no class token)")
        if self.arch != "frame_mamba" and self.pooling == "last":
            raise ValueError("'last' pooling is for the causal frame model")
        if self.pooling == "cls" and self.arch != "frame_mamba" and self.cls_position == "none":
            raise ValueError("pooling='cls' needs a class token (cls_position != 'none')")
        if self.arch == "patch_transformer" and self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        self.patch_size, self.patch_stride = list(self.patch_size), list(self.patch_stride)
        FbankConfig(**self.frontend)  # validates

    @property
    def fbank(self) -> FbankConfig:
        return FbankConfig(**self.frontend)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AudioModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"model_type"})
        if unknown:
            warnings.warn(f"AudioModelConfig: ignoring unknown keys {unknown}", stacklevel=2)
        return cls(**{k: v for k, v in data.items() if k in known})


def _check_features(feats: torch.Tensor, num_bins: int) -> None:
    if not isinstance(feats, torch.Tensor):
        raise TypeError(f"features: expected a torch.Tensor, got {type(feats).__name__}")
    if not feats.dtype.is_floating_point:
        raise TypeError(f"features: expected floating-point log-mel features, got {feats.dtype}")
    if feats.dim() != 3 or feats.shape[-1] != num_bins:
        raise ValueError(f"features: expected shape (B, T, {num_bins}), got {tuple(feats.shape)}")
    if feats.shape[1] == 0:
        raise ValueError("features: expected at least one frame, got T = 0")


class _AudioClassifier(PretrainedMixin, nn.Module):
    config_class = AudioModelConfig
    model_type = "mambakit_audio"
    arch = ""

    def __init__(self, config: AudioModelConfig) -> None:
        super().__init__()
        if not isinstance(config, AudioModelConfig):
            raise TypeError(f"config: expected an AudioModelConfig, got {type(config).__name__}")
        if config.arch != self.arch:
            raise ValueError(f"{type(self).__name__} needs arch={self.arch!r}, the config has {config.arch!r}")
        self.config = config
        self.num_bins = config.fbank.num_mel_bins
        self.fbank = Fbank(config.fbank)
        self.head_drop = nn.Dropout(config.drop_rate)
        self.head = nn.Linear(config.d_model, config.num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    @property
    def num_features(self) -> int:
        return self.config.d_model

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh head for ``num_classes`` (0: identity, the model returns pooled features)."""
        self.config.num_classes = max(num_classes, 1)
        self.head = nn.Linear(self.config.d_model, num_classes) if num_classes > 0 else nn.Identity()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pooled features ``(B, D)`` -> logits ``(B, C)`` (or the features with ``pre_logits``)."""
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel features ``(B, T, F)`` -> logits ``(B, num_classes)``."""
        return self.forward_head(self.pool(self.forward_features(feats)))

    # ---- waveform in ---------------------------------------------------------------------
    def features(self, waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """One clip ``(N,)`` / ``(C, N)`` at ``sample_rate`` -> normalised features ``(T, F)``."""
        x = prepare_waveform(waveform, sample_rate, self.fbank.config.sample_rate)
        return self.fbank.normalize(self.fbank(x.to(self.head.weight.device)))

    @torch.no_grad()
    def classify(self, waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """One clip -> class probabilities ``(num_classes,)``. Long clips of patch models are
        cut into ``max_frames`` windows whose logits are averaged."""
        feats = self.features(waveform, sample_rate)                          # (T, F)
        return self.logits_long(feats.unsqueeze(0)).softmax(-1)[0]

    def logits_long(self, feats: torch.Tensor) -> torch.Tensor:
        return self(feats)


class _PatchModel(_AudioClassifier):
    """Shared by the patch models: tokenizer, padding, pooling and chunking."""

    def __init__(self, config: AudioModelConfig) -> None:
        super().__init__(config)
        self.tokenizer = PatchTokenizer(config.max_frames, self.num_bins, config.d_model, config.patch_size,
                                        config.patch_stride, config.cls_position)

    def tokens(self, feats: torch.Tensor) -> torch.Tensor:
        _check_features(feats, self.num_bins)
        t = feats.shape[1]
        if t > self.config.max_frames:
            raise ValueError(f"{t} frames exceed this model's limit of {self.config.max_frames} "
                             f"({self.config.max_frames / 100:.2f} s); use classify() to chunk long clips")
        if t < self.config.max_frames:
            feats = F.pad(feats, (0, 0, 0, self.config.max_frames - t))       # (B, max_frames, F)
        return self.tokenizer(feats)                                          # (B, L, D)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, D)`` -> ``(B, D)``: the class token, or the mean of the patch tokens."""
        idx = self.tokenizer.cls_index
        if self.config.pooling == "cls":
            return x[:, idx]
        if idx is not None:
            x = torch.cat([x[:, :idx], x[:, idx + 1:]], 1)
        return x.mean(1)

    def logits_long(self, feats: torch.Tensor) -> torch.Tensor:
        m = self.config.max_frames
        if feats.shape[1] <= m:
            return self(feats)
        windows = list(feats.split(m, dim=1))                                 # each (B, <=m, F)
        if windows[-1].shape[1] < m // 4 and len(windows) > 1:
            windows.pop()                                                     # drop a tiny remainder
        return torch.stack([self(w) for w in windows]).mean(0)


class AudioMamba(_PatchModel):
    """AuM-like: fbank patches -> bidirectional Mamba backbone -> class token -> head."""

    arch = "audio_mamba"

    def __init__(self, config: Optional[AudioModelConfig] = None, **overrides) -> None:
        config = config or AudioModelConfig(arch=self.arch, **overrides)
        super().__init__(config)
        self.backbone = MambaBackbone(MambaConfig(
            d_model=config.d_model, n_layer=config.n_layer,
            ssm_cfg={"d_state": config.d_state, "d_conv": config.d_conv, "expand": config.expand},
            scan_orders=["bidirectional"]))

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` -> token features ``(B, L, D)``."""
        return self.backbone(self.tokens(feats))


class PatchTransformer(_PatchModel):
    """AST-style baseline: the same patches and class token through timm ViT blocks."""

    arch = "patch_transformer"

    def __init__(self, config: Optional[AudioModelConfig] = None, **overrides) -> None:
        from timm.models.vision_transformer import Block as ViTBlock

        config = config or AudioModelConfig(arch=self.arch, **overrides)
        super().__init__(config)
        self.blocks = nn.Sequential(*[ViTBlock(config.d_model, config.num_heads, mlp_ratio=config.mlp_ratio,
                                               qkv_bias=True) for _ in range(config.n_layer)])
        self.norm = nn.LayerNorm(config.d_model, eps=1e-6)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.tokens(feats)))


class FrameMamba(_AudioClassifier):
    """Causal frame model for streaming: frames -> forward-only Mamba -> running prediction.

    ``forward`` gives the prediction after the last frame (``pooling="last"``) or of the mean
    of all frames (``"mean"``); ``forward_frames`` gives the running prediction at every frame
    ``(B, T, C)``, which is what the streaming recogniser emits chunk by chunk.
    """

    arch = "frame_mamba"

    def __init__(self, config: Optional[AudioModelConfig] = None, **overrides) -> None:
        if config is None:
            overrides.setdefault("pooling", "last")
            config = AudioModelConfig(arch=self.arch, **overrides)
        super().__init__(config)
        self.tokenizer = FrameTokenizer(self.num_bins, config.d_model)
        self.backbone = MambaBackbone(MambaConfig(
            d_model=config.d_model, n_layer=config.n_layer,
            ssm_cfg={"d_state": config.d_state, "d_conv": config.d_conv, "expand": config.expand},
            scan_orders=["forward"]))

    def forward_features(self, feats: torch.Tensor, inference_params=None) -> torch.Tensor:
        """``(B, T, F)`` -> ``(B, T, D)``; with ``inference_params`` it continues from (and
        updates) the recurrent state."""
        _check_features(feats, self.num_bins)
        return self.backbone(self.tokenizer(feats), inference_params=inference_params)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1] if self.config.pooling == "last" else x.mean(1)

    def forward_frames(self, feats: torch.Tensor) -> torch.Tensor:
        """Running logits ``(B, T, C)``: entry ``t`` sees frames ``0..t`` only."""
        h = self.forward_features(feats)                                      # (B, T, D)
        if self.config.pooling == "mean":
            steps = torch.arange(1, h.shape[1] + 1, device=h.device, dtype=h.dtype).view(1, -1, 1)
            h = h.cumsum(1) / steps
        return self.forward_head(h)


MODEL_CLASSES = {"audio_mamba": AudioMamba, "frame_mamba": FrameMamba, "patch_transformer": PatchTransformer}


def build_model(config: AudioModelConfig) -> _AudioClassifier:
    """The model class for ``config.arch``."""
    return MODEL_CLASSES[config.arch](config)


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> _AudioClassifier:
    """Load any audio model saved with ``save_pretrained`` (the class comes from ``arch``)."""
    import json

    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json in {directory}")
    arch = json.loads(path.read_text()).get("arch")
    if arch not in MODEL_CLASSES:
        raise ValueError(f"{path}: unknown audio arch {arch!r}; expected one of {ARCHS}")
    return MODEL_CLASSES[arch].from_pretrained(directory, device=device)


def _sized(arch: str, size: str, **kw) -> _AudioClassifier:
    d, depth, heads = SIZES[size]
    if arch == "patch_transformer":
        depth = depth // 2  # a ViT block (attention + MLP) has about the weights of two Mamba mixers
    return MODEL_CLASSES[arch](AudioModelConfig(arch=arch, d_model=d, n_layer=depth, num_heads=heads,
                                                pooling=kw.pop("pooling", "last" if arch == "frame_mamba" else "cls"),
                                                **kw))


def audio_mamba_tiny(**kw) -> AudioMamba:
    return _sized("audio_mamba", "tiny", **kw)


def audio_mamba_small(**kw) -> AudioMamba:
    return _sized("audio_mamba", "small", **kw)


def audio_mamba_base(**kw) -> AudioMamba:
    return _sized("audio_mamba", "base", **kw)


def frame_mamba_tiny(**kw) -> FrameMamba:
    return _sized("frame_mamba", "tiny", **kw)


def frame_mamba_small(**kw) -> FrameMamba:
    return _sized("frame_mamba", "small", **kw)


def frame_mamba_base(**kw) -> FrameMamba:
    return _sized("frame_mamba", "base", **kw)


def ast_tiny(**kw) -> PatchTransformer:
    return _sized("patch_transformer", "tiny", **kw)


def ast_small(**kw) -> PatchTransformer:
    return _sized("patch_transformer", "small", **kw)


def ast_base(**kw) -> PatchTransformer:
    return _sized("patch_transformer", "base", **kw)
