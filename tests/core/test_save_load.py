"""save_pretrained / from_pretrained round trips, and loading mamba_ssm checkpoints by key name."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from mambakit import MambaBackbone, MambaConfig, MambaLMHeadModel
from mk_core_oracles import MAMBA2_KW, MAMBA_KW, randomize_


def ids_for(seed, vocab=37, shape=(2, 9)):
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def small_lm(seed, layer="Mamba1", **overrides):
    ssm_cfg = dict(MAMBA_KW, layer="Mamba1") if layer == "Mamba1" else dict(MAMBA2_KW, layer="Mamba2")
    cfg = dict(d_model=16, n_layer=2, vocab_size=37, ssm_cfg=ssm_cfg)
    cfg.update(overrides)
    torch.manual_seed(seed)
    return randomize_(MambaLMHeadModel(MambaConfig(**cfg)), seed, scale=0.5).eval()


@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2"])
@pytest.mark.parametrize("tie", [True, False])
def test_lm_round_trip_is_identical(layer, tie, seed, tmp_path):
    model = small_lm(seed, layer, tie_embeddings=tie, d_intermediate=24 if layer == "Mamba2" else 0)
    ids = ids_for(seed)
    with torch.no_grad():
        expected = model(ids)
    path = model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary directories left behind
    saved = json.loads((path / "config.json").read_text())
    assert saved["model_type"] == "mamba_lm" and saved["ssm_cfg"]["layer"] == layer

    loaded = MambaLMHeadModel.from_pretrained(path)
    assert not loaded.training
    assert loaded.config == model.config
    assert (loaded.lm_head.weight is loaded.backbone.embedding.weight) == tie
    with torch.no_grad():
        assert torch.equal(loaded(ids), expected)
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1


def test_backbone_round_trip_with_scan_orders(seed, tmp_path):
    torch.manual_seed(seed)
    model = randomize_(MambaBackbone(MambaConfig(d_model=16, n_layer=2, ssm_cfg=dict(MAMBA_KW),
                                                 scan_orders=["bidirectional"], merge="concat")), seed).eval()
    x = torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x)
    model.save_pretrained(tmp_path / "bb")
    loaded = MambaBackbone.from_pretrained(tmp_path / "bb")
    assert len(loaded.scan_orders) == 2
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


def test_overwrite_replaces_previous_save(seed, tmp_path):
    a, b = small_lm(seed), small_lm(seed + 1)
    a.save_pretrained(tmp_path / "m")
    b.save_pretrained(tmp_path / "m")
    loaded = MambaLMHeadModel.from_pretrained(tmp_path / "m")
    ids = ids_for(seed)
    with torch.no_grad():
        assert torch.equal(loaded(ids), b(ids))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_from_pretrained_dtype_and_overrides(seed, tmp_path):
    model = small_lm(seed)
    model.save_pretrained(tmp_path / "m")
    loaded = MambaLMHeadModel.from_pretrained(tmp_path / "m", dtype=torch.float64)
    assert loaded.lm_head.weight.dtype == torch.float64
    ids = ids_for(seed)
    with torch.no_grad():
        ref = loaded(ids)                      # the same weights, computed in float64
        err = (model(ids).double() - ref).abs().max()
    assert err <= 1e-4 * ref.abs().max()
    weights = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert "backbone.embedding.weight" in weights


# ----------------------------------------------------------------------------- mamba_ssm checkpoints

def mamba_ssm_keys(n_layer: int, layer: str) -> list[str]:
    """The parameter names of mamba_ssm's MambaLMHeadModel (written out by hand)."""
    if layer == "Mamba1":
        mixer = ["A_log", "D", "in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight",
                 "dt_proj.weight", "dt_proj.bias", "out_proj.weight"]
    else:
        mixer = ["dt_bias", "A_log", "D", "in_proj.weight", "conv1d.weight", "conv1d.bias", "norm.weight",
                 "out_proj.weight"]
    keys = ["backbone.embedding.weight"]
    for i in range(n_layer):
        keys += [f"backbone.layers.{i}.mixer.{k}" for k in mixer]
        keys.append(f"backbone.layers.{i}.norm.weight")
    keys += ["backbone.norm_f.weight", "lm_head.weight"]
    return keys


