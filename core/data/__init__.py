"""Small generic datasets for the core: where the data lives, a FASTA reader, a DNA tokenizer
and next-token windows for language-model pretraining.

Domain packages build richer loaders on top (``mambakit.genomics`` for DNA); these stay minimal
so that the core's own recipe (``mambakit train core klebsiella-lm-tiny``) needs nothing else.
"""
from .dna import DNATokenizer, LMWindowDataset
from .fasta import FastaRecord, open_maybe_compressed, read_fasta
from .paths import data_root, dataset_path

__all__ = ["data_root", "dataset_path", "FastaRecord", "read_fasta", "open_maybe_compressed",
           "DNATokenizer", "LMWindowDataset"]
