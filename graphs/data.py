"""Graph data for the training engine: TU-format files, PyG datasets, input checks, batching.

- ``read_tu_dataset`` / ``write_tu_dataset`` / ``TUDatasetFolder``: the TU Dortmund graph
  collection's text format (``<name>_A.txt`` and friends, below), read and written here.
- ``GraphTaskDataset`` / ``from_pyg_dataset``: any list of ``Data`` or PyG in-memory dataset as
  ``(data, target)`` items for a node- or graph-level task.
- ``validate_graph``: checks one graph and applies the documented treatment of bad input.
- ``graph_collate``: the ``collate_fn`` for ``mambakit.train.fit`` / ``evaluate``:
  items -> ``(Batch, targets)``; the engine then calls ``model(batch)``.

Targets: an item's target has a leading dimension of 1 for a graph-level target (``(1,)`` or
``(1, T)``) and of ``n`` for node-level targets (``(n,)`` or ``(n, T)``), the convention of PyG's
``Data.y``; ``graph_collate`` concatenates them, giving ``(G, ...)`` graph targets or ``(N, ...)``
node targets aligned with ``batch.batch``.

TU format (https://chrsmrrs.github.io/datasets/docs/format/), for ``N`` nodes, ``E`` directed
edges and ``G`` graphs, one line per entry, values separated by commas:

=============================  ====  ================================================
``<name>_A.txt``               E     ``i, j``: an edge from node ``i`` to node ``j`` (1-based,
                                     numbered over the whole dataset); undirected graphs
                                     list both directions
``<name>_graph_indicator.txt`` N     graph id (1-based) of node ``i``; non-decreasing, contiguous
``<name>_graph_labels.txt``    G     integer class of each graph (optional)
``<name>_node_labels.txt``     N     integer label(s) of each node (optional)
``<name>_edge_labels.txt``     E     integer label(s) of each edge in ``A`` (optional)
``<name>_node_attributes.txt`` N     real attributes of each node (optional)
``<name>_edge_attributes.txt`` E     real attributes of each edge (optional)
``<name>_graph_attributes.txt`` G    real attributes (often regression targets) (optional)
=============================  ====  ================================================

Each graph becomes ``Data`` with ``num_nodes`` set and, when the files exist: ``x`` float32
``(n, F)`` (node attributes, then one-hot node labels: PyG's ``TUDataset`` convention; choose with
``node_features``), ``node_label`` long ``(n,)`` (``(n, k)`` for ``k`` label columns),
``edge_attr`` float32 ``(E_g, F_e)`` (edge attributes, then one-hot edge labels), ``edge_label``
long, ``y`` long ``(1,)`` (the graph label; ``(1, k)`` for ``k`` columns) and ``graph_attr``
float32 ``(1, F_g)``. Labels are
remapped to ``0..C-1`` per column in sorted order of the original values; ``label_maps`` keeps
the original value of each new label.

Bad input, read side: a missing ``_A`` or ``_graph_indicator`` file is ``FileNotFoundError``
naming it; a malformed line, a non-numeric or non-finite cell, a node id out of range, an edge
joining two graphs, graph ids that skip or go back, and row counts that do not match (labels
vs nodes / edges / graphs) are ``ValueError`` naming the file and line.
"""
from __future__ import annotations

import copy
import io
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch, Data

from mambakit.hub import atomic_write_dir

TASKS = ("graph", "node")
FEATURE_SOURCES = ("attributes", "labels")


def atomic_write(path: Union[str, Path], write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it onto ``path``.

    The file appears complete or not at all; on any error the temporary file is removed and
    ``path`` (if it existed) is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)                 # mkstemp makes it private; a cache is for everyone
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


# ---- validation ---------------------------------------------------------------------------------
def _is_float(t: torch.Tensor) -> bool:
    return t.dtype.is_floating_point or t.dtype.is_complex


def _check_finite(name: str, t: torch.Tensor) -> None:
    if _is_float(t):
        bad = ~torch.isfinite(t)
        if bad.any():
            rows = bad.reshape(bad.shape[0], -1).any(1).nonzero().flatten() if t.dim() else torch.tensor([0])
            raise ValueError(f"{name} holds {int(bad.sum())} NaN/Inf values (first in row {int(rows[0])})")


