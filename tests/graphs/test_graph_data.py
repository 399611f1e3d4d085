"""Graph data: the SBM PATTERN/CLUSTER generators and cache, the TU reader/writer, PyG interop,
validate_graph and graph_collate."""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.data import Batch, Data

from mambakit.graphs import sbm
from mambakit.graphs.data import (GraphTaskDataset, TUDatasetFolder, from_pyg_dataset, graph_collate,
                                  read_tu_dataset, validate_graph, write_tu_dataset)
from mambakit.graphs.sbm import (ClusterConfig, PatternConfig, SBMCluster, SBMPattern, draw_cluster_graph,
                                 draw_pattern_graph, generate_cluster, generate_pattern, sample_patterns)


def _pair_classes(block: np.ndarray):
    rows, cols = np.triu_indices(len(block), k=1)
    return block[rows], block[cols]


def _density(edges: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    return float(edges[mask].mean()), int(mask.sum())


def _check_undirected_simple(data: Data) -> None:
    ei = data.edge_index
    assert ei.dtype == torch.long and data.x.dtype == torch.long and data.y.dtype == torch.long
    assert not bool((ei[0] == ei[1]).any())
    keys = ei[0] * data.num_nodes + ei[1]
    assert bool((keys[1:] > keys[:-1]).all())                      # sorted, no duplicates
    flipped = torch.sort(ei[1] * data.num_nodes + ei[0]).values
    assert torch.equal(flipped, keys)                              # every edge in both directions


# ---- SBM generators -------------------------------------------------------------------------------
def test_pattern_recipe_statistics(seed):
    config = PatternConfig()
    patterns = sample_patterns(seed, config)
    assert len(patterns) == 100 and all(len(u0) == 20 for _, u0 in patterns)
    rng = np.random.default_rng(seed)
    tallies = {k: [0, 0] for k in ("intra", "inter", "cross")}
    for i in range(300):
        w0, u0 = patterns[i % 100]
        block, feats, edges = draw_pattern_graph(rng, (w0, u0), config)
        in_g = block >= 0
        sizes = np.bincount(block[in_g])
        assert len(sizes) == 5 and sizes.min() >= 5 and sizes.max() <= 34
        assert (~in_g).sum() == 20 and 45 <= len(block) <= 190
        assert feats.min() >= 0 and feats.max() <= 2
        np.testing.assert_array_equal(feats[~in_g], u0[-1 - block[~in_g]])
        bi, bj = _pair_classes(block)
        inside = (bi < 0) & (bj < 0)
        np.testing.assert_array_equal(edges[inside], w0[-1 - bi[inside], -1 - bj[inside]])
        for key, mask in (("intra", (bi >= 0) & (bi == bj)), ("inter", (bi >= 0) & (bj >= 0) & (bi != bj)),
                          ("cross", (bi < 0) != (bj < 0))):
            tallies[key][0] += int(edges[mask].sum())
            tallies[key][1] += int(mask.sum())
    # >= 1e5 pairs each: the standard error is < 0.002, the tolerance 0.01
    for key, expected in (("intra", 0.5), ("inter", 0.35), ("cross", 0.5)):
        assert abs(tallies[key][0] / tallies[key][1] - expected) < 0.01, key
    pattern_density = np.mean([w0[np.triu_indices(20, 1)].mean() for w0, _ in patterns])
    assert abs(pattern_density - 0.5) < 0.02                       # 19 000 pairs
    assert all(np.array_equal(w0, w0.T) and not w0.diagonal().any() for w0, _ in patterns)


def test_cluster_recipe_statistics(seed):
    config = ClusterConfig()
    rng = np.random.default_rng(seed)
    intra, inter = [0, 0], [0, 0]
    for _ in range(300):
        block, feats, edges = draw_cluster_graph(rng, config)
        sizes = np.bincount(block)
        assert len(sizes) == 6 and sizes.min() >= 5 and sizes.max() <= 34 and 30 <= len(block) <= 204
        revealed = np.flatnonzero(feats)
        assert len(revealed) == 6                                  # exactly one per community
        np.testing.assert_array_equal(np.sort(block[revealed]), np.arange(6))
        np.testing.assert_array_equal(feats[revealed], block[revealed] + 1)
        bi, bj = _pair_classes(block)
        for tally, mask in ((intra, bi == bj), (inter, bi != bj)):
            tally[0] += int(edges[mask].sum())
            tally[1] += int(mask.sum())
    assert abs(intra[0] / intra[1] - 0.55) < 0.01
    assert abs(inter[0] / inter[1] - 0.25) < 0.01


def test_generated_items_are_pyg_graphs(seed):
    arrays = generate_cluster(40, seed, "train")
    for i in range(len(arrays)):
        data = arrays.graph(i)
        _check_undirected_simple(data)
        assert data.x.shape == data.y.shape == (data.num_nodes,)
        revealed = data.x > 0
        assert int(revealed.sum()) == 6 and torch.equal(data.x[revealed], data.y[revealed] + 1)
        validate_graph(data)
    arrays = generate_pattern(100, seed, "val")
    patterns = sample_patterns(seed)
    for i in range(len(arrays)):
        data = arrays.graph(i)
        _check_undirected_simple(data)
        w0, u0 = patterns[i]                                       # 100 graphs: graph i holds pattern i
        assert int(data.y.sum()) == 20
        assert sorted(data.x[data.y == 1].tolist()) == sorted(u0.tolist())
        inside = (data.y[data.edge_index[0]] == 1) & (data.y[data.edge_index[1]] == 1)
        assert int(inside.sum()) == int(w0.sum())                  # both directions, like w0


def test_determinism_and_independent_streams(seed):
    a, b = generate_cluster(25, seed, "val"), generate_cluster(25, seed, "val")
    for key in ("x", "y", "node_ptr", "adj_bits", "adj_ptr", "edge_counts"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    other_split, other_seed = generate_cluster(25, seed, "test"), generate_cluster(25, seed + 1, "val")
    assert not np.array_equal(a.node_ptr, other_split.node_ptr) or not np.array_equal(a.adj_bits, other_split.adj_bits)
    assert not np.array_equal(a.node_ptr, other_seed.node_ptr) or not np.array_equal(a.adj_bits, other_seed.adj_bits)
    p, q = generate_pattern(10, seed, "train"), generate_pattern(10, seed, "train")
    np.testing.assert_array_equal(p.adj_bits, q.adj_bits)
    np.testing.assert_array_equal(p.x, q.x)
    # the patterns are shared by the splits (test graphs hold patterns seen in training)
    for (w1, u1), (w2, u2) in zip(sample_patterns(seed), sample_patterns(seed)):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(u1, u2)


def test_config_and_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="community_size"):
        PatternConfig(community_size=(10, 5))
    with pytest.raises(ValueError, match="probability"):
        ClusterConfig(p=1.5)
    with pytest.raises(ValueError, match="split"):
        SBMCluster(tmp_path, split="dev")
    with pytest.raises(ValueError, match="num_graphs"):
        SBMCluster(tmp_path, split="val", num_graphs=0)
    with pytest.raises(TypeError, match="ClusterConfig"):
        SBMCluster(tmp_path, split="val", num_graphs=2, config=PatternConfig())


# ---- SBM cache ------------------------------------------------------------------------------------
def test_cache_round_trip(tmp_path, seed, monkeypatch):
    ds = SBMCluster(tmp_path, "val", seed=seed, num_graphs=30)
    path = tmp_path / "SBM_CLUSTER" / "val.pt"
    assert path.is_file() and (tmp_path / "SBM_CLUSTER" / "manifest.json").is_file()
    assert len(ds) == 30 and ds.num_classes == 6 and ds.num_node_types == 7
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    again = SBMCluster(tmp_path, "val", seed=seed, num_graphs=30, generate=False,
                       transform=lambda d: Data(x=d.x, edge_index=d.edge_index, y=d.y, tag=torch.ones(1)))
    assert calls == [True]
    for i in (0, 7, 29, -1):
        a, b = ds[i], again[i]
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.edge_index, b.edge_index)
        assert "tag" in b
    with pytest.raises(IndexError):
        ds[30]
    summary = ds.summary()
    assert summary["num_graphs"] == 30 and summary["num_nodes"] == sum(ds[i].num_nodes for i in range(30))
    assert summary["num_edges"] == sum(ds[i].edge_index.shape[1] for i in range(30))


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    good = SBMPattern(tmp_path, "test", seed=1, num_graphs=12)
    folder = tmp_path / "SBM_PATTERN"
    before = sorted(os.listdir(folder))

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"), pytest.warns(UserWarning, match="regenerating"):
        SBMPattern(tmp_path, "test", seed=2, num_graphs=12)       # regeneration fails half way
    with pytest.raises(OSError, match="disk full"):
        SBMCluster(tmp_path, "train", num_graphs=3)                 # first write fails
    assert sorted(os.listdir(folder)) == before                    # no temp file, old cache intact
    assert not (tmp_path / "SBM_CLUSTER").exists() or os.listdir(tmp_path / "SBM_CLUSTER") == []
    monkeypatch.undo()
    kept = SBMPattern(tmp_path, "test", seed=1, num_graphs=12, generate=False)
    assert torch.equal(kept[5].edge_index, good[5].edge_index)


