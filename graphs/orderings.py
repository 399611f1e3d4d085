"""Graph -> sequence orderings: the order in which a scan reads the nodes of each graph.

A PyG ``Batch`` packs its graphs node after node: the nodes of graph ``g`` are the contiguous
segment ``ptr[g]:ptr[g+1]`` and ``batch.batch (N,)`` maps node -> graph. Every ordering here
returns a node permutation ``perm (N,)`` that reorders nodes *inside* their own segment, so
``batch.batch[perm] == batch.batch``: the packed sequence ``x[perm]`` still has one contiguous
run per graph and a scan with ``seq_idx = batch.batch`` resets at every graph boundary.
``graph_scan_orders`` wraps ``perm`` as core scan orders (``mambakit.Permutation`` over the
packed ``(1, N, D)`` sequence), optionally with its within-graph reverse for a bidirectional
scan.

Orderings (``ORDERINGS``):

- ``degree``: ascending node degree, so the high-degree nodes come *last*: in a causal scan the
  last tokens have read the whole graph, and Graph-Mamba (Wang et al. 2024, arXiv:2402.00789)
  gives that most-informed position to the nodes it ranks most important. Ties: in training
  broken at random (Graph-Mamba's permutation augmentation within equal degrees); in eval
  broken deterministically by the sum of the neighbours' degrees, then by node index, so
  relabelling the nodes permutes the result whenever those two keys separate the nodes.
- ``random``: a uniformly random permutation of each graph (training augmentation).
- ``bfs`` / ``dfs``: breadth- / depth-first traversal from a root, by default the node of
  maximum degree (ties: lowest index in eval, random in training). A disconnected graph is
  traversed one component after another, components ordered by their root's degree
  (descending, ties by root index). Runs in ``O(N + E)`` with ``scipy.sparse.csgraph``: one
  traversal of the whole batch from a virtual super-root linked to every component root.
- ``spectral``: ascending Fiedler vector (eigenvector of the second-smallest eigenvalue of the
  combinatorial Laplacian ``L = D - A``) of each connected component, components ordered as
  for BFS. Small components are solved together with a batched dense ``torch.linalg.eigh``;
  components above ``dense_max_nodes`` with ``scipy.sparse.linalg.lobpcg`` (falling back to
  ARPACK shift-invert, ``eigsh``, where LOBPCG stalls on a tiny spectral gap).
  The eigenvector's sign is fixed by a labelling-independent rule (``sum(v**3) > 0``, then
  ``sum(deg * v) > 0``), and values equal up to round-off tie and are ordered by degree, then
  neighbour-degree sum, then index; so when the Fiedler values are distinct (and lambda_2 is
  simple) relabelling the nodes permutes the order, up to a reversal for sign-symmetric
  vectors. Components of one or two nodes need no solver. Not random in training.

Structure conventions (shared by every ordering and the random walks of ``tokenizers``):
edges are read as undirected, self-loops are ignored and duplicate edges count once, so the
degree of a node is its number of distinct neighbours. Message passing (``layers``) instead
uses the edges as given, self-loops and duplicates included.

Cost: ``degree``/``random``/``bfs``/``dfs`` are ``O(E log E + N log N)`` (one sort to
deduplicate edges, one to order nodes); ``spectral`` is dominated by the eigensolver.
Orderings are computed on the CPU and returned on the device of ``edge_index``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse import csgraph
from scipy.sparse.linalg import eigsh, lobpcg

from mambakit import Permutation, ScanOrder

ORDERINGS = ("degree", "random", "bfs", "dfs", "spectral")
DENSE_MAX_NODES = 512           # components up to this size go to the batched dense eigensolver


# ---- structure: validated edges and graph segments ---------------------------------------------
@dataclass
class GraphStructure:
    """A checked graph batch on the CPU.

    ``edge_index (2, E)`` int64 as given; ``batch (N,)`` int64 non-decreasing; ``ptr (G+1,)``
    segment starts; ``num_nodes`` N; ``num_graphs`` G; ``device`` of the input.
    """

    edge_index: torch.Tensor
    batch: torch.Tensor
    ptr: torch.Tensor
    num_nodes: int
    num_graphs: int
    device: torch.device
    _simple: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None

    def simple_csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Undirected graph without self-loops or duplicates as CSR ``(indptr, indices, degree)``."""
        if self._simple is None:
            self._simple = _simple_csr(self.edge_index.numpy(), self.num_nodes)
        return self._simple


