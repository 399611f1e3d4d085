"""SBM PATTERN and CLUSTER: the node-classification benchmarks of Dwivedi et al., generated here.

Source: V. P. Dwivedi, C. K. Joshi, A. T. Luu, T. Laurent, Y. Bengio, X. Bresson, "Benchmarking
Graph Neural Networks", arXiv:2003.00982 (JMLR 2023), section on the SBM node-classification
datasets, and the generation notebooks of github.com/graphdeeplearning/benchmarking-gnns
(``data/SBMs/generate_SBM_PATTERN.ipynb``, ``generate_SBM_CLUSTER.ipynb``). Nothing is downloaded:
the graphs are drawn here, vectorised with numpy, from a fixed seed, and cached to disk.

PATTERN (find a planted subgraph; 2 classes):
  a stochastic block model ``G`` of 5 communities, each of ``randint(5, 35)`` = 5..34 nodes,
  intra-community edge probability ``p = 0.5``, inter-community ``q = 0.35``; node features drawn
  uniformly from a vocabulary of 3 values ``{0, 1, 2}``. 100 patterns ``P`` are drawn once per
  seed (shared by every split, as in the notebook, so that test graphs hold patterns seen in
  training): 20 nodes, internal edge probability ``p_P = 0.5``, features from the same
  vocabulary. Each graph holds one pattern (graph ``i`` of a split uses pattern
  ``i * 100 // num_graphs``, the notebook's blocks of 100 / 20 / 20), and each pattern node is
  joined to each node of ``G`` with probability ``q_P = 0.5``; the nodes are then shuffled.
  Label 1 for pattern nodes, 0 otherwise. 45..190 nodes (the paper quotes 44-188).
  Splits 10 000 / 2 000 / 2 000.
CLUSTER (semi-supervised clustering; 6 classes):
  6 communities of 5..34 nodes, ``p = 0.55``, ``q = 0.25``, nodes shuffled; in each community one
  random node gets the feature ``community + 1`` (1..6), every other node 0. Label = community
  (0..5). 30..204 nodes possible, about 117 on average (the paper quotes 40-190).
  Splits 10 000 / 1 000 / 1 000 (the notebook and the paper; PyG and DGL ship the same counts).

Two places where the sources disagree, and what we follow: the paper's text (and DGL's docs)
give PATTERN ``q = 0.35`` and 20-node patterns, the first notebook version ``q = 0.2`` and the
last one ``q = 0.35`` with pattern sizes drawn from 5..34 ("v2"). We default to the paper (20
nodes, ``q = 0.35``); ``PatternConfig(pattern_size=(5, 34))`` gives the notebook's variant,
which is what the released files (PyG's ``GNNBenchmarkDataset``: ~118.9 nodes, ~6 098.9 directed
edges per graph) were drawn from. Community sizes are 5..34 because the notebooks call
``np.random.randint(5, 35)``, whose upper bound is exclusive.

Metric: the benchmark reports "weighted accuracy", the mean over classes of the per-class
accuracy (recall), i.e. balanced accuracy (``sklearn.metrics.balanced_accuracy_score``; the
training engine's ``balanced_accuracy``). Their code averages it over mini-batches; we compute it
once on the whole split.

Items are ``torch_geometric.data.Data(x (n,) long, edge_index (2, E) long, y (n,) long)``, edges
undirected and listed in both directions, sorted by (source, target), no self-loops.

Cache: ``root/<name>/<split>.pt`` (``name`` = ``SBM_PATTERN`` / ``SBM_CLUSTER``), written
atomically, read with ``torch.load(weights_only=True)``. Compact: node features and labels as
int8 vectors with node offsets, and each graph's adjacency as the packed bits of its upper
triangle (``n (n - 1) / 2`` bits, in row-major ``triu`` order) with byte offsets, decoded per
item. The file carries a manifest (generator version, seed, counts, config); ``manifest.json``
beside it repeats the manifests for people. On load a manifest that differs from the request
regenerates the split (``generate=True``) or raises ``ValueError`` (``generate=False``).
"""
from __future__ import annotations

import json
import sys
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TextIO, Union

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Data

from .data import atomic_write

