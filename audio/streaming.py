"""Streaming recognition: feed audio chunk by chunk, get a running prediction, constant memory.

``StreamingClassifier(model)`` wraps a causal ``FrameMamba``. Each ``feed(chunk)`` turns the
new samples into fbank frames (``StreamingFbank``: exactly the frames the offline frontend
gives), advances every layer's recurrent state (``conv_state``, ``ssm_state``: a fixed size,
whatever the length of audio heard so far) over those frames, and returns the running
class probabilities. After the whole clip, the prediction equals ``model(features)`` on the
same audio offline (tested in ``tests/audio``).

Chunks must be mono and already at the model's sample rate: resampling chunk by chunk is not
exact at the chunk borders, so another rate is refused (``ValueError``) rather than converted.
"""
from __future__ import annotations

from typing import Optional

import torch

from .frontend import StreamingFbank
from .models import FrameMamba


class StreamingClassifier:
    """Keyword spotting on a live stream with a ``FrameMamba`` (batch of one stream).

    ``feed(chunk (N,), sample_rate)`` -> probabilities ``(C,)`` after the newest frame, or
    ``None`` until the first 25 ms window is complete. ``reset()`` starts a new stream.
    """

    def __init__(self, model: FrameMamba) -> None:
        if not isinstance(model, FrameMamba):
            raise TypeError(f"streaming needs a causal FrameMamba, got {type(model).__name__}")
        self.model = model.eval()
        self.sample_rate = model.fbank.config.sample_rate
        self.frontend = StreamingFbank(model.fbank)
        self.reset()

    def reset(self) -> None:
        self.frontend.reset()
        self.cache = self.model.backbone.allocate_inference_cache(1)
        self.frames = 0
        self.feature_sum: Optional[torch.Tensor] = None
        self.last_logits: Optional[torch.Tensor] = None

    def state_bytes(self) -> int:
        """Bytes of recurrent state + audio buffer (constant in stream length)."""
        extra = self.frontend.buffer.numel() * 4
        if self.feature_sum is not None:
            extra += self.feature_sum.numel() * self.feature_sum.element_size()
        return self.cache.state_bytes() + extra

    @torch.no_grad()
    def feed(self, chunk: torch.Tensor, sample_rate: Optional[int] = None) -> Optional[torch.Tensor]:
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise ValueError(f"chunk at {sample_rate} Hz: the stream must be at the model's rate "
                             f"({self.sample_rate} Hz); resample the whole stream beforehand")
        if isinstance(chunk, torch.Tensor) and chunk.dim() == 2 and chunk.shape[0] > 1:
            raise ValueError(f"chunk has {chunk.shape[0]} channels: mix the stream down to mono first")
        if isinstance(chunk, torch.Tensor) and chunk.dim() == 2:
            chunk = chunk[0]
        device = self.model.head.weight.device
        frames = self.frontend.push(chunk)                                    # (T_new, F)
        if frames.shape[0]:
            h = self.model.forward_features(frames.to(device).unsqueeze(0), inference_params=self.cache)
            self.cache.seqlen_offset += frames.shape[0]
            self.frames += frames.shape[0]                                    # h: (1, T_new, D)
            if self.model.config.pooling == "mean":
                s = h.sum(1)
                self.feature_sum = s if self.feature_sum is None else self.feature_sum + s
                pooled = self.feature_sum / self.frames
            else:
                pooled = h[:, -1]
            self.last_logits = self.model.forward_head(pooled)[0]             # (C,)
        return None if self.last_logits is None else self.last_logits.softmax(-1)

    def run(self, waveform: torch.Tensor, chunk_ms: float = 100.0) -> list[torch.Tensor]:
        """Feed a whole mono clip ``(N,)`` in chunks of ``chunk_ms``; the running predictions."""
        if chunk_ms <= 0:
            raise ValueError(f"chunk_ms must be > 0, got {chunk_ms}")
        step = max(1, int(round(self.sample_rate * chunk_ms / 1000.0)))
        outs = []
        for start in range(0, waveform.shape[-1], step):
            p = self.feed(waveform[..., start:start + step])
            if p is not None:
                outs.append(p)
        return outs