def test_manifest_mismatch_and_missing_cache(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"SBM_CLUSTER[/\\]val\.pt"):
        SBMCluster(tmp_path, "val", generate=False)
    SBMCluster(tmp_path, "val", seed=3, num_graphs=10)
    with pytest.raises(ValueError, match=r"differs from the request in \['seed'\]"):
        SBMCluster(tmp_path, "val", seed=4, num_graphs=10, generate=False)
    with pytest.raises(ValueError, match="num_graphs"):
        SBMCluster(tmp_path, "val", seed=3, num_graphs=11, generate=False)
    with pytest.raises(ValueError, match="config"):
        SBMCluster(tmp_path, "val", seed=3, num_graphs=10, generate=False, config=ClusterConfig(q=0.2))
    monkeypatch.setattr(sbm, "GENERATOR_VERSION", sbm.GENERATOR_VERSION + 1)
    with pytest.raises(ValueError, match="generator_version"):
        SBMCluster(tmp_path, "val", seed=3, num_graphs=10, generate=False)
    monkeypatch.undo()
    with pytest.warns(UserWarning, match=r"regenerating .*\['seed'\]"):
        regenerated = SBMCluster(tmp_path, "val", seed=4, num_graphs=10)       # mismatch -> regenerate
    assert SBMCluster(tmp_path, "val", seed=4, num_graphs=10, generate=False).summary() == regenerated.summary()
    reference = generate_cluster(10, 4, "val")
    assert torch.equal(regenerated[3].edge_index, reference.graph(3).edge_index)
    (tmp_path / "SBM_CLUSTER" / "val.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot be read"):
        SBMCluster(tmp_path, "val", seed=4, num_graphs=10, generate=False)
    with pytest.warns(UserWarning, match="cannot be read"):
        assert len(SBMCluster(tmp_path, "val", seed=4, num_graphs=10)) == 10      # corrupt -> regenerate


