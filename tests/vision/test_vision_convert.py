"""Converters: state dicts with the official Vim / VMamba key names and shapes (built here) map
to our layout and back, and mismatches are reported in words."""
from __future__ import annotations

import math

import pytest
import torch

from mambakit.vision import VMamba, Vim, load_official, vim_from_official, vim_to_official
from mambakit.vision.convert import (check_against, vim_prepare_state_dict, vmamba_from_official,
                                     vmamba_prepare_state_dict, vmamba_to_official)

D, DEPTH, N_STATE, GRID = 16, 2, 4, 4          # tiny Vim: embed 16, 2 layers, 4x4 patches


def official_vim_state_dict(num_classes=5, grid=GRID):
    """Key names and shapes of the official Vim (bimamba v2, middle class token, RMSNorm)."""
    e, r = 2 * D, math.ceil(D / 16)
    sd = {"patch_embed.proj.weight": torch.randn(D, 3, 8, 8), "patch_embed.proj.bias": torch.randn(D),
          "cls_token": torch.randn(1, 1, D), "pos_embed": torch.randn(1, grid * grid + 1, D),
          "norm_f.weight": torch.randn(D), "head.weight": torch.randn(num_classes, D),
          "head.bias": torch.randn(num_classes)}
    for i in range(DEPTH):
        p = f"layers.{i}.mixer."
        sd[f"layers.{i}.norm.weight"] = torch.randn(D)
        sd[p + "in_proj.weight"] = torch.randn(2 * e, D)
        sd[p + "out_proj.weight"] = torch.randn(D, e)
        for suffix, a_name, d_name in (("", "A_log", "D"), ("_b", "A_b_log", "D_b")):
            sd[p + f"conv1d{suffix}.weight"] = torch.randn(e, 1, 4)
            sd[p + f"conv1d{suffix}.bias"] = torch.randn(e)
            sd[p + f"x_proj{suffix}.weight"] = torch.randn(r + 2 * N_STATE, e)
            sd[p + f"dt_proj{suffix}.weight"] = torch.randn(e, r)
            sd[p + f"dt_proj{suffix}.bias"] = torch.randn(e)
            sd[p + a_name] = torch.randn(e, N_STATE)
            sd[p + d_name] = torch.randn(e)
    return sd


def tiny_vim(**kw):
    return Vim(**{**dict(img_size=32, patch_size=8, embed_dim=D, depth=DEPTH, d_state=N_STATE, num_classes=5,
                         impl="reference"), **kw})


def test_vim_official_layout_round_trip(seed):
    official = official_vim_state_dict()
    ours = vim_from_official({"model": official})
    model = tiny_vim()
    assert check_against(ours, model).ok, str(check_against(ours, model))
    # the class token's position row is the middle one (index N // 2 = 8)
    assert torch.equal(ours["cls_pos_embed"][0, 0], official["pos_embed"][0, 8])
    assert torch.equal(ours["layers.1.mixer.branches.1.A_log"], official["layers.1.mixer.A_b_log"])
    back = vim_to_official(ours)
    assert back.keys() == official.keys()
    assert all(torch.equal(back[k], official[k]) for k in official)
    # a loaded model writes the same official state dict again
    load_official(model, official)
    again = vim_to_official(model.state_dict())
    assert all(torch.equal(again[k], official[k]) for k in official)


def test_vim_official_resampled_to_new_grid_and_new_head(seed):
    official = official_vim_state_dict(num_classes=1000, grid=4)
    model = tiny_vim(img_size=48, num_classes=7)                            # 6x6 grid, 7 classes
    sd, report = vim_prepare_state_dict(official, model)
    assert sd["pos_embed"].shape == (1, 36, D)
    text = str(report)
    assert "resampled" in text and "head.weight" in text and "official Vim" in text
    model.load_state_dict(sd)


def test_vim_report_names_missing_unexpected_and_shapes(seed):
    official = official_vim_state_dict()
    del official["layers.1.mixer.D_b"]
    official["layers.0.mixer.extra_thing"] = torch.randn(3)
    official["layers.0.mixer.x_proj.weight"] = torch.randn(7, 2 * D)
    with pytest.raises(ValueError) as err:
        vim_prepare_state_dict(official, tiny_vim())
    msg = str(err.value)
    assert "missing from the checkpoint: layers.1.mixer.branches.1.D" in msg
    assert "no place in the model: layers.0.mixer.extra_thing" in msg
    assert "shape mismatch at layers.0.mixer.branches.0.x_proj.weight: checkpoint (7, 32)" in msg
    _, report = vim_prepare_state_dict(official, tiny_vim(), strict=False)
    assert not report.ok


