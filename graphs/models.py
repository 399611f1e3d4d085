"""Graph models: one configurable network for Graph-Mamba, GatedGCN, GraphGPS and GMN.

``GraphModel(config)`` maps a PyG ``Data`` / ``Batch`` (``x``, ``edge_index``, optional
``edge_attr``, ``batch``) to logits ``(num_nodes, C)`` (``task='node'``, rows aligned with the
nodes) or ``(num_graphs, C)`` (``task='graph'``, rows in graph order):

    x -> node encoder (+ RWSE) ; edge_attr -> edge encoder
      -> num_layers x GraphLayer (local MPNN + global mixer, GraphGPS combination)
      -> [graph task: mean / sum / max pooling per graph] -> MLP head

Presets (``PRESETS``, ``create_model(name)``): ``graph_mamba`` (GatedGCN + Mamba over
degree-ordered nodes, Wang et al. 2024, arXiv:2402.00789), ``gatedgcn`` (no global mixer),
``graphgps`` (GatedGCN + attention, Rampasek et al. 2022) and ``gmn`` (GatedGCN + Mamba over
per-node neighbourhood tokens, Behrouz & Hashemi 2024). ``config_for_budget`` sizes any preset
to a parameter budget (benchmarking-GNNs' ~500k) by choosing the hidden width.

Input handling (checked at ``forward``, errors name what was expected and what came):

- ``x`` is required (ValueError if None); integer categories (``node_input='categorical'``,
  ``(N,)`` or ``(N, node_columns)``, each column embedded and the embeddings summed; values
  must lie in ``[0, node_in)``) or floats (``node_input='float'``, ``(N, node_in)``); the wrong
  kind is a TypeError, the wrong width a ValueError; NaN/Inf in CPU float features ValueError
  (not checked on accelerators, where it costs a device sync).
- ``edge_attr`` likewise by ``edge_input``; with ``edge_input='none'`` it is ignored and every
  edge starts from one learned vector.
- A graph with 0 nodes (alone or inside a batch), negative or out-of-range edge indices,
  edges joining two graphs and an unsorted ``batch`` are ValueErrors (``orderings.graph_structure``).
- The structure and category-range checks read ``edge_index``/``batch``/categories on the CPU:
  one device sync per forward on an accelerator (the orderings need the structure there anyway).
- Isolated nodes are fine (they aggregate nothing; the scan and the attention still see them).
- Self-loops and duplicate edges are kept in message passing and hop tokens as ordinary edges;
  orderings and random walks ignore them (see ``orderings``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn as nn
from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

from mambakit import PretrainedMixin

from .layers import GLOBAL_KINDS, LOCAL_KINDS, NORMS, GraphContext, GraphLayer
from .orderings import ORDERINGS
from .tokenizers import TOKEN_KINDS, random_walk_pe

INPUT_KINDS = ("categorical", "float")
POOLINGS = {"mean": global_mean_pool, "sum": global_add_pool, "max": global_max_pool}


@dataclass
class GraphModelConfig:
    """Sizes and options of ``GraphModel`` (see the module docstring for the input kinds)."""

    hidden_dim: int = 64
    num_layers: int = 4
    local_mpnn: str = "gatedgcn"          # 'gatedgcn' | 'gine' | 'none'
    global_kind: str = "mamba"            # 'mamba' | 'attention' | 'tokens' | 'none'
    ordering: str = "degree"              # global_kind='mamba': 'degree' | 'random' | 'bfs' | 'dfs' | 'spectral'
    bidirectional: bool = False
    share_mixer: bool = False
    eval_permutations: int = 1            # test-time averaging over randomly tie-broken orderings
    dropout: float = 0.0
    attn_dropout: float = 0.0
    norm: str = "batch"                   # 'batch' | 'layer' | 'none'
    ffn_ratio: int = 2
    num_heads: int = 4
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    token_kind: str = "hop"               # global_kind='tokens': 'hop' | 'walk' | 'both'
    num_hops: int = 4
    num_walks: int = 4
    node_input: str = "categorical"       # 'categorical' | 'float'
    node_in: int = 3                      # categories per column, or float feature width
    node_columns: int = 1                 # categorical columns (x of shape (N,) counts as 1)
    edge_input: str = "none"              # 'none' | 'categorical' | 'float'
    edge_in: int = 0
    edge_columns: int = 1
    pe: str = "none"                      # 'none' | 'rwse'
    pe_steps: int = 16
    task: str = "node"                    # 'node' | 'graph'
    num_classes: int = 2
    pooling: str = "mean"                 # task='graph': 'mean' | 'sum' | 'max'
    mamba_impl: str = "auto"              # selective-scan implementation (see mambakit.selective_scan)

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "num_layers", "ffn_ratio", "num_heads", "d_state", "d_conv", "expand",
                     "num_hops", "num_walks", "node_in", "node_columns", "edge_columns", "pe_steps",
                     "num_classes", "eval_permutations"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        choices = {"local_mpnn": LOCAL_KINDS, "global_kind": GLOBAL_KINDS, "ordering": ORDERINGS,
                   "norm": NORMS, "token_kind": TOKEN_KINDS, "node_input": INPUT_KINDS,
                   "edge_input": ("none", *INPUT_KINDS), "pe": ("none", "rwse"), "task": ("node", "graph"),
                   "pooling": tuple(POOLINGS)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {getattr(self, name)!r}")
        if self.local_mpnn == "none" and self.global_kind == "none":
            raise ValueError("local_mpnn and global_kind cannot both be 'none'")
        if self.edge_input != "none" and self.edge_in < 1:
            raise ValueError(f"edge_in: expected >= 1 for edge_input={self.edge_input!r}, got {self.edge_in}")
        if self.global_kind == "attention" and self.hidden_dim % self.num_heads:
            raise ValueError(f"num_heads {self.num_heads} must divide hidden_dim {self.hidden_dim}")
        if not 0 <= self.dropout < 1 or not 0 <= self.attn_dropout < 1:
            raise ValueError(f"dropout / attn_dropout must lie in [0, 1), got {self.dropout}, {self.attn_dropout}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GraphModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"model_type"})
        if unknown:
            raise ValueError(f"GraphModelConfig: unknown fields {unknown}")
        return cls(**{k: v for k, v in data.items() if k in names})


class FeatureEncoder(nn.Module):
    """Node or edge features -> ``(rows, D)``.

    ``'categorical'``: integer ``(rows,)`` or ``(rows, columns)``, one ``nn.Embedding(size, D)``
    per column, summed. ``'float'``: ``(rows, size)`` -> ``nn.Linear(size, D)``.
    """

    def __init__(self, name: str, kind: str, size: int, columns: int, dim: int) -> None:
        super().__init__()
        self.name, self.kind, self.size, self.columns = name, kind, size, columns
        if kind == "categorical":
            self.embeddings = nn.ModuleList([nn.Embedding(size, dim) for _ in range(columns)])
        else:
            self.linear = nn.Linear(size, dim)

    def check(self, t: Any, rows: int) -> None:
        """Raise TypeError / ValueError unless ``t`` fits this encoder (``rows`` rows)."""
        name = self.name
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.shape[0] != rows:
            raise ValueError(f"{name}: expected {rows} rows, got shape {tuple(t.shape)}")
        if self.kind == "categorical":
            if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
                raise TypeError(f"{name}: expected integer categories (the config says categorical), got {t.dtype}")
            cols = 1 if t.dim() == 1 else t.shape[1] if t.dim() == 2 else -1
            if cols != self.columns:
                raise ValueError(f"{name}: expected shape ({rows},) or ({rows}, {self.columns}) with "
                                 f"{self.columns} categorical column(s), got {tuple(t.shape)}")
            if t.numel():
                lo, hi = int(t.min()), int(t.max())
                if lo < 0 or hi >= self.size:
                    raise ValueError(f"{name}: category {lo if lo < 0 else hi} out of range [0, {self.size})")
        else:
            if not t.dtype.is_floating_point:
                raise TypeError(f"{name}: expected floating-point features (the config says float), got {t.dtype}")
            if t.dim() != 2 or t.shape[1] != self.size:
                raise ValueError(f"{name}: expected shape ({rows}, {self.size}), got {tuple(t.shape)}")
            if t.device.type == "cpu" and t.numel() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name}: contains NaN or Inf values")

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "categorical":
            t = t.long().view(t.shape[0], -1)
            return sum(emb(t[:, k]) for k, emb in enumerate(self.embeddings))
        return self.linear(t.to(self.linear.weight.dtype))


class GraphModel(PretrainedMixin, nn.Module):
    """Encoders -> ``num_layers`` GraphGPS-style layers -> node or graph head.

    ``forward(data)`` -> ``(N, num_classes)`` (node task) or ``(G, num_classes)`` (graph task).
    ``forward_features(data)`` -> node features ``(N, hidden_dim)`` and the ``GraphContext``.
    """

    config_class = GraphModelConfig
    model_type = "graph_model"

    def __init__(self, config: Optional[GraphModelConfig] = None, **overrides) -> None:
        super().__init__()
        if config is None:
            config = GraphModelConfig(**overrides)
        elif not isinstance(config, GraphModelConfig):
            raise TypeError(f"config: expected a GraphModelConfig, got {type(config).__name__}")
        elif overrides:
            config = GraphModelConfig.from_dict({**config.to_dict(), **overrides})
        self.config = c = config
        D = c.hidden_dim
        self.num_features, self.num_classes = D, c.num_classes
        self.node_encoder = FeatureEncoder("x", c.node_input, c.node_in, c.node_columns, D)
        if c.edge_input == "none":
            self.edge_encoder = None
            self.edge_embedding = nn.Parameter(torch.zeros(1, D))
        else:
            self.edge_encoder = FeatureEncoder("edge_attr", c.edge_input, c.edge_in, c.edge_columns, D)
        self.pe_encoder = nn.Linear(c.pe_steps, D) if c.pe == "rwse" else None
        self.layers = nn.ModuleList([
            GraphLayer(D, c.local_mpnn, c.global_kind, dropout=c.dropout, attn_dropout=c.attn_dropout, norm=c.norm,
                       ffn_ratio=c.ffn_ratio, num_heads=c.num_heads, ordering=c.ordering,
                       bidirectional=c.bidirectional, share_mixer=c.share_mixer,
                       eval_permutations=c.eval_permutations, d_state=c.d_state, d_conv=c.d_conv,
                       expand=c.expand, token_kind=c.token_kind, num_hops=c.num_hops, num_walks=c.num_walks,
                       impl=c.mamba_impl)
            for _ in range(c.num_layers)])
        self.head = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Dropout(c.dropout), nn.Linear(D, c.num_classes))

    # ---- input ------------------------------------------------------------------------------
    def check_input(self, data: Any) -> GraphContext:
        """Validate ``data`` (structure and features) and build its ``GraphContext``."""
        if not hasattr(data, "edge_index") or not hasattr(data, "x"):
            raise TypeError(f"expected a torch_geometric Data or Batch (x, edge_index, ...), got {type(data).__name__}")
        if data.x is None:
            raise ValueError("missing node features: data.x is None; GraphModel needs x "
                             f"({self.config.node_input} features)")
        ctx = GraphContext(data)
        self.node_encoder.check(data.x, ctx.num_nodes)
        if self.edge_encoder is not None:
            edge_attr = getattr(data, "edge_attr", None)
            if edge_attr is None:
                raise ValueError(f"missing edge features: data.edge_attr is None but the config says "
                                 f"edge_input={self.config.edge_input!r}")
            self.edge_encoder.check(edge_attr, ctx.edge_index.shape[1])
        return ctx

    # ---- forward ----------------------------------------------------------------------------
    def forward_features(self, data: Any) -> tuple[torch.Tensor, GraphContext]:
        """``data`` -> node features ``h (N, hidden_dim)`` after the last layer, and the context."""
        ctx = self.check_input(data)
        h = self.node_encoder(data.x)                                           # (N, D)
        if self.pe_encoder is not None:
            pe = random_walk_pe(ctx.structure, self.config.pe_steps)
            h = h + self.pe_encoder(pe.to(h.dtype))
        if self.edge_encoder is not None:
            e = self.edge_encoder(data.edge_attr)                                # (E, D)
        else:
            e = self.edge_embedding.expand(ctx.edge_index.shape[1], -1)
        for layer in self.layers:
            h, e = layer(h, e, ctx)
        return h, ctx

    def forward_head(self, h: torch.Tensor, ctx: GraphContext) -> torch.Tensor:
        """Node features ``(N, D)`` -> logits ``(N, C)`` or, pooled per graph, ``(G, C)``."""
        if self.config.task == "graph":
            h = POOLINGS[self.config.pooling](h, ctx.batch, size=ctx.num_graphs)    # (G, D)
        return self.head(h)

    def forward(self, data: Any) -> torch.Tensor:
        """PyG ``Data``/``Batch`` -> logits ``(num_nodes, C)`` or ``(num_graphs, C)``."""
        h, ctx = self.forward_features(data)
        return self.forward_head(h, ctx)


# ---- presets and sizing --------------------------------------------------------------------------
PRESETS: dict[str, dict[str, Any]] = {
    "graph_mamba": dict(local_mpnn="gatedgcn", global_kind="mamba", ordering="degree", num_layers=6),
    "gatedgcn": dict(local_mpnn="gatedgcn", global_kind="none", num_layers=16),
    "graphgps": dict(local_mpnn="gatedgcn", global_kind="attention", num_layers=6),
    "gmn": dict(local_mpnn="gatedgcn", global_kind="tokens", token_kind="hop", num_layers=6),
}


def preset_config(name: str, **overrides) -> GraphModelConfig:
    """The ``GraphModelConfig`` of preset ``name`` (``PRESETS``) with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown graph model preset {name!r}; available: {', '.join(PRESETS)}")
    return GraphModelConfig(**{**PRESETS[name], **overrides})


