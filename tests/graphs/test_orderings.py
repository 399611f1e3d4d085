"""Graph orderings: valid within-graph permutations, and each one the order it claims to be."""
from __future__ import annotations

import time

import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from mambakit.graphs.orderings import (ORDERINGS, bfs_order, degree_order, dfs_order, fiedler_vector,
                                       graph_scan_orders, graph_structure, node_degree, order_nodes,
                                       random_order, reverse_within_graphs, spectral_order)


def _graph(n: int, p: float, gen: torch.Generator, extra: list[tuple[int, int]] = ()) -> Data:
    """Random undirected graph, both directions stored, plus ``extra`` directed edges."""
    a = torch.rand(n, n, generator=gen) < p
    a = torch.triu(a, 1)
    src, dst = a.nonzero().t()
    ei = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)
    if extra:
        ei = torch.cat([ei, torch.tensor(extra, dtype=torch.long).t()], 1)
    return Data(edge_index=ei, num_nodes=n)


def _mixed_batch(seed: int) -> Batch:
    """Graphs of 1 and 2 nodes, an edgeless one, a disconnected one, self-loops and duplicates."""
    gen = torch.Generator().manual_seed(seed)
    graphs = [Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=1),
              Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=2),
              Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=4),
              _graph(15, 0.12, gen, extra=[(3, 3), (0, 1), (0, 1)]),
              _graph(30, 0.3, gen),
              _graph(9, 0.05, gen)]
    return Batch.from_data_list(graphs)


def _nx(data: Data) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(range(data.num_nodes))
    g.add_edges_from((int(u), int(v)) for u, v in data.edge_index.t() if u != v)
    return g


def _segments(batch: torch.Tensor) -> list[tuple[int, int]]:
    counts = torch.bincount(batch).tolist()
    starts = np.cumsum([0] + counts)
    return [(int(starts[g]), int(starts[g + 1])) for g in range(len(counts))]


@pytest.mark.parametrize("method", ORDERINGS)
@pytest.mark.parametrize("training", [False, True])
def test_every_ordering_is_a_within_graph_permutation(method, training, seed):
    b = _mixed_batch(seed)
    gen = torch.Generator().manual_seed(seed)
    perm = order_nodes(b, method, training=training, generator=gen)
    assert perm.dtype == torch.int64 and perm.shape == (b.num_nodes,)
    assert torch.equal(perm.sort().values, torch.arange(b.num_nodes))
    assert torch.equal(b.batch[perm], b.batch)                      # graphs stay contiguous and in place
    if not training and method != "random":
        assert torch.equal(order_nodes(b, method), perm)            # deterministic in eval


def test_degree_order_is_sorted_by_degree_with_documented_ties(seed):
    b = _mixed_batch(seed)
    g = _nx(b)
    deg = torch.tensor([g.degree(v) for v in range(b.num_nodes)])
    assert torch.equal(node_degree(b), deg)                         # distinct neighbours, no self-loops
    nbr = torch.tensor([sum(g.degree(u) for u in g[v]) for v in range(b.num_nodes)])
    for training in (False, True):
        perm = degree_order(b, training=training, generator=torch.Generator().manual_seed(seed))
        for s, e in _segments(b.batch):
            d = deg[perm[s:e]]
            assert bool((d[1:] >= d[:-1]).all())
    perm = degree_order(b)
    for s, e in _segments(b.batch):
        key = (deg[perm[s:e]] * 10_000 + nbr[perm[s:e]]) * 10_000 + perm[s:e]
        assert bool((key[1:] > key[:-1]).all())                     # eval: degree, neighbour sum, index
    # Training breaks ties at random: a cycle (all degrees equal) comes out in different orders.
    cycle = Data(edge_index=torch.tensor([[i, (i + 1) % 12] for i in range(12)]).t(), num_nodes=12)
    outs = {tuple(degree_order(cycle, True, torch.Generator().manual_seed(seed + k)).tolist()) for k in range(4)}
    assert len(outs) > 1


def test_random_order_is_a_fresh_permutation(seed):
    b = _mixed_batch(seed)
    a = random_order(b, torch.Generator().manual_seed(seed))
    c = random_order(b, torch.Generator().manual_seed(seed + 1))
    assert torch.equal(random_order(b, torch.Generator().manual_seed(seed)), a)
    assert not torch.equal(a, c)


def _component_blocks(perm: torch.Tensor, b: Batch):
    """Yield (graph, component node list in perm order) for every component."""
    g = _nx(b)
    comp = {}
    for k, nodes in enumerate(nx.connected_components(g)):
        for v in nodes:
            comp[v] = k
    order = perm.tolist()
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and comp[order[j]] == comp[order[i]]:
            j += 1
        yield g, order[i:j]
        i = j