GENERATOR_VERSION = 1
SPLITS = ("train", "val", "test")
_SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}
_PATTERN_STREAM = 3            # the patterns are drawn from their own stream, shared by all splits
_DATASET_ID = {"SBM_PATTERN": 1, "SBM_CLUSTER": 2}
_MAX_NODES = 32767             # a sanity bound: the upper-triangle masks grow as n ** 2


def _check_range(name: str, value: Sequence[int], low: int = 1) -> tuple[int, int]:
    if len(value) != 2 or not all(isinstance(v, (int, np.integer)) for v in value):
        raise ValueError(f"{name}: expected (min, max) integers, got {value!r}")
    lo, hi = int(value[0]), int(value[1])
    if lo < low or hi < lo:
        raise ValueError(f"{name}: expected {low} <= min <= max, got {value!r}")
    return lo, hi


def _check_prob(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")


@dataclass(frozen=True)
class PatternConfig:
    """SBM PATTERN parameters (defaults: the paper). Sizes are inclusive ``(min, max)``."""

    num_communities: int = 5
    community_size: tuple[int, int] = (5, 34)
    p: float = 0.5
    q: float = 0.35
    vocab_size: int = 3
    num_patterns: int = 100
    pattern_size: tuple[int, int] = (20, 20)
    p_pattern: float = 0.5
    q_pattern: float = 0.5
    split_sizes: tuple[int, int, int] = (10000, 2000, 2000)

    def __post_init__(self) -> None:
        object.__setattr__(self, "community_size", _check_range("community_size", self.community_size))
        object.__setattr__(self, "pattern_size", _check_range("pattern_size", self.pattern_size))
        object.__setattr__(self, "split_sizes", tuple(int(s) for s in self.split_sizes))
        for name in ("p", "q", "p_pattern", "q_pattern"):
            _check_prob(name, getattr(self, name))
        if not 1 <= self.vocab_size <= 127:        # features are stored as int8
            raise ValueError(f"vocab_size: expected 1..127, got {self.vocab_size}")
        if self.num_communities < 1 or self.num_patterns < 1:
            raise ValueError("num_communities and num_patterns must be >= 1, got "
                             f"{self.num_communities}, {self.num_patterns}")
        if self.num_communities * self.community_size[1] + self.pattern_size[1] > _MAX_NODES:
            raise ValueError(f"graphs would exceed {_MAX_NODES} nodes")
        if len(self.split_sizes) != 3 or min(self.split_sizes) < 1:
            raise ValueError(f"split_sizes: expected 3 positive counts, got {self.split_sizes}")


@dataclass(frozen=True)
class ClusterConfig:
    """SBM CLUSTER parameters (defaults: the paper). Sizes are inclusive ``(min, max)``."""

    num_communities: int = 6
    community_size: tuple[int, int] = (5, 34)
    p: float = 0.55
    q: float = 0.25
    split_sizes: tuple[int, int, int] = (10000, 1000, 1000)

    def __post_init__(self) -> None:
        object.__setattr__(self, "community_size", _check_range("community_size", self.community_size))
        object.__setattr__(self, "split_sizes", tuple(int(s) for s in self.split_sizes))
        for name in ("p", "q"):
            _check_prob(name, getattr(self, name))
        if not 1 <= self.num_communities <= 126:   # features 1..K are stored as int8
            raise ValueError(f"num_communities: expected 1..126, got {self.num_communities}")
        if self.num_communities * self.community_size[1] > _MAX_NODES:
            raise ValueError(f"graphs would exceed {_MAX_NODES} nodes")
        if len(self.split_sizes) != 3 or min(self.split_sizes) < 1:
            raise ValueError(f"split_sizes: expected 3 positive counts, got {self.split_sizes}")


# ---- generation -----------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _triu(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the ``n (n - 1) / 2`` pairs ``i < j`` in row-major order (int32)."""
    rows, cols = np.triu_indices(n, k=1)
    return rows.astype(np.int32), cols.astype(np.int32)


@lru_cache(maxsize=None)
def _triu_mask(n: int) -> np.ndarray:
    """``(n, n)`` bool, True strictly above the diagonal."""
    return np.triu(np.ones((n, n), dtype=bool), k=1)


@dataclass
class SBMArrays:
    """A split as flat arrays: ``x``, ``y`` (N,) int8, ``node_ptr`` (G + 1,), ``adj_bits`` (B,)
    uint8 (packed upper triangles), ``adj_ptr`` (G + 1,) byte offsets, ``edge_counts`` (G,)
    undirected edges per graph."""

    x: np.ndarray
    y: np.ndarray
    node_ptr: np.ndarray
    adj_bits: np.ndarray
    adj_ptr: np.ndarray
    edge_counts: np.ndarray

    def __len__(self) -> int:
        return len(self.node_ptr) - 1

    def graph(self, i: int) -> Data:
        """Graph ``i`` as ``Data(x (n,), edge_index (2, E), y (n,))``, all long."""
        n0, n1 = int(self.node_ptr[i]), int(self.node_ptr[i + 1])
        n = n1 - n0
        bits = np.unpackbits(self.adj_bits[self.adj_ptr[i]:self.adj_ptr[i + 1]], count=n * (n - 1) // 2)
        adj = np.zeros((n, n), dtype=bool)
        adj[_triu_mask(n)] = bits.view(bool)       # boolean-mask assignment fills in row-major triu order
        adj |= adj.T
        flat = np.flatnonzero(adj)                 # row-major: sorted by (source, target)
        edge_index = np.empty((2, len(flat)), dtype=np.int64)
        np.floor_divide(flat, n, out=edge_index[0])
        np.subtract(flat, edge_index[0] * n, out=edge_index[1])
        edge_index = torch.from_numpy(edge_index)
        return Data(x=torch.from_numpy(self.x[n0:n1].astype(np.int64)), edge_index=edge_index,
                    y=torch.from_numpy(self.y[n0:n1].astype(np.int64)))

    def to_state(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k))) for k in
                ("x", "y", "node_ptr", "adj_bits", "adj_ptr", "edge_counts")}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "SBMArrays":
        arrays = cls(**{k: state[k].numpy() for k in
                        ("x", "y", "node_ptr", "adj_bits", "adj_ptr", "edge_counts")})
        sizes = np.diff(arrays.node_ptr)
        nbytes = (sizes * (sizes - 1) // 2 + 7) // 8
        if (arrays.node_ptr[0] != 0 or arrays.node_ptr[-1] != len(arrays.x) or len(arrays.y) != len(arrays.x)
                or arrays.adj_ptr[0] != 0 or not np.array_equal(np.diff(arrays.adj_ptr), nbytes)
                or arrays.adj_ptr[-1] != len(arrays.adj_bits) or len(arrays.edge_counts) != len(sizes)):
            raise ValueError("inconsistent array sizes")
        return arrays


class _Builder:
    """Collects graphs drawn in their final (shuffled) node order."""

    def __init__(self) -> None:
        self.x, self.y, self.bits, self.sizes, self.nbytes, self.edges = [], [], [], [], [], []

    def add(self, x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> None:
        packed = np.packbits(edges)
        self.x.append(x.astype(np.int8))
        self.y.append(y.astype(np.int8))
        self.bits.append(packed)
        self.sizes.append(len(x))
        self.nbytes.append(len(packed))
        self.edges.append(int(np.count_nonzero(edges)))

    def build(self) -> SBMArrays:
        return SBMArrays(x=np.concatenate(self.x), y=np.concatenate(self.y),
                         node_ptr=np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64),
                         adj_bits=np.concatenate(self.bits),
                         adj_ptr=np.concatenate([[0], np.cumsum(self.nbytes)]).astype(np.int64),
                         edge_counts=np.asarray(self.edges, dtype=np.int32))


def _check_args(num_graphs: int, seed: int, split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    if not isinstance(num_graphs, (int, np.integer)) or num_graphs < 1:
        raise ValueError(f"num_graphs: expected a positive int, got {num_graphs!r}")


def _rng(seed: int, dataset: str, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_DATASET_ID[dataset], stream)))


