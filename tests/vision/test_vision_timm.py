"""timm integration: registry names, pretrained configs, the model contract, local weight files."""
from __future__ import annotations

import pytest
import timm
import torch
from timm.data import resolve_data_config

import mambakit.vision  # noqa: F401
from mambakit.vision import vim_to_official

TINY_VIM = dict(depth=2, embed_dim=16, d_state=4, img_size=32, patch_size=8, impl="reference")
TINY_VMAMBA = dict(depths=[1, 1], dims=[8, 16], d_state=4, img_size=32, impl="reference")


@pytest.mark.parametrize("name", ["vim_tiny_patch16_224", "vim_small_patch16_224", "vim_base_patch16_224",
                                  "vmamba_tiny_224", "vmamba_small_224", "vmamba_base_224"])
def test_registered_with_pretrained_cfg(name):
    assert name in timm.list_models()
    cfg = timm.models.get_pretrained_cfg(name)
    assert cfg.input_size == (3, 224, 224) and cfg.num_classes == 1000
    assert cfg.first_conv == "patch_embed.proj" and cfg.classifier == "head"


def test_published_vim_tiny_config():
    model = timm.create_model("vim_tiny_patch16_224")
    c = model.config
    assert (c.embed_dim, c.depth, c.d_state, c.patch_size, c.cls_position) == (192, 24, 16, 16, "middle")
    n = sum(p.numel() for p in model.parameters())
    assert 6.5e6 < n < 7.5e6                                                 # paper: 7M
    data_cfg = resolve_data_config({}, model=model)
    assert data_cfg["input_size"] == (3, 224, 224) and len(data_cfg["mean"]) == 3


@pytest.mark.parametrize("name,kw", [("vim_tiny_patch16_224", TINY_VIM), ("vmamba_tiny_224", TINY_VMAMBA)])
def test_model_contract(seed, name, kw):
    model = timm.create_model(name, num_classes=4, **kw).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
    assert torch.allclose(model.forward_head(feats), model(x))
    model.reset_classifier(9)
    assert model(x).shape == (2, 9) and model.num_classes == 9
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)
    assert model.get_classifier is not None


def test_weights_from_local_file_official_vim_layout(seed, tmp_path):
    source = timm.create_model("vim_tiny_patch16_224", num_classes=6, **TINY_VIM).eval()
    path = tmp_path / "vim_t_midclstok.pth"
    torch.save({"model": vim_to_official(source.state_dict()), "epoch": 3}, path)
    loaded = timm.create_model("vim_tiny_patch16_224", pretrained=True, num_classes=6,
                               pretrained_cfg_overlay=dict(file=str(path), num_classes=6), **TINY_VIM).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    # fine-tuning on another label set: the backbone loads, a fresh head is made
    other = timm.create_model("vim_tiny_patch16_224", pretrained=True, num_classes=3,
                              pretrained_cfg_overlay=dict(file=str(path), num_classes=6), **TINY_VIM)
    assert torch.equal(other.layers[1].mixer.branches[1].A_log, source.layers[1].mixer.branches[1].A_log)
    assert other.head.weight.shape == (3, 16)


def test_weights_from_local_file_vmamba(seed, tmp_path):
    source = timm.create_model("vmamba_tiny_224", num_classes=5, **TINY_VMAMBA).eval()
    path = tmp_path / "vmamba.pth"
    torch.save(source.state_dict(), path)
    loaded = timm.create_model("vmamba_tiny_224", pretrained=True, num_classes=5,
                               pretrained_cfg_overlay=dict(file=str(path), num_classes=5), **TINY_VMAMBA).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_vim_save_pretrained_round_trip(seed, tmp_path):
    from mambakit.vision.vim import Vim, VimConfig

    torch.manual_seed(seed)
    model = Vim(VimConfig(img_size=(28, 24), in_chans=1, num_classes=7, embed_dim=16, depth=2,
                          patch_size=4, stride=(4, 3))).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    folder = model.save_pretrained(tmp_path / "vim")
    loaded = Vim.from_pretrained(folder)
    assert loaded.config == model.config            # tuples survive the JSON round trip
    x = torch.randn(2, 1, 28, 24)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    (folder / "config.json").write_text('{"embed_dim": 16, "colour": 3}')
    with pytest.raises(ValueError, match="colour"):
        Vim.from_pretrained(folder)