def test_full_pattern_split_matches_the_recipe(tmp_path):
    ds = SBMPattern(tmp_path, "val")                               # the full 2 000-graph split
    assert len(ds) == 2000
    s = ds.summary()
    assert 45 <= s["min_nodes"] and s["max_nodes"] <= 190
    assert abs(s["mean_nodes"] - 117.5) < 2.0                      # 5 * 19.5 + 20, std error 0.43
    assert abs(s["label_fractions"][1] - 20 * 2000 / s["num_nodes"]) < 1e-12
    # expected directed edges: 2 * (p E[intra pairs] + q E[inter pairs] + q_P m E[n_G] + pattern edges)
    sizes = np.arange(5, 35)
    pairs_in = 5 * np.mean(sizes * (sizes - 1) / 2)
    n_g_sq = 5 * np.var(sizes) + (5 * sizes.mean()) ** 2
    pairs_all = (n_g_sq - 5 * sizes.mean()) / 2
    pattern_edges = np.mean([w0.sum() / 2 for w0, _ in sample_patterns(0)])
    expected = 2 * (0.5 * pairs_in + 0.35 * (pairs_all - pairs_in) + 0.5 * 20 * 5 * sizes.mean() + pattern_edges)
    assert abs(s["mean_edges"] - expected) < 150                   # std error ~30


def test_describe_prints_every_split(tmp_path):
    out = io.StringIO()
    rows = sbm.describe(tmp_path, num_graphs=4, file=out)
    assert [(r["dataset"], r["split"]) for r in rows] == [(n, s) for n in ("SBM_PATTERN", "SBM_CLUSTER")
                                                          for s in ("train", "val", "test")]
    assert all(r["num_graphs"] == 4 for r in rows)
    assert len(out.getvalue().splitlines()) == 7 and "SBM_CLUSTER  test" in out.getvalue()


# ---- TU format ------------------------------------------------------------------------------------
def _as_data(g: nx.Graph, y: int, club: bool) -> Data:
    g = nx.convert_node_labels_to_integers(g, ordering="sorted" if not club else "default")
    src, dst, weight = [], [], []
    for u, v, attrs in g.edges(data=True):
        src += [u, v]
        dst += [v, u]
        weight += [float(attrs.get("weight", 1.0))] * 2
    labels = [0 if g.nodes[i].get("club") == "Mr. Hi" else 1 for i in range(len(g))] if club else [-1] * len(g)
    degree = [float(d) for _, d in sorted(g.degree())]
    return Data(edge_index=torch.tensor([src, dst]), x=torch.tensor(degree).unsqueeze(1),
                node_label=torch.tensor(labels), edge_attr=torch.tensor(weight).unsqueeze(1),
                y=torch.tensor([y]), num_nodes=len(g))