def _communities(rng: np.random.Generator, k: int, size: tuple[int, int]) -> np.ndarray:
    """Community id of each node, in blocks: ``(n,)`` with ``n`` = sum of ``k`` random sizes."""
    sizes = rng.integers(size[0], size[1] + 1, size=k)
    return np.repeat(np.arange(k), sizes)


def sample_patterns(seed: int, config: PatternConfig = PatternConfig()) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``num_patterns`` patterns of a seed: ``(adj (m, m) bool symmetric, features (m,))``."""
    rng = _rng(seed, "SBM_PATTERN", _PATTERN_STREAM)
    patterns = []
    for _ in range(config.num_patterns):
        m = int(rng.integers(config.pattern_size[0], config.pattern_size[1] + 1))
        upper = np.triu(rng.random((m, m)) < config.p_pattern, k=1)
        patterns.append((upper | upper.T, rng.integers(config.vocab_size, size=m)))
    return patterns


def draw_pattern_graph(rng: np.random.Generator, pattern: tuple[np.ndarray, np.ndarray],
                       config: PatternConfig = PatternConfig()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One PATTERN graph holding ``pattern``, nodes already shuffled.

    Returns ``block (n,)`` (community ``0..K-1`` of G's nodes, ``-1 - j`` for pattern node ``j``),
    ``features (n,)`` and ``edges (n (n - 1) / 2,)`` bool over the pairs ``i < j`` in row-major
    order. The label of a node is ``block < 0``.
    """
    w0, u0 = pattern
    block = _communities(rng, config.num_communities, config.community_size)   # (n_G,) community ids
    n_g, m = len(block), len(u0)
    # Pattern node j gets the id -1 - j, so "same id" means "same community" for G's nodes only.
    block = np.concatenate([block, -1 - np.arange(m)])
    feats = np.concatenate([rng.integers(config.vocab_size, size=n_g), u0])
    perm = rng.permutation(n_g + m)                                # position i holds node perm[i]
    block, feats = block[perm], feats[perm]
    rows, cols = _triu(n_g + m)
    bi, bj = block[rows], block[cols]
    prob = np.where(bi == bj, config.p, config.q)
    in_i, in_j = bi < 0, bj < 0
    prob[in_i != in_j] = config.q_pattern
    both = in_i & in_j
    prob[both] = w0[-1 - bi[both], -1 - bj[both]]                  # the pattern's own edges: 0 or 1
    return block, feats, rng.random(len(prob)) < prob


