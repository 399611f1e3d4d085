"""Graphs: which nodes belong to the planted pattern (SBM PATTERN), with a tiny Graph-Mamba.

The model (``graphs/checkpoints/pattern-graph-mamba-tiny``: GatedGCN + bidirectional Mamba over
degree-ordered nodes) was trained on generated PATTERN graphs: 5 communities and one planted
pattern, node features drawn from ``{0, 1, 2}``; it scores every node's probability of being
in the pattern. A graph is a bundled PATTERN test graph (truth known) or an upload:

- JSON: ``{"edges": [[u, v], ...], "x": [f_0, ...] (optional), "y": [...] (optional)}`` with
  nodes ``0..N-1`` (``"num_nodes"`` optional, for isolated nodes);
- an edge list (``.txt``/``.csv``/``.edgelist``): one ``u v`` (or ``u,v``) pair per line, any
  node names, ``#`` comments.

Edges are undirected (both directions are used); self-loops and repeated edges are dropped.
Without ``x`` every node gets feature 0 (the model then sees the structure only: say so).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

import mambakit.graphs
from mambakit.graphs.models import GraphModel

from ..cards import card_markdown, card_updater
from ..common import examples, figure
from ..limits import InputError, check_upload, ui_errors
from ..models import ShippedModel

NAME = "graphs"
TITLE = "Graphs"
MAX_NODES = 2000
MAX_EDGES = 100_000
NUM_FEATURES = 3

MODEL = ShippedModel(
    key="pattern-graph-mamba-tiny",
    directory=Path(mambakit.graphs.__file__).resolve().parent / "checkpoints" / "pattern-graph-mamba-tiny",
    load=GraphModel.from_pretrained,
    typical_input=lambda m: (_as_batch(_example_graph()),),
    latency_input="one PATTERN-sized graph (~120 nodes)",
)
MODELS = [MODEL]


@dataclass
class Graph:
    """``edges (E, 2)`` int (each undirected edge once), ``x (N,)`` features, optional truth ``y (N,)``."""

    num_nodes: int
    edges: np.ndarray
    x: np.ndarray
    y: Optional[np.ndarray] = None
    names: Optional[list[str]] = None
    notes: list[str] = field(default_factory=list)


@dataclass
class GraphPrediction:
    graph: Graph
    probs: np.ndarray                                   # (N,) P(node in the pattern)

    @property
    def predicted(self) -> np.ndarray:
        return self.probs > 0.5

    def weighted_accuracy(self) -> Optional[float]:
        """Mean per-class accuracy against the truth (the benchmark's metric), when known."""
        if self.graph.y is None:
            return None
        y, p = self.graph.y.astype(bool), self.predicted
        recalls = [float((p[y == c] == c).mean()) for c in (False, True) if (y == c).any()]
        return float(np.mean(recalls))


def _clean(num_nodes: int, edges: np.ndarray, x: Optional[np.ndarray], y: Optional[np.ndarray],
           names: Optional[list[str]], notes: list[str], source: str) -> Graph:
    if num_nodes < 1:
        raise InputError(f"{source}: the graph has no nodes")
    if num_nodes > MAX_NODES:
        raise InputError(f"{source}: {num_nodes} nodes; the demo draws and scores up to {MAX_NODES}")
    if len(edges) and (edges.min() < 0 or edges.max() >= num_nodes):
        raise InputError(f"{source}: edge endpoints must be node ids 0..{num_nodes - 1}, found {int(edges.min())}.."
                         f"{int(edges.max())}")
    loops = edges[:, 0] == edges[:, 1] if len(edges) else np.zeros(0, dtype=bool)
    if loops.any():
        notes.append(f"{int(loops.sum())} self-loop(s) dropped")
    edges = np.unique(np.sort(edges[~loops], axis=1), axis=0) if len(edges) else edges.reshape(0, 2)
    if len(edges) > MAX_EDGES:
        raise InputError(f"{source}: {len(edges)} edges; the limit here is {MAX_EDGES}")
    if x is None:
        x = np.zeros(num_nodes, dtype=np.int64)
        notes.append("no node features given: every node gets feature 0, so the model sees the structure only")
    elif x.shape != (num_nodes,) or not np.isin(x, np.arange(NUM_FEATURES)).all():
        raise InputError(f"{source}: 'x' must hold one feature in {{0, 1, 2}} per node ({num_nodes}), got "
                         f"shape {x.shape} with values {sorted(set(np.unique(x).tolist()))[:6]}")
    if y is not None and (y.shape != (num_nodes,) or not np.isin(y, [0, 1]).all()):
        raise InputError(f"{source}: 'y' must hold one 0/1 label per node ({num_nodes})")
    isolated = num_nodes - len(np.unique(edges)) if len(edges) else num_nodes
    if isolated:
        notes.append(f"{isolated} isolated node(s)")
    return Graph(num_nodes, edges.astype(np.int64), x.astype(np.int64), None if y is None else y.astype(np.int64),
                 names, notes)


def _read_json(p: Path) -> Graph:
    try:
        obj = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"'{p.name}' is not valid JSON ({err})") from None
    if not isinstance(obj, dict) or "edges" not in obj:
        raise InputError(f"'{p.name}': expected a JSON object with an 'edges' list of [u, v] pairs")
    try:
        edges = np.asarray(obj["edges"], dtype=np.int64).reshape(-1, 2)
        x = None if obj.get("x") is None else np.asarray(obj["x"], dtype=np.int64)
        y = None if obj.get("y") is None else np.asarray(obj["y"], dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise InputError(f"'{p.name}': 'edges', 'x' and 'y' must hold integers ({err})") from None
    sizes = [int(obj.get("num_nodes", 0)), 0 if not len(edges) else int(edges.max()) + 1,
             0 if x is None else len(x)]
    return _clean(max(sizes), edges, x, y, None, [], f"'{p.name}'")


def _read_edge_list(p: Path) -> Graph:
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise InputError(f"'{p.name}' is not a text edge list") from None
    index: dict[str, int] = {}
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").replace("\t", " ").split()
        if len(parts) < 2:
            raise InputError(f"'{p.name}' line {number}: expected two node names 'u v', got {line!r}")
        pairs.append([index.setdefault(name, len(index)) for name in parts[:2]])
    if not pairs:
        raise InputError(f"'{p.name}' holds no edges")
    return _clean(len(index), np.asarray(pairs, dtype=np.int64), None, None, list(index), [], f"'{p.name}'")


def read_graph(path: Optional[str]) -> Graph:
    """A graph file (JSON or edge list, see the module doc) -> ``Graph``; ``InputError`` if bad."""
    p = check_upload(path, "graph", "graph file")
    return _read_json(p) if p.suffix.lower() == ".json" else _read_edge_list(p)


def _as_batch(graph: Graph):
    from torch_geometric.data import Batch, Data

    e = torch.as_tensor(graph.edges, dtype=torch.long).reshape(-1, 2).t()
    edge_index = torch.cat([e, e.flip(0)], dim=1)
    return Batch.from_data_list([Data(x=torch.as_tensor(graph.x), edge_index=edge_index,
                                      num_nodes=graph.num_nodes)])


def _example_graph() -> Graph:
    files = examples("graphs", (".json",))
    return read_graph(str(files[0]))


def score_graph(path: Optional[str]) -> GraphPrediction:
    """A graph file -> per-node pattern probabilities."""
    graph = read_graph(path)
    model = MODEL.model()
    with torch.inference_mode():
        probs = model(_as_batch(graph)).softmax(-1)[:, 1].numpy()
    return GraphPrediction(graph, probs)


def graph_figure(pred: GraphPrediction):
    """The graph drawn with a spring layout, nodes coloured by P(pattern); truth ringed in red."""
    import networkx as nx

    g = pred.graph
    nxg = nx.Graph()
    nxg.add_nodes_from(range(g.num_nodes))
    nxg.add_edges_from(g.edges.tolist())
    pos = nx.spring_layout(nxg, seed=0, k=None if g.num_nodes < 300 else 0.05)
    xy = np.array([pos[i] for i in range(g.num_nodes)])
    fig = figure(7.0, 5.6, left=0.1, right=1.0, top=0.4, bottom=0.1)
    ax = fig.add_subplot(1, 1, 1)
    if len(g.edges):
        from matplotlib.collections import LineCollection
        ax.add_collection(LineCollection(xy[g.edges], colors="#999999", linewidths=0.3, alpha=0.35, zorder=1))
    size = max(8.0, 2400.0 / max(g.num_nodes, 1))
    edgecolors = "none" if g.y is None else np.where(g.y == 1, "#d62728", "none")
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=pred.probs, cmap="viridis", vmin=0, vmax=1, s=size,
                    edgecolors=edgecolors, linewidths=1.2, zorder=2)
    fig.colorbar(sc, ax=ax, fraction=0.04, pad=0.01, label="P(node in the pattern)")
    title = f"{g.num_nodes} nodes, {len(g.edges)} edges"
    if g.y is not None:
        title += "; red rings: the true pattern"
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    return fig