def validate_graph(data: Data, *, missing_x: str = "error", self_loops: str = "keep",
                   duplicate_edges: str = "keep") -> Data:
    """Check one graph and return a (shallow) copy with ``edge_index`` as long.

    Checks and treatment:

    - ``x`` missing: ``ValueError``; with ``missing_x="constant"`` a feature 1 per node,
      ``x = ones(n, 1)`` (``n`` from ``num_nodes``, else the largest node index + 1).
    - 0 nodes: ``ValueError``. ``x`` of neither 1 nor 2 dimensions, or with a row count that
      differs from an explicit ``num_nodes``: ``ValueError``. NaN/Inf in float ``x``: ``ValueError``.
    - ``edge_index`` not a tensor or not integer: ``TypeError``; not ``(2, E)``: ``ValueError``;
      an index < 0 or >= ``n``: ``ValueError`` naming the value and the node count. Missing
      ``edge_index`` means no edges.
    - ``edge_attr`` whose row count differs from ``E``, or with NaN/Inf: ``ValueError``.
    - self-loops are kept (each adds the node's own message once in sum/mean aggregation);
      ``self_loops="remove"`` drops them. Duplicate edges are kept (a multi-edge carries its
      message several times); ``duplicate_edges="remove"`` keeps the first of each. Both also
      filter the edge-aligned attributes (``edge_attr``, ``edge_label``, ...).
    - isolated nodes are fine (they only see themselves).
    """
    if not isinstance(data, Data):
        raise TypeError(f"expected a torch_geometric.data.Data, got {type(data).__name__}")
    for name, value, choices in (("missing_x", missing_x, ("error", "constant")),
                                 ("self_loops", self_loops, ("keep", "remove")),
                                 ("duplicate_edges", duplicate_edges, ("keep", "remove"))):
        if value not in choices:
            raise ValueError(f"{name}: expected one of {choices}, got {value!r}")

    edge_index = data.edge_index if "edge_index" in data else None
    if edge_index is None:
        edge_index = torch.zeros(2, 0, dtype=torch.long)
    if not isinstance(edge_index, torch.Tensor):
        raise TypeError(f"edge_index: expected a tensor, got {type(edge_index).__name__}")
    if _is_float(edge_index) or edge_index.dtype == torch.bool:
        raise TypeError(f"edge_index: expected an integer tensor, got dtype {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index: expected shape (2, E), got {tuple(edge_index.shape)}")
    edge_index = edge_index.long()
    num_edges = edge_index.shape[1]

    x = data.x if "x" in data else None
    explicit_n = int(data.num_nodes) if "num_nodes" in data else None
    if x is not None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a tensor, got {type(x).__name__}")
        if x.dim() not in (1, 2):
            raise ValueError(f"x: expected shape (n,) or (n, F), got {tuple(x.shape)}")
        n = x.shape[0]
        if explicit_n is not None and explicit_n != n:
            raise ValueError(f"x has {n} rows but num_nodes is {explicit_n}")
    elif missing_x == "error":
        raise ValueError("the graph has no node features x; give it features or pass "
                         "missing_x='constant' for a constant feature 1 per node")
    else:
        n = explicit_n if explicit_n is not None else (int(edge_index.max()) + 1 if num_edges else 0)
    if n == 0:
        raise ValueError("empty graph: 0 nodes")
    if x is not None:
        _check_finite("x", x)

    if num_edges:
        low, high = int(edge_index.min()), int(edge_index.max())
        if low < 0:
            raise ValueError(f"edge_index holds the node index {low}; indices must lie in 0..{n - 1} "
                             f"(the graph has {n} nodes)")
        if high >= n:
            raise ValueError(f"edge_index holds the node index {high} but the graph has {n} nodes "
                             f"(valid indices 0..{n - 1})")
    edge_attr = data.edge_attr if "edge_attr" in data else None
    if edge_attr is not None:
        if not isinstance(edge_attr, torch.Tensor):
            raise TypeError(f"edge_attr: expected a tensor, got {type(edge_attr).__name__}")
        if edge_attr.dim() == 0 or edge_attr.shape[0] != num_edges:
            raise ValueError(f"edge_attr has {edge_attr.shape[0] if edge_attr.dim() else 0} rows but "
                             f"edge_index has {num_edges} edges")
        _check_finite("edge_attr", edge_attr)

    out = copy.copy(data)
    out.edge_index = edge_index
    if x is None:
        out.x = torch.ones(n, 1)
    keep = torch.ones(num_edges, dtype=torch.bool)
    if self_loops == "remove":
        keep &= edge_index[0] != edge_index[1]
    if duplicate_edges == "remove" and num_edges:
        _, first = np.unique((edge_index[0] * n + edge_index[1]).numpy(), return_index=True)
        unique = torch.zeros(num_edges, dtype=torch.bool)
        unique[torch.from_numpy(first)] = True
        keep &= unique
    if not bool(keep.all()):
        edge_keys = [k for k in data.keys() if k != "edge_index" and isinstance(data[k], torch.Tensor)
                     and data[k].dim() > 0 and data[k].shape[0] == num_edges and data.is_edge_attr(k)]
        out.edge_index = edge_index[:, keep]
        for key in edge_keys:
            out[key] = data[key][keep]
    return out