def draw_cluster_graph(rng: np.random.Generator,
                       config: ClusterConfig = ClusterConfig()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One CLUSTER graph: ``block (n,)`` community ids (the labels), ``features (n,)`` and
    ``edges (n (n - 1) / 2,)`` bool over the pairs ``i < j`` in row-major order."""
    k = config.num_communities
    block = rng.permutation(_communities(rng, k, config.community_size))   # shuffled community ids
    n = len(block)
    rows, cols = _triu(n)
    edges = rng.random(len(rows)) < np.where(block[rows] == block[cols], config.p, config.q)
    # One random node per community is revealed: sort by (community, random key), take the first
    # node of each community's run.
    order = np.lexsort((rng.random(n), block))
    starts = np.concatenate([[0], np.cumsum(np.bincount(block, minlength=k))[:-1]])
    feats = np.zeros(n, dtype=np.int64)
    feats[order[starts]] = np.arange(1, k + 1)
    return block, feats, edges


def generate_pattern(num_graphs: int, seed: int, split: str, config: PatternConfig = PatternConfig()) -> SBMArrays:
    """Draw ``num_graphs`` PATTERN graphs of ``split``; graph ``i`` holds pattern
    ``i * num_patterns // num_graphs`` of ``sample_patterns(seed, config)``."""
    _check_args(num_graphs, seed, split)
    rng = _rng(seed, "SBM_PATTERN", _SPLIT_STREAM[split])
    patterns = sample_patterns(seed, config)
    out = _Builder()
    for i in range(num_graphs):
        block, feats, edges = draw_pattern_graph(rng, patterns[i * config.num_patterns // num_graphs], config)
        out.add(feats, block < 0, edges)
    return out.build()


def generate_cluster(num_graphs: int, seed: int, split: str, config: ClusterConfig = ClusterConfig()) -> SBMArrays:
    """Draw ``num_graphs`` CLUSTER graphs of ``split``."""
    _check_args(num_graphs, seed, split)
    rng = _rng(seed, "SBM_CLUSTER", _SPLIT_STREAM[split])
    out = _Builder()
    for _ in range(num_graphs):
        block, feats, edges = draw_cluster_graph(rng, config)
        out.add(feats, block, edges)
    return out.build()


# ---- datasets -----------------------------------------------------------------------------------
def _normalise(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


class _SBMDataset(Dataset):
    name: str = ""
    num_classes: int = 0
    num_node_types: int = 0      # size of the node-feature vocabulary (for an embedding table)

    def __init__(self, root: Union[str, Path], split: str = "train", transform: Optional[Callable] = None,
                 generate: bool = True, seed: int = 0, num_graphs: Optional[int] = None,
                 config: Any = None) -> None:
        _check_args(1 if num_graphs is None else num_graphs, seed, split)
        self.config = config if config is not None else self._default_config()
        if not isinstance(self.config, type(self._default_config())):
            raise TypeError(f"config: expected {type(self._default_config()).__name__}, got "
                            f"{type(self.config).__name__}")
        default = self.config.split_sizes[SPLITS.index(split)]
        self.root, self.split, self.transform = Path(root), split, transform
        self.seed, self.num_graphs = int(seed), int(num_graphs if num_graphs is not None else default)
        self.path = self.root / self.name / f"{split}.pt"
        self.manifest = self._expected_manifest()
        self.arrays = self._load_or_generate(generate)

    # subclasses
    @staticmethod
    def _default_config() -> Any:
        raise NotImplementedError

    def _generate(self) -> SBMArrays:
        raise NotImplementedError

    def _expected_manifest(self) -> dict[str, Any]:
        return _normalise({"generator": "mambakit.graphs.sbm", "generator_version": GENERATOR_VERSION,
                           "name": self.name, "split": self.split, "seed": self.seed,
                           "num_graphs": self.num_graphs, "config": asdict(self.config)})

    def _load_or_generate(self, generate: bool) -> SBMArrays:
        if self.path.is_file():
            problem = None
            try:
                state = torch.load(self.path, weights_only=True, map_location="cpu")
                found = {k: v for k, v in state["manifest"].items() if k in self.manifest}
                if found != self.manifest:
                    diff = sorted(k for k in self.manifest if found.get(k) != self.manifest[k])
                    problem = f"its manifest differs from the request in {diff}"
                else:
                    return SBMArrays.from_state(state)
            except Exception as exc:  # unreadable / truncated / foreign file
                problem = f"it cannot be read ({type(exc).__name__}: {exc})"
            if not generate:
                raise ValueError(f"cached {self.name} split {self.path} does not match: {problem}; "
                                 "pass generate=True to regenerate it")
            warnings.warn(f"regenerating {self.path}: {problem}", stacklevel=3)
        elif not generate:
            raise FileNotFoundError(f"no cached {self.name} split at {self.path}; pass generate=True to "
                                    "generate it")
        arrays = self._generate()
        self._save(arrays)
        return arrays

    def _save(self, arrays: SBMArrays) -> None:
        manifest = dict(self.manifest, num_nodes=int(arrays.node_ptr[-1]),
                        num_edges=int(2 * arrays.edge_counts.sum()))
        state = dict(arrays.to_state(), manifest=manifest)
        atomic_write(self.path, lambda fh: torch.save(state, fh))
        index = self.path.with_name("manifest.json")
        try:
            entries = json.loads(index.read_text()) if index.is_file() else {}
            if not isinstance(entries, dict):
                entries = {}
        except (OSError, ValueError):
            entries = {}
        entries[self.split] = manifest
        text = json.dumps(entries, indent=2, sort_keys=True) + "\n"
        atomic_write(index, lambda fh: fh.write(text.encode()))

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, idx: int) -> Data:
        if not -len(self) <= idx < len(self):
            raise IndexError(f"index {idx} out of range for {len(self)} graphs")
        data = self.arrays.graph(idx % len(self))
        return self.transform(data) if self.transform is not None else data

    def summary(self) -> dict[str, Any]:
        """Counts: graphs, total/mean/min/max nodes, directed edges (total and mean), label shares."""
        sizes = np.diff(self.arrays.node_ptr)
        edges = 2 * self.arrays.edge_counts.astype(np.int64)
        labels = np.bincount(self.arrays.y.astype(np.int64), minlength=self.num_classes)
        return {"dataset": self.name, "split": self.split, "num_graphs": len(self),
                "num_nodes": int(sizes.sum()), "mean_nodes": float(sizes.mean()),
                "min_nodes": int(sizes.min()), "max_nodes": int(sizes.max()),
                "num_edges": int(edges.sum()), "mean_edges": float(edges.mean()),
                "label_fractions": [float(c) for c in labels / labels.sum()]}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)}, split={self.split!r}, seed={self.seed}, root={str(self.root)!r})"


