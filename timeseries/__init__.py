"""Time-series models on the mambakit core (patching, RevIN, variate tokens)."""