# ---- datasets for the engine ----------------------------------------------------------------------
def _graph_target(y: torch.Tensor) -> torch.Tensor:
    """A graph-level target with a leading 1: ``()`` -> ``(1,)``, ``(1, ...)`` kept, ``(T,)`` -> ``(1, T)``."""
    if y.dim() == 0:
        return y.reshape(1)
    return y if y.shape[0] == 1 else y.unsqueeze(0)


class GraphTaskDataset(Dataset):
    """Graphs as ``(data, target)`` items for a node- or graph-level task.

    ``graphs``: a sequence of ``Data`` (a list, a PyG in-memory dataset, ...). ``task``:
    ``"graph"`` (target ``(1,)`` / ``(1, T)``, see ``_graph_target``) or ``"node"`` (target
    ``(n, ...)``, checked against the node count). ``target``: the attribute holding it (``"y"``).
    ``validate``: ``True`` runs ``validate_graph`` on every item as it is read, a mapping passes
    its options (e.g. ``{"missing_x": "constant"}``), ``False`` skips it. ``transform`` runs after
    validation. Errors name the item's index.
    """

    def __init__(self, graphs: Sequence[Data], task: str = "graph", target: str = "y",
                 transform: Optional[Callable[[Data], Data]] = None,
                 validate: Union[bool, Mapping[str, str]] = True) -> None:
        if task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
        if not hasattr(graphs, "__len__") or not hasattr(graphs, "__getitem__"):
            raise TypeError(f"graphs: expected a sequence of Data, got {type(graphs).__name__}")
        if len(graphs) == 0:
            raise ValueError("graphs: the dataset is empty")
        if not isinstance(validate, (bool, Mapping)):
            raise TypeError(f"validate: expected a bool or a mapping of validate_graph options, got "
                            f"{type(validate).__name__}")
        self.graphs, self.task, self.target, self.transform = graphs, task, target, transform
        self.validate_options = dict(validate) if isinstance(validate, Mapping) else ({} if validate else None)
        if self.validate_options is not None:
            validate_graph(Data(x=torch.zeros(1)), **self.validate_options)   # reject bad options now

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, idx: int) -> tuple[Data, torch.Tensor]:
        data = self.graphs[idx]
        if not isinstance(data, Data):
            raise TypeError(f"graph {idx}: expected a torch_geometric.data.Data, got {type(data).__name__}")
        if self.validate_options is not None:
            try:
                data = validate_graph(data, **self.validate_options)
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"graph {idx}: {exc}") from None
        if self.transform is not None:
            data = self.transform(data)
        y = data[self.target] if self.target in data else None
        if not isinstance(y, torch.Tensor):
            raise ValueError(f"graph {idx}: no target tensor {self.target!r} "
                             f"(the graph has {sorted(data.keys())})")
        if self.task == "node":
            if y.dim() == 0 or y.shape[0] != data.num_nodes:
                raise ValueError(f"graph {idx}: a node-level target needs one row per node ({data.num_nodes}), "
                                 f"got {self.target} of shape {tuple(y.shape)}")
            return data, y
        return data, _graph_target(y)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} graphs, task={self.task!r}, target={self.target!r})"


