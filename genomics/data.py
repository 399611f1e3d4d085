"""DNA data: indexed FASTA access, GFF gene calls, labelled windows and benchmark layouts.

- ``IndexedFasta``: random access ``fetch(name, start, end)``. Plain and BGZF-compressed
  (``bgzip``) FASTA files are indexed once (byte offset and line geometry of every record, the
  samtools ``.fai`` fields; for BGZF also the block index, ``.gzi``) and read by seeking, so a
  genome of any size costs no memory; existing ``<file>.fai`` / ``<file>.gzi`` are used, and
  ``write_index`` saves them. Plain gzip / xz / bzip2 files cannot be seeked into, so they are
  decompressed once into memory (fine for bacterial genomes; ``bgzip`` large ones).
- ``read_gff``: GFF3 features (``*.prodigal.gff.gz`` gene calls) as ``GeneFeature`` with
  0-based half-open coordinates.
- ``coding_windows`` / ``strand_windows``: balanced labelled windows derived from gene calls.
- ``MLMWindowDataset``: masked-LM windows cut from genomes (BERT masking, exact count per window).
- ``GenomicBenchmarksDataset``: the Genomic Benchmarks folder layout (per-class text files, or
  per-class coordinate CSVs resolved against a reference FASTA the user supplies).
- ``SequenceCSVDataset``: plain ``sequence,label`` CSV files.

Every dataset item is ``(input_ids LongTensor (L,), target)`` as the training engine expects.
"""
from __future__ import annotations

import csv
import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mambakit.data import open_maybe_compressed, read_fasta

from .bgzf import BgzfReader, is_bgzf, write_gzi_index
from .tokenizers import BASE_OFFSET, MASK_ID, CharTokenizer, complement_map, reverse_complement

_PLAIN_SUFFIXES = (".fa", ".fasta", ".fna", ".ffn", ".fas")


# ---- FASTA with random access -------------------------------------------------------------------
@dataclass(frozen=True)
class FaiEntry:
    """One record of a FASTA index (samtools ``.fai`` fields)."""

    name: str
    length: int
    offset: int       # byte offset of the first base
    line_bases: int   # bases per full line
    line_bytes: int   # bytes per full line (bases + newline)


def build_fai(path: str | os.PathLike) -> list[FaiEntry]:
    """Index a plain or BGZF FASTA file (offsets in uncompressed bytes, as samtools writes them);
    raises ``ValueError`` for ragged lines."""
    with (gzip.open(path, "rb") if is_bgzf(path) else open(path, "rb")) as fh:
        return _fai_from_lines(fh, path)


def _fai_from_lines(fh, path: str | os.PathLike) -> list[FaiEntry]:
    entries, name, length, offset, lb, lbytes, short_seen = [], None, 0, 0, 0, 0, False
    pos = 0
    for lineno, raw in enumerate(fh, start=1):
        line_len = len(raw)
        if raw.startswith(b">"):
            if name is not None:
                entries.append(FaiEntry(name, length, offset, lb, lbytes))
            fields = raw[1:].split()
            if not fields:
                raise ValueError(f"{path}:{lineno}: empty FASTA header")
            name, length, offset, lb, lbytes, short_seen = fields[0].decode("ascii"), 0, pos + line_len, 0, 0, False
        elif name is not None and raw.strip():
            bases = len(raw.rstrip(b"\r\n"))
            if short_seen:
                raise ValueError(f"{path}:{lineno}: record {name!r} has lines of unequal length; "
                                 "cannot index it (rewrap the file)")
            if lb == 0:
                lb, lbytes = bases, line_len
            elif bases != lb or line_len != lbytes:
                if bases > lb:
                    raise ValueError(f"{path}:{lineno}: record {name!r} has lines of unequal length")
                short_seen = True
            length += bases
        pos += line_len
    if name is not None:
        entries.append(FaiEntry(name, length, offset, lb, lbytes))
    if not entries:
        raise ValueError(f"{path}: no FASTA record found")
    return entries


