"""DNA as tokens (A C G T N) and next-token windows for language-model pretraining.

Minimal on purpose: ``mambakit.genomics`` owns the full DNA tokenizer (special tokens, reverse
complement); this one only turns bases into ids ``A=0 C=1 G=2 T=3 N=4`` with checked input.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

IUPAC_AMBIGUOUS = "RYKMSWBDHV"


class DNATokenizer:
    """Bases to ids and back: ``A=0, C=1, G=2, T=3, N=4`` (``vocab_size = 5``).

    Lower case (soft-masked repeats) reads as upper case. IUPAC ambiguity codes (R, Y, K, M,
    S, W, B, D, H, V) become ``N`` with ``ambiguous="n"`` (default) or raise with
    ``ambiguous="error"``; anything else (U, gaps, digits...) raises ``ValueError`` naming the
    character and its position.
    """

    alphabet = "ACGTN"

    def __init__(self, ambiguous: str = "n") -> None:
        if ambiguous not in ("n", "error"):
            raise ValueError(f"ambiguous: expected 'n' or 'error', got {ambiguous!r}")
        self.ambiguous = ambiguous
        table = np.full(256, -1, dtype=np.int16)
        for i, base in enumerate(self.alphabet):
            table[ord(base)] = table[ord(base.lower())] = i
        if ambiguous == "n":
            for code in IUPAC_AMBIGUOUS:
                table[ord(code)] = table[ord(code.lower())] = self.alphabet.index("N")
        self._table = table

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)

    def encode(self, sequence: str, name: str = "sequence") -> np.ndarray:
        """``str (L,)`` -> ``uint8 ids (L,)``. ``name`` labels the error message."""
        if not isinstance(sequence, str):
            raise TypeError(f"{name}: expected str, got {type(sequence).__name__}")
        try:
            raw = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError as err:
            raise ValueError(f"{name}: non-ASCII character {sequence[err.start]!r} at position "
                             f"{err.start}") from err
        ids = self._table[raw]
        bad = np.flatnonzero(ids < 0)
        if bad.size:
            pos = int(bad[0])
            raise ValueError(f"{name}: invalid DNA character {sequence[pos]!r} at position {pos} "
                             f"({bad.size} invalid in total); expected A, C, G, T, N"
                             + (" or IUPAC ambiguity codes" if self.ambiguous == "n" else ""))
        return ids.astype(np.uint8)

    def decode(self, ids: np.ndarray | torch.Tensor | Sequence[int]) -> str:
        """``ids (L,)`` -> ``str``; raises ``ValueError`` for ids outside ``[0, 5)``."""
        arr = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.vocab_size}), got range "
                             f"[{arr.min()}, {arr.max()}]")
        return "".join(self.alphabet[int(i)] for i in arr)


class LMWindowDataset(Dataset):
    """Fixed-length next-token windows cut from token sequences (one window never spans two).

    Item ``i`` is ``(input_ids (seq_len,), target_ids (seq_len,))``, both int64, with
    ``target_ids[t] = input_ids[t + 1]`` in the source sequence. Windows start every
    ``stride`` tokens (default ``seq_len``: each token is predicted once). ``max_windows``
    keeps that many windows spread evenly over all of them (deterministic), for a fixed,
    cheaper evaluation set.
    """

    def __init__(self, sequences: Sequence[np.ndarray], seq_len: int, stride: int | None = None,
                 max_windows: int | None = None) -> None:
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"seq_len: expected a positive int, got {seq_len!r}")
        stride = seq_len if stride is None else stride
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride: expected a positive int, got {stride!r}")
        if max_windows is not None and (not isinstance(max_windows, int) or max_windows < 1):
            raise ValueError(f"max_windows: expected a positive int or None, got {max_windows!r}")
        self.sequences = [np.ascontiguousarray(np.asarray(s).reshape(-1)) for s in sequences]
        self.seq_len = seq_len
        seq_ids, starts = [], []
        for k, seq in enumerate(self.sequences):
            if seq.dtype.kind not in "iu":
                raise TypeError(f"sequence {k}: expected integer token ids, got dtype {seq.dtype}")
            s = np.arange(0, len(seq) - seq_len, stride, dtype=np.int64)  # needs seq_len + 1 tokens
            seq_ids.append(np.full(len(s), k, dtype=np.int64))
            starts.append(s)
        self._seq = np.concatenate(seq_ids) if seq_ids else np.zeros(0, np.int64)
        self._start = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        if len(self._start) == 0:
            raise ValueError(f"no window of {seq_len + 1} tokens fits in the given sequences "
                             f"(lengths {[len(s) for s in self.sequences]})")
        if max_windows is not None and max_windows < len(self._start):
            keep = np.unique(np.linspace(0, len(self._start) - 1, max_windows).round().astype(np.int64))
            self._seq, self._start = self._seq[keep], self._start[keep]

    def __len__(self) -> int:
        return len(self._start)

    def window(self, index: int) -> np.ndarray:
        """The ``seq_len + 1`` source tokens of window ``index``."""
        seq, start = self.sequences[self._seq[index]], int(self._start[index])
        return seq[start:start + self.seq_len + 1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        chunk = torch.from_numpy(self.window(index % len(self)).astype(np.int64))
        return chunk[:-1], chunk[1:]

    @property
    def num_tokens(self) -> int:
        """Number of predicted tokens over all windows (``len(self) * seq_len``)."""
        return len(self) * self.seq_len