class SBMPattern(_SBMDataset):
    """SBM PATTERN (2 classes, node features in ``{0, 1, 2}``), split ``train`` / ``val`` / ``test``.

    ``root``: cache folder (``root/SBM_PATTERN/<split>.pt``); ``generate``: draw the split when
    it is not cached (else ``FileNotFoundError``); ``seed``: the dataset seed (patterns and
    splits derive independent streams from it); ``num_graphs``: a smaller split for tests
    (default: the paper's count); ``config``: a ``PatternConfig``. Items are
    ``Data(x (n,), edge_index (2, E), y (n,))``, passed through ``transform`` when given.
    """

    name = "SBM_PATTERN"
    num_classes = 2

    @staticmethod
    def _default_config() -> PatternConfig:
        return PatternConfig()

    @property
    def num_node_types(self) -> int:  # type: ignore[override]
        return self.config.vocab_size

    def _generate(self) -> SBMArrays:
        return generate_pattern(self.num_graphs, self.seed, self.split, self.config)


class SBMCluster(_SBMDataset):
    """SBM CLUSTER (6 classes; node features 0 = unknown, ``c + 1`` = revealed community ``c``).

    Same arguments as ``SBMPattern`` with a ``ClusterConfig``; cached at
    ``root/SBM_CLUSTER/<split>.pt``. Items are ``Data(x (n,), edge_index (2, E), y (n,))``.
    """

    name = "SBM_CLUSTER"

    @staticmethod
    def _default_config() -> ClusterConfig:
        return ClusterConfig()

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return self.config.num_communities

    @property
    def num_node_types(self) -> int:  # type: ignore[override]
        return self.config.num_communities + 1

    def _generate(self) -> SBMArrays:
        return generate_cluster(self.num_graphs, self.seed, self.split, self.config)