def _check_component_order(perm: torch.Tensor, b: Batch) -> None:
    """Components form blocks, ordered within each graph by max degree (descending), ties by
    the lowest index of a max-degree node."""
    last = None
    for g, block in _component_blocks(perm, b):
        top = max(g.degree(v) for v in block)
        key = (int(b.batch[block[0]]), -top, min(v for v in block if g.degree(v) == top))
        assert last is None or key > last
        last = key


@pytest.mark.parametrize("kind", ["bfs", "dfs"])
def test_traversals_visit_components_in_turn_from_max_degree_roots(kind, seed):
    b = _mixed_batch(seed)
    perm = bfs_order(b) if kind == "bfs" else dfs_order(b)
    _check_component_order(perm, b)
    seen_comps = 0
    last_graph, last_root_deg = -1, None
    for g, block in _component_blocks(perm, b):
        assert set(block) == nx.node_connected_component(g, block[0])   # each component is one block
        root = block[0]
        assert g.degree(root) == max(g.degree(v) for v in block)
        assert root == min(v for v in block if g.degree(v) == g.degree(root))
        graph = int(b.batch[root])
        if graph == last_graph:                                     # components by root degree, descending
            assert g.degree(root) <= last_root_deg
        last_graph, last_root_deg = graph, g.degree(root)
        seen_comps += 1
        if kind == "bfs":
            dist = nx.single_source_shortest_path_length(g, root)
            d = [dist[v] for v in block]
            assert d == sorted(d)                                   # distance from the root non-decreasing
        else:
            visited, stack = {root}, [root]                         # a DFS preorder: replay it
            for v in block[1:]:
                while not any(u not in visited for u in g[stack[-1]]):
                    stack.pop()
                assert v in g[stack[-1]], "DFS moved to a node not adjacent to the deepest open node"
                visited.add(v)
                stack.append(v)
    assert seen_comps == nx.number_connected_components(_nx(b))


def test_traversal_root_override_and_its_checks():
    path = Data(edge_index=torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]]), num_nodes=4)
    assert bfs_order(path, root=torch.tensor([0])).tolist() == [0, 1, 2, 3]
    assert dfs_order(path, root=torch.tensor([3])).tolist() == [3, 2, 1, 0]
    with pytest.raises(ValueError, match="not in graph 0"):
        bfs_order(path, root=torch.tensor([7]))
    with pytest.raises(ValueError, match="one node per graph"):
        bfs_order(path, root=torch.tensor([0, 1]))


def _laplacian_eigs(g: nx.Graph, nodes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    L = nx.laplacian_matrix(g, nodelist=nodes).toarray().astype(np.float64)
    return np.linalg.eigh(L)


def test_spectral_order_follows_the_fiedler_vector_of_each_component(seed):
    b = _mixed_batch(seed)
    fied = fiedler_vector(b).numpy()
    perm = spectral_order(b)
    _check_component_order(perm, b)
    for g, block in _component_blocks(perm, b):
        f = fied[block]
        assert np.all(np.diff(f) >= -1e-9)                          # monotone within the component
        if len(block) >= 3:
            assert np.sum(f ** 3) > -1e-9                           # the documented sign rule
            vals, vecs = _laplacian_eigs(g, block)
            L = nx.laplacian_matrix(g, nodelist=block).toarray()
            np.testing.assert_allclose(L @ f, vals[1] * f, atol=1e-9)   # an eigenvector of lambda_2
            np.testing.assert_allclose(np.linalg.norm(f), 1.0, atol=1e-9)
        elif len(block) == 2:
            np.testing.assert_allclose(sorted(f), [-np.sqrt(0.5), np.sqrt(0.5)])
        else:
            assert f[0] == 0.0


def _connected(n: int, p: float, gen: torch.Generator) -> Data:
    while True:
        d = _graph(n, p, gen)
        g = _nx(d)
        if nx.is_connected(g):
            vals = np.linalg.eigvalsh(nx.laplacian_matrix(g).toarray().astype(float))
            f = np.linalg.eigh(nx.laplacian_matrix(g, nodelist=range(n)).toarray().astype(float))[1][:, 1]
            if vals[2] - vals[1] > 1e-3 and np.diff(np.sort(f)).min() > 1e-6:
                return d                                            # a unique Fiedler line, no tied entries


def test_spectral_order_is_invariant_to_relabelling_up_to_reversal(seed):
    """With distinct Fiedler values; tied values (e.g. two leaves on one node) fall back to
    structure and then to node index, which a relabelling can change."""
    gen = torch.Generator().manual_seed(seed)
    d = _connected(25, 0.2, gen)
    relabel = torch.randperm(25, generator=gen)                     # new id of old node v is relabel[v]
    d2 = Data(edge_index=relabel[d.edge_index], num_nodes=25)
    p1 = spectral_order(d)
    p2 = spectral_order(d2)
    mapped = relabel[p1]                                            # p1 written in the new labels
    assert torch.equal(p2, mapped) or torch.equal(p2, mapped.flip(0))
    f = fiedler_vector(d)
    if abs(float((f ** 3).sum())) > 1e-6:                           # the sign rule decides: no reversal
        assert torch.equal(p2, mapped)
        torch.testing.assert_close(fiedler_vector(d2)[relabel], f)


def test_sparse_and_dense_fiedler_solvers_agree(seed):
    gen = torch.Generator().manual_seed(seed)
    d = _connected(120, 0.06, gen)
    dense = fiedler_vector(d)
    sparse = fiedler_vector(d, dense_max_nodes=50)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)
    n = 700                                                         # a path: tiny spectral gap
    path = Data(edge_index=torch.stack([torch.arange(n - 1), torch.arange(1, n)]), num_nodes=n)
    torch.testing.assert_close(fiedler_vector(path, dense_max_nodes=64), fiedler_vector(path, dense_max_nodes=1024),
                               atol=1e-5, rtol=0)
    assert spectral_order(path).tolist() in (list(range(n)), list(range(n - 1, -1, -1)))


