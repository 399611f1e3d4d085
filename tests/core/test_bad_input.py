"""Bad input raises ValueError / TypeError (never a silent wrong answer or a deep RuntimeError)
at the public boundaries of the core."""
from __future__ import annotations

import json

import pytest
import torch

from mambakit import (InferenceParams, Mamba, Mamba2, MambaBackbone, MambaConfig, MambaLMHeadModel,
                      MultiOrderMixer, Permutation, causal_conv1d, causal_conv1d_update, selective_scan,
                      selective_state_update, seq_idx_from_cu_seqlens)

NAN = float("nan")


def with_nan(t: torch.Tensor, value: float = NAN) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[t.numel() // 2] = value
    return t


# ----------------------------------------------------------------------------- selective_scan

B_, D_, N_, L_ = 2, 4, 3, 5


def scan_args(**overrides):
    g = torch.Generator().manual_seed(0)
    args = dict(u=torch.randn(B_, D_, L_, generator=g), delta=torch.rand(B_, D_, L_, generator=g) + 0.1,
                A=-torch.rand(D_, N_, generator=g) - 0.1, B=torch.randn(B_, N_, L_, generator=g),
                C=torch.randn(B_, N_, L_, generator=g))
    args.update(overrides)
    return args


def _a(**kw):
    return kw


SCAN_BAD = [
    ("u rank", ValueError, lambda a: _a(u=a["u"][0])),
    ("delta shape", ValueError, lambda a: _a(delta=a["delta"][..., :4])),
    ("A rank", ValueError, lambda a: _a(A=a["A"][:, 0])),
    ("A channels", ValueError, lambda a: _a(A=a["A"][:3])),
    ("B state size", ValueError, lambda a: _a(B=torch.randn(B_, N_ + 1, L_))),
    ("C length", ValueError, lambda a: _a(C=a["C"][..., :4])),
    ("B rank", ValueError, lambda a: _a(B=a["B"][0])),
    ("groups do not divide", ValueError, lambda a: _a(B=torch.randn(B_, 3, N_, L_), C=torch.randn(B_, 3, N_, L_))),
    ("B/C groups differ", ValueError, lambda a: _a(B=torch.randn(B_, 2, N_, L_), C=torch.randn(B_, 4, N_, L_))),
    ("D shape", ValueError, lambda a: _a(D=torch.randn(D_ + 1))),
    ("z shape", ValueError, lambda a: _a(z=a["u"][..., :4])),
    ("delta_bias shape", ValueError, lambda a: _a(delta_bias=torch.randn(D_ - 1))),
    ("initial_state shape", ValueError, lambda a: _a(initial_state=torch.randn(B_, D_, N_ + 1))),
    ("seq_idx shape", ValueError, lambda a: _a(seq_idx=torch.zeros(B_, L_ + 1, dtype=torch.long))),
    ("u int", TypeError, lambda a: _a(u=a["u"].long())),
    ("delta int", TypeError, lambda a: _a(delta=a["delta"].to(torch.int32))),
    ("A int", TypeError, lambda a: _a(A=a["A"].long())),
    ("B bool", TypeError, lambda a: _a(B=a["B"] > 0)),
    ("A complex", TypeError, lambda a: _a(A=a["A"].to(torch.complex64))),
    ("seq_idx float", TypeError, lambda a: _a(seq_idx=torch.zeros(B_, L_))),
    ("u not a tensor", TypeError, lambda a: _a(u=a["u"].tolist())),
    ("empty sequence", ValueError, lambda a: _a(u=a["u"][..., :0], delta=a["delta"][..., :0], B=a["B"][..., :0],
                                                C=a["C"][..., :0])),
    ("NaN in u", ValueError, lambda a: _a(u=with_nan(a["u"]))),
    ("Inf in u", ValueError, lambda a: _a(u=with_nan(a["u"], float("inf")))),
    ("NaN in delta", ValueError, lambda a: _a(delta=with_nan(a["delta"]))),
    ("cu_seqlens with batch 2", ValueError, lambda a: _a(cu_seqlens=torch.tensor([0, 2, 5]))),
    ("unknown impl", ValueError, lambda a: _a(impl="fast")),
]


@pytest.mark.parametrize("impl", ["reference", "cpu"])
@pytest.mark.parametrize("name,exc,change", SCAN_BAD, ids=[c[0] for c in SCAN_BAD])
def test_selective_scan_rejects(impl, name, exc, change):
    args = scan_args()
    args["impl"] = impl
    args.update(change(args))
    selective_scan(**scan_args(), impl=impl)  # the unchanged call is fine
    with pytest.raises(exc):
        selective_scan(**args)


def test_selective_scan_cu_seqlens_errors():
    one = {k: v[:1] for k, v in scan_args().items() if k in ("u", "delta", "B", "C")}
    one["A"] = scan_args()["A"]
    with pytest.raises(ValueError):
        selective_scan(**one, cu_seqlens=torch.tensor([0, 5]), seq_idx=torch.zeros(1, L_, dtype=torch.long))
    with pytest.raises(ValueError):
        selective_scan(**one, cu_seqlens=torch.tensor([0, 7]))   # longer than the sequence
    with pytest.raises(TypeError):
        selective_scan(**one, cu_seqlens=torch.tensor([0.0, 5.0]))
    with pytest.raises(ValueError):
        seq_idx_from_cu_seqlens(torch.tensor([0, 3, 2]))          # decreasing
    with pytest.raises(ValueError):
        seq_idx_from_cu_seqlens(torch.tensor([1, 3]))             # not starting at 0
    with pytest.raises(ValueError):
        seq_idx_from_cu_seqlens(torch.tensor([0]))


# ----------------------------------------------------------------------------- causal conv1d

def conv_args(**overrides):
    g = torch.Generator().manual_seed(1)
    args = dict(x=torch.randn(2, 4, 6, generator=g), weight=torch.randn(4, 3, generator=g))
    args.update(overrides)
    return args


CONV_BAD = [
    ("x rank", ValueError, dict(x=torch.randn(4, 6))),
    ("weight rank", ValueError, dict(weight=torch.randn(4))),
    ("weight channels", ValueError, dict(weight=torch.randn(3, 3))),
    ("zero width", ValueError, dict(weight=torch.randn(4, 0))),
    ("bias shape", ValueError, dict(bias=torch.randn(5))),
    ("initial_state width", ValueError, dict(initial_state=torch.randn(2, 4, 3))),
    ("initial_state batch", ValueError, dict(initial_state=torch.randn(3, 4, 2))),
    ("x int", TypeError, dict(x=torch.ones(2, 4, 6, dtype=torch.long))),
    ("weight int", TypeError, dict(weight=torch.ones(4, 3, dtype=torch.long))),
    ("empty sequence", ValueError, dict(x=torch.randn(2, 4, 0))),
    ("NaN in x", ValueError, dict(x=with_nan(torch.randn(2, 4, 6)))),
    ("activation", ValueError, dict(activation="gelu")),
    ("seq_idx float", TypeError, dict(seq_idx=torch.zeros(2, 6))),
    ("seq_idx shape", ValueError, dict(seq_idx=torch.zeros(2, 5, dtype=torch.long))),
]


@pytest.mark.parametrize("name,exc,change", CONV_BAD, ids=[c[0] for c in CONV_BAD])
def test_causal_conv1d_rejects(name, exc, change):
    causal_conv1d(**conv_args())
    with pytest.raises(exc):
        causal_conv1d(**conv_args(**change))


UPDATE_BAD = [
    ("x rank", ValueError, dict(x=torch.randn(2, 4, 1))),
    ("state rank", ValueError, dict(conv_state=torch.randn(2, 4))),
    ("state width", ValueError, dict(conv_state=torch.randn(2, 4, 4))),
    ("state batch", ValueError, dict(conv_state=torch.randn(3, 4, 3))),
    ("weight channels", ValueError, dict(weight=torch.randn(5, 3))),
    ("bias shape", ValueError, dict(bias=torch.randn(3))),
    ("x int", TypeError, dict(x=torch.ones(2, 4, dtype=torch.long))),
    ("state int", TypeError, dict(conv_state=torch.ones(2, 4, 3, dtype=torch.long))),
    ("NaN in x", ValueError, dict(x=with_nan(torch.randn(2, 4)))),
    ("activation", ValueError, dict(activation="tanh")),
]


@pytest.mark.parametrize("name,exc,change", UPDATE_BAD, ids=[c[0] for c in UPDATE_BAD])
def test_causal_conv1d_update_rejects(name, exc, change):
    def args(**kw):
        a = dict(x=torch.randn(2, 4), conv_state=torch.randn(2, 4, 3), weight=torch.randn(4, 3))
        a.update(kw)
        return a

    causal_conv1d_update(**args())
    with pytest.raises(exc):
        causal_conv1d_update(**args(**change))


# ----------------------------------------------------------------------------- selective_state_update

STATE_BAD = [
    ("state rank", ValueError, dict(state=torch.randn(2, 4))),
    ("x rank", ValueError, dict(x=torch.randn(2, 4, 1))),
    ("x channels", ValueError, dict(x=torch.randn(2, 5))),
    ("dt batch", ValueError, dict(dt=torch.rand(3, 4))),
    ("A shape", ValueError, dict(A=-torch.rand(4, 2))),
    ("B state size", ValueError, dict(B=torch.randn(2, 2))),
    ("C groups do not divide", ValueError, dict(C=torch.randn(2, 3, 3))),
    ("D shape", ValueError, dict(D=torch.randn(5))),
    ("dt_bias shape", ValueError, dict(dt_bias=torch.randn(3))),
    ("z shape", ValueError, dict(z=torch.randn(2, 3))),
    ("x int", TypeError, dict(x=torch.ones(2, 4, dtype=torch.long))),
    ("state int", TypeError, dict(state=torch.ones(2, 4, 3, dtype=torch.long))),
    ("NaN in x", ValueError, dict(x=with_nan(torch.randn(2, 4)))),
    ("NaN in dt", ValueError, dict(dt=with_nan(torch.rand(2, 4)))),
]


@pytest.mark.parametrize("name,exc,change", STATE_BAD, ids=[c[0] for c in STATE_BAD])
def test_selective_state_update_rejects(name, exc, change):
    def args(**kw):
        a = dict(state=torch.randn(2, 4, 3), x=torch.randn(2, 4), dt=torch.rand(2, 4), A=-torch.rand(4, 3),
                 B=torch.randn(2, 3), C=torch.randn(2, 3))
        a.update(kw)
        return a

    selective_state_update(**args())
    with pytest.raises(exc):
        selective_state_update(**args(**change))


# ----------------------------------------------------------------------------- mixers' step

@pytest.mark.parametrize("cls,kw", [(Mamba, dict(d_state=4)), (Mamba2, dict(d_state=4, headdim=4))])
@pytest.mark.parametrize("name,exc,make", [
    ("rank", ValueError, lambda: torch.randn(2, 8)),
    ("feature dim", ValueError, lambda: torch.randn(2, 1, 7)),
    ("no tokens", ValueError, lambda: torch.randn(2, 0, 8)),
    ("int dtype", TypeError, lambda: torch.ones(2, 1, 8, dtype=torch.long)),
    ("batch mismatch", ValueError, lambda: torch.randn(3, 1, 8)),
    ("NaN single token", ValueError, lambda: with_nan(torch.randn(2, 1, 8))),
    ("NaN multi token", ValueError, lambda: with_nan(torch.randn(2, 3, 8))),
    ("not a tensor", TypeError, lambda: [[0.0] * 8]),
])
def test_step_rejects(cls, kw, name, exc, make):
    mixer = cls(8, layer_idx=0, **kw)
    conv_state, ssm_state = mixer.allocate_inference_cache(2)
    mixer.step(torch.randn(2, 1, 8), conv_state, ssm_state)
    with pytest.raises(exc):
        mixer.step(make(), conv_state, ssm_state)


def test_step_rejects_wrong_state_shapes():
    mixer = Mamba(8, d_state=4, layer_idx=0)
    conv_state, ssm_state = mixer.allocate_inference_cache(2)
    with pytest.raises(ValueError):
        mixer.step(torch.randn(2, 1, 8), torch.zeros(2, 16, 3), ssm_state)
    with pytest.raises(ValueError):
        mixer.step(torch.randn(2, 1, 8), conv_state, torch.zeros(2, 16, 5))


def test_inference_params_needs_layer_idx_and_batch():
    mixer = Mamba(8, d_state=4)
    with pytest.raises(ValueError):
        mixer(torch.randn(1, 2, 8), inference_params=InferenceParams())
    mixer = Mamba(8, d_state=4, layer_idx=0)
    params = InferenceParams()
    mixer(torch.randn(2, 2, 8), inference_params=params)
    with pytest.raises(ValueError):
        mixer(torch.randn(3, 1, 8), inference_params=params)


# ----------------------------------------------------------------------------- backbone and LM

@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    return MambaLMHeadModel(MambaConfig(d_model=8, n_layer=1, vocab_size=10, ssm_cfg={"d_state": 4})).eval()


@pytest.mark.parametrize("name,exc,make", [
    ("negative id", ValueError, lambda: torch.tensor([[1, -1]])),
    ("id past the padded table", ValueError, lambda: torch.tensor([[1, 16]])),
    ("id in the padding (>= vocab_size)", ValueError, lambda: torch.tensor([[1, 10]])),
    ("ids rank", ValueError, lambda: torch.zeros(1, 3, 1, dtype=torch.long)),
    ("empty ids", ValueError, lambda: torch.zeros(1, 0, dtype=torch.long)),
    ("bool ids", TypeError, lambda: torch.zeros(1, 3, dtype=torch.bool)),
    ("int16 ids", TypeError, lambda: torch.zeros(1, 3, dtype=torch.int16)),
    ("features of the wrong dim", ValueError, lambda: torch.randn(1, 3, 7)),
    ("features rank", ValueError, lambda: torch.randn(3, 8)),
    ("empty features", ValueError, lambda: torch.randn(1, 0, 8)),
    ("NaN features", ValueError, lambda: with_nan(torch.randn(1, 3, 8))),
    ("not a tensor", TypeError, lambda: [[1, 2]]),
])
def test_backbone_rejects(lm, name, exc, make):
    lm.backbone(torch.tensor([[0, 9]]))
    with pytest.raises(exc):
        lm.backbone(make())


def test_backbone_without_embedding_rejects_ids():
    model = MambaBackbone(MambaConfig(d_model=8, n_layer=1, vocab_size=0, ssm_cfg={"d_state": 4}))
    with pytest.raises(TypeError):
        model(torch.tensor([[1, 2]]))


@pytest.mark.parametrize("name,exc,call", [
    ("1-D ids", ValueError, lambda m: m.generate(torch.tensor([1, 2]), max_new_tokens=2)),
    ("empty prompt", ValueError, lambda m: m.generate(torch.zeros(1, 0, dtype=torch.long), max_new_tokens=2)),
    ("both lengths", ValueError, lambda m: m.generate(torch.tensor([[1]]), max_new_tokens=2, max_length=3)),
    ("no length", ValueError, lambda m: m.generate(torch.tensor([[1]]))),
    ("max_length < prompt", ValueError, lambda m: m.generate(torch.tensor([[1, 2, 3]]), max_length=2)),
    ("negative max_new_tokens", ValueError, lambda m: m.generate(torch.tensor([[1]]), max_new_tokens=-1)),
    ("temperature 0", ValueError, lambda m: m.generate(torch.tensor([[1]]), max_new_tokens=1, top_k=0,
                                                       temperature=0.0)),
    ("negative top_k", ValueError, lambda m: m.generate(torch.tensor([[1]]), max_new_tokens=1, top_k=-2)),
    ("top_p > 1", ValueError, lambda m: m.generate(torch.tensor([[1]]), max_new_tokens=1, top_k=0, top_p=1.5)),
    ("id out of range", ValueError, lambda m: m.generate(torch.tensor([[1, 12]]), max_new_tokens=1)),
    ("float ids", (ValueError, TypeError), lambda m: m.generate(torch.tensor([[1.0, 2.0]]), max_new_tokens=1)),
])
def test_generate_rejects(lm, name, exc, call):
    with pytest.raises(exc):
        call(lm)


# ----------------------------------------------------------------------------- scan orders

@pytest.mark.parametrize("name,exc,perm", [
    ("duplicate", ValueError, torch.tensor([0, 0, 1])),
    ("out of range", ValueError, torch.tensor([1, 2, 3])),
    ("negative", ValueError, torch.tensor([-1, 0, 1])),
    ("row not a permutation", ValueError, torch.tensor([[0, 1, 2], [2, 2, 0]])),
    ("float", TypeError, torch.tensor([0.0, 1.0])),
    ("rank 3", ValueError, torch.zeros(1, 1, 1, dtype=torch.long)),
])
def test_permutation_rejects(name, exc, perm):
    with pytest.raises(exc):
        Permutation(perm)


def test_permutation_rejects_at_use():
    x = torch.randn(2, 3, 4)
    bad_fn = Permutation(lambda n: torch.zeros(n, dtype=torch.long))  # a function giving a non-permutation
    with pytest.raises(ValueError):
        bad_fn.apply(x)
    with pytest.raises(ValueError):
        Permutation(torch.tensor([1, 0])).apply(x)                        # wrong length
    per_sample = Permutation(torch.stack([torch.randperm(3) for _ in range(3)]))
    with pytest.raises(ValueError):
        per_sample.apply(x)                                               # 3 permutations, batch of 2
    with pytest.raises(ValueError):
        per_sample.invert(x)


def test_multi_order_mixer_rejects():
    with pytest.raises(ValueError):
        MultiOrderMixer(4, lambda d: torch.nn.Identity(), ["forward"], merge="product")
    with pytest.raises(ValueError):
        MultiOrderMixer(4, lambda d: torch.nn.Identity(), ["diagonal"])


# ----------------------------------------------------------------------------- config and loading

@pytest.mark.parametrize("kw", [
    dict(d_model=0), dict(d_model=-4), dict(d_model=2.5), dict(n_layer=0), dict(n_layer="2"),
    dict(vocab_size=-1), dict(vocab_size=2.5), dict(d_intermediate=-1),
    dict(ssm_cfg={"layer": "Mamba3"}), dict(attn_layer_idx=[1]),
    dict(vocab_size=10, pad_vocab_size_multiple=0), dict(merge="max"),
], ids=str)
def test_config_rejects_bad_values(kw):
    with pytest.raises((ValueError, TypeError)):
        MambaConfig(**kw)


def test_backbone_rejects_unknown_scan_order():
    with pytest.raises(ValueError):
        MambaBackbone(MambaConfig(d_model=8, n_layer=1, scan_orders=["sideways"]))


def test_lm_needs_a_vocabulary():
    with pytest.raises(ValueError):
        MambaLMHeadModel(MambaConfig(d_model=8, n_layer=1, vocab_size=0))


def test_from_pretrained_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError):          # no config.json (a missing file is an OSError)
        MambaLMHeadModel.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError):
        MambaLMHeadModel.from_pretrained(tmp_path / "does-not-exist")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError):
        MambaLMHeadModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2, 3]")
    with pytest.raises(ValueError):
        MambaLMHeadModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"d_model": 0, "n_layer": 1, "vocab_size": 10}))
    with pytest.raises(ValueError):
        MambaLMHeadModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"d_model": 8, "n_layer": 1, "vocab_size": 10}))
    with pytest.raises(FileNotFoundError):          # config but no weights
        MambaLMHeadModel.from_pretrained(tmp_path)
