"""DNA tokenizers: one token per base (with special tokens and reverse complement) or k-mers.

Vocabulary of ``CharTokenizer`` (``vocab_size = 9``)::

    0 [PAD]  1 [MASK]  2 [CLS]  3 [EOS]  4 A  5 C  6 G  7 T  8 N

Conversions, documented rather than silent:

- lower case (soft-masked repeats) reads as upper case (``lowercase="upper"``, default) or is
  refused (``lowercase="error"``);
- IUPAC ambiguity codes (R Y K M S W B D H V) become ``N`` **with a warning** naming how many
  (``iupac="n"``, default) or are refused (``iupac="error"``);
- RNA ``U`` is refused by default (``rna="error"``); ``rna="t"`` reads it as ``T``;
- anything else (gaps, digits, ``X``...), empty sequences, and sequences longer than
  ``max_length`` raise ``ValueError`` naming the character/position or the length.

``reverse_complement_ids`` maps token ids to the ids of the reverse complement (specials stay
where they are in the complement map, and the sequence axis is flipped).
"""
from __future__ import annotations

import itertools
import warnings
from typing import Optional, Sequence

import numpy as np
import torch

SPECIALS = ("[PAD]", "[MASK]", "[CLS]", "[EOS]")
BASES = "ACGTN"
PAD_ID, MASK_ID, CLS_ID, EOS_ID = 0, 1, 2, 3
BASE_OFFSET = len(SPECIALS)
IUPAC_AMBIGUOUS = "RYKMSWBDHV"
_COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}


def complement_map() -> list[int]:
    """``map[id]`` = id of the complementary token for ``CharTokenizer`` ids (specials map to
    themselves): ``[0, 1, 2, 3, 7, 6, 5, 4, 8]``."""
    out = list(range(BASE_OFFSET + len(BASES)))
    for i, base in enumerate(BASES):
        out[BASE_OFFSET + i] = BASE_OFFSET + BASES.index(_COMPLEMENT[base])
    return out


def reverse_complement_ids(ids: torch.Tensor, comp_map: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Reverse complement of token ids ``(..., L)`` -> ``(..., L)`` (last axis flipped, each id
    replaced by its complement). ``comp_map`` defaults to ``complement_map()``."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"ids: expected a torch.Tensor, got {type(ids).__name__}")
    if ids.dtype not in (torch.int32, torch.int64, torch.uint8):
        raise TypeError(f"ids: expected an integer tensor, got {ids.dtype}")
    table = torch.tensor(comp_map if comp_map is not None else complement_map(), dtype=torch.long,
                         device=ids.device)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(table)):
        raise ValueError(f"ids must lie in [0, {len(table)}), got range [{int(ids.min())}, {int(ids.max())}]")
    return table[ids.long()].flip(-1).to(ids.dtype)


def reverse_complement(sequence: str) -> str:
    """Reverse complement of an A/C/G/T/N string (case kept)."""
    if not isinstance(sequence, str):
        raise TypeError(f"sequence: expected str, got {type(sequence).__name__}")
    table = str.maketrans("ACGTNacgtn", "TGCANtgcan")
    bad = set(sequence) - set("ACGTNacgtn")
    if bad:
        raise ValueError(f"reverse_complement: characters {sorted(bad)} are not A, C, G, T, N")
    return sequence.translate(table)[::-1]