def _infer_task(graphs: Sequence[Data], target: str, probe: int = 16) -> str:
    kinds = set()
    for i in range(min(probe, len(graphs))):
        data = graphs[i]
        if not isinstance(data, Data):
            raise TypeError(f"graph {i}: expected a torch_geometric.data.Data, got {type(data).__name__}")
        y = data[target] if target in data else None
        if not isinstance(y, torch.Tensor):
            raise ValueError(f"graph {i}: no target tensor {target!r}; pass target=")
        graph_like = y.dim() == 0 or y.shape[0] == 1
        node_like = y.dim() > 0 and y.shape[0] == data.num_nodes
        kinds.add("both" if graph_like and node_like else "graph" if graph_like else "node" if node_like else "?")
    if kinds <= {"graph", "both"}:
        return "graph"
    if kinds <= {"node", "both"}:
        return "node"
    raise ValueError(f"cannot tell whether {target!r} holds graph or node targets; pass task='graph' or 'node'")


def from_pyg_dataset(ds: Sequence[Data], task: Optional[str] = None, target: str = "y",
                     transform: Optional[Callable[[Data], Data]] = None,
                     validate: Union[bool, Mapping[str, str]] = True) -> GraphTaskDataset:
    """Wrap a PyG in-memory dataset (e.g. ``torch_geometric.datasets.TUDataset`` already on disk)
    or a list of ``Data`` as ``(data, target)`` items for the engine.

    ``task=None`` infers it from the first graphs: targets with a leading 1 (or scalars) are
    graph-level, targets with one row per node are node-level; ambiguous data asks for ``task``.
    """
    if not hasattr(ds, "__len__") or not hasattr(ds, "__getitem__"):
        raise TypeError(f"ds: expected a PyG dataset or a sequence of Data, got {type(ds).__name__}")
    if len(ds) == 0:
        raise ValueError("ds: the dataset is empty")
    if task is None:
        task = _infer_task(ds, target)
    return GraphTaskDataset(ds, task=task, target=target, transform=transform, validate=validate)


def graph_collate(items: Sequence[Any]) -> tuple[Batch, torch.Tensor]:
    """``collate_fn`` for the engine: items -> ``(Batch, targets)``.

    Items are ``(Data, target)`` pairs (``GraphTaskDataset``) or bare ``Data`` (target
    ``data.y``). Targets are concatenated along their leading dimension: graph-level ``(1, ...)``
    targets give ``(G, ...)``, node-level ``(n_i, ...)`` targets give ``(N, ...)`` in the node
    order of ``batch.batch``. Scalar targets count as graph-level.
    """
    if len(items) == 0:
        raise ValueError("graph_collate: empty batch")
    graphs, targets = [], []
    for i, item in enumerate(items):
        if isinstance(item, Data):
            data, y = item, (item.y if "y" in item else None)
            if y is None:
                raise ValueError(f"graph_collate: item {i} is a Data without y; give (data, target) pairs")
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], Data):
            data, y = item
        else:
            raise TypeError(f"graph_collate: item {i} must be a Data or a (Data, target) pair, got "
                            f"{type(item).__name__}")
        y = torch.as_tensor(y)
        if y.dim() == 0:
            y = y.reshape(1)
        if y.shape[0] not in (1, data.num_nodes):
            raise ValueError(f"graph_collate: item {i} has a target of shape {tuple(y.shape)}; expected a "
                             f"leading 1 (graph-level) or {data.num_nodes} (one row per node)")
        graphs.append(data)
        targets.append(y)
    levels = {("node" if t.shape[0] == g.num_nodes else "graph") for g, t in zip(graphs, targets)
              if g.num_nodes != 1}
    if len(levels) > 1:
        raise ValueError("graph_collate: the batch mixes graph-level and node-level targets")
    if len({t.shape[1:] for t in targets}) > 1:
        raise ValueError(f"graph_collate: target shapes differ beyond the first dimension: "
                         f"{sorted({tuple(t.shape) for t in targets})}")
    return Batch.from_data_list(graphs), torch.cat(targets)


# ---- TU format: reading ---------------------------------------------------------------------------
class TUGraphList(list):
    """``list[Data]`` read from TU files, with ``label_maps``: for each label file read
    (``"graph_labels"``, ``"node_labels"``, ``"edge_labels"``) a list per column of the original
    values, so that ``label_maps[kind][column][new_label] == original_value``; and ``folder``."""

    def __init__(self, graphs: Sequence[Data], label_maps: dict[str, list[list]], folder: Path) -> None:
        super().__init__(graphs)
        self.label_maps = label_maps
        self.folder = folder