def graph_structure(data: Any) -> GraphStructure:
    """Check the structure of a PyG ``Data``/``Batch`` (``edge_index``, ``num_nodes``, optional
    ``batch``/``ptr``) and return it on the CPU.

    Raises ValueError for a batch with no nodes or with an empty graph, indices outside
    ``[0, N)`` (naming the offending index and N), a ``batch`` vector of the wrong length, not
    sorted (PyG keeps graphs contiguous), or edges joining two graphs; TypeError for a
    non-integer ``edge_index``.
    """
    if not hasattr(data, "edge_index"):
        raise TypeError(f"expected a torch_geometric Data or Batch with edge_index, got {type(data).__name__}")
    edge_index = data.edge_index
    if edge_index is None:
        raise ValueError("edge_index is None; a graph without edges needs edge_index of shape (2, 0)")
    if not isinstance(edge_index, torch.Tensor):
        raise TypeError(f"edge_index: expected a torch.Tensor, got {type(edge_index).__name__}")
    if edge_index.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"edge_index: expected an integer tensor, got {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index: expected shape (2, E), got {tuple(edge_index.shape)}")
    num_nodes = _num_nodes(data)
    if num_nodes == 0:
        raise ValueError("empty graph: the input has 0 nodes; every graph needs at least one node")
    device = edge_index.device
    ei = edge_index.detach().to("cpu", torch.int64)
    if ei.numel():
        lo, hi = int(ei.min()), int(ei.max())
        if lo < 0:
            raise ValueError(f"edge_index: negative node index {lo}; indices must lie in [0, {num_nodes})")
        if hi >= num_nodes:
            raise ValueError(f"edge_index: node index {hi} out of range for a graph of {num_nodes} nodes "
                             f"(max index {hi}, expected < {num_nodes})")
    batch = getattr(data, "batch", None)
    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.int64)
    else:
        if not isinstance(batch, torch.Tensor) or batch.dtype.is_floating_point or batch.dim() != 1:
            raise TypeError(f"batch: expected a 1-D integer tensor, got {getattr(batch, 'dtype', type(batch))}")
        batch = batch.detach().to("cpu", torch.int64)
        if batch.numel() != num_nodes:
            raise ValueError(f"batch: expected {num_nodes} entries (one per node), got {batch.numel()}")
        if int(batch[0]) < 0 or bool((batch[1:] < batch[:-1]).any()):
            raise ValueError("batch: expected non-decreasing graph ids starting at >= 0 "
                             "(PyG keeps the nodes of each graph contiguous)")
    num_graphs = int(batch[-1]) + 1
    ptr_attr = getattr(data, "ptr", None)
    if isinstance(ptr_attr, torch.Tensor) and ptr_attr.dim() == 1 and ptr_attr.numel() >= 2:
        num_graphs = max(num_graphs, ptr_attr.numel() - 1)     # trailing empty graphs have no batch entry
    counts = torch.bincount(batch, minlength=num_graphs)
    if bool((counts == 0).any()):
        g = int((counts == 0).nonzero()[0])
        raise ValueError(f"empty graph: graph {g} of the batch has 0 nodes; every graph needs at least one node")
    if ei.numel() and bool((batch[ei[0]] != batch[ei[1]]).any()):
        k = int((batch[ei[0]] != batch[ei[1]]).nonzero()[0])
        raise ValueError(f"edge_index: edge {k} ({int(ei[0, k])} -> {int(ei[1, k])}) joins graphs "
                         f"{int(batch[ei[0, k]])} and {int(batch[ei[1, k]])}")
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return GraphStructure(ei, batch, ptr, num_nodes, num_graphs, device)


def _num_nodes(data: Any) -> int:
    n = getattr(data, "num_nodes", None)
    if n is None:
        raise ValueError("cannot tell the number of nodes: set x or num_nodes on the graph")
    return int(n)