def write_fai(entries: Sequence[FaiEntry], path: str | os.PathLike) -> None:
    """Write ``entries`` as a samtools ``.fai`` file (temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{e.name}\t{e.length}\t{e.offset}\t{e.line_bases}\t{e.line_bytes}\n" for e in entries))
    os.replace(tmp, path)


def read_fai(path: str | os.PathLike) -> list[FaiEntry]:
    out = []
    with open(path) as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            if len(f) < 5:
                raise ValueError(f"{path}: expected 5 tab-separated .fai columns, got {line!r}")
            out.append(FaiEntry(f[0], int(f[1]), int(f[2]), int(f[3]), int(f[4])))
    return out


def _is_compressed(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(6)
    return head.startswith((b"\x1f\x8b", b"\xfd7zXZ\x00", b"BZh"))


class IndexedFasta:
    """Random access to the records of a FASTA / FASTA.gz / FASTA.xz file.

    ``names``, ``lengths`` (``{name: length}``), ``fetch(name, start, end, strand="+") -> str``
    (0-based, half-open; ``strand="-"`` returns the reverse complement).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"FASTA file not found: {self.path}")
        self._memory: dict[str, str] = {}
        self._index: dict[str, FaiEntry] = {}
        self._bgzf: Optional[BgzfReader] = BgzfReader(self.path) if is_bgzf(self.path) else None
        if self._bgzf is None and _is_compressed(self.path):
            for rec in read_fasta(self.path):
                self._memory[rec.name] = rec.sequence
            self.lengths = {k: len(v) for k, v in self._memory.items()}
        else:
            fai = Path(str(self.path) + ".fai")
            entries = read_fai(fai) if fai.is_file() else build_fai(self.path)
            self._index = {e.name: e for e in entries}
            self.lengths = {e.name: e.length for e in entries}

    @property
    def names(self) -> list[str]:
        return list(self.lengths)

    def write_index(self) -> list[Path]:
        """Save ``<file>.fai`` (and ``<file>.gzi`` for BGZF) beside the file, so later opens skip
        indexing; returns the paths written. Decompressed-in-memory files have no index to save."""
        if not self._index:
            return []
        written = [Path(str(self.path) + ".fai")]
        write_fai(list(self._index.values()), written[0])
        if self._bgzf is not None:
            written.append(Path(str(self.path) + ".gzi"))
            write_gzi_index(self._bgzf.index, written[1])
        return written

    def fetch(self, name: str, start: int = 0, end: Optional[int] = None, strand: str = "+") -> str:
        """Bases ``[start, end)`` of record ``name`` as written (case kept)."""
        if name not in self.lengths:
            raise KeyError(f"{self.path.name}: no record {name!r}; records: {self.names[:5]}...")
        length = self.lengths[name]
        end = length if end is None else end
        if not (0 <= start <= end <= length):
            raise ValueError(f"{name}: interval [{start}, {end}) outside [0, {length})")
        if strand not in ("+", "-"):
            raise ValueError(f"strand: expected '+' or '-', got {strand!r}")
        if name in self._memory:
            seq = self._memory[name][start:end]
        else:
            e = self._index[name]
            first = e.offset + (start // e.line_bases) * e.line_bytes + start % e.line_bases
            last = e.offset + (end // e.line_bases) * e.line_bytes + end % e.line_bases
            if self._bgzf is not None:
                raw = self._bgzf.read(first, last - first)
            else:
                with open(self.path, "rb") as fh:
                    fh.seek(first)
                    raw = fh.read(last - first)
            seq = b"".join(raw.split()).decode("ascii")
        return reverse_complement(seq) if strand == "-" else seq


# ---- GFF ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeneFeature:
    """A GFF feature with 0-based half-open ``[start, end)`` coordinates."""

    seqid: str
    source: str
    type: str
    start: int
    end: int
    score: Optional[float]
    strand: str
    phase: Optional[int]
    attributes: dict


def read_gff(path: str | os.PathLike, types: Optional[Sequence[str]] = ("CDS",)) -> list[GeneFeature]:
    """Features of a GFF3 file (plain or gzip/xz/bzip2) whose type is in ``types`` (all if None).

    Stops at a ``##FASTA`` section. Raises ``ValueError`` naming the line for malformed rows.
    """
    out = []
    with open_maybe_compressed(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.startswith("##FASTA"):
                break
            if not line.strip() or line.startswith("#"):
                continue
            f = line.rstrip("\n").split("\t")
            if len(f) != 9:
                raise ValueError(f"{path}:{lineno}: expected 9 tab-separated GFF columns, got {len(f)}")
            if types is not None and f[2] not in types:
                continue
            try:
                start, end = int(f[3]) - 1, int(f[4])
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: bad coordinates {f[3]!r}, {f[4]!r}") from err
            if start < 0 or end <= start:
                raise ValueError(f"{path}:{lineno}: bad interval {f[3]}..{f[4]}")
            if f[6] not in ("+", "-", ".", "?"):
                raise ValueError(f"{path}:{lineno}: bad strand {f[6]!r}")
            attrs = dict(kv.split("=", 1) for kv in f[8].strip().strip(";").split(";") if "=" in kv)
            out.append(GeneFeature(f[0], f[1], f[2], start, end, None if f[5] == "." else float(f[5]),
                                   f[6], None if f[7] == "." else int(f[7]), attrs))
    return out


# ---- labelled windows from gene calls ----------------------------------------------------------
def _coverage(length: int, features: Sequence[GeneFeature], strand: Optional[str]) -> np.ndarray:
    """Cumulative sum (``length + 1``,) of per-base CDS coverage (on ``strand`` or any)."""
    cov = np.zeros(length + 1, dtype=np.int32)
    for f in features:
        if strand is None or f.strand == strand:
            cov[f.start] += 1
            cov[min(f.end, length)] -= 1
    covered = (np.cumsum(cov[:-1]) > 0).astype(np.int64)
    return np.concatenate([[0], np.cumsum(covered)])


def _sample(starts_by_rec: list[tuple[str, np.ndarray]], n: int, rng: np.random.Generator) -> list[tuple[str, int]]:
    total = sum(len(s) for _, s in starts_by_rec)
    if total < n:
        raise ValueError(f"only {total} candidate windows, {n} requested")
    flat = rng.choice(total, size=n, replace=False)
    flat.sort()
    out = []
    bounds = np.cumsum([0] + [len(s) for _, s in starts_by_rec])
    for k, (name, starts) in enumerate(starts_by_rec):
        sel = flat[(flat >= bounds[k]) & (flat < bounds[k + 1])] - bounds[k]
        out.extend((name, int(starts[i])) for i in sel)
    return out


def labelled_windows(genome: dict[str, np.ndarray], features: Sequence[GeneFeature], task: str, window: int,
                     n_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Balanced windows of ``window`` bases (forward strand of the genome) from gene calls.

    ``task="coding"``: label 1 = the window lies entirely inside CDSs, 0 = it overlaps none.
    ``task="strand"``: windows entirely inside CDSs of one strand only; label 1 = ``+``, 0 = ``-``.
    ``genome``: ``{record name: base ids (uint8)}``. Returns ``ids (2n, window)`` uint8 and
    ``labels (2n,)`` int64, class 0 first.
    """
    if task not in ("coding", "strand"):
        raise ValueError(f"task: expected 'coding' or 'strand', got {task!r}")
    if window < 1 or n_per_class < 1:
        raise ValueError("window and n_per_class must be positive")
    rng = np.random.default_rng(seed)
    by_rec: dict[str, list[GeneFeature]] = {}
    for f in features:
        by_rec.setdefault(f.seqid, []).append(f)
    missing = sorted(set(by_rec) - set(genome))
    if missing:
        raise ValueError(f"gene calls name records {missing[:3]} that the genome lacks")
    pos, neg = [], []
    for name, ids in genome.items():
        L = len(ids)
        if L < window:
            continue
        feats = by_rec.get(name, [])
        s = np.arange(0, L - window + 1)
        if task == "coding":
            c = _coverage(L, feats, None)
            inside = c[s + window] - c[s]
            pos.append((name, s[inside == window]))
            neg.append((name, s[inside == 0]))
        else:
            cp, cm = _coverage(L, feats, "+"), _coverage(L, feats, "-")
            ip, im = cp[s + window] - cp[s], cm[s + window] - cm[s]
            pos.append((name, s[(ip == window) & (im == 0)]))
            neg.append((name, s[(im == window) & (ip == 0)]))
    windows, labels = [], []
    for label, group in ((0, neg), (1, pos)):
        for name, start in _sample(group, n_per_class, rng):
            windows.append(genome[name][start:start + window])
            labels.append(label)
    return np.stack(windows).astype(np.uint8), np.asarray(labels, dtype=np.int64)


class ArrayWindowDataset(Dataset):
    """``(ids (n, L), labels (n,))`` arrays as ``(LongTensor (L,), label)`` items.

    ``rc_augment`` (training) replaces a window by its reverse complement with probability 0.5;
    for labels that swap under RC (strand) pass ``rc_label_map`` (e.g. ``[1, 0]``).
    """

    def __init__(self, ids: np.ndarray, labels: np.ndarray, rc_augment: bool = False,
                 rc_label_map: Optional[Sequence[int]] = None) -> None:
        ids, labels = np.asarray(ids), np.asarray(labels)
        if ids.ndim != 2 or labels.shape != (len(ids),):
            raise ValueError(f"expected ids (n, L) and labels (n,), got {ids.shape} and {labels.shape}")
        self.ids, self.labels = ids, labels
        self.rc_augment, self.rc_label_map = rc_augment, rc_label_map
        self._comp = np.asarray(complement_map(), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.ids[i].astype(np.int64), int(self.labels[i])
        if self.rc_augment and torch.rand(()) < 0.5:
            x = self._comp[x][::-1].copy()
            if self.rc_label_map is not None:
                y = int(self.rc_label_map[y])
        return torch.from_numpy(x), torch.tensor(y)


# ---- masked-LM windows -----------------------------------------------------------------------------
class MLMWindowDataset(Dataset):
    """Masked-LM windows of ``seq_len`` bases cut from genomes (base ids ``4..8``).

    Each window gets exactly ``round(mask_prob * seq_len)`` target positions (so per-window and
    per-token mean losses agree); of those 80% become ``[MASK]``, 10% a random base, 10% stay.
    Item: ``(input_ids (seq_len,), targets (seq_len,))`` with ``targets = -100`` where not
    scored. ``fixed_masks`` (evaluation) derives each window's mask from ``seed + index``.
    ``max_windows`` keeps that many windows spread evenly.
    """

    def __init__(self, sequences: Sequence[np.ndarray], seq_len: int, mask_prob: float = 0.15,
                 stride: Optional[int] = None, max_windows: Optional[int] = None, fixed_masks: bool = False,
                 seed: int = 0) -> None:
        if not isinstance(seq_len, int) or seq_len < 2:
            raise ValueError(f"seq_len: expected an int >= 2, got {seq_len!r}")
        if not 0 < mask_prob < 1:
            raise ValueError(f"mask_prob: expected a value in (0, 1), got {mask_prob}")
        self.sequences = [np.asarray(s) for s in sequences]
        self.seq_len, self.mask_prob, self.fixed_masks, self.seed = seq_len, mask_prob, fixed_masks, seed
        self.n_mask = max(1, round(mask_prob * seq_len))
        stride = stride or seq_len
        index = [(k, s) for k, seq in enumerate(self.sequences) for s in range(0, len(seq) - seq_len + 1, stride)]
        if not index:
            raise ValueError(f"no window of {seq_len} bases fits in the given sequences")
        if max_windows is not None and max_windows < len(index):
            keep = np.unique(np.linspace(0, len(index) - 1, max_windows).round().astype(np.int64))
            index = [index[i] for i in keep]
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def window(self, i: int) -> np.ndarray:
        k, s = self.index[i]
        return self.sequences[k][s:s + self.seq_len]

    def masked(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(self.window(i).astype(np.int64))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i) if self.fixed_masks else None
        pos = torch.randperm(self.seq_len, generator=gen)[: self.n_mask]
        kind = torch.rand(self.n_mask, generator=gen)
        targets = torch.full_like(x, -100)
        targets[pos] = x[pos]
        inp = x.clone()
        inp[pos[kind < 0.8]] = MASK_ID
        rand_pos = pos[(kind >= 0.8) & (kind < 0.9)]
        inp[rand_pos] = BASE_OFFSET + torch.randint(0, 4, (len(rand_pos),), generator=gen)
        return inp, targets

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        return self.masked(i % len(self))


# ---- benchmark layouts ---------------------------------------------------------------------------
class _LabelledSequences(Dataset):
    """Shared item access of the labelled-sequence datasets: subclasses fill ``sequences``,
    ``labels``, ``tokenizer`` and ``transform``; items are ``(input_ids (L,), label)``."""

    sequences: list[str]
    labels: list[int]
    item_name = "sequence"

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        seq = self.sequences[i]
        if self.transform is not None:
            seq = self.transform(seq)
        return self.tokenizer.encode(seq, name=f"{self.item_name} {i}"), torch.tensor(self.labels[i])


class SequenceCSVDataset(_LabelledSequences):
    """A ``sequence,label`` CSV (header required; other columns ignored) as
    ``(input_ids (L,), label)``. ``classes`` are the sorted distinct labels (ints when all
    labels are integers). ``transform`` is applied to the sequence string before tokenizing.
    """

    item_name = "row"

    def __init__(self, path: str | os.PathLike, tokenizer: Optional[CharTokenizer] = None,
                 transform: Optional[Callable[[str], str]] = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"CSV file not found: {path}")
        self.tokenizer = tokenizer or CharTokenizer()
        self.transform = transform
        with open_maybe_compressed(path) as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"sequence", "label"} <= set(reader.fieldnames):
                raise ValueError(f"{path}: expected a header with 'sequence' and 'label' columns, "
                                 f"got {reader.fieldnames}")
            rows = [(r["sequence"].strip(), r["label"].strip()) for r in reader]
        if not rows:
            raise ValueError(f"{path}: no rows")
        for i, (seq, _) in enumerate(rows):
            if not seq:
                raise ValueError(f"{path}: row {i + 2} has an empty sequence")
        raw = [lab for _, lab in rows]
        try:
            labels = [int(x) for x in raw]
        except ValueError:
            labels = None
        self.classes = sorted(set(labels)) if labels is not None else sorted(set(raw))
        lookup = {c: i for i, c in enumerate(self.classes)}
        self.sequences = [s for s, _ in rows]
        self.labels = [lookup[c] for c in (labels if labels is not None else raw)]


class GenomicBenchmarksDataset(_LabelledSequences):
    """A Genomic Benchmarks data set folder ``root/<split>/...`` in either of its two layouts:

    - ``root/<split>/<class>/*.txt``: one sequence per text file (the layout the package writes
      after fetching);
    - ``root/<split>/<class>.csv[.gz]``: coordinates ``id,region,start,end,strand`` (0-based,
      half-open) resolved against ``reference`` (a FASTA path or ``IndexedFasta``; required).

    Classes are the sorted class names; items are ``(input_ids (L,), class index)``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", reference: Optional[str | os.PathLike | IndexedFasta] = None,
                 tokenizer: Optional[CharTokenizer] = None, transform: Optional[Callable[[str], str]] = None) -> None:
        folder = Path(root) / split
        if split not in ("train", "test"):
            raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
        if not folder.is_dir():
            raise FileNotFoundError(f"Genomic Benchmarks split folder not found: {folder}")
        self.tokenizer = tokenizer or CharTokenizer()
        self.transform = transform
        dirs = sorted(p for p in folder.iterdir() if p.is_dir())
        csvs = sorted(p for p in folder.iterdir() if p.name.endswith((".csv", ".csv.gz")))
        self.sequences: list[str] = []
        self.labels: list[int] = []
        if dirs:
            self.classes = [d.name for d in dirs]
            for k, d in enumerate(dirs):
                for f in sorted(d.glob("*.txt")):
                    self.sequences.append(f.read_text().strip())
                    self.labels.append(k)
        elif csvs:
            if reference is None:
                raise ValueError(f"{folder} holds coordinate CSVs: pass reference=<FASTA of the genome> to resolve them")
            fasta = reference if isinstance(reference, IndexedFasta) else IndexedFasta(reference)
            self.classes = [p.name.split(".csv")[0] for p in csvs]
            for k, p in enumerate(csvs):
                with open_maybe_compressed(p) as fh:
                    reader = csv.DictReader(fh)
                    need = {"region", "start", "end", "strand"}
                    if reader.fieldnames is None or not need <= set(reader.fieldnames):
                        raise ValueError(f"{p}: expected columns {sorted(need)}, got {reader.fieldnames}")
                    for row in reader:
                        self.sequences.append(fasta.fetch(row["region"], int(row["start"]), int(row["end"]),
                                                          row["strand"]))
                        self.labels.append(k)
        else:
            raise FileNotFoundError(f"{folder}: expected class folders of *.txt files or <class>.csv[.gz] files")
        if not self.sequences:
            raise ValueError(f"{folder}: no sequences found")


def load_genome_ids(path: str | os.PathLike, tokenizer: Optional[CharTokenizer] = None) -> dict[str, np.ndarray]:
    """``{record name: base ids uint8 (L,)}`` for every record of a FASTA file."""
    tok = tokenizer or CharTokenizer()
    return {r.name: tok.encode_array(r.sequence, name=f"{Path(path).name}:{r.name}") for r in read_fasta(path)}