DATASETS = {"PATTERN": SBMPattern, "CLUSTER": SBMCluster}


def describe(root: Union[str, Path], names: Sequence[str] = ("PATTERN", "CLUSTER"), seed: int = 0,
             generate: bool = True, num_graphs: Optional[int] = None,
             file: Optional[TextIO] = None) -> list[dict[str, Any]]:
    """Print (and return) the size of every split of ``names``: graphs, nodes, directed edges.

    Generates missing splits when ``generate``; ``num_graphs`` overrides every split's count.
    """
    rows = []
    for name in names:
        if name not in DATASETS:
            raise ValueError(f"names: expected entries of {sorted(DATASETS)}, got {name!r}")
        for split in SPLITS:
            rows.append(DATASETS[name](root, split, generate=generate, seed=seed, num_graphs=num_graphs).summary())
    out = file if file is not None else sys.stdout
    print(f"{'dataset':<12} {'split':<5} {'graphs':>7} {'nodes':>9} {'mean n':>7} {'min':>4} {'max':>4} "
          f"{'mean E':>8}  label fractions", file=out)
    for r in rows:
        fractions = " ".join(f"{f:.3f}" for f in r["label_fractions"])
        print(f"{r['dataset']:<12} {r['split']:<5} {r['num_graphs']:>7} {r['num_nodes']:>9} {r['mean_nodes']:>7.2f} "
              f"{r['min_nodes']:>4} {r['max_nodes']:>4} {r['mean_edges']:>8.1f}  {fractions}", file=out)
    return rows
