"""Regenerate the small example inputs in ``apps/examples/`` from ``shared/data`` (dev-time).

    python -m mambakit.apps.make_examples

The app never reads ``shared/data`` at run time: these files ship inside the package. Every
example is a test-split item (held out from training) copied without change, except
``vision/coat-on-white.png``, a test image inverted and enlarged to show the app's inversion
and resizing. Licences: see ``apps/examples/README.md``.
"""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np

from mambakit.data import dataset_path

OUT = Path(__file__).resolve().parent / "examples"

AUDIO = ("0_george_0.wav", "3_jackson_1.wav", "5_nicolas_3.wav", "7_lucas_2.wav", "9_theo_4.wav")
# first test image of these Fashion-MNIST classes
VISION = {9: "ankle-boot", 1: "trouser", 2: "pullover", 8: "bag", 7: "sneaker"}
TS_SLICES = {  # name -> first data row of a verbatim ETTh1 test-period slice (no flat gaps); 384 rows each
    "etth1-test-2017-11.csv": 11712,
    "etth1-test-2018-01.csv": 13440,
}
TS_ROWS = 384
DNA_WINDOW = 200


def make_audio() -> None:
    src = dataset_path("audio", "fsdd") / "recordings"
    out = OUT / "audio"
    out.mkdir(parents=True, exist_ok=True)
    for name in AUDIO:
        shutil.copyfile(src / name, out / name)


def make_vision() -> None:
    from PIL import Image

    from mambakit.vision.data import read_idx

    root = dataset_path("vision", "fashion-mnist")
    images = read_idx(next(root.rglob("t10k-images-idx3-ubyte*")))
    labels = read_idx(next(root.rglob("t10k-labels-idx1-ubyte*")))
    out = OUT / "vision"
    out.mkdir(parents=True, exist_ok=True)
    for label, name in VISION.items():
        i = int(np.flatnonzero(labels == label)[0])
        Image.fromarray(images[i], mode="L").save(out / f"{name}-test{i:05d}.png")
    coat = int(np.flatnonzero(labels == 4)[0])
    big = Image.fromarray(255 - images[coat], mode="L").resize((112, 112), Image.Resampling.BICUBIC)
    big.convert("RGB").save(out / f"coat-on-white-test{coat:05d}.png")


def make_timeseries() -> None:
    src = dataset_path("timeseries", "ETT-small") / "ETTh1.csv"
    lines = src.read_text().splitlines(keepends=True)
    out = OUT / "timeseries"
    out.mkdir(parents=True, exist_ok=True)
    for name, first in TS_SLICES.items():
        (out / name).write_text(lines[0] + "".join(lines[1 + first:1 + first + TS_ROWS]))


def make_dna() -> None:
    from mambakit.genomics.data import read_gff
    from mambakit.data import read_fasta

    root = dataset_path("genomics", "klebsiella")
    chrom = next(read_fasta(root / "MGH78578.fna.xz"))
    cds = [f for f in read_gff(root / "MGH78578.prodigal.gff.gz") if f.seqid == chrom.name]
    seq = chrom.sequence.upper()
    covered = np.zeros(len(seq) + 1, dtype=np.int32)
    for f in cds:
        covered[f.start] += 1
        covered[f.end] -= 1
    covered = np.cumsum(covered)[:-1] > 0
    records = []
    # The 100th long CDS on each strand (a fixed rule, not a pick): the window starts 300 bp in.
    for strand, word in (("+", "plus"), ("-", "minus")):
        long = [f for f in cds if f.strand == strand and f.end - f.start >= 900]
        f = long[100]
        s = f.start + 300
        records.append((f"MGH78578_{s}_{s + DNA_WINDOW}_coding_{word}_strand",
                        f"inside CDS {f.start}-{f.end} ({strand}); forward strand of the chromosome",
                        seq[s:s + DNA_WINDOW]))
    # The 20th intergenic stretch of >= 300 bp with no CDS: a non-coding window from its middle.
    edges = np.flatnonzero(np.diff(np.r_[1, covered.astype(np.int8), 1]))
    gaps = [(a, b) for a, b in zip(edges[::2], edges[1::2]) if b - a >= 300]
    a, b = gaps[20]
    s = (a + b) // 2 - DNA_WINDOW // 2
    records.append((f"MGH78578_{s}_{s + DNA_WINDOW}_non-coding", f"intergenic {a}-{b}, no CDS",
                    seq[s:s + DNA_WINDOW]))
    out = OUT / "dna"
    out.mkdir(parents=True, exist_ok=True)
    for name, desc, s in records:
        body = "\n".join(s[i:i + 70] for i in range(0, len(s), 70))
        (out / f"{name}.fasta").write_text(f">{name} {desc}\n{body}\n")


def main() -> int:
    make_audio()
    make_vision()
    make_timeseries()
    make_dna()
    print(f"examples written to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