def mamba_ssm_shapes(d_model, n_layer, vocab, layer, d_state, d_conv=4, expand=2, headdim=8, ngroups=2):
    """mamba_ssm's parameter shapes for the same sizes."""
    d_inner = expand * d_model
    dt_rank = -(-d_model // 16)
    shapes = {"backbone.embedding.weight": (vocab, d_model), "backbone.norm_f.weight": (d_model,),
              "lm_head.weight": (vocab, d_model)}
    for i in range(n_layer):
        p = f"backbone.layers.{i}."
        shapes[p + "norm.weight"] = (d_model,)
        if layer == "Mamba1":
            shapes.update({
                p + "mixer.A_log": (d_inner, d_state), p + "mixer.D": (d_inner,),
                p + "mixer.in_proj.weight": (2 * d_inner, d_model),
                p + "mixer.conv1d.weight": (d_inner, 1, d_conv), p + "mixer.conv1d.bias": (d_inner,),
                p + "mixer.x_proj.weight": (dt_rank + 2 * d_state, d_inner),
                p + "mixer.dt_proj.weight": (d_inner, dt_rank), p + "mixer.dt_proj.bias": (d_inner,),
                p + "mixer.out_proj.weight": (d_model, d_inner)})
        else:
            nheads = d_inner // headdim
            conv_dim = d_inner + 2 * ngroups * d_state
            shapes.update({
                p + "mixer.dt_bias": (nheads,), p + "mixer.A_log": (nheads,), p + "mixer.D": (nheads,),
                p + "mixer.in_proj.weight": (2 * d_inner + 2 * ngroups * d_state + nheads, d_model),
                p + "mixer.conv1d.weight": (conv_dim, 1, d_conv), p + "mixer.conv1d.bias": (conv_dim,),
                p + "mixer.norm.weight": (d_inner,), p + "mixer.out_proj.weight": (d_model, d_inner)})
    return shapes


def fake_mamba_ssm_state_dict(seed, layer, n_layer=2, d_model=16, vocab=40, d_state=4):
    g = torch.Generator().manual_seed(seed)
    shapes = mamba_ssm_shapes(d_model, n_layer, vocab, layer, d_state)
    state = {}
    for k in mamba_ssm_keys(n_layer, layer):
        if k == "lm_head.weight":
            state[k] = state["backbone.embedding.weight"]  # tied, as mamba_ssm saves it
        elif k.endswith("A_log"):
            state[k] = torch.log(torch.rand(shapes[k], generator=g) * 4 + 0.5)
        elif k.endswith("dt_proj.bias") or k.endswith("dt_bias"):
            state[k] = torch.randn(shapes[k], generator=g) * 0.3 - 2.0
        elif k.endswith("norm.weight") or k.endswith("norm_f.weight"):
            state[k] = 1 + 0.2 * torch.randn(shapes[k], generator=g)
        else:
            state[k] = torch.randn(shapes[k], generator=g) * 0.3
    return state


MAMBA_SSM_CONFIGS = {
    "Mamba1": {"d_model": 16, "n_layer": 2, "vocab_size": 37, "ssm_cfg": {"d_state": 4},
               "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
               "pad_vocab_size_multiple": 8},
    "Mamba2": {"d_model": 16, "n_layer": 2, "vocab_size": 37,
               "ssm_cfg": {"layer": "Mamba2", "d_state": 4, "headdim": 8, "ngroups": 2},
               "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
               "pad_vocab_size_multiple": 8},
}


@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2"])
def test_mamba_ssm_key_names_and_shapes(layer):
    cfg = MambaConfig.from_dict(MAMBA_SSM_CONFIGS[layer])
    model = MambaLMHeadModel(cfg)
    expected = mamba_ssm_shapes(16, 2, 40, layer, 4)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(got) == set(mamba_ssm_keys(2, layer))
    assert got == expected


@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2"])
def test_load_mamba_ssm_state_dict_and_checkpoint_folder(layer, seed, tmp_path):
    state = fake_mamba_ssm_state_dict(seed, layer)
    model = MambaLMHeadModel(MambaConfig.from_dict(MAMBA_SSM_CONFIGS[layer])).eval()
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v), k

    folder = tmp_path / "mamba-ssm-ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(MAMBA_SSM_CONFIGS[layer]))
    torch.save(state, folder / "pytorch_model.bin")
    loaded = MambaLMHeadModel.from_pretrained(folder)
    ids = ids_for(seed)
    with torch.no_grad():
        expected = model(ids)
        assert torch.equal(loaded(ids), expected)
    # the weights really came from the checkpoint: a fresh model disagrees
    fresh = MambaLMHeadModel(MambaConfig.from_dict(MAMBA_SSM_CONFIGS[layer])).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(ids), expected)


def test_strict_loading_rejects_wrong_keys(seed):
    state = fake_mamba_ssm_state_dict(seed, "Mamba1")
    state["backbone.layers.0.mixer.bogus"] = torch.ones(3)
    model = MambaLMHeadModel(MambaConfig.from_dict(MAMBA_SSM_CONFIGS["Mamba1"]))
    with pytest.raises(RuntimeError):
        model.load_state_dict(state)


def test_unknown_config_keys_warn(tmp_path, seed):
    model = small_lm(seed)
    model.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["some_future_option"] = 3
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning, match="some_future_option"):
        MambaLMHeadModel.from_pretrained(tmp_path / "m")