def _simple_csr(edge_index: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    src, dst = edge_index
    keep = src != dst
    s = np.concatenate([src[keep], dst[keep]])
    d = np.concatenate([dst[keep], src[keep]])
    key = np.sort(s * n + d)                         # rows, then columns within a row
    key = key[np.concatenate([[True], key[1:] != key[:-1]])] if key.size else key
    s, d = key // n, key % n
    degree = np.bincount(s, minlength=n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(degree, out=indptr[1:])
    return indptr, d.astype(np.int64), degree


def _as_structure(data: Any) -> GraphStructure:
    return data if isinstance(data, GraphStructure) else graph_structure(data)


def _uniform(n: int, generator: Optional[torch.Generator]) -> np.ndarray:
    return torch.rand(n, generator=generator, dtype=torch.float64).numpy()


def _out(perm: np.ndarray, st: GraphStructure) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(perm, dtype=np.int64)).to(st.device)


# ---- orderings ----------------------------------------------------------------------------------
def node_degree(data: Any) -> torch.Tensor:
    """Number of distinct neighbours of each node (undirected, self-loops ignored): ``(N,)``."""
    st = _as_structure(data)
    return torch.from_numpy(st.simple_csr()[2].copy()).to(st.device)


def degree_order(data: Any, training: bool = False, generator: Optional[torch.Generator] = None
                 ) -> torch.Tensor:
    """Ascending degree within each graph (highest degree last): ``perm (N,)``.

    Ties: random in training; otherwise by neighbour-degree sum, then node index.
    """
    st = _as_structure(data)
    deg = st.simple_csr()[2]
    if training:
        tie = _uniform(st.num_nodes, generator)
        perm = np.lexsort((tie, deg, st.batch.numpy()))
    else:
        perm = np.lexsort((_neighbour_degree_sum(st), deg, st.batch.numpy()))
    return _out(perm, st)


def _neighbour_degree_sum(st: GraphStructure) -> np.ndarray:
    _, indices, deg = st.simple_csr()
    return np.bincount(np.repeat(np.arange(st.num_nodes), deg), weights=deg[indices].astype(np.float64),
                       minlength=st.num_nodes)


def random_order(data: Any, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A uniformly random order of each graph's nodes: ``perm (N,)``."""
    st = _as_structure(data)
    perm = np.lexsort((_uniform(st.num_nodes, generator), st.batch.numpy()))
    return _out(perm, st)


def _components(st: GraphStructure, training: bool, generator: Optional[torch.Generator]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected components with their roots and visiting order.

    Returns ``comp (N,)`` component id per node, ``roots (C,)`` the root of each component and
    ``rank (C,)`` the position of each component in the visiting order (graph by graph;
    within a graph by root degree descending, then root index).
    """
    indptr, indices, deg = st.simple_csr()
    n = st.num_nodes
    adj = sp.csr_matrix((np.ones(indices.size, dtype=np.int8), indices, indptr), shape=(n, n))
    n_comp, comp = csgraph.connected_components(adj, directed=False)
    tie = _uniform(n, generator) if training else np.arange(n, dtype=np.float64)
    by_comp = np.lexsort((tie, -deg, comp))          # the first node of each component is its root
    first = np.ones(n, dtype=bool)
    first[1:] = comp[by_comp[1:]] != comp[by_comp[:-1]]
    roots = by_comp[first]                            # (C,) ordered by component id
    order = np.lexsort((tie[roots], -deg[roots], st.batch.numpy()[roots]))
    rank = np.empty(n_comp, dtype=np.int64)
    rank[order] = np.arange(n_comp)
    return comp, roots, rank


def _traversal(data: Any, kind: str, training: bool, generator: Optional[torch.Generator],
               root: Optional[torch.Tensor]) -> torch.Tensor:
    st = _as_structure(data)
    indptr, indices, _ = st.simple_csr()
    n = st.num_nodes
    comp, roots, rank = _components(st, training, generator)
    if root is not None:
        roots = _user_roots(root, st, comp, roots)
    # A virtual node n linked to every root, in visiting order: one traversal covers the batch,
    # and the restriction of that traversal to a component is a traversal from its root.
    ordered_roots = roots[np.argsort(rank)]
    ext_indptr = np.concatenate([indptr, [indptr[-1] + ordered_roots.size]])
    ext_indices = np.concatenate([indices, ordered_roots])
    adj = sp.csr_matrix((np.ones(ext_indices.size, dtype=np.int8), ext_indices, ext_indptr), shape=(n + 1, n + 1))
    walk = csgraph.breadth_first_order if kind == "bfs" else csgraph.depth_first_order
    order = walk(adj, n, directed=True, return_predecessors=False)[1:]
    perm = order[np.argsort(rank[comp[order]], kind="stable")]
    return _out(perm, st)


def _user_roots(root: torch.Tensor, st: GraphStructure, comp: np.ndarray, roots: np.ndarray) -> np.ndarray:
    """Replace the default root of each graph's root component by ``root (G,)`` (node indices)."""
    if not isinstance(root, torch.Tensor) or root.dtype.is_floating_point or root.shape != (st.num_graphs,):
        raise ValueError(f"root: expected an integer tensor of shape ({st.num_graphs},), one node per graph, "
                         f"got {getattr(root, 'shape', root)}")
    r = root.detach().cpu().numpy().astype(np.int64)
    ptr = st.ptr.numpy()
    bad = (r < ptr[:-1]) | (r >= ptr[1:])
    if bad.any():
        g = int(np.nonzero(bad)[0][0])
        raise ValueError(f"root: node {int(r[g])} is not in graph {g} (nodes {int(ptr[g])}..{int(ptr[g + 1]) - 1})")
    roots = roots.copy()
    roots[comp[r]] = r
    return roots


def bfs_order(data: Any, training: bool = False, generator: Optional[torch.Generator] = None,
              root: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Breadth-first order of each graph from its max-degree node (or ``root (G,)``), one
    connected component after another: ``perm (N,)``."""
    return _traversal(data, "bfs", training, generator, root)


def dfs_order(data: Any, training: bool = False, generator: Optional[torch.Generator] = None,
              root: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Depth-first (preorder) order of each graph from its max-degree node (or ``root (G,)``),
    one connected component after another: ``perm (N,)``."""
    return _traversal(data, "dfs", training, generator, root)


def fiedler_vector(data: Any, dense_max_nodes: int = DENSE_MAX_NODES) -> torch.Tensor:
    """Fiedler vector of each connected component, as a node feature ``(N,)`` float64.

    Each component's vector has unit norm and the sign fixed as described in the module
    docstring; isolated nodes get 0 and two-node components ``-+1/sqrt(2)``.
    """
    st = _as_structure(data)
    comp, _, _ = _components(st, False, None)
    return torch.from_numpy(_fiedler(st, comp, dense_max_nodes)).to(st.device)


def _fiedler(st: GraphStructure, comp: np.ndarray, dense_max_nodes: int) -> np.ndarray:
    indptr, indices, deg = st.simple_csr()
    n = st.num_nodes
    sizes = np.bincount(comp)
    node_order = np.argsort(comp, kind="stable")                  # nodes grouped by component
    starts = np.zeros(sizes.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    local = np.empty(n, dtype=np.int64)
    local[node_order] = np.arange(n) - starts[comp[node_order]]   # index of a node in its component
    fied = np.zeros(n, dtype=np.float64)
    two = np.nonzero(sizes == 2)[0]
    if two.size:
        members = node_order[starts[two][:, None] + np.arange(2)]  # (C2, 2), lower index first
        fied[members[:, 0]], fied[members[:, 1]] = -np.sqrt(0.5), np.sqrt(0.5)
    big = np.nonzero(sizes >= 3)[0]
    dense = big[sizes[big] <= dense_max_nodes]
    pads = np.maximum(4, 1 << np.ceil(np.log2(np.maximum(sizes[dense], 1))).astype(np.int64))
    src = np.repeat(np.arange(n), deg)
    for pad in np.unique(pads):
        in_bucket = dense[pads == pad]
        chunk = max(1, (1 << 23) // int(pad * pad))              # about 64 MB of float64 per eigh call
        for c0 in range(0, in_bucket.size, chunk):
            _dense_fiedler(in_bucket[c0:c0 + chunk], int(pad), comp, local, src, indices, deg, fied)
    large = big[sizes[big] > dense_max_nodes]
    if large.size:
        adj = sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(n, n))
        lap = (sp.diags(deg.astype(np.float64)) - adj).tocsr()
        for c in large:
            nodes = node_order[starts[c]:starts[c + 1]]
            fied[nodes] = _sparse_fiedler(lap[nodes][:, nodes])
    return fied * _sign(fied, deg, comp, sizes.size)[comp]


def _sign(fied: np.ndarray, deg: np.ndarray, comp: np.ndarray, n_comp: int) -> np.ndarray:
    """Per-component sign ``(C,)``: that of ``sum(v**3)``, else of ``sum(deg * v)`` (both
    labelling-independent), else, for sign-symmetric vectors whose order is then only fixed up
    to reversal, the sign making the lowest-index node with a non-zero value positive."""
    sign = np.ones(n_comp)
    decided = np.zeros(n_comp, dtype=bool)
    for key in (fied ** 3, deg * fied):
        s = np.bincount(comp, weights=key, minlength=n_comp)
        scale = np.bincount(comp, weights=np.abs(key), minlength=n_comp)
        use = ~decided & (np.abs(s) > 1e-5 * scale)     # above an iterative solver's error
        sign[use] = np.sign(s[use])
        decided |= use
    nonzero = np.nonzero(np.abs(fied) > 1e-8)[0]                   # ascending node index
    comps, first = np.unique(comp[nonzero], return_index=True)
    use = ~decided[comps]
    sign[comps[use]] = np.sign(fied[nonzero[first[use]]])
    return sign


def _dense_fiedler(comps: np.ndarray, pad: int, comp: np.ndarray, local: np.ndarray, src: np.ndarray,
                   indices: np.ndarray, deg: np.ndarray, fied: np.ndarray) -> None:
    """Second eigenvectors of the Laplacians of ``comps``, padded to ``pad`` nodes, in one eigh.

    Padding rows carry a diagonal larger than any eigenvalue of the real block (at most twice
    the maximum degree), so the two smallest eigenpairs are the component's own.
    """
    slot = np.full(comp.max() + 1, -1, dtype=np.int64)
    slot[comps] = np.arange(comps.size)
    members = np.nonzero(slot[comp] >= 0)[0]
    m_slot = torch.from_numpy(slot[comp[members]])
    m_local = torch.from_numpy(local[members])
    edge_slot = slot[comp[src]]
    e = edge_slot >= 0
    L = torch.zeros(comps.size, pad, pad, dtype=torch.float64)
    L[torch.from_numpy(edge_slot[e]), torch.from_numpy(local[src[e]]), torch.from_numpy(local[indices[e]])] = -1.0
    diag = torch.full((comps.size, pad), float(2 * deg.max() + 1), dtype=torch.float64)
    diag[m_slot, m_local] = torch.from_numpy(deg[members].astype(np.float64))
    L.diagonal(dim1=-2, dim2=-1).copy_(diag)
    _, vecs = torch.linalg.eigh(L)                                 # ascending eigenvalues
    fied[members] = vecs[m_slot, m_local, 1].numpy()


def _sparse_fiedler(lap: sp.csr_matrix) -> np.ndarray:
    """Fiedler vector of one large connected component's Laplacian ``(m, m)``.

    LOBPCG (Jacobi preconditioner, constrained orthogonal to the constant vector) converges in
    a few dozen iterations on well-connected graphs; on path-like graphs with a tiny spectral
    gap it stalls, and ARPACK in shift-invert mode around -1e-3 (``L + 1e-3 I`` is positive
    definite, so it factorises although ``L`` is singular; little fill-in on such graphs) takes over.
    """
    m = lap.shape[0]
    if m <= 64:                                                    # too small for the iterative solvers
        return np.linalg.eigh(lap.toarray())[1][:, 1]
    x0 = np.cos(1.3 * np.arange(m, dtype=np.float64))[:, None]    # deterministic start vector
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                            # lobpcg warns when it stalls
        vals, vecs = lobpcg(lap, x0, Y=np.ones((m, 1)), M=sp.diags(1.0 / lap.diagonal()), largest=False,
                            tol=1e-9, maxiter=300)
    v = vecs[:, 0]
    v = v - v.mean()
    v /= np.linalg.norm(v)
    lam = float(v @ (lap @ v))
    if np.linalg.norm(lap @ v - lam * v) > 1e-6 * max(1.0, abs(lam)):
        vals, vecs = eigsh(lap.tocsc(), k=2, sigma=-1e-3, which="LM", v0=np.cos(np.arange(m, dtype=np.float64)))
        v = vecs[:, np.argsort(vals)[1]]
        v /= np.linalg.norm(v)
    return v


def spectral_order(data: Any, dense_max_nodes: int = DENSE_MAX_NODES) -> torch.Tensor:
    """Ascending Fiedler value within each connected component, components in BFS's visiting
    order: ``perm (N,)``."""
    st = _as_structure(data)
    comp, _, rank = _components(st, False, None)
    fied = _fiedler(st, comp, dense_max_nodes)
    # Values equal up to round-off (automorphic twins have equal entries) tie, and the tie goes
    # to structure (degree, neighbour-degree sum), then node index, not to round-off noise.
    level = np.round(fied * 1e9)
    perm = np.lexsort((_neighbour_degree_sum(st), st.simple_csr()[2], level, rank[comp]))
    return _out(perm, st)


def order_nodes(data: Any, method: str = "degree", training: bool = False,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Dispatch to the ordering ``method`` (one of ``ORDERINGS``): ``perm (N,)``."""
    if method == "degree":
        return degree_order(data, training, generator)
    if method == "random":
        return random_order(data, generator)
    if method == "bfs":
        return bfs_order(data, training, generator)
    if method == "dfs":
        return dfs_order(data, training, generator)
    if method == "spectral":
        return spectral_order(data)
    raise ValueError(f"unknown ordering {method!r}; expected one of {ORDERINGS}")


# ---- as scan orders -------------------------------------------------------------------------------
def _check_within_graphs(perm: torch.Tensor, batch: torch.Tensor) -> None:
    if not isinstance(perm, torch.Tensor) or perm.dtype.is_floating_point or perm.dim() != 1:
        raise TypeError(f"perm: expected a 1-D integer tensor, got {getattr(perm, 'dtype', type(perm))}")
    if perm.numel() != batch.numel():
        raise ValueError(f"perm: expected {batch.numel()} entries (one per node), got {perm.numel()}")
    if not torch.equal(batch[perm], batch):
        raise ValueError("perm: every node must stay within its own graph's segment (batch[perm] == batch)")


def reverse_within_graphs(perm: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """The ordering ``perm (N,)`` read backwards inside each graph, graphs kept in place: ``(N,)``."""
    batch = batch.to(perm.device)
    _check_within_graphs(perm, batch)
    n = perm.numel()
    counts = torch.bincount(batch)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    pos = torch.arange(n, device=perm.device)
    mirror = ptr[batch] + ptr[batch + 1] - 1 - pos             # position i <-> its mirror in the graph
    return perm[mirror]


def graph_scan_orders(perm: torch.Tensor, batch: torch.Tensor, bidirectional: bool = False,
                      name: str = "graph") -> list[ScanOrder]:
    """``perm (N,)`` as core scan orders over the packed ``(1, N, D)`` node sequence:
    ``[Permutation(perm)]``, plus its within-graph reverse when ``bidirectional``.

    Scan with ``seq_idx = batch.unsqueeze(0)`` so that the state resets at every graph boundary.
    """
    batch = batch.to(perm.device)
    _check_within_graphs(perm, batch)
    orders: list[ScanOrder] = [Permutation(perm.unsqueeze(0), name=name)]
    if bidirectional:
        orders.append(Permutation(reverse_within_graphs(perm, batch).unsqueeze(0), name=f"{name}_reverse"))
    return orders
