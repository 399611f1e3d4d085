"""The two synthetic tasks of the Mamba paper (Gu & Dao 2023, arXiv:2312.00752, section 4.1 and
appendix E.1), as map-style datasets with a fixed random stream per split.

Both are sequence-in, answers-at-the-end tasks: an item is ``(input_ids (L,), targets (T,))``
with ``int64`` tensors, and a causal model is scored on its predictions at the *last* ``T``
positions of the input (``num_targets`` on the dataset). ``L`` is the full input length, so an
item "at length 2**20" is exactly 1,048,576 tokens long.

Selective copying (paper: length 4096, vocabulary of 16 *including* the noise token, 16 data
tokens to memorise, 2-layer models of width 64):
    ``num_tokens`` data tokens are scattered at random positions of a noise-filled context of
    ``L - num_tokens`` tokens, followed by ``num_tokens`` marker tokens; at the marker
    positions the model must emit the data tokens in their order of appearance. Token ids:
    ``0`` noise, ``1`` marker, ``2 .. vocab_size - 1`` data (14 data symbols at vocab 16).

Induction heads (paper: trained at length 256, vocabulary 16, evaluated at 2**6 .. 2**20):
    a uniformly random sequence over the data tokens ``0 .. vocab_size - 2`` in which the
    special token ``vocab_size - 1`` occurs exactly twice: once at a random position ``p``
    (``0 <= p <= L - 3``) and once as the last token. The answer is the token at ``p + 1``, the
    one that followed the special token's earlier occurrence (associative recall + copy, as in
    the H3 paper's version of the task that the Mamba paper follows).

Every item is a pure function of ``(seed, split, length, index)``: the same arguments give the
same tokens on every machine and in every process; different splits never share a stream.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

SPLITS = {"train": 0, "val": 1, "test": 2}

NOISE, MARKER = 0, 1        # selective copying
FIRST_DATA_TOKEN = 2        # selective copying: data tokens are 2 .. vocab_size - 1


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


class _SyntheticTask(Dataset):
    """Shared argument checks, seeding and indexing; subclasses implement ``_generate``."""

    num_targets: int

    def __init__(self, length: int, num_samples: int, vocab_size: int, split: str, seed: int,
                 min_length: int, min_vocab: int) -> None:
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {sorted(SPLITS)}, got {split!r}")
        self.length = _check_int("length", length, min_length)
        self.num_samples = _check_int("num_samples", num_samples, 1)
        self.vocab_size = _check_int("vocab_size", vocab_size, min_vocab)
        self.seed = _check_int("seed", seed, 0)
        self.split = split

    def __len__(self) -> int:
        return self.num_samples

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, SPLITS[self.split], self.length, index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids (L,) int64, targets (num_targets,) int64)`` of item ``index``."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index: expected an int, got {type(index).__name__}")
        if index < 0:
            index += self.num_samples
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        ids, targets = self._generate(self._rng(int(index)))
        return torch.from_numpy(ids), torch.from_numpy(targets)

    def _generate(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(length={self.length}, num_samples={self.num_samples}, "
                f"vocab_size={self.vocab_size}, split={self.split!r}, seed={self.seed})")


class InductionHeads(_SyntheticTask):
    """Induction heads: recall the token that followed the special token's first occurrence.

    Items: ``input_ids (L,)`` over ``0 .. vocab_size - 1`` whose last token is the special token
    ``vocab_size - 1``; ``targets (1,)`` the answer, a data token in ``0 .. vocab_size - 2``.
    """

    num_targets = 1

    def __init__(self, length: int = 256, num_samples: int = 1024, vocab_size: int = 16,
                 split: str = "train", seed: int = 0) -> None:
        super().__init__(length, num_samples, vocab_size, split, seed, min_length=3, min_vocab=3)

    @property
    def special_token(self) -> int:
        return self.vocab_size - 1

    def _generate(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        ids = rng.integers(0, self.vocab_size - 1, size=self.length, dtype=np.int64)   # data tokens only
        p = int(rng.integers(0, self.length - 2))          # the answer at p + 1 lies before the query
        ids[p] = self.special_token
        ids[-1] = self.special_token
        return ids, ids[p + 1: p + 2].copy()


class SelectiveCopying(_SyntheticTask):
    """Selective copying: emit the scattered data tokens, in order, at the trailing markers.

    Items: ``input_ids (L,)`` = a context of ``L - num_tokens`` noise tokens holding
    ``num_tokens`` data tokens at random distinct positions, then ``num_tokens`` markers;
    ``targets (num_tokens,)`` the data tokens in order of appearance.
    """

    def __init__(self, length: int = 256, num_samples: int = 1024, num_tokens: int = 16,
                 vocab_size: int = 16, split: str = "train", seed: int = 0) -> None:
        self.num_tokens = _check_int("num_tokens", num_tokens, 1)
        super().__init__(length, num_samples, vocab_size, split, seed, min_length=2 * self.num_tokens,
                         min_vocab=FIRST_DATA_TOKEN + 1)

    @property
    def num_targets(self) -> int:  # type: ignore[override]
        return self.num_tokens

    def _generate(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n, context = self.num_tokens, self.length - self.num_tokens
        data = rng.integers(FIRST_DATA_TOKEN, self.vocab_size, size=n, dtype=np.int64)
        where = np.sort(rng.choice(context, size=n, replace=False))
        ids = np.full(self.length, NOISE, dtype=np.int64)
        ids[where] = data
        ids[context:] = MARKER
        return ids, data
