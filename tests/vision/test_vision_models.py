"""Vim and VMamba-style models: mixers against the core ops, shapes, resolution changes,
input policy (conversions and clear errors)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mambakit.modules.mamba import Mamba
from mambakit.ops.selective_scan import selective_scan
from mambakit.vision import SS2D, MultiOrderMamba, PatchEmbed, VMamba, Vim, bidirectional_orders
from mambakit.vision.tokenizers import resample_pos_embed


def tiny_vim(**kw):
    base = dict(img_size=32, patch_size=8, embed_dim=16, depth=2, d_state=4, num_classes=5, impl="reference")
    return Vim(**{**base, **kw})


def tiny_vmamba(**kw):
    base = dict(img_size=32, depths=[1, 1], dims=[8, 16], d_state=4, num_classes=3, drop_path_rate=0.0,
                impl="reference")
    return VMamba(**{**base, **kw})


def test_bidirectional_mixer_equals_two_core_mambas(seed):
    """Vim's bimamba-v2 semantics: out_proj((y_fwd + flip(y_bwd(flip(x)))) / 2), with a shared
    in_proj/out_proj, checked against two core Mamba layers in float64."""
    d = 12
    mixer = MultiOrderMamba(d, bidirectional_orders(), d_state=4, d_conv=3, expand=2, impl="reference").double()
    with torch.no_grad():
        for p in mixer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cores = []
    for br in mixer.branches:
        m = Mamba(d, d_state=4, d_conv=3, expand=2, impl="reference").double()
        with torch.no_grad():
            m.in_proj.weight.copy_(mixer.in_proj.weight)
            m.out_proj.weight.copy_(mixer.out_proj.weight)
            for name in ("conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias", "A_log", "D"):
                m.get_parameter(name).copy_(br.get_parameter(name))
        cores.append(m)
    x = torch.randn(3, 11, d, dtype=torch.float64)
    expected = (cores[0](x) + cores[1](x.flip(1)).flip(1)) / 2
    assert torch.allclose(mixer(x), expected, atol=1e-10)


@pytest.mark.parametrize("divide_out,bias,time_align,flip_tokens", [
    (True, False, 1, False), (False, False, 1, False), (True, True, 16, False), (True, False, 16, True),
    (False, True, 4, True), (True, True, 1, True)])
def test_channels_first_path_equals_the_generic_order_path(seed, divide_out, bias, time_align, flip_tokens):
    """Forward/reverse orders take a (B, C, L) path with flips instead of gathers, padded at the
    end to a multiple of ``time_align`` steps (aligned rows for the GPU scan), the flip taken on the
    tokens or on the channels; the same orders given as permutations take the generic path:
    outputs and every gradient agree."""
    from mambakit.scan_orders import Permutation

    torch.manual_seed(seed)
    d, length = 12, 9
    fast = MultiOrderMamba(d, bidirectional_orders(), d_state=4, d_conv=3, expand=2, divide_out=divide_out,
                           bias=bias, impl="reference").double()
    fast.time_align, fast.flip_tokens = time_align, flip_tokens
    with torch.no_grad():
        for p in fast.parameters():
            p.add_(0.1 * torch.randn_like(p))
    generic = MultiOrderMamba(d, [Permutation(torch.arange(length)), Permutation(torch.arange(length).flip(0))],
                              d_state=4, d_conv=3, expand=2, divide_out=divide_out, bias=bias,
                              impl="reference").double()
    generic.load_state_dict(fast.state_dict())
    x = torch.randn(2, length, d, dtype=torch.float64, requires_grad=True)
    outs = [m(x) for m in (fast, generic)]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
    g = torch.randn_like(outs[0])
    grads = [torch.autograd.grad(o, [x, *m.parameters()], g) for o, m in zip(outs, (fast, generic))]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_ss2d_equals_four_separate_scans(seed):
    d, h, w = 8, 3, 5
    ss2d = SS2D(d, d_state=4, impl="reference").double()
    with torch.no_grad():
        for p in ss2d.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, h, w, d, dtype=torch.float64)
    xz = ss2d.in_proj(x)
    u, z = xz.chunk(2, -1)
    u = F.silu(ss2d.conv2d(u.permute(0, 3, 1, 2)))                          # (B, E, H, W)
    row = u.flatten(2)                                                       # (B, E, L)
    col = u.transpose(2, 3).flatten(2)
    seqs = [row, col, row.flip(-1), col.flip(-1)]
    total = 0
    for k, (seq, br) in enumerate(zip(seqs, ss2d.branches)):
        dbl = br.x_proj(seq.transpose(1, 2))
        dt, B, C = dbl.split([ss2d.dt_rank, 4, 4], -1)
        y = selective_scan(seq, (dt @ br.dt_proj.weight.t()).transpose(1, 2), -torch.exp(br.A_log),
                           B.transpose(1, 2), C.transpose(1, 2), br.D, delta_bias=br.dt_proj.bias,
                           delta_softplus=True, impl="reference")           # (B, E, L)
        if k >= 2:
            y = y.flip(-1)
        if k % 2:
            y = y.view(2, -1, w, h).transpose(2, 3).reshape(2, -1, h * w)
        total = total + y
    y = ss2d.out_norm(total.transpose(1, 2).reshape(2, h, w, -1)) * F.silu(z)
    assert torch.allclose(ss2d(x), ss2d.out_proj(y), atol=1e-10)


def test_ss2d_padded_equals_unpadded(monkeypatch, seed):
    """SS2D pads its four sequences to aligned rows where the Triton scan reads them: outputs and
    gradients equal the unpadded ones (float64)."""
    import mambakit.vision.layers as layers

    ss2d = SS2D(8, d_state=4, impl="reference").double()
    with torch.no_grad():
        for p in ss2d.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 3, 5, 8, dtype=torch.float64)
    res = []
    for multiple in (1, 16):
        monkeypatch.setattr(layers, "scan_time_multiple", lambda t, impl, m=multiple: m)
        y = ss2d(x)
        res.append([y, *torch.autograd.grad(y, [x, *ss2d.parameters()], g)])
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kinds", [("reverse", "forward"), ("forward",), ("reverse", "reverse", "forward")])
def test_channels_first_path_with_other_order_lists(seed, kinds):
    """Any list of forward/reverse orders (reverse first, one order, repeats) on the padded,
    token-flipped path equals the generic path with the same orders as permutations."""
    from mambakit.scan_orders import Forward, Permutation, Reverse

    torch.manual_seed(seed)
    d, length = 8, 7
    orders = [Reverse() if k == "reverse" else Forward() for k in kinds]
    perms = [Permutation(torch.arange(length).flip(0) if k == "reverse" else torch.arange(length)) for k in kinds]
    fast = MultiOrderMamba(d, orders, d_state=4, d_conv=3, expand=2, impl="reference").double()
    fast.time_align, fast.flip_tokens = 16, True
    with torch.no_grad():
        for p in fast.parameters():
            p.add_(0.1 * torch.randn_like(p))
    generic = MultiOrderMamba(d, perms, d_state=4, d_conv=3, expand=2, impl="reference").double()
    generic.load_state_dict(fast.state_dict())
    x = torch.randn(2, length, d, dtype=torch.float64)
    torch.testing.assert_close(fast(x), generic(x), rtol=1e-12, atol=1e-12)


def test_vim_shapes_pooling_and_gradients(seed):
    model = tiny_vim()
    x = torch.randn(2, 3, 32, 32)
    tokens = model.forward_features(x)
    assert tokens.shape == (2, 17, 16)                                       # 16 patches + middle cls
    assert torch.equal(model.forward_head(tokens, pre_logits=True), tokens[:, 8])
    logits = model(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    logits.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    mean_model = tiny_vim(cls_position="none", global_pool="mean")
    assert mean_model.forward_features(x).shape == (2, 16, 16)
    assert mean_model(x).shape == (2, 5)


def test_vim_other_resolution_resamples_position_embedding(seed):
    model = tiny_vim().eval()
    x = torch.randn(1, 3, 64, 48)
    assert model.forward_features(x).shape == (1, 8 * 6 + 1, 16)
    pe = model.pos_embed
    assert resample_pos_embed(pe, (4, 4)) is pe                              # same grid: unchanged
    big = resample_pos_embed(pe, (8, 8))
    assert big.shape == (1, 64, 16)
    # bicubic upsampling of a constant grid stays constant
    const = torch.full((1, 16, 3), 0.7)
    assert torch.allclose(resample_pos_embed(const, (7, 5)), torch.full((1, 35, 3), 0.7), atol=1e-6)


def test_vim_overlapping_patches(seed):
    model = tiny_vim(patch_size=8, stride=4)
    assert model.patch_embed.grid_size == (7, 7)
    assert model.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 50, 16)


def test_vmamba_stages_and_odd_sizes(seed):
    model = tiny_vmamba(depths=[1, 1, 1], dims=[8, 16, 32])
    stages = model.forward_features(torch.randn(2, 3, 36, 28), return_stages=True)
    assert [tuple(s.shape) for s in stages] == [(2, 8, 9, 7), (2, 16, 5, 4), (2, 32, 3, 2)]
    out = model(torch.randn(2, 3, 36, 28))
    assert out.shape == (2, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_input_conversions(seed):
    model = tiny_vim().eval()
    gray = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(gray), model(gray.expand(-1, 3, -1, -1)))
        rgb = torch.randn(2, 3, 32, 32)
        rgba = torch.cat([rgb, torch.rand(2, 1, 32, 32)], 1)
        assert torch.allclose(model(rgba), model(rgb))
        # non-multiple of the patch: zero-padded at the right/bottom
        odd = torch.randn(1, 3, 30, 27)
        assert torch.allclose(model(odd), model(F.pad(odd, (0, 5, 0, 2))))
    gray_model = tiny_vim(in_chans=1).eval()
    with torch.no_grad():
        luma = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        assert torch.allclose(gray_model(rgb), gray_model(luma), atol=1e-6)


def test_bad_inputs_raise_clear_errors(seed):
    model = tiny_vim()
    with pytest.raises(ValueError, match="NaN"):
        x = torch.randn(1, 3, 32, 32)
        x[0, 1, 3, 4] = float("nan")
        model(x)
    with pytest.raises(ValueError, match="takes 3 channels, got 5"):
        model(torch.randn(1, 5, 32, 32))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(TypeError, match="float"):
        model(torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8))
    with pytest.raises(ValueError, match="smaller than one patch"):
        model(torch.randn(1, 3, 4, 32))
    with pytest.raises(ValueError, match="not a multiple"):
        tiny_vim(pad="error")(torch.randn(1, 3, 30, 32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[1.0]])
    with pytest.raises(ValueError, match="class token"):
        tiny_vim(cls_position="none", global_pool="cls")
    with pytest.raises(ValueError, match="doubles"):
        tiny_vmamba(dims=[8, 24])
    with pytest.raises(ValueError, match="NaN"):
        tiny_vmamba()(torch.full((1, 3, 32, 32), float("inf")))
    with pytest.raises(ValueError, match="patch_size"):
        PatchEmbed(patch_size=0)
