"""The core's small data layer: FASTA reading, DNA tokens, LM windows, data root, Markov baseline."""
from __future__ import annotations

import bz2
import gzip
import lzma
import math

import numpy as np
import pytest
import torch

from mambakit.data import DNATokenizer, LMWindowDataset, data_root, dataset_path, read_fasta
from mambakit.train.baselines import MarkovLM

FASTA = ">chr1 first record\nACGTN\nacgt\n\n>plasmid\nGGCC\n"


@pytest.mark.parametrize("opener, suffix", [(open, ".fa"), (gzip.open, ".fa.gz"), (lzma.open, ".fna.xz"),
                                            (bz2.open, ".fa.bz2")])
def test_read_fasta_plain_and_compressed(tmp_path, opener, suffix):
    path = tmp_path / f"x{suffix}"
    with opener(path, "wt") as fh:
        fh.write(FASTA)
    records = list(read_fasta(path))
    assert [(r.name, r.description, r.sequence) for r in records] == [
        ("chr1", "first record", "ACGTNacgt"), ("plasmid", "", "GGCC")]


@pytest.mark.parametrize("text, match", [("ACGT\n>x\nAC\n", "expected a '>' header"),
                                         (">x\n>y\nAC\n", "'x' has no sequence"),
                                         ("", "no FASTA record"), ("> \nAC\n", "empty FASTA header")])
def test_read_fasta_errors(tmp_path, text, match):
    path = tmp_path / "bad.fa"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        list(read_fasta(path))
    with pytest.raises(FileNotFoundError):
        list(read_fasta(tmp_path / "missing.fa"))


def test_dna_tokenizer():
    tok = DNATokenizer()
    assert tok.encode("ACGTNacgtn").tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert tok.encode("RYk").tolist() == [4, 4, 4]
    assert tok.decode(tok.encode("GATTACA")) == "GATTACA"
    with pytest.raises(ValueError, match=r"invalid DNA character 'U' at position 2"):
        tok.encode("ACUG", name="seq")
    with pytest.raises(ValueError, match="non-ASCII"):
        tok.encode("ACé")
    with pytest.raises(ValueError, match="invalid DNA character 'R'"):
        DNATokenizer(ambiguous="error").encode("AR")
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        tok.decode([0, 7])


def test_lm_windows_are_shifted_by_one_and_stay_inside_records():
    seqs = [np.arange(10) % 5, np.arange(4) % 5, np.arange(7) % 5]
    ds = LMWindowDataset(seqs, seq_len=3)
    assert len(ds) == 3 + 1 + 2   # starts 0,3,6 | 0 | 0,3
    x, y = ds[1]
    assert x.tolist() == [3, 4, 0] and y.tolist() == [4, 0, 1] and x.dtype == torch.int64
    assert torch.equal(ds[-1][0], ds[len(ds) - 1][0])
    sub = LMWindowDataset(seqs, seq_len=3, max_windows=2)
    assert len(sub) == 2 and torch.equal(sub[0][0], ds[0][0]) and torch.equal(sub[1][0], ds[5][0])
    with pytest.raises(ValueError, match="no window"):
        LMWindowDataset([np.arange(3)], seq_len=3)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_data_root_env_var_and_missing_paths(tmp_path, monkeypatch):
    (tmp_path / "genomics" / "x").mkdir(parents=True)
    monkeypatch.setenv("MAMBAKIT_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert dataset_path("genomics", "x") == tmp_path / "genomics" / "x"
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "genomics" / "nope")):
        dataset_path("genomics", "nope")
    monkeypatch.setenv("MAMBAKIT_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="MAMBAKIT_DATA"):
        data_root()


def test_markov_baseline():
    rng = np.random.default_rng(0)
    iid = rng.integers(0, 4, 20000)
    windows = np.stack([iid[i:i + 33] for i in range(0, 3000, 33)])
    unigram = MarkovLM(0, 5).fit([iid]).bits_per_token(windows)
    assert unigram == pytest.approx(2.0, abs=0.02)
    periodic = np.tile([0, 1, 2, 3, 2, 1], 500)
    pw = np.stack([periodic[i:i + 17] for i in range(0, 600, 17)])
    order3 = MarkovLM(3, 5, alpha=0.01).fit([periodic]).bits_per_token(pw)
    # only the first targets of each window lack context; after 2 tokens the period is determined
    assert order3 < 0.25 * math.log2(5)
    with pytest.raises(ValueError):
        MarkovLM(-1, 5)
