"""Graph layers: local message passing, global mixers, and the GraphGPS-style layer joining them.

Node features are ``h (N, D)`` for all nodes of a PyG batch, edge features ``e (E, D)``.

- ``GatedGCNLayer``: residual gated graph convolution with edge features (Bresson & Laurent
  2017, arXiv:1711.07553, in the edge-gated form used by benchmarking-GNNs and GraphGPS).
  For an edge ``j -> i``: ``e_ij' = C e_ij + D h_i + E h_j``, ``g_ij = sigmoid(e_ij')``,
  ``h_i' = A h_i + sum_j g_ij * B h_j / (sum_j g_ij + eps)``; then norm, ReLU, dropout and a
  residual on both nodes and edges.
- ``GINELayer``: ``torch_geometric.nn.GINEConv`` (GIN with edge features) + residual + norm.
- Global mixers, all ``(N, D) -> (N, D)`` given a ``GraphContext``: ``GraphMambaMixer`` (a
  ``mambakit.Mamba`` over the packed ``(1, N, D)`` node sequence in a graph ordering, with
  ``seq_idx = batch`` so the scan restarts at every graph), ``GraphAttention`` (multi-head
  attention within each graph via ``to_dense_batch`` and a key padding mask) and
  ``tokenizers.NeighbourhoodMamba`` (GMN-style per-node token sequences).
- ``GraphLayer``: the GraphGPS combination (Rampasek et al. 2022, arXiv:2205.12454): a local
  branch and a global branch, each with its residual and norm, summed, then a feed-forward block
  with residual and norm. ``GraphMambaLayer`` and ``GraphGPSLayer`` are this layer with the
  Mamba or the attention mixer, so the two differ in the global mixer only.

``GraphContext`` holds what every layer of one forward pass shares: the checked structure, the
batch vector, and the orderings / random walks, computed once and reused by every layer.
Message passing follows the edges as given (``src -> dst``; self-loops and duplicate edges are
ordinary edges); orderings and walks use the undirected simple graph (see ``orderings``).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.nn import GINEConv
from torch_geometric.utils import scatter, to_dense_batch

from mambakit import Mamba, MultiOrderMixer, ScanOrder

from .orderings import ORDERINGS, GraphStructure, graph_scan_orders, graph_structure, order_nodes
from .tokenizers import TOKEN_KINDS, NeighbourhoodMamba, random_walks

LOCAL_KINDS = ("gatedgcn", "gine", "none")
GLOBAL_KINDS = ("mamba", "attention", "tokens", "none")
NORMS = ("batch", "layer", "none")
EVAL_WALK_SEED = 0          # random-walk tokens at eval time use this seed, so predictions repeat


class GraphContext:
    """Per-forward graph state shared by the layers.

    ``edge_index (2, E)`` and ``batch (N,)`` on the model's device, ``seq_idx (1, N)`` (the
    packed-sequence ids of the scan), ``num_graphs``, ``structure`` (CPU, see
    ``orderings.GraphStructure``). ``order_sets`` and ``walks`` compute on first request and are
    then reused by every layer that asks for the same thing.
    """

    def __init__(self, data: Any, generator: Optional[torch.Generator] = None) -> None:
        self.structure: GraphStructure = data if isinstance(data, GraphStructure) else graph_structure(data)
        device = self.structure.device
        self.edge_index = self.structure.edge_index.to(device)
        self.batch = self.structure.batch.to(device)
        self.seq_idx = self.batch.unsqueeze(0)                                  # (1, N)
        self.num_graphs = self.structure.num_graphs
        self.num_nodes = self.structure.num_nodes
        self.generator = generator
        self._cache: dict[tuple, Any] = {}

    def order_sets(self, method: str, bidirectional: bool, count: int, randomise: bool) -> list[list[ScanOrder]]:
        """``count`` orderings by ``method`` (random tie-breaks when ``randomise``), each as its
        scan orders (``[forward]`` or ``[forward, within-graph reverse]``)."""
        key = ("orders", method, bidirectional, count, randomise)
        if key not in self._cache:
            sets = []
            for _ in range(count):
                perm = order_nodes(self.structure, method, training=randomise, generator=self.generator)
                sets.append(graph_scan_orders(perm, self.batch, bidirectional, name=method))
            self._cache[key] = sets
        return self._cache[key]

    def walks(self, num_walks: int, length: int, training: bool) -> torch.Tensor:
        """Random walks ``(N, num_walks, length + 1)``: fresh in training, fixed-seed in eval."""
        key = ("walks", num_walks, length, training)
        if key not in self._cache:
            gen = self.generator
            if not training:
                gen = torch.Generator().manual_seed(EVAL_WALK_SEED)
            self._cache[key] = random_walks(self.structure, num_walks, length, gen)
        return self._cache[key]


def make_norm(kind: str, dim: int) -> nn.Module:
    """``'batch'`` (BatchNorm1d over nodes, GraphGPS's default), ``'layer'`` or ``'none'``."""
    if kind == "batch":
        return nn.BatchNorm1d(dim)
    if kind == "layer":
        return nn.LayerNorm(dim)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm: expected one of {NORMS}, got {kind!r}")


class GatedGCNLayer(nn.Module):
    """Residual gated GCN with edge features: ``h (N, D), e (E, D) -> (h (N, D), e (E, D))``.

    ``A, B, D, E`` (node maps) are one fused ``node_proj``; ``C`` (edge map) is ``edge_proj``.
    """

    def __init__(self, dim: int, dropout: float = 0.0, norm: str = "batch", residual: bool = True,
                 eps: float = 1e-6) -> None:
        super().__init__()
        self.node_proj = nn.Linear(dim, 4 * dim)
        self.edge_proj = nn.Linear(dim, dim)
        self.norm_h = make_norm(norm, dim)
        self.norm_e = make_norm(norm, dim)
        self.dropout = nn.Dropout(dropout)
        self.residual = residual
        self.eps = eps

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        src, dst = edge_index
        Ah, Bh, Dh, Eh = self.node_proj(h).chunk(4, dim=-1)                   # (N, D) each
        # index_select rather than h[idx]: its backward is an index_add, much faster on CPU
        e_new = self.edge_proj(e) + Dh.index_select(0, dst) + Eh.index_select(0, src)   # (E, D) gate logits
        gate = torch.sigmoid(e_new)
        num = scatter(gate * Bh.index_select(0, src), dst, dim=0, dim_size=h.shape[0], reduce="sum")  # (N, D)
        den = scatter(gate, dst, dim=0, dim_size=h.shape[0], reduce="sum")
        h_new = Ah + num / (den + self.eps)
        h_new = self.dropout(F.relu(self.norm_h(h_new)))
        if e_new.shape[0] > 0:                  # BatchNorm cannot normalise an empty edge set
            e_new = self.dropout(F.relu(self.norm_e(e_new)))
        if self.residual:
            h_new, e_new = h + h_new, e + e_new
        return h_new, e_new


class GINELayer(nn.Module):
    """GINE (``GINEConv`` with a 2-layer MLP) + dropout + residual + norm; edges pass through.
    ``h (N, D), e (E, D) -> (h (N, D), e)``."""

    def __init__(self, dim: int, dropout: float = 0.0, norm: str = "batch") -> None:
        super().__init__()
        mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.conv = GINEConv(mlp, train_eps=True)
        self.norm = make_norm(norm, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.norm(h + self.dropout(self.conv(h, edge_index, e))), e


class GraphMambaMixer(MultiOrderMixer):
    """Mamba over the nodes of each graph in a graph ordering. ``h (N, D) -> (N, D)``.

    ``ordering``: one of ``orderings.ORDERINGS``. ``bidirectional``: also scan each graph in
    the reverse order and sum the two, with separate mixers or one shared (``share_mixer``).
    Training uses one ordering with random tie-breaks per forward (permutation augmentation);
    eval uses the deterministic ordering, or, with ``eval_permutations = k > 1``, the mean over
    ``k`` randomly tie-broken orderings (Graph-Mamba's test-time averaging). ``'random'`` is
    random in eval too, and ``'spectral'`` has no random tie-breaks (its ``k`` orders coincide).
    """

    def __init__(self, dim: int, ordering: str = "degree", bidirectional: bool = False,
                 share_mixer: bool = False, eval_permutations: int = 1, d_state: int = 16,
                 d_conv: int = 4, expand: float = 2, impl: str = "auto") -> None:
        if ordering not in ORDERINGS:
            raise ValueError(f"ordering: expected one of {ORDERINGS}, got {ordering!r}")
        if eval_permutations < 1:
            raise ValueError(f"eval_permutations: expected >= 1, got {eval_permutations}")
        # The configured orders only fix how many mixers there are; every call passes the
        # batch's graph orderings (forward, and the within-graph reverse if bidirectional).
        super().__init__(dim, lambda d: Mamba(d, d_state=d_state, d_conv=d_conv, expand=expand, impl=impl),
                         ["forward", "reverse"] if bidirectional else ["forward"], merge="sum",
                         share_mixer=share_mixer)
        self.ordering, self.bidirectional, self.eval_permutations = ordering, bidirectional, eval_permutations

    def forward(self, h: torch.Tensor, ctx: GraphContext) -> torch.Tensor:
        count = 1 if self.training else self.eval_permutations
        sets = ctx.order_sets(self.ordering, self.bidirectional, count, self.training or count > 1)
        x = h.unsqueeze(0)                                                   # (1, N, D)
        outs = [super(GraphMambaMixer, self).forward(x, orders=orders, seq_idx=ctx.seq_idx) for orders in sets]
        y = outs[0] if len(outs) == 1 else torch.stack(outs).mean(0)
        return y.squeeze(0)


class GraphAttention(nn.Module):
    """Multi-head self-attention restricted to each graph. ``h (N, D) -> (N, D)``.

    Graphs are padded to ``(G, N_max, D)`` with ``to_dense_batch``; padded keys are masked out.
    """

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads {num_heads} must divide the hidden dim {dim}")
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)

    def forward(self, h: torch.Tensor, ctx: GraphContext) -> torch.Tensor:
        dense, mask = to_dense_batch(h, ctx.batch, batch_size=ctx.num_graphs)   # (G, Nm, D), (G, Nm)
        out = self.attn(dense, dense, dense, key_padding_mask=~mask, need_weights=False)[0]
        return out[mask]                                                         # (N, D)


class GraphLayer(nn.Module):
    """GraphGPS-style layer: ``h = local(h) + norm(h + drop(global(h)))``, then
    ``h = norm(h + FFN(h))``. ``h (N, D), e (E, D), ctx -> (h, e)``.

    ``local``: ``'gatedgcn'`` | ``'gine'`` | ``'none'`` (each keeps its own residual + norm).
    ``global_kind``: ``'mamba'`` | ``'attention'`` | ``'tokens'`` | ``'none'``.
    """

    def __init__(self, dim: int, local: str = "gatedgcn", global_kind: str = "mamba", *,
                 dropout: float = 0.0, attn_dropout: float = 0.0, norm: str = "batch", ffn_ratio: int = 2,
                 num_heads: int = 4, ordering: str = "degree", bidirectional: bool = False,
                 share_mixer: bool = False, eval_permutations: int = 1, d_state: int = 16, d_conv: int = 4,
                 expand: float = 2, token_kind: str = "hop", num_hops: int = 4, num_walks: int = 4,
                 impl: str = "auto") -> None:
        super().__init__()
        if local not in LOCAL_KINDS:
            raise ValueError(f"local: expected one of {LOCAL_KINDS}, got {local!r}")
        if global_kind not in GLOBAL_KINDS:
            raise ValueError(f"global_kind: expected one of {GLOBAL_KINDS}, got {global_kind!r}")
        if local == "none" and global_kind == "none":
            raise ValueError("a layer needs a local or a global branch; both are 'none'")
        self.local_kind, self.global_kind = local, global_kind
        self.local: Optional[nn.Module] = None
        if local == "gatedgcn":
            self.local = GatedGCNLayer(dim, dropout, norm)
        elif local == "gine":
            self.local = GINELayer(dim, dropout, norm)
        self.global_mixer: Optional[nn.Module] = None
        if global_kind == "mamba":
            self.global_mixer = GraphMambaMixer(dim, ordering, bidirectional, share_mixer, eval_permutations,
                                                d_state, d_conv, expand, impl)
        elif global_kind == "attention":
            self.global_mixer = GraphAttention(dim, num_heads, attn_dropout)
        elif global_kind == "tokens":
            self.global_mixer = NeighbourhoodMamba(dim, token_kind, num_hops, num_walks, d_state, d_conv,
                                                   expand, impl)
        if self.global_mixer is not None:
            self.norm_global = make_norm(norm, dim)
        self.dropout = nn.Dropout(dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_ratio * dim), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_ratio * dim, dim), nn.Dropout(dropout))
        self.norm_ffn = make_norm(norm, dim)

    def forward(self, h: torch.Tensor, e: torch.Tensor, ctx: GraphContext) -> tuple[torch.Tensor, torch.Tensor]:
        branches = []
        if self.local is not None:
            h_local, e = self.local(h, ctx.edge_index, e)
            branches.append(h_local)
        if self.global_mixer is not None:
            branches.append(self.norm_global(h + self.dropout(self.global_mixer(h, ctx))))
        h = branches[0] if len(branches) == 1 else branches[0] + branches[1]
        return self.norm_ffn(h + self.ffn(h)), e


class GraphMambaLayer(GraphLayer):
    """``GraphLayer`` with the Mamba global mixer (Graph-Mamba: local MPNN + ordered-node Mamba)."""

    def __init__(self, dim: int, local: str = "gatedgcn", **kwargs) -> None:
        super().__init__(dim, local, "mamba", **kwargs)


class GraphGPSLayer(GraphLayer):
    """``GraphLayer`` with the attention global mixer (GraphGPS with a Transformer)."""

    def __init__(self, dim: int, local: str = "gatedgcn", **kwargs) -> None:
        super().__init__(dim, local, "attention", **kwargs)


__all__ = ["GraphContext", "GatedGCNLayer", "GINELayer", "GraphMambaMixer", "GraphAttention",
           "GraphLayer", "GraphMambaLayer", "GraphGPSLayer", "make_norm", "LOCAL_KINDS", "GLOBAL_KINDS",
           "NORMS", "TOKEN_KINDS"]
