"""A small FASTA reader: plain, gzip, xz or bzip2 files (detected from the first bytes).

``>name description`` starts a record; the sequence lines that follow are joined with their
whitespace removed. Characters are not checked here (a tokenizer does that, with positions).
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

_MAGIC = ((b"\x1f\x8b", gzip.open), (b"\xfd7zXZ\x00", lzma.open), (b"BZh", bz2.open))


@dataclass(frozen=True)
class FastaRecord:
    """One FASTA entry: ``name`` (first word of the header), ``description`` (the rest), and
    ``sequence`` (all sequence lines joined, as written: case and symbols unchanged)."""

    name: str
    description: str
    sequence: str


def open_maybe_compressed(path: str | os.PathLike) -> IO[str]:
    """Open ``path`` for reading text, decompressing gzip / xz / bzip2 by their magic bytes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with open(path, "rb") as fh:
        head = fh.read(6)
    for magic, opener in _MAGIC:
        if head.startswith(magic):
            return io.TextIOWrapper(opener(path, "rb"), encoding="ascii", errors="strict")
    return open(path, "r", encoding="ascii", errors="strict")


def read_fasta(path: str | os.PathLike) -> Iterator[FastaRecord]:
    """Yield the records of a FASTA file in order.

    Raises ``ValueError`` (with the line number) for text before the first header, an empty
    header, or a record without sequence, and for non-ASCII bytes.
    """
    name, desc, chunks, header_line = None, "", [], 0
    with open_maybe_compressed(path) as fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                line = line.strip()
                if not line or line.startswith(";"):
                    continue
                if line.startswith(">"):
                    if name is not None:
                        yield _finish(path, name, desc, chunks, header_line)
                    fields = line[1:].strip().split(maxsplit=1)
                    if not fields:
                        raise ValueError(f"{path}:{lineno}: empty FASTA header")
                    name, desc = fields[0], fields[1] if len(fields) > 1 else ""
                    chunks, header_line = [], lineno
                elif name is None:
                    raise ValueError(f"{path}:{lineno}: expected a '>' header before sequence data, "
                                     f"got {line[:20]!r}")
                else:
                    chunks.append("".join(line.split()))
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not an ASCII FASTA file ({err})") from err
    if name is None:
        raise ValueError(f"{path}: no FASTA record found")
    yield _finish(path, name, desc, chunks, header_line)


def _finish(path, name: str, desc: str, chunks: list[str], header_line: int) -> FastaRecord:
    sequence = "".join(chunks)
    if not sequence:
        raise ValueError(f"{path}:{header_line}: record {name!r} has no sequence")
    return FastaRecord(name, desc, sequence)