@pytest.fixture
def nx_graphs() -> list[Data]:
    """Karate club (club as node label), Florentine families, Les Misérables (weights as edge
    attributes); graph labels 0 / 1 / 2; nodes without a club get the label -1."""
    return [_as_data(nx.karate_club_graph(), 0, True), _as_data(nx.florentine_families_graph(), 1, False),
            _as_data(nx.les_miserables_graph(), 2, False)]


def test_tu_round_trip_on_networkx_graphs(tmp_path, nx_graphs):
    folder = write_tu_dataset(nx_graphs, tmp_path, "NXSMALL")
    assert folder == tmp_path / "NXSMALL"
    assert sorted(os.listdir(folder)) == sorted(f"NXSMALL_{s}.txt" for s in (
        "A", "graph_indicator", "graph_labels", "node_labels", "node_attributes", "edge_attributes"))
    assert len((folder / "NXSMALL_graph_indicator.txt").read_text().splitlines()) == 34 + 15 + 77
    assert len((folder / "NXSMALL_A.txt").read_text().splitlines()) == 2 * (78 + 20 + 254)
    back = read_tu_dataset(tmp_path, "NXSMALL", node_features=("attributes",), edge_features=("attributes",))
    assert back.label_maps == {"graph_labels": [[0, 1, 2]], "node_labels": [[-1, 0, 1]]}
    for original, read in zip(nx_graphs, back):
        assert read.num_nodes == original.num_nodes
        assert torch.equal(read.edge_index, original.edge_index)
        assert torch.equal(read.x, original.x.float()) and torch.equal(read.edge_attr, original.edge_attr.float())
        assert torch.equal(torch.tensor(back.label_maps["node_labels"][0])[read.node_label], original.node_label)
        assert torch.equal(read.y, original.y)
    karate = back[0]
    edges = {tuple(e) for e in karate.edge_index.T.tolist()}
    nx_edges = list(nx.karate_club_graph().edges())
    assert edges == {(u, v) for u, v in nx_edges} | {(v, u) for u, v in nx_edges}
    assert int((karate.node_label == 2).sum()) == 17               # 17 'Officer' members (1 -> 2)
    weights = {(u, v): w for (u, v), w in zip(karate.edge_index.T.tolist(), karate.edge_attr.flatten().tolist())}
    assert all(weights[(u, v)] == d["weight"] for u, v, d in nx.karate_club_graph().edges(data=True))
    full = read_tu_dataset(tmp_path, "NXSMALL")                    # default x: attributes + one-hot labels
    assert full[0].x.shape == (34, 4) and torch.equal(full[0].x[:, 1:].argmax(1), karate.node_label)


def test_tu_reader_agrees_with_pyg_and_wraps_its_dataset(tmp_path, nx_graphs):
    from torch_geometric.datasets import TUDataset
    folder = write_tu_dataset(nx_graphs, tmp_path / "ours", "NXSMALL")
    shutil.copytree(folder, tmp_path / "pyg" / "NXSMALL" / "raw")   # PyG's layout: no download when raw exists
    pyg = TUDataset(str(tmp_path / "pyg"), "NXSMALL", use_node_attr=True, use_edge_attr=True)
    ours = read_tu_dataset(tmp_path / "pyg", "NXSMALL")            # reads PyG's raw/ folder too
    assert len(pyg) == len(ours) == 3
    for p, o in zip(pyg, ours):
        assert torch.equal(p.y, o.y)
        torch.testing.assert_close(p.x, o.x)
        order = torch.argsort(o.edge_index[0] * o.num_nodes + o.edge_index[1])
        assert torch.equal(p.edge_index, o.edge_index[:, order])   # PyG sorts its edges
        torch.testing.assert_close(p.edge_attr, o.edge_attr[order])
    wrapped = from_pyg_dataset(pyg)
    assert wrapped.task == "graph" and len(wrapped) == 3
    batch, targets = graph_collate([wrapped[i] for i in range(3)])
    assert targets.tolist() == [0, 1, 2] and batch.num_graphs == 3 and batch.x.shape == (126, 4)


