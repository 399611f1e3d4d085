"""Audio models on the mambakit core (fbank patches, streaming keyword spotting)."""
