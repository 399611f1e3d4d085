"""Graph models on the mambakit core (graph orderings, Graph-Mamba layers)."""
