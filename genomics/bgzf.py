"""BGZF, the blocked gzip of htslib's ``bgzip``: random access into compressed genomes.

A BGZF file is a series of gzip members ("blocks") of at most 64 KiB of uncompressed data each,
whose gzip header carries the block's compressed size (extra subfield ``BC``); plain ``gzip``
tools read it as one stream. Because every block can be found without decompressing the ones
before it, a byte range of the uncompressed data is read by decompressing only the blocks that
hold it. The block index (compressed and uncompressed start of every block) is read from a
samtools-compatible ``<file>.gzi`` when there is one, otherwise found by walking the block
headers (no decompression).

- ``is_bgzf(path)``: whether a file is BGZF (and not plain gzip).
- ``write_bgzf(data, path, block_size=...)``: compress ``data`` as BGZF (atomic write; the end
  marker included), optionally with its ``.gzi``; returns the block index.
- ``block_index(path)``: ``(n_blocks, 2)`` int64 array of ``(compressed, uncompressed)`` starts.
- ``BgzfReader(path).read(offset, size)``: bytes ``[offset, offset + size)`` of the uncompressed data.
"""
from __future__ import annotations

import bisect
import os
import struct
import tempfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np

MAX_BLOCK_DATA = 0xFF00          # bgzip's uncompressed bytes per block (compressed must fit 64 KiB)
_HEADER = struct.Struct("<4BI2BH")   # ID1 ID2 CM FLG MTIME XFL OS XLEN
#: the empty block bgzip writes at the end of every file (htslib's end-of-file marker)
EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def _block_size(header: bytes, path: os.PathLike | str, offset: int) -> tuple[int, int]:
    """``(total block size, header length)`` from the first bytes of a block; ``ValueError`` when
    they are not a BGZF block header."""
    if len(header) < _HEADER.size:
        raise ValueError(f"{path}: truncated BGZF block header at byte {offset}")
    id1, id2, cm, flg, _mtime, _xfl, _os, xlen = _HEADER.unpack_from(header)
    if (id1, id2, cm) != (0x1F, 0x8B, 8) or not flg & 4:
        raise ValueError(f"{path}: no BGZF block at byte {offset} (expected a gzip header with an extra field)")
    extra = header[_HEADER.size:_HEADER.size + xlen]
    if len(extra) < xlen:
        raise ValueError(f"{path}: truncated BGZF block header at byte {offset}")
    pos = 0
    while pos + 4 <= xlen:                      # subfields: SI1 SI2 SLEN data
        si1, si2, slen = extra[pos], extra[pos + 1], int.from_bytes(extra[pos + 2:pos + 4], "little")
        if (si1, si2, slen) == (66, 67, 2):
            return int.from_bytes(extra[pos + 4:pos + 6], "little") + 1, _HEADER.size + xlen
        pos += 4 + slen
    raise ValueError(f"{path}: gzip block at byte {offset} has no BGZF 'BC' size field (plain gzip, not bgzip)")