def _write_tiny(folder: Path, **overrides: str | None) -> Path:
    files = {"A": "1, 2\n2, 1\n2, 3\n3, 2\n4, 5\n5, 4\n", "graph_indicator": "1\n1\n1\n2\n2\n",
             "graph_labels": "-1\n1\n", "node_labels": "0\n1\n0\n2\n2\n",
             "edge_attributes": "0.5\n0.5\n1\n1\n2\n2\n"}
    files.update(overrides)
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, text in files.items():
        if text is not None:
            (folder / f"TINY_{suffix}.txt").write_text(text)
    return folder


def test_tu_reader_hand_written_files(tmp_path):
    graphs = read_tu_dataset(_write_tiny(tmp_path / "TINY"), "TINY", node_features=(), edge_features=("attributes",))
    assert graphs.label_maps == {"graph_labels": [[-1, 1]], "node_labels": [[0, 1, 2]]}
    assert [g.num_nodes for g in graphs] == [3, 2] and [int(g.y) for g in graphs] == [0, 1]
    assert "x" not in graphs[0] and graphs[1].node_label.tolist() == [2, 2]
    assert graphs[1].edge_index.tolist() == [[0, 1], [1, 0]] and graphs[1].edge_attr.flatten().tolist() == [2.0, 2.0]
    # edges of graph 2 listed first, with their attributes on the same lines: regrouped per graph
    shuffled = read_tu_dataset(_write_tiny(tmp_path / "S" / "TINY", A="4, 5\n1, 2\n2, 1\n5, 4\n2, 3\n3, 2\n",
                                           edge_attributes="2\n0.5\n0.5\n2\n1\n1\n"), "TINY")
    assert shuffled[0].edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    assert shuffled[0].edge_attr.flatten().tolist() == [0.5, 0.5, 1.0, 1.0]
    assert shuffled[1].edge_attr.flatten().tolist() == [2.0, 2.0]
    no_edges = read_tu_dataset(_write_tiny(tmp_path / "E" / "TINY", A="", edge_attributes=None), "TINY")
    assert no_edges[1].edge_index.shape == (2, 0)


@pytest.mark.parametrize("suffix, text, error, message", [
    ("A", None, FileNotFoundError, r"missing mandatory file .*TINY_A\.txt"),
    ("graph_indicator", None, FileNotFoundError, r"missing mandatory file .*TINY_graph_indicator\.txt"),
    ("A", "1, 2\n2, 1, 3\n", ValueError, r"TINY_A\.txt, line 2: expected 2 values"),
    ("A", "1, 2\n2; 1\n", ValueError, r"TINY_A\.txt, line 2: expected an integer, got '2;'"),
    ("A", "1, 2\n2, x\n", ValueError, r"line 2: expected an integer, got 'x'"),
    ("A", "1, 2\n2, 9\n", ValueError, r"TINY_A\.txt, line 2: node id 9 out of range 1\.\.5"),
    ("A", "1, 2\n0, 1\n", ValueError, r"line 2: node id 0 out of range"),
    ("A", "1, 2\n3, 4\n", ValueError, r"line 2: edge 3 -> 4 joins graph 1 and graph 2"),
    ("A", "1, 2\n\n2, 1\n", ValueError, r"line 2: empty line"),
    ("graph_indicator", "1\n1\n3\n3\n3\n", ValueError,
     r"line 3: graph ids must be non-decreasing and contiguous, got 3 after 1"),
    ("graph_indicator", "1\n2\n1\n2\n2\n", ValueError, r"line 3: .*non-decreasing"),
    ("graph_indicator", "2\n2\n2\n3\n3\n", ValueError, r"line 1: graph ids must start at 1"),
    ("node_labels", "0\n1\n0\n2\n", ValueError, r"TINY_node_labels\.txt: 4 lines, expected 5 \(one per node\)"),
    ("node_labels", "0\n1\n0.5\n2\n2\n", ValueError, r"TINY_node_labels\.txt, line 3: expected an integer, got '0\.5'"),
    ("graph_labels", "1\n", ValueError, r"TINY_graph_labels\.txt: 1 lines, expected 2 \(one per graph\)"),
    ("edge_attributes", "0.5\n0.5\n1\n1\n2\n", ValueError, r"5 lines, expected 6 \(one per edge in A\)"),
    ("edge_attributes", "0.5\n0.5\nnan\n1\n2\n2\n", ValueError, r"TINY_edge_attributes\.txt, line 3: non-finite"),
    ("edge_attributes", "0.5\n0.5\n1, 2\n1\n2\n2\n", ValueError, r"line 3: expected 1 values"),
])
def test_tu_reader_errors(tmp_path, suffix, text, error, message):
    _write_tiny(tmp_path / "TINY", **{suffix: text})
    with pytest.raises(error, match=message):
        read_tu_dataset(tmp_path, "TINY")


