"""Count-based baselines scored in the same harness as the neural DNA models.

- ``MaskedMarkov(k)``: predicts a masked base from the ``k`` bases on each side (a context of
  ``2k`` bases, i.e. order ``2k``), counted on the training genomes with add-``alpha``
  smoothing. It reads the *same corrupted input* as the model: when a context base is itself
  ``[MASK]`` or outside the window, it backs off to the largest symmetric context without one
  (down to the base composition).
- ``KmerLogistic(k)``: logistic regression on normalised k-mer counts (k = 1..``k``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .tokenizers import BASE_OFFSET, MASK_ID

N_BASES = 5  # A C G T N


class MaskedMarkov:
    """Masked-base predictor from ``k`` bases either side (see the module doc)."""

    def __init__(self, k: int = 3, alpha: float = 0.5) -> None:
        if not isinstance(k, int) or not 0 <= k <= 4:
            raise ValueError(f"k: expected an int in [0, 4], got {k!r}")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.k, self.alpha = k, alpha
        self.log_probs: list[np.ndarray] = []

    @staticmethod
    def _codes(seq: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Context codes and centre bases for every position with ``j`` bases on both sides."""
        n = len(seq) - 2 * j
        code = np.zeros(n, dtype=np.int64)
        for m in list(range(0, j)) + list(range(j + 1, 2 * j + 1)):
            code = code * N_BASES + seq[m:m + n]
        return code, seq[j:j + n]

    def fit(self, sequences: Sequence[np.ndarray]) -> "MaskedMarkov":
        """``sequences``: base ids (``4..8``, as ``CharTokenizer`` writes them)."""
        self.log_probs = []
        for j in range(self.k + 1):
            counts = np.zeros(N_BASES ** (2 * j + 1), dtype=np.int64)
            for seq in sequences:
                s = np.asarray(seq, dtype=np.int64) - BASE_OFFSET
                if s.min() < 0 or s.max() >= N_BASES:
                    raise ValueError("sequences must hold base ids 4..8")
                code, centre = self._codes(s, j)
                counts += np.bincount(code * N_BASES + centre, minlength=len(counts))
            table = counts.reshape(-1, N_BASES).astype(np.float64) + self.alpha
            self.log_probs.append(np.log(table / table.sum(1, keepdims=True)))
        return self

    def nll(self, inputs: np.ndarray, targets: np.ndarray) -> float:
        """Mean NLL (nats) of ``targets >= 0`` given the corrupted ``inputs``; both ``(n, L)``."""
        if not self.log_probs:
            raise RuntimeError("call fit() first")
        inputs, targets = np.asarray(inputs, np.int64), np.asarray(targets, np.int64)
        n, L = inputs.shape
        rows, cols = np.nonzero(targets >= 0)
        total = 0.0
        done = np.zeros(len(rows), dtype=bool)
        for j in range(self.k, -1, -1):
            ok = ~done & (cols - j >= 0) & (cols + j < L)
            code = np.zeros(len(rows), dtype=np.int64)
            for off in list(range(-j, 0)) + list(range(1, j + 1)):
                c = np.clip(cols + off, 0, L - 1)
                tok = inputs[rows, c]
                ok &= tok != MASK_ID
                code = code * N_BASES + np.clip(tok - BASE_OFFSET, 0, N_BASES - 1)
            centre = targets[rows, cols] - BASE_OFFSET
            total += float(self.log_probs[j][code[ok], centre[ok]].sum())
            done |= ok
        return -total / len(rows)

    def bits_per_base(self, inputs: np.ndarray, targets: np.ndarray) -> float:
        return self.nll(inputs, targets) / math.log(2.0)


def kmer_features(ids: np.ndarray, k: int) -> np.ndarray:
    """Normalised counts of all j-mers over A/C/G/T for j = 1..k: ``(n, sum_j 4**j)``.
    ``ids (n, L)`` base ids ``4..8``; j-mers containing N are skipped."""
    ids = np.asarray(ids, np.int64) - BASE_OFFSET
    n, L = ids.shape
    feats = []
    for j in range(1, k + 1):
        code = np.zeros((n, L - j + 1), dtype=np.int64)
        valid = np.ones((n, L - j + 1), dtype=bool)
        for m in range(j):
            part = ids[:, m:m + L - j + 1]
            valid &= part < 4
            code = code * 4 + np.clip(part, 0, 3)
        counts = np.zeros((n, 4 ** j))
        r = np.repeat(np.arange(n), L - j + 1).reshape(n, -1)
        np.add.at(counts, (r[valid], code[valid]), 1.0)
        feats.append(counts / np.maximum(counts.sum(1, keepdims=True), 1.0))
    return np.concatenate(feats, axis=1)


class KmerLogistic:
    """Logistic regression (scikit-learn, standardised features) on k-mer spectra."""

    def __init__(self, k: int = 5, C: float = 1.0, seed: int = 0) -> None:
        if not isinstance(k, int) or not 1 <= k <= 7:
            raise ValueError(f"k: expected an int in [1, 7], got {k!r}")
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        self.k = k
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))

    def fit(self, ids: np.ndarray, labels: np.ndarray) -> "KmerLogistic":
        self.model.fit(kmer_features(ids, self.k), labels)
        return self

    def predict_proba(self, ids: np.ndarray) -> np.ndarray:
        """``(n, C)`` class probabilities."""
        return self.model.predict_proba(kmer_features(ids, self.k))
