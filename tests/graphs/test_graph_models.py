"""Graph layers, tokenizers and models: equivariance, graph isolation, save/load, bad input."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn as nn
from torch_geometric.data import Batch, Data

from mambakit.graphs.layers import GatedGCNLayer, GraphAttention, GraphContext, GraphLayer, GraphMambaMixer
from mambakit.graphs.models import (PRESETS, GraphModel, GraphModelConfig, config_for_budget, count_parameters,
                                    create_model, graph_mamba)
from mambakit.graphs.orderings import graph_structure
from mambakit.graphs.tokenizers import hop_tokens, random_walk_pe, random_walks, walk_tokens

TINY = dict(hidden_dim=8, num_layers=2, d_state=4, num_heads=2, num_hops=2, num_walks=2)


def _graph(n: int, p: float, gen: torch.Generator, vocab: int = 3) -> Data:
    a = torch.triu(torch.rand(n, n, generator=gen) < p, 1)
    src, dst = a.nonzero().t()
    ei = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)
    return Data(x=torch.randint(0, vocab, (n,), generator=gen), edge_index=ei)


def _batch(gen: torch.Generator, sizes=(7, 1, 12, 2, 9)) -> Batch:
    return Batch.from_data_list([_graph(n, 0.3, gen) for n in sizes])


def _model(name: str, **kw) -> GraphModel:
    torch.manual_seed(0)
    model = create_model(name, **{**TINY, **kw}).double().eval()
    with torch.no_grad():                       # non-trivial batch-norm statistics for eval mode
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


def _relabel(d: Data, relabel: torch.Tensor) -> Data:
    """Node v becomes node relabel[v]."""
    x = torch.empty_like(d.x)
    x[relabel] = d.x
    return Data(x=x, edge_index=relabel[d.edge_index])


def _distinct_degree_keys(gen: torch.Generator) -> Data:
    """A connected graph whose nodes have distinct (degree, neighbour-degree sum) pairs, so the
    eval degree ordering has no ties."""
    for _ in range(2000):
        d = _graph(8, 0.45, gen)
        g = nx.Graph(d.edge_index.t().tolist())
        if g.number_of_nodes() < 8 or not nx.is_connected(g):
            continue
        keys = {(g.degree(v), sum(g.degree(u) for u in g[v])) for v in g}
        if len(keys) == 8:
            return d
    raise AssertionError("no graph with distinct degree keys found")


@pytest.mark.parametrize("name,kw", [("gatedgcn", {}), ("graph_mamba", dict(ordering="spectral")),
                                     ("graph_mamba", dict(ordering="degree", bidirectional=True)),
                                     ("graphgps", {}), ("gmn", {})])
def test_relabelling_nodes_permutes_the_outputs(name, kw, seed):
    gen = torch.Generator().manual_seed(seed)
    d = _distinct_degree_keys(gen)
    relabel = torch.randperm(d.num_nodes, generator=gen)
    model = _model(name, **kw)
    with torch.no_grad():
        out = model(d)
        out2 = model(_relabel(d, relabel))
    torch.testing.assert_close(out2[relabel], out)


def test_the_node_order_matters_to_the_mamba(seed):
    """So the equivariance test above can fail: two random orders of the same graph give
    different outputs."""
    gen = torch.Generator().manual_seed(seed)
    d = _graph(10, 0.5, gen)
    model = _model("graph_mamba", ordering="random")
    with torch.no_grad():
        torch.manual_seed(0)
        a = model(d)
        torch.manual_seed(1)
        b = model(d)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name,kw", [("graph_mamba", dict(ordering="degree", bidirectional=True)),
                                     ("graph_mamba", dict(ordering="bfs", share_mixer=True, bidirectional=True)),
                                     ("graph_mamba", dict(ordering="spectral")),
                                     ("graphgps", {}), ("gmn", dict(token_kind="hop")),
                                     ("graph_mamba", dict(task="graph", pooling="sum", num_classes=3))])
def test_packed_batch_equals_each_graph_alone(name, kw, seed):
    gen = torch.Generator().manual_seed(seed)
    graphs = [_graph(n, 0.3, gen) for n in (6, 1, 11, 2, 8)]
    model = _model(name, **kw)
    with torch.no_grad():
        packed = model(Batch.from_data_list(graphs))
        alone = torch.cat([model(g) for g in graphs])
    torch.testing.assert_close(packed, alone)


def test_no_information_crosses_graph_boundaries(seed):
    """Changing one graph's features leaves the other graphs' outputs untouched (and changes its own)."""
    gen = torch.Generator().manual_seed(seed)
    graphs = [_graph(n, 0.3, gen) for n in (9, 9, 9)]
    model = _model("graph_mamba", ordering="dfs", bidirectional=True)
    b = Batch.from_data_list(graphs)
    x2 = b.x.clone()
    x2[9:18] = (x2[9:18] + 1) % 3
    with torch.no_grad():
        out = model(b)
        b.x = x2
        out2 = model(b)
    torch.testing.assert_close(out2[:9], out[:9])
    torch.testing.assert_close(out2[18:], out[18:])
    assert not torch.allclose(out2[9:18], out[9:18])


def test_output_shapes_for_node_and_graph_tasks_and_input_kinds(seed):
    gen = torch.Generator().manual_seed(seed)
    b = _batch(gen)
    n, g, e = b.num_nodes, b.num_graphs, b.edge_index.shape[1]
    for name in PRESETS:
        assert create_model(name, **TINY)(b).shape == (n, 2)
        assert create_model(name, **TINY, task="graph", num_classes=5)(b).shape == (g, 5)
    b.x = torch.randn(n, 6, generator=gen)
    b.edge_attr = torch.randint(0, 4, (e, 2), generator=gen)
    model = create_model("graph_mamba", **TINY, node_input="float", node_in=6, edge_input="categorical",
                         edge_in=4, edge_columns=2, pe="rwse", pe_steps=5, local_mpnn="gine")
    assert model(b).shape == (n, 2)
    single = Data(x=b.x[:7], edge_index=b.edge_index[:, (b.edge_index < 7).all(0)],
                  edge_attr=b.edge_attr[(b.edge_index < 7).all(0)])
    assert model(single).shape == (7, 2)


@pytest.mark.parametrize("name", list(PRESETS))
def test_gradients_reach_every_parameter(name, seed):
    gen = torch.Generator().manual_seed(seed)
    b = _batch(gen)
    model = create_model(name, **TINY, dropout=0.1).train()
    loss = nn.functional.cross_entropy(model(b), torch.randint(0, 2, (b.num_nodes,), generator=gen))
    loss.backward()
    last = f"layers.{TINY['num_layers'] - 1}.local.norm_e"      # the last layer's edge output is unused
    for pname, p in model.named_parameters():
        if pname.startswith(last):
            continue
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert any(float(p.grad.abs().sum()) > 0 for n_, p in model.named_parameters() if "global_mixer" in n_) \
        or name == "gatedgcn"


def test_save_load_round_trip(tmp_path, seed):
    gen = torch.Generator().manual_seed(seed)
    b = _batch(gen)
    model = _model("graph_mamba", bidirectional=True, eval_permutations=1, task="graph", num_classes=3).float()
    model.save_pretrained(tmp_path / "gm")
    loaded = GraphModel.from_pretrained(tmp_path / "gm")
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(b), model(b))
    with pytest.raises(ValueError, match="unknown fields"):
        GraphModelConfig.from_dict({"hidden_dim": 8, "bogus": 1})


def test_eval_averages_the_mixer_over_random_tie_breaks(seed):
    gen = torch.Generator().manual_seed(seed)
    d = _graph(12, 0.3, gen)
    h = torch.randn(12, 8, dtype=torch.float64, generator=gen)
    mixer = GraphMambaMixer(8, "degree", bidirectional=True, eval_permutations=3, d_state=4).double().eval()
    out = mixer(h, GraphContext(d, generator=torch.Generator().manual_seed(seed)))
    sets = GraphContext(d, generator=torch.Generator().manual_seed(seed)).order_sets("degree", True, 3, True)
    assert len({tuple(s[0].index(12).flatten().tolist()) for s in sets}) > 1    # ties broken differently
    seq_idx = torch.zeros(1, 12, dtype=torch.long)
    ref = sum(order.invert(mixer.mixers[k](order.apply(h[None]), seq_idx=seq_idx))
              for orders in sets for k, order in enumerate(orders)) / 3
    torch.testing.assert_close(out, ref[0])
    mixer.eval_permutations = 1                                        # eval default: one deterministic order
    ctx = GraphContext(d)
    torch.testing.assert_close(mixer(h, ctx), mixer(h, GraphContext(d)))
    assert ctx.order_sets("degree", True, 1, False) is ctx.order_sets("degree", True, 1, False)   # shared by layers


def test_gated_gcn_layer_matches_a_per_node_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    d = _graph(7, 0.4, gen)
    ei = torch.cat([d.edge_index, torch.tensor([[2, 3], [2, 3]])], 1)    # with self-loops
    n, D = 7, 5
    layer = GatedGCNLayer(D, norm="none").double()
    h = torch.randn(n, D, dtype=torch.float64, generator=gen)
    e = torch.randn(ei.shape[1], D, dtype=torch.float64, generator=gen)
    h_out, e_out = layer(h, ei, e)
    W = layer.node_proj.weight
    bias = layer.node_proj.bias
    proj = [lambda v, k=k: v @ W[k * D:(k + 1) * D].t() + bias[k * D:(k + 1) * D] for k in range(4)]  # A, B, D, E
    C = layer.edge_proj
    with torch.no_grad():
        for i in range(n):
            num = torch.zeros(D, dtype=torch.float64)
            den = torch.zeros(D, dtype=torch.float64)
            for k in range(ei.shape[1]):
                j, dst = int(ei[0, k]), int(ei[1, k])
                if dst != i:
                    continue
                gate_logit = C(e[k]) + proj[2](h[i]) + proj[3](h[j])
                torch.testing.assert_close(e_out[k], e[k] + torch.relu(gate_logit))
                num += torch.sigmoid(gate_logit) * proj[1](h[j])
                den += torch.sigmoid(gate_logit)
            expect = h[i] + torch.relu(proj[0](h[i]) + num / (den + 1e-6))
            torch.testing.assert_close(h_out[i], expect)


def test_graph_attention_is_per_graph_attention(seed):
    gen = torch.Generator().manual_seed(seed)
    b = _batch(gen)
    attn = GraphAttention(8, num_heads=2).double().eval()
    h = torch.randn(b.num_nodes, 8, dtype=torch.float64, generator=gen)
    out = attn(h, GraphContext(b))
    for g in range(b.num_graphs):
        rows = b.batch == g
        x = h[rows].unsqueeze(0)
        ref = attn.attn(x, x, x, need_weights=False)[0][0]
        torch.testing.assert_close(out[rows], ref)


def test_hop_and_walk_tokens(seed):
    gen = torch.Generator().manual_seed(seed)
    d = _graph(9, 0.3, gen)
    d.edge_index = torch.cat([d.edge_index, torch.tensor([[4], [4]])], 1)  # a self-loop counts as an edge
    h = torch.randn(9, 3, dtype=torch.float64, generator=gen)
    A = torch.zeros(9, 9, dtype=torch.float64)
    A[d.edge_index[1], d.edge_index[0]] = 1.0                            # A[dst, src]
    M = A / A.sum(1, keepdim=True).clamp(min=1)
    tok = hop_tokens(h, d.edge_index, 3)
    assert tok.shape == (9, 4, 3)
    for t in range(4):
        torch.testing.assert_close(tok[:, 3 - t], torch.linalg.matrix_power(M, t) @ h)
    st = graph_structure(d)
    walks = random_walks(st, 5, 4, torch.Generator().manual_seed(seed))
    assert walks.shape == (9, 5, 5) and torch.equal(walks[:, :, 0], torch.arange(9)[:, None].expand(9, 5))
    g = nx.Graph()
    g.add_nodes_from(range(9))
    g.add_edges_from((int(u), int(v)) for u, v in d.edge_index.t() if u != v)
    for w in walks.reshape(-1, 5).tolist():
        for u, v in zip(w[:-1], w[1:]):
            assert v in g[u] or (g.degree(u) == 0 and v == u)            # steps follow edges; isolated nodes stay
    wt = walk_tokens(h, walks)
    torch.testing.assert_close(wt[:, -1], h)                             # last token: the node itself
    torch.testing.assert_close(wt[:, 0], h[walks].mean(dim=(1, 2)))      # first token: the whole walks


def test_random_walk_pe_matches_matrix_powers(seed):
    gen = torch.Generator().manual_seed(seed)
    b = _batch(gen)
    pe = random_walk_pe(graph_structure(b), 4)
    g = nx.Graph()
    g.add_nodes_from(range(b.num_nodes))
    g.add_edges_from(b.edge_index.t().tolist())
    A = nx.to_numpy_array(g, nodelist=range(b.num_nodes))
    P = A / np.maximum(A.sum(1, keepdims=True), 1)
    for t in range(4):
        np.testing.assert_allclose(pe[:, t].numpy(), np.diag(np.linalg.matrix_power(P, t + 1)), atol=1e-6)


def test_layer_options_and_parameter_budget():
    shared = GraphLayer(16, "gatedgcn", "mamba", bidirectional=True, share_mixer=True)
    separate = GraphLayer(16, "gatedgcn", "mamba", bidirectional=True, share_mixer=False)
    n_shared, n_sep = count_parameters(shared), count_parameters(separate)
    assert n_sep - n_shared == count_parameters(separate.global_mixer.mixers[1])
    c = config_for_budget("graph_mamba", 60_000, num_layers=2)
    wider = GraphModelConfig(**{**c.to_dict(), "hidden_dim": c.hidden_dim + 4})
    assert count_parameters(c) <= 60_000 < count_parameters(wider)                 # the widest that fits
    from_config = count_parameters(GraphModelConfig(**{**PRESETS["graph_mamba"], **TINY}))   # built on 'meta'
    assert count_parameters(graph_mamba(**TINY)) == from_config


def _one(**kw) -> Data:
    base = dict(x=torch.tensor([0, 1, 2, 1]), edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]))
    base.update(kw)
    return Data(**base)


def test_bad_input_is_rejected_with_clear_errors():
    model = create_model("graph_mamba", **TINY)
    with pytest.raises(ValueError, match="data.x is None"):
        model(Data(edge_index=torch.tensor([[0], [1]]), num_nodes=2))
    with pytest.raises(ValueError, match="0 nodes"):
        model(Data(x=torch.zeros(0, dtype=torch.long), edge_index=torch.empty(2, 0, dtype=torch.long)))
    empty_in_batch = Batch.from_data_list([_one(), Data(x=torch.zeros(0, dtype=torch.long),
                                                        edge_index=torch.empty(2, 0, dtype=torch.long))])
    with pytest.raises(ValueError, match="graph 1 of the batch has 0 nodes"):
        model(empty_in_batch)
    with pytest.raises(ValueError, match=r"node index 9 out of range for a graph of 4 nodes"):
        model(_one(edge_index=torch.tensor([[0, 9], [1, 0]])))
    with pytest.raises(ValueError, match="negative node index -2"):
        model(_one(edge_index=torch.tensor([[0, -2], [1, 0]])))
    with pytest.raises(TypeError, match="integer categories"):
        model(_one(x=torch.randn(4)))
    with pytest.raises(ValueError, match=r"category 3 out of range \[0, 3\)"):
        model(_one(x=torch.tensor([0, 1, 3, 1])))
    with pytest.raises(ValueError, match="categorical column"):
        model(_one(x=torch.zeros(4, 2, dtype=torch.long)))
    fmodel = create_model("gatedgcn", **TINY, node_input="float", node_in=3, edge_input="float", edge_in=2)
    ea = torch.randn(4, 2)
    with pytest.raises(TypeError, match="floating-point"):
        fmodel(_one(edge_attr=ea))
    with pytest.raises(ValueError, match=r"expected shape \(4, 3\)"):
        fmodel(_one(x=torch.randn(4, 5), edge_attr=ea))
    nan = torch.randn(4, 3)
    nan[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fmodel(_one(x=nan, edge_attr=ea))
    with pytest.raises(ValueError, match="edge_attr is None"):
        fmodel(_one(x=torch.randn(4, 3)))
    with pytest.raises(ValueError, match="expected 4 rows"):
        fmodel(_one(x=torch.randn(4, 3), edge_attr=torch.randn(3, 2)))
    with pytest.raises(TypeError, match="Data or Batch"):
        model(torch.zeros(3))
    with pytest.raises(ValueError, match="ordering"):
        GraphModelConfig(ordering="zigzag")
    with pytest.raises(ValueError, match="both be 'none'"):
        GraphModelConfig(local_mpnn="none", global_kind="none")
    with pytest.raises(ValueError, match="hidden_dim"):
        GraphModelConfig(hidden_dim=0)


@pytest.mark.parametrize("name", list(PRESETS))
def test_isolated_nodes_self_loops_and_edgeless_graphs_work(name):
    model = create_model(name, **TINY).train()
    edgeless = Data(x=torch.tensor([0, 1, 2]), edge_index=torch.empty(2, 0, dtype=torch.long))
    loops = _one(edge_index=torch.tensor([[0, 1, 1, 2, 3], [1, 0, 2, 1, 3]]))   # node 3: isolated but for a self-loop
    batch = Batch.from_data_list([edgeless, loops, _one()])
    for data in (edgeless, loops, batch):
        out = model(data)
        assert out.shape == (data.num_nodes, 2) and torch.isfinite(out).all()
        out.sum().backward()
