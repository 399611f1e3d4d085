"""Genomics models on the mambakit core (DNA tokenizer, RC-equivariant BiMamba)."""
