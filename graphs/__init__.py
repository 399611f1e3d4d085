"""mambakit.graphs: graph-to-sequence orderings, Graph-Mamba layers and graph datasets, PyG-native.

- ``orderings``: node orderings over a PyG ``Batch`` (degree, random, BFS, DFS, spectral), each
  a permutation that keeps every graph's nodes contiguous, used as core scan orders with
  ``seq_idx = batch`` so no scan state crosses from one graph into the next.
- ``layers``: GatedGCN and GINE message passing, the global mixers (Mamba over ordered nodes,
  attention within each graph) and the GraphGPS-style layer that combines them.
- ``tokenizers``: GMN-style neighbourhood tokens (hops, random walks), random-walk encodings.
- ``models``: ``GraphModel`` with presets ``graph_mamba``, ``gatedgcn``, ``graphgps``, ``gmn``,
  sized to a parameter budget by ``config_for_budget``; node- or graph-level heads.
- ``sbm``: SBM PATTERN / CLUSTER generated locally (benchmarking-GNNs recipe), cached on disk.
- ``data``: TU-format reader/writer, PyG dataset interop, ``validate_graph``, ``graph_collate``.
- ``recipes``: ``mambakit train graphs pattern-graph-mamba`` and friends.
"""
from .data import (GraphTaskDataset, TUDatasetFolder, from_pyg_dataset, graph_collate, read_tu_dataset,
                   validate_graph, write_tu_dataset)
from .layers import GatedGCNLayer, GINELayer, GraphAttention, GraphLayer, GraphMambaLayer, GraphMambaMixer, GraphGPSLayer
from .models import (GraphModel, GraphModelConfig, config_for_budget, count_parameters, create_model, gatedgcn,
                     gmn, graph_mamba, graphgps)
from .orderings import (ORDERINGS, bfs_order, degree_order, dfs_order, fiedler_vector, graph_scan_orders,
                        order_nodes, random_order, reverse_within_graphs, spectral_order)
from .sbm import ClusterConfig, PatternConfig, SBMCluster, SBMPattern, describe
from .tokenizers import NeighbourhoodMamba, hop_tokens, random_walk_pe, random_walks

__all__ = [
    "GraphTaskDataset", "TUDatasetFolder", "from_pyg_dataset", "graph_collate", "read_tu_dataset",
    "validate_graph", "write_tu_dataset", "GatedGCNLayer", "GINELayer", "GraphAttention", "GraphLayer",
    "GraphMambaLayer", "GraphMambaMixer", "GraphGPSLayer", "GraphModel", "GraphModelConfig",
    "config_for_budget", "count_parameters", "create_model", "gatedgcn", "gmn", "graph_mamba", "graphgps",
    "ORDERINGS", "bfs_order", "degree_order", "dfs_order", "fiedler_vector", "graph_scan_orders",
    "order_nodes", "random_order", "reverse_within_graphs", "spectral_order", "ClusterConfig",
    "PatternConfig", "SBMCluster", "SBMPattern", "describe", "NeighbourhoodMamba", "hop_tokens",
    "random_walk_pe", "random_walks",
]
