"""Count-based language-model baselines, scored on the same windows as the neural model.

``MarkovLM(order)`` is an order-``k`` Markov chain over token ids with add-``alpha``
smoothing, fit by counting ``(context, next token)`` pairs in training sequences. Scored on
next-token windows exactly as the model is: a target at window position ``t`` only sees the
``t + 1`` tokens before it in its window, so the first ``k - 1`` targets of a window fall back
to the chains of lower order. ``order = 0`` is the unigram (base composition) baseline.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _context_codes(tokens: np.ndarray, order: int, vocab: int) -> np.ndarray:
    """Code of the ``order`` tokens before each position ``i >= order``: ``(len - order,)``.

    ``code = sum_m tokens[i - m] * vocab ** (m - 1)`` for ``m = 1..order`` (0 for order 0).
    """
    n = len(tokens) - order
    code = np.zeros(n, dtype=np.int64)
    for m in range(1, order + 1):
        code += tokens[order - m:order - m + n].astype(np.int64) * vocab ** (m - 1)
    return code


class MarkovLM:
    """Order-``order`` Markov chain with add-``alpha`` smoothing (and every lower order, for
    contexts shorter than ``order`` at the start of a window)."""

    def __init__(self, order: int, vocab_size: int, alpha: float = 0.5) -> None:
        if not isinstance(order, int) or order < 0:
            raise ValueError(f"order must be a non-negative int, got {order!r}")
        if vocab_size < 2 or vocab_size ** (order + 1) > 2**31:
            raise ValueError(f"vocab_size={vocab_size} with order={order} is out of range for a count table")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.order, self.vocab, self.alpha = order, vocab_size, alpha
        self.log_probs: list[np.ndarray] = []

    def fit(self, sequences: Sequence[np.ndarray]) -> "MarkovLM":
        """Count transitions in each sequence (1-D token ids; no context spans two sequences)."""
        v = self.vocab
        self.log_probs = []
        for j in range(self.order + 1):
            counts = np.zeros(v ** (j + 1), dtype=np.int64)
            for seq in sequences:
                seq = np.asarray(seq).reshape(-1)
                if len(seq) <= j:
                    continue
                if seq.min() < 0 or seq.max() >= v:
                    raise ValueError(f"token ids must lie in [0, {v})")
                pair = _context_codes(seq, j, v) * v + seq[j:].astype(np.int64)
                counts += np.bincount(pair, minlength=v ** (j + 1))
            table = counts.reshape(v ** j, v).astype(np.float64) + self.alpha   # (contexts, vocab)
            self.log_probs.append(np.log(table / table.sum(axis=1, keepdims=True)))
        return self

    def window_nll(self, windows: np.ndarray) -> float:
        """Mean negative log-likelihood (nats) of ``windows[:, 1:]`` given the tokens before
        each target inside its window. ``windows``: ``(n, seq_len + 1)`` token ids."""
        if not self.log_probs:
            raise RuntimeError("call fit() first")
        windows = np.asarray(windows, dtype=np.int64)
        if windows.ndim != 2 or windows.shape[1] < 2:
            raise ValueError(f"windows: expected shape (n, seq_len + 1) with seq_len >= 1, got {windows.shape}")
        n, length = windows.shape
        total = 0.0
        for t in range(1, length):           # target windows[:, t] sees windows[:, :t]
            j = min(self.order, t)
            code = np.zeros(n, dtype=np.int64)
            for m in range(1, j + 1):
                code += windows[:, t - m] * self.vocab ** (m - 1)
            total += float(self.log_probs[j][code, windows[:, t]].sum())
        return -total / (n * (length - 1))

    def bits_per_token(self, windows: np.ndarray) -> float:
        return self.window_nll(windows) / math.log(2.0)