def _tu_folder(root: Path, name: str) -> Path:
    """``root/<name>/``, ``root/<name>/raw/`` (PyG's layout) or ``root`` itself, whichever has files."""
    for folder in (root / name, root / name / "raw", root):
        if (folder / f"{name}_A.txt").is_file() or (folder / f"{name}_graph_indicator.txt").is_file():
            return folder
    raise FileNotFoundError(f"TU dataset {name!r} not found: no {name}_A.txt in {root / name}, "
                            f"{root / name / 'raw'} or {root}")


def _read_table(path: Path, kind: type) -> np.ndarray:
    """A comma (or whitespace) separated table of ints or finite floats: ``(rows, cols)``."""
    lines = path.read_text().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return np.zeros((0, 0), dtype=np.int64 if kind is int else np.float64)
    rows, width = [], None
    for lineno, line in enumerate(lines, 1):
        cells = [c.strip() for c in line.split(",")] if "," in line else line.split()
        if not cells or any(c == "" for c in cells):
            raise ValueError(f"{path}, line {lineno}: empty line or empty value in {line!r}")
        if width is None:
            width = len(cells)
        elif len(cells) != width:
            raise ValueError(f"{path}, line {lineno}: expected {width} values (as on line 1), "
                             f"got {len(cells)} in {line!r}")
        try:
            values = [kind(c) for c in cells]
        except ValueError:
            what = "an integer" if kind is int else "a number"
            bad = next(c for c in cells if not _parses(kind, c))
            raise ValueError(f"{path}, line {lineno}: expected {what}, got {bad!r}") from None
        if kind is float and not all(np.isfinite(values)):
            raise ValueError(f"{path}, line {lineno}: non-finite value in {line!r}")
        rows.append(values)
    return np.asarray(rows, dtype=np.int64 if kind is int else np.float64)


def _parses(kind: type, cell: str) -> bool:
    try:
        kind(cell)
        return True
    except ValueError:
        return False


def _optional(folder: Path, name: str, suffix: str, kind: type, rows: int, per: str) -> Optional[np.ndarray]:
    path = folder / f"{name}_{suffix}.txt"
    if not path.is_file():
        return None
    table = _read_table(path, kind)
    if table.shape[0] != rows:
        raise ValueError(f"{path}: {table.shape[0]} lines, expected {rows} (one per {per})")
    return table


def _remap(labels: np.ndarray) -> tuple[np.ndarray, list[list]]:
    """Per column: original values -> 0..C-1 in sorted order. ``(rows, k)`` -> ``(rows, k)``."""
    out = np.empty_like(labels)
    maps = []
    for j in range(labels.shape[1]):
        values, out[:, j] = np.unique(labels[:, j], return_inverse=True)
        maps.append(values.tolist())
    return out, maps


def _one_hot(labels: np.ndarray, maps: list[list]) -> np.ndarray:
    return np.concatenate([np.eye(len(m), dtype=np.float32)[labels[:, j]] for j, m in enumerate(maps)], axis=1)


def _features(attrs: Optional[np.ndarray], labels: Optional[np.ndarray], maps: Optional[list[list]],
              sources: Sequence[str]) -> Optional[np.ndarray]:
    parts = []
    if "attributes" in sources and attrs is not None:
        parts.append(attrs.astype(np.float32))
    if "labels" in sources and labels is not None:
        parts.append(_one_hot(labels, maps))
    return np.concatenate(parts, axis=1) if parts else None


def _check_sources(name: str, sources: Sequence[str]) -> tuple[str, ...]:
    sources = (sources,) if isinstance(sources, str) else tuple(sources)
    bad = [s for s in sources if s not in FEATURE_SOURCES]
    if bad:
        raise ValueError(f"{name}: expected a subset of {FEATURE_SOURCES}, got {sources!r}")
    return sources


def _squeeze(t: np.ndarray) -> torch.Tensor:
    """Label table ``(rows, 1)`` -> ``(rows,)``; several columns stay ``(rows, k)``."""
    return torch.from_numpy(t[:, 0] if t.shape[1] == 1 else t).long()