def test_reverse_within_graphs_and_scan_orders(seed):
    b = _mixed_batch(seed)
    perm = random_order(b, torch.Generator().manual_seed(seed))
    rev = reverse_within_graphs(perm, b.batch)
    for s, e in _segments(b.batch):
        assert torch.equal(rev[s:e], perm[s:e].flip(0))
    assert torch.equal(reverse_within_graphs(rev, b.batch), perm)
    orders = graph_scan_orders(perm, b.batch, bidirectional=True, name="random")
    assert [o.name for o in orders] == ["random", "random_reverse"]
    x = torch.randn(1, b.num_nodes, 3, dtype=torch.float64)
    seq_idx = b.batch.unsqueeze(0)
    for order, p in zip(orders, (perm, rev)):
        scanned = order.apply(x)
        assert torch.equal(scanned[0], x[0, p])
        assert torch.equal(order.invert(scanned), x)
        assert torch.equal(order.apply_ids(seq_idx), seq_idx)       # the scan resets at the same places
    bad = torch.arange(b.num_nodes).flip(0)                          # moves nodes across graphs
    with pytest.raises(ValueError, match="own graph"):
        graph_scan_orders(bad, b.batch)


def test_orderings_scale_to_100k_nodes(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 100_000
    ei = torch.randint(0, n, (2, 300_000), generator=gen)
    d = Data(edge_index=torch.cat([ei, ei.flip(0)], 1), num_nodes=n)
    for method in ("degree", "random", "bfs", "dfs"):
        t0 = time.perf_counter()
        perm = order_nodes(d, method, training=True, generator=gen)
        elapsed = time.perf_counter() - t0
        assert torch.equal(perm.sort().values, torch.arange(n))
        assert elapsed < 5.0, f"{method} took {elapsed:.2f}s for 100k nodes"


def test_bad_structure_is_rejected():
    empty = Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=0)
    with pytest.raises(ValueError, match="0 nodes"):
        degree_order(empty)
    in_batch = Batch.from_data_list([Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=3),
                                     Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=0),
                                     Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=2)])
    with pytest.raises(ValueError, match="graph 1 of the batch has 0 nodes"):
        bfs_order(in_batch)
    with pytest.raises(ValueError, match=r"node index 5 .*5 nodes"):
        order_nodes(Data(edge_index=torch.tensor([[0, 5], [1, 0]]), num_nodes=5))
    with pytest.raises(ValueError, match="negative node index -1"):
        order_nodes(Data(edge_index=torch.tensor([[0, -1], [1, 0]]), num_nodes=5))
    with pytest.raises(TypeError, match="integer"):
        order_nodes(Data(edge_index=torch.tensor([[0.0, 1.0], [1.0, 0.0]]), num_nodes=2))
    with pytest.raises(ValueError, match=r"shape \(2, E\)"):
        order_nodes(Data(edge_index=torch.tensor([[0, 1, 2]]), num_nodes=3))
    crossing = Batch.from_data_list([Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=2)] * 2)
    crossing.edge_index = torch.tensor([[0], [3]])
    with pytest.raises(ValueError, match="joins graphs 0 and 1"):
        order_nodes(crossing)
    unsorted = Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=3, batch=torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="non-decreasing"):
        order_nodes(unsorted)
    with pytest.raises(ValueError, match="unknown ordering"):
        order_nodes(Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=3), "zigzag")
    st = graph_structure(Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=2))
    assert st.num_graphs == 1 and st.ptr.tolist() == [0, 2]
