"""Neighbourhood tokens (Graph Mamba Networks style) and random-walk positional encodings.

Graph Mamba Networks (Behrouz & Hashemi 2024, arXiv:2402.08678) turn every node into a short
sequence of tokens, each summarising a neighbourhood of growing size, and let a Mamba read that
sequence; no global node ordering is needed. Here a node's sequence is ``(L, D)`` with tokens
ordered from the widest neighbourhood to the node itself, so the last token, the one read out,
is the node's own and has seen every wider context before it:

- ``hop_tokens``: token ``t`` (``t = 0..k``) is the ``t``-step mean aggregation of the features,
  ``M^t h`` with ``M`` the in-neighbour mean over the edges as given (so self-loops and
  duplicates weigh as in message passing): a diffusion summary of the ``t``-hop neighbourhood.
  Deterministic and permutation-equivariant.
- ``walk_tokens``: ``m`` random walks of ``k`` steps from each node over the undirected simple
  graph (the structure the orderings use); token ``l`` is the mean of ``h`` over the first
  ``l + 1`` positions of all walks (the visit-weighted walk neighbourhood of radius ``l``).

``NeighbourhoodMamba`` is the mixer: tokens ``(N, L, D)`` (batch = nodes, length = ``L``) plus a
learned position embedding -> ``mambakit.Mamba`` -> last token ``(N, D)``.

``random_walk_pe`` is the random-walk structural encoding (return probabilities of a ``t``-step
walk, ``t = 1..steps``) used by GraphGPS; dense per graph, for graphs up to ``RWSE_MAX_NODES``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from torch_geometric.utils import scatter

from mambakit import Mamba

from .orderings import GraphStructure

TOKEN_KINDS = ("hop", "walk", "both")
RWSE_MAX_NODES = 4096


def hop_tokens(h: torch.Tensor, edge_index: torch.Tensor, num_hops: int) -> torch.Tensor:
    """``h (N, D)`` -> ``(N, num_hops + 1, D)``: ``[M^k h, ..., M h, h]`` (widest first)."""
    n = h.shape[0]
    src, dst = edge_index
    tokens = [h]
    for _ in range(num_hops):
        tokens.append(scatter(tokens[-1][src], dst, dim=0, dim_size=n, reduce="mean"))
    return torch.stack(tokens[::-1], dim=1)


def random_walks(structure: GraphStructure, num_walks: int, length: int,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Uniform random walks over the undirected simple graph: ``(N, num_walks, length + 1)`` node
    ids, position 0 the start node. A node without neighbours stays where it is."""
    indptr, indices, deg = (torch.from_numpy(a) for a in structure.simple_csr())
    n = structure.num_nodes
    cur = torch.arange(n).repeat_interleave(num_walks)                  # (N*m,)
    steps = [cur]
    for _ in range(length):
        d = deg[cur]
        if indices.numel() == 0:
            steps.append(cur)
            continue
        r = (torch.rand(cur.numel(), generator=generator, dtype=torch.float64) * d).long()
        nxt = indices[(indptr[cur] + r).clamp(max=indices.numel() - 1)]
        cur = torch.where(d > 0, nxt, cur)
        steps.append(cur)
    return torch.stack(steps, dim=-1).view(n, num_walks, length + 1).to(structure.device)


def walk_tokens(h: torch.Tensor, walks: torch.Tensor) -> torch.Tensor:
    """``h (N, D)``, ``walks (N, m, k + 1)`` -> ``(N, k + 1, D)``: token ``l`` averages ``h`` over
    walk positions ``0..l`` of every walk; widest (``l = k``) first."""
    feats = h[walks]                                                     # (N, m, k+1, D)
    steps = torch.arange(1, walks.shape[-1] + 1, device=h.device, dtype=h.dtype)
    prefix = feats.cumsum(dim=2) / steps.view(1, 1, -1, 1)               # mean over positions 0..l
    return prefix.mean(dim=1).flip(1)                                    # (N, k+1, D)


class NeighbourhoodMamba(nn.Module):
    """GMN-style mixer: per-node neighbourhood tokens -> Mamba -> last token. ``(N, D) -> (N, D)``.

    ``kind``: ``'hop'`` (``num_hops + 1`` tokens), ``'walk'`` (``num_hops + 1`` tokens from
    ``num_walks`` walks of ``num_hops`` steps), or ``'both'`` (walk tokens, then hop tokens).
    """

    def __init__(self, dim: int, kind: str = "hop", num_hops: int = 4, num_walks: int = 4,
                 d_state: int = 16, d_conv: int = 4, expand: float = 2, impl: str = "auto") -> None:
        super().__init__()
        if kind not in TOKEN_KINDS:
            raise ValueError(f"token kind: expected one of {TOKEN_KINDS}, got {kind!r}")
        if num_hops < 1 or num_walks < 1:
            raise ValueError(f"num_hops and num_walks must be >= 1, got {num_hops}, {num_walks}")
        self.kind, self.num_hops, self.num_walks = kind, num_hops, num_walks
        length = (num_hops + 1) * (2 if kind == "both" else 1)
        self.pos_embed = nn.Parameter(torch.zeros(length, dim))
        nn.init.normal_(self.pos_embed, std=0.02)
        self.mixer = Mamba(dim, d_state=d_state, d_conv=d_conv, expand=expand, impl=impl)

    def tokens(self, h: torch.Tensor, ctx) -> torch.Tensor:
        """Node features ``(N, D)`` -> token sequences ``(N, L, D)`` (without position embedding)."""
        parts = []
        if self.kind in ("walk", "both"):
            parts.append(walk_tokens(h, ctx.walks(self.num_walks, self.num_hops, self.training)))
        if self.kind in ("hop", "both"):
            parts.append(hop_tokens(h, ctx.edge_index, self.num_hops))
        return torch.cat(parts, dim=1)

    def forward(self, h: torch.Tensor, ctx) -> torch.Tensor:
        """``h (N, D)`` and a ``layers.GraphContext`` -> ``(N, D)``."""
        seq = self.tokens(h, ctx) + self.pos_embed                      # (N, L, D)
        return self.mixer(seq)[:, -1]                                   # (N, D)


def random_walk_pe(structure: GraphStructure, steps: int) -> torch.Tensor:
    """Random-walk structural encoding ``(N, steps)``: entry ``t - 1`` is the probability that a
    ``t``-step uniform walk (undirected simple graph) from the node is back at it. Isolated nodes
    get 0 (they cannot walk)."""
    if steps < 1:
        raise ValueError(f"steps: expected >= 1, got {steps}")
    st = structure
    counts = (st.ptr[1:] - st.ptr[:-1])
    n_max = int(counts.max())
    if n_max > RWSE_MAX_NODES:
        raise ValueError(f"random_walk_pe: dense per-graph computation supports graphs up to {RWSE_MAX_NODES} "
                         f"nodes, the batch has a graph of {n_max}")
    indptr, indices, deg = (torch.from_numpy(a) for a in st.simple_csr())
    local = torch.arange(st.num_nodes) - st.ptr[st.batch]              # (N,) index within its graph
    src = torch.repeat_interleave(torch.arange(st.num_nodes), deg)
    P = torch.zeros(st.num_graphs, n_max, n_max, dtype=torch.float64)
    P[st.batch[src], local[src], local[indices]] = 1.0 / deg[src].double()   # row-stochastic
    out = torch.empty(st.num_graphs, n_max, steps, dtype=torch.float64)
    M = P
    for t in range(steps):
        out[..., t] = M.diagonal(dim1=-2, dim2=-1)
        if t + 1 < steps:
            M = M @ P
    return out[st.batch, local].float().to(st.device)
