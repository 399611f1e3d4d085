"""Waveform -> log-mel features, with the conversions and checks every audio input goes through.

Pipeline (all on tensors, CPU or GPU):

    waveform (C, N) or (N,) at any rate
      -> ``prepare_waveform``: float32, mono mixdown (mean of channels), resample to the model's
         rate (``torchaudio.functional.resample``), reject empty / non-finite audio
      -> ``Fbank``: 25 ms windows every 10 ms, 128 log-mel bins, ``(B, T, n_mels)``; ``kind="kaldi"``
         is ``torchaudio.compliance.kaldi.fbank`` (AST/AuM's frontend), ``kind="mel"`` is
         ``torchaudio.transforms.MelSpectrogram`` with the same framing (``center=False``)
      -> dataset-level normalisation ``(x - mean) / (2 * std)`` (AST's convention; scalars
         computed on the training set with ``feature_stats``)
      -> ``SpecAugment`` (training only): frequency and time masks

Framing is Kaldi's ``snip_edges``: frame ``t`` covers samples ``[t * hop, t * hop + win)``, so a
clip of ``N`` samples gives ``1 + (N - win) // hop`` frames and every frame depends only on its
own samples. That is what makes ``StreamingFbank`` (chunked audio -> the same frames) exact.

Conversions and refusals (documented behaviour for bad input):

- stereo / multi-channel: mixed down to mono by averaging the channels;
- another sample rate: resampled to ``sample_rate`` (whole clip at once; the streaming path
  refuses other rates instead, because chunked resampling is not exact at chunk borders);
- integer PCM tensors: scaled to [-1, 1);
- empty audio, audio shorter than one 25 ms window, NaN/Inf samples: ``ValueError``;
- silent (all-zero) audio is accepted: every bin takes the log floor, a valid (uninformative)
  input; ``is_silent`` lets callers test for it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional, Sequence

import torch
import torch.nn as nn
import torchaudio

FRONTEND_KINDS = ("kaldi", "mel")


@dataclass
class FbankConfig:
    """Feature extraction settings (saved inside every audio model's config).

    ``mean`` / ``std`` are the dataset-level statistics of the log-mel features (scalars, as in
    AST); ``normalize`` applies ``(x - mean) / (2 * std)``.
    """

    sample_rate: int = 16000
    num_mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    kind: str = "kaldi"
    mean: float = 0.0
    std: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise ValueError(f"sample_rate: expected a positive int, got {self.sample_rate!r}")
        if not isinstance(self.num_mel_bins, int) or self.num_mel_bins <= 0:
            raise ValueError(f"num_mel_bins: expected a positive int, got {self.num_mel_bins!r}")
        if self.kind not in FRONTEND_KINDS:
            raise ValueError(f"kind: expected one of {FRONTEND_KINDS}, got {self.kind!r}")
        if not (self.frame_length_ms > 0 and self.frame_shift_ms > 0):
            raise ValueError("frame_length_ms and frame_shift_ms must be > 0")
        if not self.std > 0:
            raise ValueError(f"std must be > 0, got {self.std}")
        if self.n_fft // 2 + 1 < self.num_mel_bins:
            raise ValueError(f"{self.num_mel_bins} mel bins need more than {self.n_fft // 2 + 1} FFT bins: "
                             f"raise sample_rate (now {self.sample_rate}) or lower num_mel_bins")

    @property
    def win_length(self) -> int:
        """Samples per frame (400 at 16 kHz)."""
        return int(round(self.sample_rate * self.frame_length_ms / 1000.0))

    @property
    def hop_length(self) -> int:
        """Samples between frame starts (160 at 16 kHz)."""
        return int(round(self.sample_rate * self.frame_shift_ms / 1000.0))

    @property
    def n_fft(self) -> int:
        return 1 << max(0, math.ceil(math.log2(self.win_length)))

    def num_frames(self, num_samples: int) -> int:
        """Frames of a clip of ``num_samples`` samples (0 when shorter than one window)."""
        if num_samples < self.win_length:
            return 0
        return 1 + (num_samples - self.win_length) // self.hop_length

    def num_samples(self, num_frames: int) -> int:
        """The shortest clip that gives ``num_frames`` frames."""
        return self.win_length + (num_frames - 1) * self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)


def _as_float_waveform(waveform: torch.Tensor, name: str = "waveform") -> torch.Tensor:
    if not isinstance(waveform, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(waveform).__name__}")
    if waveform.dtype in (torch.int16, torch.int32, torch.int8, torch.uint8):
        if waveform.dtype == torch.uint8:  # 8-bit WAV is unsigned
            return (waveform.float() - 128.0) / 128.0
        scale = {torch.int16: 32768.0, torch.int32: 2147483648.0, torch.int8: 128.0}[waveform.dtype]
        return waveform.float() / scale
    if not waveform.dtype.is_floating_point:
        raise TypeError(f"{name}: expected float or integer PCM samples, got {waveform.dtype}")
    return waveform.float()


def prepare_waveform(waveform: torch.Tensor, sample_rate: int, target_rate: int) -> torch.Tensor:
    """Any clip -> mono float32 ``(N,)`` at ``target_rate``.

    ``waveform``: ``(N,)`` or ``(C, N)`` (channels first, as torchaudio loads them); integer
    PCM is scaled to [-1, 1). Channels are averaged; other rates are resampled.
    Raises ``ValueError`` for empty or non-finite audio and bad rates, ``TypeError`` for
    non-tensors.
    """
    x = _as_float_waveform(waveform)
    if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise ValueError(f"sample_rate: expected a positive int, got {sample_rate!r}")
    if x.dim() == 2:
        if x.shape[0] > 16 and x.shape[1] <= 16:
            raise ValueError(f"waveform of shape {tuple(x.shape)} looks like (N, C); pass channels first (C, N)")
        x = x.mean(0)                                                          # (N,) mono mixdown
    elif x.dim() != 1:
        raise ValueError(f"waveform: expected shape (N,) or (C, N), got {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError("waveform is empty (0 samples)")
    if not torch.isfinite(x).all():
        raise ValueError("waveform contains NaN or Inf samples")
    if sample_rate != target_rate:
        x = torchaudio.functional.resample(x, sample_rate, target_rate)
    return x


def is_silent(waveform: torch.Tensor, threshold: float = 1e-4) -> bool:
    """True when every sample's magnitude is below ``threshold`` (digital silence)."""
    return bool(_as_float_waveform(waveform).abs().max() < threshold) if waveform.numel() else True


class Fbank(nn.Module):
    """Mono waveforms at ``config.sample_rate`` -> log-mel features (not normalised).

    ``(N,)`` -> ``(T, n_mels)``; ``(B, N)`` -> ``(B, T, n_mels)`` with
    ``T = 1 + (N - win) // hop``. Raises ``ValueError`` for clips shorter than one window.
    """

    def __init__(self, config: Optional[FbankConfig] = None) -> None:
        super().__init__()
        self.config = config or FbankConfig()
        c = self.config
        if c.kind == "mel":  # n_fft = window, so frames match Kaldi's framing exactly
            self.mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=c.sample_rate, n_fft=c.win_length, win_length=c.win_length, hop_length=c.hop_length,
                n_mels=c.num_mel_bins, center=False, power=2.0, f_min=20.0)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = _as_float_waveform(waveform)
        single = x.dim() == 1
        if single:
            x = x.unsqueeze(0)
        if x.dim() != 2:
            raise ValueError(f"Fbank: expected mono waveforms (N,) or (B, N), got {tuple(x.shape)}")
        c = self.config
        if x.shape[1] < c.win_length:
            raise ValueError(f"audio of {x.shape[1]} samples is shorter than one {c.frame_length_ms:g} ms window "
                             f"({c.win_length} samples at {c.sample_rate} Hz)")
        if c.kind == "mel":
            feats = torch.log(self.mel(x) + 1e-6).transpose(1, 2)                # (B, T, n_mels)
        else:
            feats = torch.stack([torchaudio.compliance.kaldi.fbank(
                row.unsqueeze(0), sample_frequency=float(c.sample_rate), num_mel_bins=c.num_mel_bins,
                frame_length=c.frame_length_ms, frame_shift=c.frame_shift_ms, dither=0.0,
                window_type="hanning", htk_compat=True, use_energy=False) for row in x])  # (B, T, n_mels)
        return feats[0] if single else feats

    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / (2 * std)`` with the dataset statistics in the config."""
        return (feats - self.config.mean) / (2.0 * self.config.std)


def feature_stats(features: Iterable[torch.Tensor]) -> tuple[float, float]:
    """Dataset-level ``(mean, std)`` over every value of every ``(T, F)`` feature matrix."""
    total, total_sq, count = 0.0, 0.0, 0
    for f in features:
        f = f.double()
        total += float(f.sum())
        total_sq += float((f * f).sum())
        count += f.numel()
    if count == 0:
        raise ValueError("feature_stats: no features given")
    mean = total / count
    return mean, math.sqrt(max(total_sq / count - mean * mean, 1e-12))


def pad_or_crop(feats: torch.Tensor, num_frames: int, offset: Optional[int] = None,
                pad_value: float = 0.0) -> torch.Tensor:
    """``(T, F)`` -> ``(num_frames, F)``: pad at the end with ``pad_value`` or crop a window
    starting at ``offset`` (default: centred)."""
    if feats.dim() != 2:
        raise ValueError(f"expected features (T, F), got {tuple(feats.shape)}")
    t = feats.shape[0]
    if t >= num_frames:
        start = (t - num_frames) // 2 if offset is None else max(0, min(offset, t - num_frames))
        return feats[start:start + num_frames]
    pad = feats.new_full((num_frames - t, feats.shape[1]), pad_value)
    return torch.cat([feats, pad], 0)


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al., 2019) on ``(B, T, F)`` features, training only.

    Each sample gets ``freq_masks`` bands of up to ``freq_width`` bins and ``time_masks``
    spans of up to ``time_width`` frames set to ``fill`` (0 = the mean after normalisation).
    """

    def __init__(self, freq_width: int = 24, time_width: int = 24, freq_masks: int = 2, time_masks: int = 2,
                 fill: float = 0.0) -> None:
        super().__init__()
        if min(freq_width, time_width, freq_masks, time_masks) < 0:
            raise ValueError("SpecAugment: widths and mask counts must be >= 0")
        self.freq_width, self.time_width = freq_width, time_width
        self.freq_masks, self.time_masks, self.fill = freq_masks, time_masks, fill

    @staticmethod
    def _masks(n: int, size: int, width: int, count: int, device) -> torch.Tensor:
        keep = torch.ones(n, size, dtype=torch.bool, device=device)
        idx = torch.arange(size, device=device)
        for _ in range(count):
            w = torch.randint(0, width + 1, (n, 1), device=device)
            start = (torch.rand(n, 1, device=device) * (size - w + 1).clamp(min=1)).long()
            keep &= ~((idx >= start) & (idx < start + w))
        return keep

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return feats
        b, t, f = feats.shape
        keep_f = self._masks(b, f, min(self.freq_width, f), self.freq_masks, feats.device)   # (B, F)
        keep_t = self._masks(b, t, min(self.time_width, t), self.time_masks, feats.device)   # (B, T)
        keep = keep_t.unsqueeze(2) & keep_f.unsqueeze(1)                                     # (B, T, F)
        return torch.where(keep, feats, torch.full_like(feats, self.fill))


class StreamingFbank:
    """Chunks of mono audio at ``config.sample_rate`` -> the frames ``Fbank`` gives offline.

    ``push(chunk (N,))`` returns the new normalised frames ``(T_new, n_mels)`` (possibly zero
    rows); it keeps at most one window of samples between calls, so memory is constant.
    """

    def __init__(self, fbank: Fbank) -> None:
        self.fbank = fbank
        self.config = fbank.config
        self.reset()

    def reset(self) -> None:
        self.buffer = torch.zeros(0)
        self.frames_out = 0

    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        x = _as_float_waveform(chunk, "chunk")
        if x.dim() != 1:
            raise ValueError(f"chunk: expected mono samples (N,) at {self.config.sample_rate} Hz, got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("chunk contains NaN or Inf samples")
        buf = torch.cat([self.buffer.to(x.device), x])
        c = self.config
        n = c.num_frames(buf.numel())
        if n == 0:
            self.buffer = buf
            return x.new_zeros(0, c.num_mel_bins)
        used = c.num_samples(n)
        feats = self.fbank.normalize(self.fbank(buf[:used]))                  # (n, n_mels)
        self.buffer = buf[n * c.hop_length:]                                  # samples of future frames
        self.frames_out += n
        return feats
