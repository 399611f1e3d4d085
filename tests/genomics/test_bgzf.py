"""BGZF: writing, block indexes (scanned and .gzi), byte-range reads, and IndexedFasta on bgzip'd
genomes (random access without decompressing the file)."""
import gzip
import random

import numpy as np
import pytest

from mambakit.genomics import BgzfReader, IndexedFasta, build_fai, is_bgzf, reverse_complement, write_bgzf
from mambakit.genomics.bgzf import EOF_BLOCK, block_index, read_gzi_index, scan_block_index


def _records(seed):
    rng = random.Random(seed)
    return {name: "".join(rng.choice("ACGTNacgt") for _ in range(n))
            for name, n in (("chr1", 5003), ("chr2", 1777), ("plasmid", 61))}


def _fasta_bytes(records, width):
    out = []
    for name, seq in records.items():
        out.append(f">{name} description\n")
        out += [seq[i:i + width] + "\n" for i in range(0, len(seq), width)]
    return "".join(out).encode()


def test_write_bgzf_is_gzip_compatible_and_indexed(tmp_path):
    data = bytes(np.random.default_rng().integers(0, 4, 20_000, dtype=np.uint8) + 65)
    path = tmp_path / "x.gz"
    index = write_bgzf(data, path, block_size=1000, write_gzi=True)
    assert gzip.decompress(path.read_bytes()) == data           # any gzip reader sees one stream
    assert path.read_bytes().endswith(EOF_BLOCK)
    assert is_bgzf(path)
    assert index.shape == (20, 2) and index[:, 1].tolist() == list(range(0, 20_000, 1000))
    np.testing.assert_array_equal(scan_block_index(path), index)
    np.testing.assert_array_equal(read_gzi_index(str(path) + ".gzi"), index)
    plain = tmp_path / "plain.gz"
    plain.write_bytes(gzip.compress(data))
    assert not is_bgzf(plain) and not is_bgzf(tmp_path / "x.gz.gzi")
    with pytest.raises(ValueError, match="not a BGZF"):
        BgzfReader(plain)
    assert not list(tmp_path.glob(".*tmp"))                      # temporary files renamed away


def test_reader_returns_any_byte_range(tmp_path):
    data = bytes(np.random.default_rng().integers(0, 256, 50_000, dtype=np.uint8))
    path = tmp_path / "r.bgz"
    write_bgzf(data, path, block_size=4096)
    reader = BgzfReader(path, cache_blocks=2)
    rng = random.Random()
    for _ in range(50):
        a = rng.randrange(len(data) + 1)
        n = rng.choice([0, 1, 17, 4096, 9000, 60_000])
        assert reader.read(a, n) == data[a:a + n]
    with pytest.raises(ValueError, match=">= 0"):
        reader.read(-1, 3)


def test_truncated_or_corrupt_files_raise_clear_errors(tmp_path):
    data = b"ACGT" * 5000
    path = tmp_path / "t.gz"
    write_bgzf(data, path, block_size=2000)
    raw = path.read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match="truncated"):
        scan_block_index(cut)
    index = block_index(path)
    bad = bytearray(raw)
    bad[int(index[3, 0]) + 30] ^= 0xFF                          # a byte inside block 3's data
    broken = tmp_path / "broken.gz"
    broken.write_bytes(bytes(bad))
    reader = BgzfReader(broken, index=index)
    assert reader.read(0, 2000) == data[:2000]                  # blocks before it still read
    with pytest.raises(ValueError, match="block at byte"):
        reader.read(3 * 2000, 10)
    gzi = tmp_path / "t.gz.gzi"
    gzi.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00" + b"\x00" * 16)
    with pytest.raises(ValueError, match="says 5 blocks"):
        block_index(path)


@pytest.mark.parametrize("saved_index", [False, True])
def test_indexed_fasta_on_bgzf_reads_without_decompressing(tmp_path, saved_index):
    records = _records(random.randrange(1 << 30))
    text = _fasta_bytes(records, width=random.choice([60, 70, 80]))
    path = tmp_path / "genome.fa.gz"
    write_bgzf(text, path, block_size=997)                      # records and lines straddle blocks
    plain = tmp_path / "genome.fa"
    plain.write_bytes(text)
    fa = IndexedFasta(path)
    assert fa._memory == {} and fa._bgzf is not None            # nothing decompressed up front
    assert build_fai(path) == build_fai(plain)                  # .fai offsets: uncompressed bytes
    if saved_index:
        written = fa.write_index()
        assert [p.name for p in written] == ["genome.fa.gz.fai", "genome.fa.gz.gzi"]
        fa = IndexedFasta(path)                                 # reopened from the saved index
    assert fa.lengths == {k: len(v) for k, v in records.items()}
    rng = random.Random()
    for _ in range(40):
        name = rng.choice(list(records))
        a = rng.randrange(len(records[name]) + 1)
        b = rng.randrange(a, len(records[name]) + 1)
        assert fa.fetch(name, a, b) == records[name][a:b]
        assert fa.fetch(name, a, b, strand="-") == reverse_complement(records[name][a:b])


def test_plain_gzip_fasta_still_loads_into_memory(tmp_path):
    records = _records(3)
    path = tmp_path / "g.fa.gz"
    path.write_bytes(gzip.compress(_fasta_bytes(records, 60)))
    fa = IndexedFasta(path)
    assert fa._bgzf is None and fa.fetch("chr2", 10, 50) == records["chr2"][10:50]
    assert fa.write_index() == []