def test_tu_missing_dataset_and_writer_errors(tmp_path, nx_graphs):
    with pytest.raises(FileNotFoundError, match="NOPE_A.txt"):
        read_tu_dataset(tmp_path, "NOPE")
    with pytest.raises(ValueError, match="features"):
        read_tu_dataset(tmp_path, "NOPE", node_features=("degree",))
    unlabeled = nx_graphs[1].clone()
    del unlabeled.node_label
    with pytest.raises(ValueError, match="graph 0 has 'node_label' but graph 1 does not"):
        write_tu_dataset([nx_graphs[0], unlabeled], tmp_path, "MIXED")
    node_targets = nx_graphs[0].clone()
    node_targets.y = node_targets.node_label                       # node-level y cannot be a graph label
    with pytest.raises(ValueError, match="expected 1 row"):
        write_tu_dataset([node_targets], tmp_path, "NODEY")
    bad = nx_graphs[0].clone()
    bad.edge_index = bad.edge_index.clone()
    bad.edge_index[0, 0] = 99
    with pytest.raises(ValueError, match="graph 0: edge_index holds the node index 99"):
        write_tu_dataset([bad], tmp_path, "BAD")
    (tmp_path / "BUSY").mkdir()
    (tmp_path / "BUSY" / "notes.md").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        write_tu_dataset(nx_graphs, tmp_path, "BUSY")
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())   # no temp folders left
    assert all(not (tmp_path / n).exists() for n in ("MIXED", "NODEY", "BAD"))


def test_tu_dataset_folder_tasks(tmp_path, nx_graphs):
    write_tu_dataset(nx_graphs, tmp_path, "NXSMALL")
    graphs = TUDatasetFolder(tmp_path, "NXSMALL")
    assert len(graphs) == 3 and graphs.num_classes == 3
    data, y = graphs[2]
    assert y.tolist() == [2] and data.num_nodes == 77
    nodes = TUDatasetFolder(tmp_path, "NXSMALL", task="node")
    data, y = nodes[0]
    assert nodes.num_classes == 3 and y.shape == (34,) and torch.equal(y, data.node_label)
    _write_tiny(tmp_path / "TINY", node_labels=None)
    with pytest.raises(ValueError, match="TINY_node_labels.txt"):
        TUDatasetFolder(tmp_path, "TINY", task="node")


# ---- validate_graph -------------------------------------------------------------------------------
def _graph(seed: int, n: int = 6, e: int = 10) -> Data:
    g = torch.Generator().manual_seed(seed)
    return Data(x=torch.randn(n, 3, generator=g, dtype=torch.float64),
                edge_index=torch.randint(0, n, (2, e), generator=g), edge_attr=torch.randn(e, 2, generator=g))


def test_validate_graph_accepts_and_copies(seed):
    data = _graph(seed)
    data.edge_index = data.edge_index.int()
    out = validate_graph(data)
    assert out.edge_index.dtype == torch.long and data.edge_index.dtype == torch.int32   # input untouched
    assert torch.equal(out.x, data.x)
    isolated = Data(x=torch.ones(4, 1), edge_index=torch.tensor([[0], [1]]))
    assert validate_graph(isolated).num_nodes == 4                 # nodes 2, 3 isolated: fine
    assert validate_graph(Data(x=torch.ones(2, 1))).edge_index.shape == (2, 0)   # no edge_index: no edges


def test_validate_graph_self_loops_and_duplicates():
    data = Data(x=torch.zeros(3, 1), edge_index=torch.tensor([[0, 1, 1, 2, 0, 2], [1, 0, 1, 2, 1, 2]]),
                edge_attr=torch.arange(6.0).unsqueeze(1), edge_label=torch.arange(6))
    kept = validate_graph(data)
    assert kept.edge_index.shape == (2, 6)                         # both kept by default
    no_loops = validate_graph(data, self_loops="remove")
    assert no_loops.edge_index.tolist() == [[0, 1, 0], [1, 0, 1]]
    assert no_loops.edge_attr.flatten().tolist() == [0.0, 1.0, 4.0] and no_loops.edge_label.tolist() == [0, 1, 4]
    unique = validate_graph(data, duplicate_edges="remove")
    assert unique.edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 1, 2]] and unique.edge_label.tolist() == [0, 1, 2, 3]
    both = validate_graph(data, self_loops="remove", duplicate_edges="remove")
    assert both.edge_index.tolist() == [[0, 1], [1, 0]]


