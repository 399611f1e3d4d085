"""Genomics on the mambakit core: a DNA tokenizer with reverse complement, Caduceus-style
bidirectional (BiMamba, tied projections) and reverse-complement-equivariant (RCPS) models with
masked-LM / next-token / sequence / token heads, post-hoc RC conjoining, a same-harness
Transformer baseline, FASTA (plain, BGZF with random access, gzip/xz) / GFF / Genomic-Benchmarks / CSV loaders, and the Klebsiella
recipes (``mambakit train genomics <recipe>``; registered in ``mambakit.genomics.recipes``).
"""
from .baselines import KmerLogistic, MaskedMarkov, kmer_features
from .bgzf import BgzfReader, is_bgzf, write_bgzf
from .data import (ArrayWindowDataset, GeneFeature, GenomicBenchmarksDataset, IndexedFasta, MLMWindowDataset,
                   SequenceCSVDataset, build_fai, labelled_windows, load_genome_ids, read_gff, write_fai)
from .models import (RCPS, BiMamba, Caduceus, CaduceusBackbone, CaduceusConfig, DNATransformer,
                     DNATransformerConfig, LMHead, RCConjoined, RCPSEmbedding, SequenceHead, TokenHead,
                     count_parameters, masked_lm_loss, rc_hidden)
from .tokenizers import (CharTokenizer, KmerTokenizer, complement_map, reverse_complement,
                         reverse_complement_ids)

__all__ = [
    "CharTokenizer", "KmerTokenizer", "complement_map", "reverse_complement", "reverse_complement_ids",
    "BiMamba", "RCPS", "RCPSEmbedding", "rc_hidden", "CaduceusConfig", "CaduceusBackbone", "Caduceus",
    "LMHead", "SequenceHead", "TokenHead", "RCConjoined", "DNATransformerConfig", "DNATransformer",
    "count_parameters", "masked_lm_loss",
    "IndexedFasta", "build_fai", "write_fai", "BgzfReader", "is_bgzf", "write_bgzf", "GeneFeature", "read_gff", "labelled_windows", "load_genome_ids",
    "ArrayWindowDataset", "MLMWindowDataset", "SequenceCSVDataset", "GenomicBenchmarksDataset",
    "MaskedMarkov", "KmerLogistic", "kmer_features",
]
