"""The checkpoints shipped inside the package, loaded lazily, once, and shared by all requests.

A ``ShippedModel`` names a folder written by ``save_pretrained`` (``config.json`` +
``model.safetensors``, plus the ``card.json`` that ``make_cards`` writes from the recipe's
record) and the function that loads it. ``model()`` loads on first use under a lock (so
concurrent first requests load it once), puts it in eval mode and freezes its parameters;
``latency_ms()`` times one typical forward pass on this machine once (median of a few runs)
and caches the number for the model card.

Inference runs on the CPU: the models are small, and a demo must work on a laptop.
"""
from __future__ import annotations

import json
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "card.json"
# One latency measurement at a time, so that two cards filled at once do not slow each other down.
_MEASURE_LOCK = threading.Lock()


@dataclass(eq=False)
class ShippedModel:
    """A checkpoint folder that ships with the package.

    ``load``: ``directory -> nn.Module``; ``typical_input``: ``model -> args`` for one forward
    of the size the demo feeds (e.g. ``(torch.zeros(1, 100, 128),)``), used to measure latency;
    ``latency_input``: words for that input shown on the card (``"one 1-s clip (100 frames)"``).
    """

    key: str
    directory: Path
    load: Callable[[Path], nn.Module]
    typical_input: Callable[[nn.Module], tuple]
    latency_input: str
    _model: Optional[nn.Module] = field(default=None, init=False, repr=False)
    _latency: Optional[float] = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def available(self) -> bool:
        """True when the weights and config are present (the package may ship without them)."""
        return (self.directory / CONFIG).is_file() and (self.directory / WEIGHTS).is_file()

    def require(self) -> None:
        if not self.available():
            raise FileNotFoundError(f"the checkpoint '{self.key}' is not installed (looked in {self.directory}); "
                                    "reinstall mambakit with its package data")

    def model(self) -> nn.Module:
        """The loaded model (eval mode, no gradients stored for its weights), loaded once."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self.require()
                    m = self.load(self.directory).to("cpu").eval()
                    for p in m.parameters():
                        p.requires_grad_(False)
                    self._model = m
        return self._model

    def config(self) -> dict[str, Any]:
        """The checkpoint's ``config.json``."""
        self.require()
        return json.loads((self.directory / CONFIG).read_text())

    def card_facts(self) -> dict[str, Any]:
        """``card.json`` (the facts copied from the recipe's record), or ``{}`` when absent."""
        path = self.directory / CARD
        if not path.is_file():
            return {}
        return json.loads(path.read_text())

    def file_bytes(self) -> int:
        """Bytes of the weights file on disk."""
        self.require()
        return (self.directory / WEIGHTS).stat().st_size

    def parameters(self) -> int:
        """Number of parameters of the loaded model (shared tensors counted once)."""
        return sum(p.numel() for p in self.model().parameters())

    def latency_ms(self, repeats: int = 7) -> float:
        """Median wall time of one forward pass on ``typical_input`` in milliseconds, measured
        on first call (after two warm-up runs) and cached."""
        if self._latency is None:
            model = self.model()
            args = self.typical_input(model)
            with self._lock, _MEASURE_LOCK:
                if self._latency is None:
                    times = []
                    with torch.inference_mode():
                        for i in range(repeats + 2):
                            start = time.perf_counter()
                            model(*args)
                            if i >= 2:
                                times.append(time.perf_counter() - start)
                    self._latency = 1000.0 * statistics.median(times)
        return self._latency