def test_validate_graph_bad_input(seed):
    with pytest.raises(ValueError, match="no node features x.*missing_x='constant'"):
        validate_graph(Data(edge_index=torch.tensor([[0], [1]]), num_nodes=3))
    const = validate_graph(Data(edge_index=torch.tensor([[0], [1]]), num_nodes=3), missing_x="constant")
    assert torch.equal(const.x, torch.ones(3, 1))
    assert validate_graph(Data(edge_index=torch.tensor([[0], [4]])), missing_x="constant").x.shape == (5, 1)
    with pytest.raises(ValueError, match="empty graph: 0 nodes"):
        validate_graph(Data(x=torch.zeros(0, 3)))
    with pytest.raises(ValueError, match="empty graph"):
        validate_graph(Data(num_nodes=0), missing_x="constant")
    data = _graph(seed)
    with pytest.raises(TypeError, match="integer tensor"):
        validate_graph(Data(x=data.x, edge_index=data.edge_index.float()))
    with pytest.raises(TypeError, match="expected a tensor"):
        validate_graph(Data(x=data.x, edge_index=[[0], [1]]))
    with pytest.raises(ValueError, match=r"shape \(2, E\), got \(3, 10\)"):
        validate_graph(Data(x=data.x, edge_index=torch.zeros(3, 10, dtype=torch.long)))
    high = data.edge_index.clone()
    high[1, 3] = 6
    with pytest.raises(ValueError, match=r"node index 6 but the graph has 6 nodes \(valid indices 0\.\.5\)"):
        validate_graph(Data(x=data.x, edge_index=high))
    low = data.edge_index.clone()
    low[0, 0] = -2
    with pytest.raises(ValueError, match=r"node index -2.*0\.\.5 \(the graph has 6 nodes\)"):
        validate_graph(Data(x=data.x, edge_index=low))
    nan_x = data.x.clone()
    nan_x[4, 1] = float("nan")
    with pytest.raises(ValueError, match=r"x holds 1 NaN/Inf values \(first in row 4\)"):
        validate_graph(Data(x=nan_x, edge_index=data.edge_index))
    with pytest.raises(ValueError, match="edge_attr has 9 rows but edge_index has 10 edges"):
        validate_graph(Data(x=data.x, edge_index=data.edge_index, edge_attr=data.edge_attr[:9]))
    inf_attr = data.edge_attr.clone()
    inf_attr[2, 0] = float("inf")
    with pytest.raises(ValueError, match="edge_attr holds 1 NaN/Inf"):
        validate_graph(Data(x=data.x, edge_index=data.edge_index, edge_attr=inf_attr))
    with pytest.raises(ValueError, match="x has 6 rows but num_nodes is 7"):
        validate_graph(Data(x=data.x, edge_index=data.edge_index, num_nodes=7))
    with pytest.raises(ValueError, match="self_loops"):
        validate_graph(data, self_loops="drop")
    with pytest.raises(TypeError, match="Data"):
        validate_graph({"x": data.x})


# ---- datasets and collate -------------------------------------------------------------------------
def test_collate_node_level_sbm_batch(tmp_path):
    ds = SBMPattern(tmp_path, "train", num_graphs=6)
    items = [ds[i] for i in range(4)]
    batch, targets = graph_collate(items)                          # bare Data: target = y (node-level)
    assert isinstance(batch, Batch) and batch.num_graphs == 4
    assert targets.shape == (sum(d.num_nodes for d in items),) and torch.equal(targets, batch.y)
    assert torch.equal(batch.batch.bincount(), torch.tensor([d.num_nodes for d in items]))
    wrapped = GraphTaskDataset(ds, task="node")
    batch2, targets2 = graph_collate([wrapped[i] for i in range(4)])
    assert torch.equal(targets2, targets) and torch.equal(batch2.edge_index, batch.edge_index)