def summary(pred: GraphPrediction) -> str:
    g = pred.graph
    lines = [f"**{int(pred.predicted.sum())} of {g.num_nodes} nodes** predicted in the pattern "
             f"(P > 0.5; mean P {pred.probs.mean():.2f})."]
    acc = pred.weighted_accuracy()
    if acc is not None:
        lines.append(f"Truth known ({int(g.y.sum())} pattern nodes): weighted accuracy **{100 * acc:.1f}%** "
                     "(mean of the per-class accuracies, the benchmark's metric).")
    if g.notes:
        lines.append("Input: " + "; ".join(g.notes) + ".")
    return "\n\n".join(lines)


# ---- Gradio handlers -----------------------------------------------------------------------------
@ui_errors
def ui_score(path: Optional[str]) -> tuple[Any, str]:
    pred = score_graph(path)
    return graph_figure(pred), summary(pred)


def build() -> None:
    """The tab's components (inside an open ``gr.Tab``)."""
    import gradio as gr

    gr.Markdown("Pick a PATTERN test graph or upload a graph (JSON `{\"edges\": [[u, v], ...], \"x\": [...]}` "
                "or an edge list, one `u v` pair per line). The model scores every node's probability of "
                "belonging to the planted pattern.")
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Graph file", file_types=[".json", ".txt", ".csv", ".edgelist"],
                             type="filepath", elem_id="graphs-input")
            button = gr.Button("Score nodes", variant="primary", elem_id="graphs-run")
            gr.Examples([[str(p)] for p in examples("graphs", (".json", ".txt"))], inputs=[upload],
                        label="Examples (generated PATTERN test graphs; a karate-club edge list)")
        with gr.Column(scale=2):
            plot = gr.Plot(label="Graph", elem_id="graphs-plot")
            info = gr.Markdown(elem_id="graphs-info")
    button.click(ui_score, inputs=[upload], outputs=[plot, info], api_name="score_graph")
    card = gr.Markdown(card_markdown(MODELS, measure=False), elem_id="graphs-card", elem_classes=["model-card"])
    gr.on(None, card_updater(MODELS), outputs=[card], api_name="card_graphs", show_progress="hidden")