def official_vmamba_state_dict(depths=(1, 2), dims=(8, 16), n_state=4, num_classes=3):
    """Key names and shapes of the first VMamba release (v0: ln_1 / self_attention / downsample)."""
    sd = {"patch_embed.proj.weight": torch.randn(dims[0], 3, 4, 4), "patch_embed.proj.bias": torch.randn(dims[0]),
          "patch_embed.norm.weight": torch.randn(dims[0]), "patch_embed.norm.bias": torch.randn(dims[0]),
          "norm.weight": torch.randn(dims[-1]), "norm.bias": torch.randn(dims[-1]),
          "head.weight": torch.randn(num_classes, dims[-1]), "head.bias": torch.randn(num_classes)}
    for i, (depth, c) in enumerate(zip(depths, dims)):
        e, r = 2 * c, math.ceil(c / 16)
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = torch.randn(c), torch.randn(c)
            a = p + "self_attention."
            sd[a + "in_proj.weight"] = torch.randn(2 * e, c)
            sd[a + "conv2d.weight"], sd[a + "conv2d.bias"] = torch.randn(e, 1, 3, 3), torch.randn(e)
            sd[a + "x_proj_weight"] = torch.randn(4, r + 2 * n_state, e)
            sd[a + "dt_projs_weight"] = torch.randn(4, e, r)
            sd[a + "dt_projs_bias"] = torch.randn(4, e)
            sd[a + "A_logs"] = torch.randn(4 * e, n_state)
            sd[a + "Ds"] = torch.randn(4 * e)
            sd[a + "out_norm.weight"], sd[a + "out_norm.bias"] = torch.randn(e), torch.randn(e)
            sd[a + "out_proj.weight"] = torch.randn(c, e)
        if i < len(depths) - 1:
            sd[f"layers.{i}.downsample.reduction.weight"] = torch.randn(2 * c, 4 * c)
            sd[f"layers.{i}.downsample.norm.weight"] = torch.randn(4 * c)
            sd[f"layers.{i}.downsample.norm.bias"] = torch.randn(4 * c)
    return sd


def test_vmamba_official_layout_round_trip(seed):
    official = official_vmamba_state_dict()
    model = VMamba(img_size=32, depths=[1, 2], dims=[8, 16], d_state=4, num_classes=3, impl="reference")
    ours = vmamba_from_official(official)
    assert check_against(ours, model).ok, str(check_against(ours, model))
    e = 16
    assert torch.equal(ours["stages.0.blocks.0.mixer.branches.2.A_log"],
                       official["layers.0.blocks.0.self_attention.A_logs"][2 * e:3 * e])
    assert torch.equal(ours["stages.1.blocks.1.mixer.branches.3.x_proj.weight"],
                       official["layers.1.blocks.1.self_attention.x_proj_weight"][3])
    back = vmamba_to_official(ours)
    assert back.keys() == official.keys()
    assert all(torch.equal(back[k], official[k]) for k in official)
    report = load_official(model, {"model": official})
    assert report.ok
    assert torch.isfinite(model.eval()(torch.randn(1, 3, 32, 32))).all()


def test_vmamba_bad_stacks_are_reported(seed):
    official = official_vmamba_state_dict()
    official["layers.0.blocks.0.self_attention.x_proj_weight"] = torch.randn(3, 5, 16)
    with pytest.raises(ValueError, match="4 stacked directions"):
        vmamba_from_official(official)
    official = official_vmamba_state_dict(dims=(8, 16))
    model = VMamba(img_size=32, depths=[1, 2], dims=[16, 32], d_state=4, num_classes=3)
    with pytest.raises(ValueError, match="shape mismatch"):
        vmamba_prepare_state_dict(official, model)
    with pytest.raises(TypeError, match="Vim or VMamba"):
        load_official(torch.nn.Linear(2, 2), official)
