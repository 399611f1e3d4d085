"""Loaders: indexed FASTA (plain / gz), GFF, labelled windows, MLM windows, CSV and Genomic Benchmarks."""
import gzip
import random

import numpy as np
import pytest
import torch

from mambakit.genomics import (CharTokenizer, GenomicBenchmarksDataset, IndexedFasta, MLMWindowDataset,
                               SequenceCSVDataset, build_fai, labelled_windows, read_gff, reverse_complement)
from mambakit.genomics.tokenizers import MASK_ID


def _dna(n):
    return "".join(random.choice("ACGTacgt") for _ in range(n))


def _write_fasta(path, records, width):
    with (gzip.open(path, "wt") if str(path).endswith(".gz") else open(path, "w")) as fh:
        for name, seq in records.items():
            fh.write(f">{name} some description\n")
            for i in range(0, len(seq), width):
                fh.write(seq[i:i + width] + "\n")


@pytest.mark.parametrize("suffix", [".fa", ".fa.gz"])
def test_indexed_fasta_random_access(tmp_path, suffix):
    records = {"chr": _dna(503), "plasmid": _dna(61)}
    path = tmp_path / f"g{suffix}"
    _write_fasta(path, records, width=random.choice([50, 60, 70]))
    fa = IndexedFasta(path)
    assert fa.lengths == {k: len(v) for k, v in records.items()}
    for _ in range(20):
        name = random.choice(list(records))
        a = random.randrange(len(records[name]))
        b = random.randrange(a, len(records[name]) + 1)
        assert fa.fetch(name, a, b) == records[name][a:b]
        assert fa.fetch(name, a, b, strand="-") == reverse_complement(records[name][a:b])
    with pytest.raises(ValueError, match="outside"):
        fa.fetch("chr", 0, 504)
    with pytest.raises(KeyError):
        fa.fetch("nope")


def test_fai_refuses_ragged_lines(tmp_path):
    path = tmp_path / "bad.fa"
    path.write_text(">a\nACGT\nAC\nACGT\n")
    with pytest.raises(ValueError, match="unequal"):
        build_fai(path)
    with pytest.raises(FileNotFoundError, match="missing.fa"):
        IndexedFasta(tmp_path / "missing.fa")


def _write_gff(path, rows):
    with gzip.open(path, "wt") as fh:
        fh.write("##gff-version 3\n# comment\n")
        for seqid, start, end, strand in rows:
            fh.write(f"{seqid}\tProdigal\tCDS\t{start}\t{end}\t10.5\t{strand}\t0\tID=x;conf=99\n")


def test_gff_and_labelled_windows(tmp_path):
    _write_gff(tmp_path / "g.gff.gz", [("chr", 101, 400, "+"), ("chr", 601, 900, "-")])
    feats = read_gff(tmp_path / "g.gff.gz")
    assert [(f.start, f.end, f.strand) for f in feats] == [(100, 400, "+"), (600, 900, "-")]
    assert feats[0].attributes["conf"] == "99" and feats[0].score == 10.5
    genome = {"chr": np.random.randint(4, 8, 1000).astype(np.uint8)}
    x, y = labelled_windows(genome, feats, "coding", 50, 20, seed=1)
    assert x.shape == (40, 50) and y.tolist() == [0] * 20 + [1] * 20
    starts = [int(np.flatnonzero((np.lib.stride_tricks.sliding_window_view(genome["chr"], 50) == w).all(1))[0]) for w in x]
    for s, label in zip(starts, y):
        inside = (100 <= s and s + 50 <= 400) or (600 <= s and s + 50 <= 900)
        overlaps = s < 400 and s + 50 > 100 or s < 900 and s + 50 > 600
        assert inside if label == 1 else not overlaps
    xs, ys = labelled_windows(genome, feats, "strand", 50, 10, seed=2)
    assert ys.sum() == 10
    bad = tmp_path / "bad.gff"
    bad.write_text("chr\tP\tCDS\t10\n")
    with pytest.raises(ValueError, match="9 tab-separated"):
        read_gff(bad)


def test_mlm_windows_mask_exact_count():
    seqs = [np.random.randint(4, 9, 700).astype(np.uint8)]
    ds = MLMWindowDataset(seqs, 100, mask_prob=0.15, fixed_masks=True, seed=3)
    assert len(ds) == 7
    inp, tgt = ds[2]
    assert (tgt >= 0).sum() == 15 and (inp == MASK_ID).sum() <= 15
    window = torch.from_numpy(ds.window(2).astype(np.int64))
    assert torch.equal(tgt[tgt >= 0], window[tgt >= 0])
    assert torch.equal(ds[2][0], inp)                    # fixed masks are reproducible
    with pytest.raises(ValueError):
        MLMWindowDataset(seqs, 1000)


def test_sequence_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("sequence,label\nACGTN,1\nacgg,0\n")
    ds = SequenceCSVDataset(path)
    x, y = ds[1]
    assert CharTokenizer().decode(x) == "ACGG" and int(y) == 0 and ds.classes == [0, 1]
    (tmp_path / "bad.csv").write_text("seq,label\nACGT,1\n")
    with pytest.raises(ValueError, match="'sequence'"):
        SequenceCSVDataset(tmp_path / "bad.csv")
    (tmp_path / "u.csv").write_text("sequence,label\nACGU,1\n")
    with pytest.raises(ValueError, match="RNA"):
        SequenceCSVDataset(tmp_path / "u.csv")[0]


def test_genomic_benchmarks_layouts(tmp_path):
    root = tmp_path / "demo"
    for cls, seqs in {"negative": ["ACGT", "GGCC"], "positive": ["TTTT"]}.items():
        (root / "train" / cls).mkdir(parents=True)
        for i, s in enumerate(seqs):
            (root / "train" / cls / f"{i}.txt").write_text(s)
    ds = GenomicBenchmarksDataset(root, "train")
    assert len(ds) == 3 and ds.classes == ["negative", "positive"] and int(ds[2][1]) == 1
    ref_seq = _dna(200)
    _write_fasta(tmp_path / "ref.fa", {"chrZ": ref_seq}, 60)
    (root / "test").mkdir()
    with gzip.open(root / "test" / "positive.csv.gz", "wt") as fh:
        fh.write("id,region,start,end,strand\n0,chrZ,10,30,+\n1,chrZ,50,80,-\n")
    with pytest.raises(ValueError, match="reference"):
        GenomicBenchmarksDataset(root, "test")
    ds = GenomicBenchmarksDataset(root, "test", reference=tmp_path / "ref.fa")
    assert ds.sequences == [ref_seq[10:30], reverse_complement(ref_seq[50:80])]
    with pytest.raises(FileNotFoundError, match="nothere"):
        GenomicBenchmarksDataset(tmp_path / "nothere", "train")