def read_tu_dataset(root: Union[str, Path], name: str, *,
                    node_features: Sequence[str] = FEATURE_SOURCES,
                    edge_features: Sequence[str] = FEATURE_SOURCES) -> TUGraphList:
    """Read the TU dataset ``name`` under ``root`` (files in ``root/<name>/``, ``root/<name>/raw/``
    or ``root``) as a list of ``Data`` (see the module docstring for the fields and errors).

    ``node_features`` / ``edge_features``: what goes into ``x`` / ``edge_attr``: ``"attributes"``
    (the real-valued file), ``"labels"`` (one-hot labels), both (default, as PyG) or neither.
    """
    node_features = _check_sources("node_features", node_features)
    edge_features = _check_sources("edge_features", edge_features)
    folder = _tu_folder(Path(root), name)
    paths = {s: folder / f"{name}_{s}.txt" for s in ("A", "graph_indicator")}
    for path in paths.values():
        if not path.is_file():
            raise FileNotFoundError(f"TU dataset {name!r}: missing mandatory file {path}")

    indicator = _read_table(paths["graph_indicator"], int)
    if indicator.shape[0] == 0:
        raise ValueError(f"{paths['graph_indicator']}: no nodes")
    if indicator.shape[1] != 1:
        raise ValueError(f"{paths['graph_indicator']}, line 1: expected one graph id per line, "
                         f"got {indicator.shape[1]} values")
    graph_of = indicator[:, 0]
    step = np.diff(graph_of)
    if graph_of[0] != 1:
        raise ValueError(f"{paths['graph_indicator']}, line 1: graph ids must start at 1, got {graph_of[0]}")
    bad = np.flatnonzero((step < 0) | (step > 1))
    if len(bad):
        line = int(bad[0]) + 2
        raise ValueError(f"{paths['graph_indicator']}, line {line}: graph ids must be non-decreasing and "
                         f"contiguous, got {graph_of[line - 1]} after {graph_of[line - 2]}")
    num_nodes, num_graphs = len(graph_of), int(graph_of[-1])
    node_ptr = np.concatenate([[0], np.cumsum(np.bincount(graph_of - 1, minlength=num_graphs))])

    edges = _read_table(paths["A"], int)
    if edges.shape[0] and edges.shape[1] != 2:
        raise ValueError(f"{paths['A']}, line 1: expected 2 node ids 'i, j' per line, got {edges.shape[1]} values")
    edges = edges.reshape(-1, 2)
    out_of_range = np.flatnonzero(((edges < 1) | (edges > num_nodes)).any(1))
    if len(out_of_range):
        row = int(out_of_range[0])
        value = int(edges[row][(edges[row] < 1) | (edges[row] > num_nodes)][0])
        raise ValueError(f"{paths['A']}, line {row + 1}: node id {value} out of range 1..{num_nodes} "
                         f"(the graph indicator lists {num_nodes} nodes)")
    src_graph, dst_graph = graph_of[edges[:, 0] - 1], graph_of[edges[:, 1] - 1]
    across = np.flatnonzero(src_graph != dst_graph)
    if len(across):
        row = int(across[0])
        raise ValueError(f"{paths['A']}, line {row + 1}: edge {edges[row, 0]} -> {edges[row, 1]} joins graph "
                         f"{src_graph[row]} and graph {dst_graph[row]}")
    order = np.argsort(src_graph, kind="stable")          # group edges by graph, keep file order within
    edge_ptr = np.concatenate([[0], np.cumsum(np.bincount(src_graph - 1, minlength=num_graphs))])
    local = (edges[order] - 1 - node_ptr[src_graph[order] - 1][:, None]).T     # (2, E), 0-based per graph

    num_edges = len(edges)
    graph_labels = _optional(folder, name, "graph_labels", int, num_graphs, "graph")
    node_labels = _optional(folder, name, "node_labels", int, num_nodes, "node")
    edge_labels = _optional(folder, name, "edge_labels", int, num_edges, "edge in A")
    node_attrs = _optional(folder, name, "node_attributes", float, num_nodes, "node")
    edge_attrs = _optional(folder, name, "edge_attributes", float, num_edges, "edge in A")
    graph_attrs = _optional(folder, name, "graph_attributes", float, num_graphs, "graph")

    label_maps: dict[str, list[list]] = {}
    node_maps = edge_maps = None
    if graph_labels is not None:
        graph_labels, label_maps["graph_labels"] = _remap(graph_labels)
    if node_labels is not None:
        node_labels, node_maps = _remap(node_labels)
        label_maps["node_labels"] = node_maps
    if edge_labels is not None:
        edge_labels, edge_maps = _remap(edge_labels[order])
        label_maps["edge_labels"] = edge_maps
    if edge_attrs is not None:
        edge_attrs = edge_attrs[order]
    x = _features(node_attrs, node_labels, node_maps, node_features)
    edge_attr = _features(edge_attrs, edge_labels, edge_maps, edge_features)

    graphs = []
    for g in range(num_graphs):
        n0, n1, e0, e1 = node_ptr[g], node_ptr[g + 1], edge_ptr[g], edge_ptr[g + 1]
        data = Data(edge_index=torch.from_numpy(np.ascontiguousarray(local[:, e0:e1])).long(),
                    num_nodes=int(n1 - n0))
        if x is not None:
            data.x = torch.from_numpy(x[n0:n1])
        if node_labels is not None:
            data.node_label = _squeeze(node_labels[n0:n1])
        if edge_attr is not None:
            data.edge_attr = torch.from_numpy(edge_attr[e0:e1])
        if edge_labels is not None:
            data.edge_label = _squeeze(edge_labels[e0:e1])
        if graph_labels is not None:
            row = graph_labels[g] if graph_labels.shape[1] == 1 else graph_labels[g:g + 1]
            data.y = torch.from_numpy(row).long()                                # (1,) or (1, k)
        if graph_attrs is not None:
            data.graph_attr = torch.from_numpy(graph_attrs[g:g + 1].astype(np.float32))
        graphs.append(data)
    return TUGraphList(graphs, label_maps, folder)