def test_collate_graph_level_and_target_shapes(seed):
    graphs = [_graph(seed + i, n=3 + i) for i in range(3)]
    for i, g in enumerate(graphs):
        g.y = torch.tensor(i)                                      # scalar graph label
    items = [GraphTaskDataset(graphs)[i] for i in range(3)]
    assert items[0][1].shape == (1,)
    batch, targets = graph_collate(items)
    assert targets.tolist() == [0, 1, 2] and batch.x.shape == (3 + 4 + 5, 3)
    for g in graphs:
        g.y = torch.randn(4)                                       # multi-task (T,) -> (1, T)
    _, multi = graph_collate([GraphTaskDataset(graphs)[i] for i in range(3)])
    assert multi.shape == (3, 4) and torch.equal(multi[1], graphs[1].y)
    with pytest.raises(ValueError, match="mixes graph-level and node-level"):
        graph_collate([(graphs[0], torch.zeros(1)), (graphs[1], torch.zeros(4))])
    with pytest.raises(ValueError, match=r"expected a leading 1 \(graph-level\) or 3"):
        graph_collate([(graphs[0], torch.zeros(2))])
    with pytest.raises(TypeError, match="item 0 must be a Data"):
        graph_collate([torch.zeros(3)])
    with pytest.raises(ValueError, match="empty batch"):
        graph_collate([])
    with pytest.raises(ValueError, match="without y"):
        graph_collate([Data(x=torch.zeros(2, 1))])


def test_graph_task_dataset_checks_items(seed):
    bad = _graph(seed)
    bad.y = torch.tensor([1])
    bad.edge_index = bad.edge_index.clone()
    bad.edge_index[0, 0] = 50
    ds = GraphTaskDataset([_graph(seed), bad], task="graph")
    with pytest.raises(ValueError, match="graph 0: no target tensor 'y'"):
        ds[0]
    with pytest.raises(ValueError, match="graph 1: edge_index holds the node index 50"):
        ds[1]
    assert GraphTaskDataset([bad], validate=False)[0][1].tolist() == [1]
    no_x = Data(edge_index=torch.tensor([[0], [1]]), y=torch.tensor([0, 1]), num_nodes=2)
    data, y = GraphTaskDataset([no_x], task="node", validate={"missing_x": "constant"})[0]
    assert data.x.shape == (2, 1) and y.tolist() == [0, 1]
    no_x.wrong = torch.zeros(3)
    with pytest.raises(ValueError, match=r"graph 0: a node-level target needs one row per node \(2\)"):
        GraphTaskDataset([no_x], task="node", target="wrong", validate={"missing_x": "constant"})[0]
    with pytest.raises(ValueError, match="missing_x"):
        GraphTaskDataset([no_x], validate={"missing_x": "zeros"})
    with pytest.raises(ValueError, match="task"):
        GraphTaskDataset([no_x], task="edge")
    with pytest.raises(ValueError, match="empty"):
        from_pyg_dataset([])
    node_level = [Data(x=torch.zeros(3, 1), y=torch.zeros(3, dtype=torch.long)) for _ in range(2)]
    assert from_pyg_dataset(node_level).task == "node"
    mixed = [Data(x=torch.zeros(3, 1), y=torch.zeros(2))]
    with pytest.raises(ValueError, match="pass task="):
        from_pyg_dataset(mixed)


class _MeanPool(nn.Module):
    def __init__(self, level: str) -> None:
        super().__init__()
        self.level = level
        self.lin = nn.Linear(4, 3) if level == "graph" else nn.Embedding(3, 2)

    def forward(self, batch: Batch) -> torch.Tensor:
        if self.level == "node":
            return self.lin(batch.x)                               # (N, 2)
        pooled = torch.zeros(batch.num_graphs, batch.x.shape[1]).index_add_(0, batch.batch, batch.x)
        return self.lin(pooled / batch.batch.bincount().unsqueeze(1))   # (G, 3)


def test_engine_evaluate_with_graph_collate(tmp_path, nx_graphs):
    from mambakit.train import evaluate
    write_tu_dataset(nx_graphs, tmp_path, "NXSMALL")
    ds = TUDatasetFolder(tmp_path, "NXSMALL")
    torch.manual_seed(0)
    model = _MeanPool("graph")
    result = evaluate(model, ds, F.cross_entropy, ["accuracy"], batch_size=2, device="cpu", collate_fn=graph_collate)
    batch, targets = graph_collate([ds[i] for i in range(3)])
    with torch.no_grad():
        logits = model(batch)
    assert result["accuracy"] == pytest.approx(float((logits.argmax(1) == targets).float().mean()))
    assert result["loss"] == pytest.approx(float(F.cross_entropy(logits, targets)), rel=1e-5)
    # node level: the loss is the exact per-node mean (the engine weights batches by target rows)
    sbm_ds = SBMPattern(tmp_path, "val", num_graphs=5)
    node_model = _MeanPool("node")
    result = evaluate(node_model, sbm_ds, F.cross_entropy, batch_size=2, device="cpu", collate_fn=graph_collate)
    batch, targets = graph_collate([sbm_ds[i] for i in range(5)])
    with torch.no_grad():
        expected = float(F.cross_entropy(node_model(batch), targets))
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