def is_bgzf(path: os.PathLike | str) -> bool:
    """Whether ``path`` starts with a BGZF block (plain gzip, xz, text: ``False``)."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    try:
        _block_size(head, path, 0)
    except ValueError:
        return False
    return True


def _compress_block(chunk: bytes, level: int) -> bytes:
    deflater = zlib.compressobj(level, zlib.DEFLATED, -15)
    cdata = deflater.compress(chunk) + deflater.flush()
    size = _HEADER.size + 6 + len(cdata) + 8
    if size > 65536:
        raise ValueError("BGZF block does not fit 64 KiB; use a smaller block_size")
    header = _HEADER.pack(0x1F, 0x8B, 8, 4, 0, 0, 0xFF, 6) + b"BC" + struct.pack("<HH", 2, size - 1)
    return header + cdata + struct.pack("<II", zlib.crc32(chunk), len(chunk))


def write_bgzf(data: bytes, path: os.PathLike | str, block_size: int = MAX_BLOCK_DATA, level: int = 6,
               write_gzi: bool = False) -> np.ndarray:
    """Write ``data`` as BGZF to ``path`` (a temporary file renamed into place, so an interrupted
    write never leaves a half file); ``write_gzi`` also writes ``<path>.gzi``. Returns the block
    index ``(n_blocks, 2)`` of (compressed, uncompressed) starts, end marker excluded."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    if not 1 <= block_size <= MAX_BLOCK_DATA:
        raise ValueError(f"block_size: expected 1..{MAX_BLOCK_DATA}, got {block_size}")
    path = Path(path)
    starts, coff = [], 0
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            for uoff in range(0, len(data), block_size):
                block = _compress_block(bytes(data[uoff:uoff + block_size]), level)
                starts.append((coff, uoff))
                fh.write(block)
                coff += len(block)
            fh.write(EOF_BLOCK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    index = np.array(starts or [(0, 0)], dtype=np.int64).reshape(-1, 2)
    if write_gzi:
        write_gzi_index(index, str(path) + ".gzi")
    return index


def write_gzi_index(index: np.ndarray, path: os.PathLike | str) -> None:
    """Write a block index as samtools' ``.gzi`` (count, then (compressed, uncompressed) uint64
    pairs for every block after the first), atomically."""
    rows = np.asarray(index, dtype="<u8").reshape(-1, 2)[1:]
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(struct.pack("<Q", len(rows)) + rows.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_gzi_index(path: os.PathLike | str) -> np.ndarray:
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise ValueError(f"{path}: not a .gzi index (shorter than its 8-byte count)")
    (count,) = struct.unpack_from("<Q", raw)
    if len(raw) != 8 + 16 * count:
        raise ValueError(f"{path}: .gzi says {count} blocks but holds {(len(raw) - 8) / 16:g}")
    rows = np.frombuffer(raw, dtype="<u8", offset=8).reshape(-1, 2).astype(np.int64)
    return np.concatenate([np.zeros((1, 2), dtype=np.int64), rows])


def scan_block_index(path: os.PathLike | str) -> np.ndarray:
    """The block index found by walking the block headers (reads 18 + 4 bytes per block)."""
    starts, coff, uoff = [], 0, 0
    total = os.path.getsize(path)
    with open(path, "rb") as fh:
        while coff < total:
            fh.seek(coff)
            size, _ = _block_size(fh.read(64), path, coff)
            if coff + size > total:
                raise ValueError(f"{path}: BGZF block at byte {coff} runs past the end of the file (truncated)")
            fh.seek(coff + size - 4)
            isize = int.from_bytes(fh.read(4), "little")
            if isize:
                starts.append((coff, uoff))
            coff, uoff = coff + size, uoff + isize
    return np.array(starts or [(0, 0)], dtype=np.int64).reshape(-1, 2)


def block_index(path: os.PathLike | str) -> np.ndarray:
    """``<path>.gzi`` when present, else ``scan_block_index``."""
    gzi = Path(str(path) + ".gzi")
    return read_gzi_index(gzi) if gzi.is_file() else scan_block_index(path)


class BgzfReader:
    """Byte ranges of a BGZF file's uncompressed data, decompressing only the blocks involved
    (the last ``cache_blocks`` decompressed blocks are kept: neighbouring reads are cheap)."""

    def __init__(self, path: os.PathLike | str, index: Optional[np.ndarray] = None, cache_blocks: int = 16) -> None:
        self.path = Path(path)
        if not is_bgzf(self.path):
            raise ValueError(f"{self.path}: not a BGZF file (compress it with bgzip or write_bgzf)")
        index = block_index(self.path) if index is None else np.asarray(index, dtype=np.int64)
        self.index = index                       # (n_blocks, 2) compressed / uncompressed starts
        self._coffsets = index[:, 0].tolist()
        self._uoffsets = index[:, 1].tolist()
        self._cache: OrderedDict[int, tuple[bytes, int]] = OrderedDict()   # offset -> (data, block size)
        self._cache_blocks = max(1, cache_blocks)

    def _block(self, fh, coffset: int) -> tuple[bytes, int]:
        """Uncompressed data of the block at ``coffset`` and the next block's offset."""
        if coffset in self._cache:
            self._cache.move_to_end(coffset)
            data, size = self._cache[coffset]
            return data, coffset + size
        fh.seek(coffset)
        head = fh.read(64)
        size, hlen = _block_size(head, self.path, coffset)
        fh.seek(coffset)
        block = fh.read(size)
        if len(block) < size:
            raise ValueError(f"{self.path}: BGZF block at byte {coffset} is truncated")
        try:
            data = zlib.decompress(block[hlen:-8], -15)
        except zlib.error as err:
            raise ValueError(f"{self.path}: corrupt BGZF block at byte {coffset}: {err}") from err
        crc, isize = struct.unpack("<II", block[-8:])
        if len(data) != isize or zlib.crc32(data) != crc:
            raise ValueError(f"{self.path}: BGZF block at byte {coffset} fails its size/CRC check")
        self._cache[coffset] = (data, size)
        if len(self._cache) > self._cache_blocks:
            self._cache.popitem(last=False)
        return data, coffset + size

    def read(self, offset: int, size: int) -> bytes:
        """Uncompressed bytes ``[offset, offset + size)`` (fewer at the end of the data)."""
        if offset < 0 or size < 0:
            raise ValueError(f"offset and size must be >= 0, got {offset}, {size}")
        k = bisect.bisect_right(self._uoffsets, offset) - 1
        coffset, skip = self._coffsets[k], offset - self._uoffsets[k]
        out, need = [], size
        total = os.path.getsize(self.path)
        with open(self.path, "rb") as fh:
            while need > 0 and coffset < total:
                data, coffset = self._block(fh, coffset)
                piece = data[skip:skip + need]
                out.append(piece)
                need -= len(piece)
                skip = max(0, skip - len(data))
        return b"".join(out)