class TUDatasetFolder(GraphTaskDataset):
    """A TU dataset from local files as ``(data, target)`` items (no download).

    ``task="graph"`` targets the graph label ``y``; ``task="node"`` the node labels
    ``node_label``. ``label_maps`` maps new labels back to the file's values; ``num_classes``
    counts the target's classes. Other arguments as in ``read_tu_dataset`` and
    ``GraphTaskDataset``.
    """

    def __init__(self, root: Union[str, Path], name: str, task: str = "graph",
                 transform: Optional[Callable[[Data], Data]] = None,
                 validate: Union[bool, Mapping[str, str]] = True,
                 node_features: Sequence[str] = FEATURE_SOURCES,
                 edge_features: Sequence[str] = FEATURE_SOURCES) -> None:
        if task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
        graphs = read_tu_dataset(root, name, node_features=node_features, edge_features=edge_features)
        kind, target = ("graph_labels", "y") if task == "graph" else ("node_labels", "node_label")
        if kind not in graphs.label_maps:
            raise ValueError(f"task={task!r} needs {graphs.folder / f'{name}_{kind}.txt'}, which is missing")
        super().__init__(graphs, task=task, target=target, transform=transform, validate=validate)
        self.name, self.label_maps = name, graphs.label_maps
        self.num_classes = len(graphs.label_maps[kind][0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} graphs, task={self.task!r})"


# ---- TU format: writing ---------------------------------------------------------------------------
def _format_table(values: np.ndarray) -> str:
    """Rows of ``values`` as ``a, b, c`` lines; integers as ints, floats round-trippable."""
    values = values.reshape(values.shape[0], -1)
    if values.dtype.kind in "iub":
        fmt = "%d"
    elif values.dtype == np.float32 or values.dtype == np.float16:
        fmt = "%.9g"
    else:
        fmt = "%.17g"
    buf = io.StringIO()
    np.savetxt(buf, values, fmt=fmt, delimiter=", ")
    return buf.getvalue()