class CharTokenizer:
    """One token per base, with ``[PAD] [MASK] [CLS] [EOS]`` specials (see the module doc).

    ``encode(seq) -> LongTensor (L,)`` (``(L + 1)`` or ``(L + 2)`` with ``add_cls`` / ``add_eos``);
    ``decode(ids) -> str`` (specials dropped unless ``keep_special``).
    """

    specials = SPECIALS
    bases = BASES

    def __init__(self, max_length: Optional[int] = None, lowercase: str = "upper", iupac: str = "n",
                 rna: str = "error", add_cls: bool = False, add_eos: bool = False) -> None:
        if lowercase not in ("upper", "error"):
            raise ValueError(f"lowercase: expected 'upper' or 'error', got {lowercase!r}")
        if iupac not in ("n", "error"):
            raise ValueError(f"iupac: expected 'n' or 'error', got {iupac!r}")
        if rna not in ("error", "t"):
            raise ValueError(f"rna: expected 'error' or 't', got {rna!r}")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length: expected a positive int or None, got {max_length!r}")
        self.max_length, self.lowercase, self.iupac, self.rna = max_length, lowercase, iupac, rna
        self.add_cls, self.add_eos = add_cls, add_eos
        table = np.full(256, -1, dtype=np.int16)
        for i, base in enumerate(BASES):
            table[ord(base)] = BASE_OFFSET + i
            if lowercase == "upper":
                table[ord(base.lower())] = BASE_OFFSET + i
        self._n_id = BASE_OFFSET + BASES.index("N")
        self._ambiguous = np.zeros(256, dtype=bool)
        if iupac == "n":
            for code in IUPAC_AMBIGUOUS:
                for c in (code, code.lower()) if lowercase == "upper" else (code,):
                    table[ord(c)] = self._n_id
                    self._ambiguous[ord(c)] = True
        if rna == "t":
            for c in ("U", "u") if lowercase == "upper" else ("U",):
                table[ord(c)] = BASE_OFFSET + BASES.index("T")
        self._table = table

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(BASES)

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def mask_id(self) -> int:
        return MASK_ID

    def complement_map(self) -> list[int]:
        return complement_map()

    def encode_array(self, sequence: str, name: str = "sequence") -> np.ndarray:
        """``str`` -> base ids ``uint8 (L,)`` without specials (no length limit): for genomes."""
        if not isinstance(sequence, str):
            raise TypeError(f"{name}: expected str, got {type(sequence).__name__}")
        if not sequence:
            raise ValueError(f"{name}: empty sequence")
        try:
            raw = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError as err:
            raise ValueError(f"{name}: non-ASCII character {sequence[err.start]!r} at position {err.start}") from err
        ids = self._table[raw]
        bad = np.flatnonzero(ids < 0)
        if bad.size:
            pos, ch = int(bad[0]), sequence[int(bad[0])]
            hint = ""
            if ch in "Uu":
                hint = " (RNA: pass rna='t' to read U as T)"
            elif ch.islower():
                hint = " (lower case: pass lowercase='upper' to accept soft-masked bases)"
            elif ch.upper() in IUPAC_AMBIGUOUS:
                hint = " (IUPAC ambiguity code: pass iupac='n' to map it to N)"
            raise ValueError(f"{name}: invalid DNA character {ch!r} at position {pos} ({bad.size} invalid in "
                             f"total); expected A, C, G, T, N{hint}")
        n_amb = int(self._ambiguous[raw].sum())
        if n_amb:
            warnings.warn(f"{name}: {n_amb} IUPAC ambiguity code(s) mapped to N", stacklevel=3)
        return ids.astype(np.uint8)

    def encode(self, sequence: str, name: str = "sequence") -> torch.Tensor:
        """``str (L,)`` -> ``LongTensor (L [+1 cls] [+1 eos],)``; checks ``max_length``."""
        ids = self.encode_array(sequence, name)
        if self.max_length is not None and len(ids) > self.max_length:
            raise ValueError(f"{name}: length {len(ids)} exceeds max_length={self.max_length}")
        out = torch.from_numpy(ids.astype(np.int64))
        if self.add_cls:
            out = torch.cat([torch.tensor([CLS_ID]), out])
        if self.add_eos:
            out = torch.cat([out, torch.tensor([EOS_ID])])
        return out

    def batch_encode(self, sequences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ``ids (B, L_max)`` and ``attention_mask (B, L_max)`` (bool, True = token)."""
        if isinstance(sequences, str) or not len(sequences):
            raise ValueError("batch_encode: expected a non-empty list of strings")
        encoded = [self.encode(s, name=f"sequence {i}") for i, s in enumerate(sequences)]
        length = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), length), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(encoded), length), dtype=torch.bool)
        for i, e in enumerate(encoded):
            ids[i, :len(e)] = e
            mask[i, :len(e)] = True
        return ids, mask

    def decode(self, ids: torch.Tensor | np.ndarray | Sequence[int], keep_special: bool = False) -> str:
        """``ids (L,)`` -> ``str``; raises ``ValueError`` for ids outside the vocabulary."""
        arr = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.vocab_size}), got range [{arr.min()}, {arr.max()}]")
        vocab = list(SPECIALS) + list(BASES)
        return "".join(vocab[int(i)] for i in arr if keep_special or int(i) >= BASE_OFFSET)


class KmerTokenizer:
    """Overlapping (``stride=1``) or non-overlapping (``stride=k``) k-mers over A/C/G/T.

    Ids: ``0 [PAD]``, ``1 [MASK]``, ``2 [CLS]``, ``3 [EOS]``, ``4 [UNK]`` (any k-mer containing
    N), then the ``4**k`` k-mers in lexicographic order. A sequence of length ``L`` gives
    ``(L - k) // stride + 1`` tokens; shorter than ``k`` raises ``ValueError``. Input checks and
    conversions are those of ``CharTokenizer``.
    """

    def __init__(self, k: int = 6, stride: int = 1, **char_options) -> None:
        if not isinstance(k, int) or not 1 <= k <= 10:
            raise ValueError(f"k: expected an int in [1, 10], got {k!r}")
        if not isinstance(stride, int) or not 1 <= stride <= k:
            raise ValueError(f"stride: expected an int in [1, k={k}], got {stride!r}")
        self.k, self.stride = k, stride
        self.chars = CharTokenizer(**char_options)
        self.unk_id = 4
        self.offset = 5

    @property
    def vocab_size(self) -> int:
        return self.offset + 4 ** self.k

    def kmers(self) -> list[str]:
        """The k-mer strings in id order (id ``offset + i``)."""
        return ["".join(p) for p in itertools.product("ACGT", repeat=self.k)]

    def encode(self, sequence: str, name: str = "sequence") -> torch.Tensor:
        """``str (L,)`` -> ``LongTensor ((L - k) // stride + 1,)``."""
        bases = self.chars.encode_array(sequence, name).astype(np.int64) - BASE_OFFSET   # A..T=0..3, N=4
        if len(bases) < self.k:
            raise ValueError(f"{name}: length {len(bases)} is shorter than k={self.k}")
        starts = np.arange(0, len(bases) - self.k + 1, self.stride)
        windows = bases[starts[:, None] + np.arange(self.k)]                       # (T, k)
        code = (windows * (4 ** np.arange(self.k - 1, -1, -1))).sum(1) + self.offset
        code[(windows == 4).any(1)] = self.unk_id
        if self.chars.max_length is not None and len(code) > self.chars.max_length:
            raise ValueError(f"{name}: {len(code)} tokens exceed max_length={self.chars.max_length}")
        return torch.from_numpy(code)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> list[str]:
        """Ids -> k-mer strings (``[UNK]`` and specials by name)."""
        names = ["[PAD]", "[MASK]", "[CLS]", "[EOS]", "[UNK]"] + self.kmers()
        arr = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.vocab_size}), got range [{arr.min()}, {arr.max()}]")
        return [names[int(i)] for i in arr]
