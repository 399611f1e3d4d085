"""Live keyword spotting from a microphone: chunked resampling + the recurrent classifier.

A browser microphone delivers chunks at its own rate (44.1 or 48 kHz), while the model wants
16 kHz. ``StreamingResampler`` resamples chunk by chunk with the same windowed-sinc kernel as
``torchaudio.functional.resample`` and gives *the same samples* as resampling the whole
recording at once: each output block waits until the input samples its kernel spans have
arrived, and only those samples (kernel width + one block) are kept between chunks, so its
memory does not grow with the length of the stream. ``LiveKeywordSpotter`` feeds the
resampled audio to ``mambakit.audio.StreamingClassifier`` (constant-size recurrent state).

(The resampler belongs in ``mambakit.audio.frontend`` next to ``StreamingFbank``; it lives
here until the audio package takes it.)
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

from mambakit.audio.models import FrameMamba
from mambakit.audio.streaming import StreamingClassifier


class StreamingResampler:
    """Chunks at ``orig_freq`` -> chunks at ``new_freq``; concatenated outputs (after
    ``flush()``) equal ``torchaudio.functional.resample`` of the concatenated input.

    ``push(chunk (N,))`` -> the output samples that are final so far ``(M,)``;
    ``flush()`` -> the rest (the end of the stream is zero-padded, as offline).
    """

    def __init__(self, orig_freq: int, new_freq: int) -> None:
        for name, v in (("orig_freq", orig_freq), ("new_freq", new_freq)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        self.orig_freq, self.new_freq = orig_freq, new_freq
        self.identity = orig_freq == new_freq
        if not self.identity:
            resample = torchaudio.transforms.Resample(orig_freq, new_freq)
            gcd = math.gcd(orig_freq, new_freq)
            self.o, self.n = orig_freq // gcd, new_freq // gcd      # input / output samples per block
            self.kernel, self.width = resample.kernel, resample.width   # (n, 1, 2w + o), w
        self.reset()

    def reset(self) -> None:
        self.received = 0           # input samples seen
        self.blocks = 0             # output blocks emitted
        self.emitted = 0            # output samples emitted
        # buffer holds input samples [blocks * o - w, received); zeros stand for t < 0
        self.buffer = torch.zeros(0 if self.identity else self.width)

    def _run(self, segment: torch.Tensor, n_blocks: int) -> torch.Tensor:
        out = F.conv1d(segment.view(1, 1, -1), self.kernel, stride=self.o)   # (1, n, n_blocks)
        return out[0, :, :n_blocks].transpose(0, 1).reshape(-1)              # (n_blocks * n,)

    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        if chunk.dim() != 1:
            raise ValueError(f"chunk: expected mono samples (N,), got shape {tuple(chunk.shape)}")
        chunk = chunk.float()
        self.received += chunk.numel()
        if self.identity:
            self.emitted += chunk.numel()
            return chunk
        self.buffer = torch.cat([self.buffer, chunk])
        o, w = self.o, self.width
        # block k needs input [k*o - w, k*o + w + o): ready when k*o + w + o <= received
        last = (self.received - w - o) // o
        n_blocks = last - self.blocks + 1
        if n_blocks <= 0:
            return chunk.new_zeros(0)
        out = self._run(self.buffer[:n_blocks * o + 2 * w], n_blocks)
        self.blocks += n_blocks
        self.buffer = self.buffer[n_blocks * o:]
        self.emitted += out.numel()
        return out

    def flush(self) -> torch.Tensor:
        """The remaining output samples; call once at the end of the stream."""
        if self.identity:
            return torch.zeros(0)
        total = math.ceil(self.n * self.received / self.o)          # offline output length
        need = total - self.emitted
        if need <= 0:
            return torch.zeros(0)
        n_blocks = math.ceil(need / self.n)
        segment = torch.cat([self.buffer, self.buffer.new_zeros(n_blocks * self.o + 2 * self.width)])
        out = self._run(segment[:n_blocks * self.o + 2 * self.width], n_blocks)[:need]
        self.blocks += n_blocks
        self.emitted += out.numel()
        self.buffer = self.buffer.new_zeros(0)
        return out

    def state_samples(self) -> int:
        """Samples held between chunks (bounded by kernel width + one block + one chunk)."""
        return self.buffer.numel()


def to_mono(samples: np.ndarray) -> torch.Tensor:
    """A Gradio microphone chunk (``(N,)`` or ``(N, C)`` int16/float) -> float mono ``(N,)``."""
    a = np.asarray(samples)
    if a.dtype.kind == "i":
        x = torch.from_numpy(a.astype(np.float32) / float(np.iinfo(a.dtype).max + 1))
    elif a.dtype.kind == "u":
        half = float(np.iinfo(a.dtype).max + 1) / 2
        x = torch.from_numpy((a.astype(np.float32) - half) / half)
    elif a.dtype.kind == "f":
        x = torch.from_numpy(a.astype(np.float32))
    else:
        raise TypeError(f"microphone chunk: expected integer PCM or float samples, got {a.dtype}")
    if x.dim() == 2:
        x = x.mean(1)                                                         # (N, C) -> (N,)
    elif x.dim() != 1:
        raise ValueError(f"microphone chunk: expected (N,) or (N, C), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("microphone chunk contains NaN or Inf samples")
    return x


class LiveKeywordSpotter:
    """One live stream: chunks at any rate -> running class probabilities ``(C,)``.

    The microphone's rate is fixed by its first chunk; a chunk at another rate starts over.
    """

    def __init__(self, model: FrameMamba) -> None:
        self.classifier = StreamingClassifier(model)
        self.resampler: Optional[StreamingResampler] = None
        self.last: Optional[torch.Tensor] = None

    @property
    def seconds(self) -> float:
        return 0.0 if self.resampler is None else self.resampler.received / self.resampler.orig_freq

    def reset(self) -> None:
        self.classifier.reset()
        self.resampler, self.last = None, None

    def feed(self, sample_rate: int, samples: np.ndarray) -> Optional[torch.Tensor]:
        """Add one chunk; the running probabilities (``None`` before the first 25 ms frame)."""
        if self.resampler is not None and sample_rate != self.resampler.orig_freq:
            self.reset()
        if self.resampler is None:
            self.resampler = StreamingResampler(int(sample_rate), self.classifier.sample_rate)
        x = self.resampler.push(to_mono(samples))
        if x.numel():
            with torch.inference_mode():
                p = self.classifier.feed(x)
            if p is not None:
                self.last = p
        return self.last

    def state_bytes(self) -> int:
        """Recurrent state + audio buffers, constant in the stream's length."""
        extra = 0 if self.resampler is None else self.resampler.state_samples() * 4
        return self.classifier.state_bytes() + extra
