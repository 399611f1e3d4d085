"""Baselines and the registered recipes (real-data checks skip when the data is absent)."""
import numpy as np
import pytest

from mambakit.genomics import KmerLogistic, MaskedMarkov, kmer_features
from mambakit.train import find_recipe


def test_masked_markov_learns_context():
    rng = np.random.default_rng(int(np.random.randint(1 << 30)))
    unit = rng.integers(4, 8, 7)
    train = [np.tile(unit, 300).astype(np.uint8)]
    test = np.tile(unit, 20)[None, :100].astype(np.int64)
    targets = np.full_like(test, -100)
    targets[0, 10:90:9] = test[0, 10:90:9]
    inputs = test.copy()
    inputs[0, 10:90:9] = 1
    bits3 = MaskedMarkov(3).fit(train).bits_per_base(inputs, targets)
    bits0 = MaskedMarkov(0).fit(train).bits_per_base(inputs, targets)
    assert bits3 < 0.1 < bits0
    with pytest.raises(RuntimeError):
        MaskedMarkov(2).nll(inputs, targets)


def test_kmer_logistic_separates_gc():
    rng = np.random.default_rng(0)
    at = rng.choice([4, 7], size=(60, 50))
    gc = rng.choice([5, 6], size=(60, 50))
    x, y = np.concatenate([at, gc]), np.array([0] * 60 + [1] * 60)
    assert kmer_features(x, 2).shape == (120, 4 + 16)
    assert (KmerLogistic(2).fit(x, y).predict_proba(x).argmax(1) == y).mean() == 1.0


def test_recipes_registered():
    for name in ("klebsiella-caduceus-mlm-tiny", "klebsiella-coding-tiny", "klebsiella-strand-tiny"):
        recipe = find_recipe("genomics", name)
        assert recipe.config().model["rcps"] is True


def test_real_klebsiella_gene_windows():
    from mambakit.genomics.recipes import klebsiella_files
    from mambakit.genomics import read_gff, labelled_windows
    try:
        files = klebsiella_files()
    except FileNotFoundError as err:
        pytest.skip(f"Klebsiella data not available: {err}")
    feats = read_gff(files["MGH78578"][1])
    assert len(feats) > 4000 and {f.strand for f in feats} == {"+", "-"}
    # a small synthetic genome built from the real gene coordinates of the first 60 kb
    first = [f for f in feats if f.seqid == "CP000647.1" and f.end < 60_000]
    genome = {"CP000647.1": np.random.randint(4, 8, 60_000).astype(np.uint8)}
    x, y = labelled_windows(genome, first, "strand", 200, 30, seed=0)
    assert x.shape == (60, 200) and y.mean() == 0.5


def test_long_sequence_benchmark_cpu_smoke(tmp_path):
    import importlib.util
    import json
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "genomics.py"
    spec = importlib.util.spec_from_file_location("bench_genomics", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--cpu-smoke", "--out", str(tmp_path), "--variants", "rcps-bimamba", "mamba"]) == 0
    rows = json.loads((tmp_path / "genomics_long_cpu.json").read_text())["metrics"]["rows"]
    assert len(rows) == 4 and all(r["fwd_bwd_ms"] > 0 for r in rows)