def _stack(graphs: Sequence[Data], key: str, per_node: Optional[str], what: str) -> Optional[np.ndarray]:
    present = [key in g and g[key] is not None for g in graphs]
    if not any(present):
        return None
    if not all(present):
        missing = present.index(False)
        raise ValueError(f"write_tu_dataset: graph {present.index(True)} has {key!r} but graph {missing} "
                         "does not; every graph needs the same fields")
    parts = []
    for i, g in enumerate(graphs):
        t = torch.as_tensor(g[key]).detach().cpu()
        rows = {"node": g.num_nodes, "edge": g.edge_index.shape[1], "graph": 1}[per_node]
        if per_node == "graph":
            # graph labels must already be one row (a node-level y would pass as columns otherwise)
            t = t.reshape(1) if key == "y" and t.dim() == 0 else t if key == "y" else _graph_target(t)
        if t.dim() == 0 or t.shape[0] != rows:
            raise ValueError(f"write_tu_dataset: graph {i}: {key} has shape {tuple(t.shape)}, expected "
                             f"{rows} row(s) ({what})")
        parts.append(t.reshape(rows, -1).numpy())
    widths = {p.shape[1] for p in parts}
    if len(widths) > 1:
        raise ValueError(f"write_tu_dataset: {key} has different widths across graphs: {sorted(widths)}")
    return np.concatenate(parts)


def write_tu_dataset(graphs: Sequence[Data], root: Union[str, Path], name: str) -> Path:
    """Write ``graphs`` as the TU dataset ``name`` into ``root/<name>/`` and return that folder.

    Fields: ``edge_index`` -> ``_A``; ``x`` -> ``_node_attributes``; ``node_label`` ->
    ``_node_labels``; ``edge_attr`` -> ``_edge_attributes``; ``edge_label`` -> ``_edge_labels``;
    ``y`` (integer, one row per graph) -> ``_graph_labels``; ``graph_attr`` ->
    ``_graph_attributes``. A field must be on every graph or on none. The folder is written to a
    temporary sibling and renamed into place; an existing folder holding anything other than
    ``<name>_*.txt`` files is refused (``FileExistsError``) rather than replaced.
    """
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ValueError(f"name: expected a plain file-name stem, got {name!r}")
    graphs = list(graphs)
    if not graphs:
        raise ValueError("write_tu_dataset: no graphs")
    for i, g in enumerate(graphs):
        if not isinstance(g, Data):
            raise TypeError(f"write_tu_dataset: graph {i} is a {type(g).__name__}, expected Data")
        try:
            validate_graph(g, missing_x="constant")
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"write_tu_dataset: graph {i}: {exc}") from None
    sizes = np.array([g.num_nodes for g in graphs])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    edges = np.concatenate([(g.edge_index.long().cpu().numpy() + 1 + off).T for g, off in zip(graphs, offsets)])
    y = _stack(graphs, "y", "graph", "one graph label per graph")
    if y is not None and y.dtype.kind not in "iub":
        raise ValueError(f"write_tu_dataset: y must hold integer graph classes, got dtype {y.dtype}; "
                         "store real-valued targets in graph_attr")
    for key, per in (("node_label", "node"), ("edge_label", "edge")):
        table = _stack(graphs, key, per, f"one row per {per}")
        if table is not None and table.dtype.kind not in "iub":
            raise ValueError(f"write_tu_dataset: {key} must hold integers, got dtype {table.dtype}")
    files = {
        "A": edges,
        "graph_indicator": np.repeat(np.arange(1, len(graphs) + 1), sizes),
        "graph_labels": y,
        "node_labels": _stack(graphs, "node_label", "node", "one row per node"),
        "node_attributes": _stack(graphs, "x", "node", "one row per node"),
        "edge_labels": _stack(graphs, "edge_label", "edge", "one row per edge"),
        "edge_attributes": _stack(graphs, "edge_attr", "edge", "one row per edge"),
        "graph_attributes": _stack(graphs, "graph_attr", "graph", "one row per graph"),
    }
    target = Path(root) / name
    if target.exists():
        foreign = [p.name for p in target.iterdir() if not (p.is_file() and p.name.startswith(f"{name}_")
                                                            and p.suffix == ".txt")]
        if foreign:
            raise FileExistsError(f"{target} holds other files ({sorted(foreign)[:5]}); refusing to replace it")

    def write(folder: Path) -> None:
        for suffix, table in files.items():
            if table is not None:
                (folder / f"{name}_{suffix}.txt").write_text(_format_table(np.asarray(table)))

    return atomic_write_dir(target, write)