def create_model(name: str, **overrides) -> GraphModel:
    """A ``GraphModel`` from preset ``name`` with ``GraphModelConfig`` fields as overrides."""
    return GraphModel(preset_config(name, **overrides))


def graph_mamba(**overrides) -> GraphModel:
    """Graph-Mamba: GatedGCN + Mamba over degree-ordered nodes."""
    return create_model("graph_mamba", **overrides)


def gatedgcn(**overrides) -> GraphModel:
    """GatedGCN only (with the GraphGPS feed-forward block)."""
    return create_model("gatedgcn", **overrides)


def graphgps(**overrides) -> GraphModel:
    """GraphGPS: GatedGCN + multi-head attention within each graph."""
    return create_model("graphgps", **overrides)


def gmn(**overrides) -> GraphModel:
    """GMN-style: GatedGCN + Mamba over per-node neighbourhood tokens."""
    return create_model("gmn", **overrides)


def count_parameters(model: nn.Module | GraphModelConfig, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a model, or of the ``GraphModel`` a config builds."""
    if isinstance(model, GraphModelConfig):
        with torch.device("meta"):
            model = GraphModel(model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def config_for_budget(name: str, budget: int = 500_000, multiple_of: int = 4, **overrides) -> GraphModelConfig:
    """The preset ``name`` with the largest ``hidden_dim`` (a multiple of ``multiple_of``) whose
    parameter count stays within ``budget``; other fields from ``overrides``."""
    if budget < 1 or multiple_of < 1:
        raise ValueError(f"budget and multiple_of must be >= 1, got {budget}, {multiple_of}")
    overrides.pop("hidden_dim", None)
    lo, hi = 0, 1
    while count_parameters(preset_config(name, hidden_dim=hi * multiple_of, **overrides)) <= budget:
        lo, hi = hi, hi * 2
    while hi - lo > 1:                           # lo fits (or is 0), hi does not
        mid = (lo + hi) // 2
        if count_parameters(preset_config(name, hidden_dim=mid * multiple_of, **overrides)) <= budget:
            lo = mid
        else:
            hi = mid
    if lo == 0:
        raise ValueError(f"preset {name!r} exceeds {budget} parameters even at hidden_dim={multiple_of}")
    return preset_config(name, hidden_dim=lo * multiple_of, **overrides)


MODELS = tuple(PRESETS)

__all__ = ["GraphModelConfig", "GraphModel", "FeatureEncoder", "PRESETS", "MODELS", "preset_config",
           "create_model", "graph_mamba", "gatedgcn", "graphgps", "gmn", "count_parameters",
           "config_for_budget"]
