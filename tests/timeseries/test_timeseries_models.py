"""Tokenizers, RevIN, forecasters, streaming and the classifier, on tiny random inputs."""
from __future__ import annotations

import pytest
import torch

from mambakit.timeseries import (DLinear, PatchMamba, PatchTokenizer, PatchTST, RevIN, SeriesClassifier,
                                 TimeStepMamba, TSConfig, VariateMamba, VariateTokenizer, create_model,
                                 num_patches)

TINY = dict(seq_len=32, pred_len=8, n_vars=3, d_model=16, n_layer=1, d_state=4, patch_len=8, stride=4,
            n_heads=2, d_ff=32, dropout=0.0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_revin_round_trip_and_statistics():
    x = torch.randn(4, 20, 3) * 5 + 3
    revin = RevIN(3, affine=True)
    with torch.no_grad():
        revin.affine_weight.uniform_(0.5, 2.0)
        revin.affine_bias.normal_()
    z, stats = revin.normalize(x)
    assert z.shape == x.shape
    back = revin.denormalize(z, stats)
    torch.testing.assert_close(back, x, atol=1e-4, rtol=1e-4)
    plain, _ = RevIN(3, affine=False).normalize(x)
    torch.testing.assert_close(plain.mean(1), torch.zeros(4, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(plain.std(1, unbiased=False), torch.ones(4, 3), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="expected"):
        revin.normalize(torch.randn(4, 20, 5))


def test_forecast_is_equivariant_to_level_and_scale_with_revin():
    model = PatchMamba(TSConfig(**TINY, revin=True)).eval()
    x = torch.randn(2, 32, 3)
    with torch.no_grad():
        y = model(x)
        y2 = model(x * 3.0 + 7.0)
    torch.testing.assert_close(y2, y * 3.0 + 7.0, atol=1e-3, rtol=1e-3)


def test_patching_matches_manual_windows_with_end_padding():
    tok = PatchTokenizer(seq_len=10, patch_len=4, stride=2, d_model=8, pad_end=True)
    x = torch.randn(2, 10, 3)
    p = tok.patchify(x)                                                       # (B, C, N, P)
    assert p.shape == (2, 3, num_patches(10, 4, 2), 4) == (2, 3, 5, 4)
    padded = torch.cat([x, x[:, -1:].expand(-1, 2, -1)], 1)                  # (B, 12, C)
    for n in range(5):
        torch.testing.assert_close(p[:, :, n], padded[:, 2 * n:2 * n + 4].transpose(1, 2))
    assert tok(x).shape == (6, 5, 8)
    assert num_patches(96, 16, 8) == 12 and num_patches(96, 16, 8, pad_end=False) == 11


def test_channel_independence_of_patch_model():
    model = PatchMamba(TSConfig(**TINY, revin=True)).eval()
    x = torch.randn(2, 32, 3)
    x2 = x.clone()
    x2[..., 1] = torch.randn(2, 32)
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    torch.testing.assert_close(y[..., 0], y2[..., 0])
    torch.testing.assert_close(y[..., 2], y2[..., 2])
    assert not torch.allclose(y[..., 1], y2[..., 1])


def test_variate_model_mixes_variables_and_is_bidirectional():
    model = VariateMamba(TSConfig(**TINY, bidirectional=True)).eval()
    x = torch.randn(2, 32, 3)
    x2 = x.clone()
    x2[..., 2] = torch.randn(2, 32)                                           # change the last variate
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    assert not torch.allclose(y[..., 0], y2[..., 0])                          # reaches variate 0: backward scan
    tok = VariateTokenizer(32, 16)
    assert tok(x).shape == (2, 3, 16)


@pytest.mark.parametrize("name", ["patchmamba", "smamba", "stepmamba", "dlinear", "patchtst"])
def test_forecasters_shapes_and_gradients(name):
    model = create_model(name, **TINY)
    x = torch.randn(4, 32, 3)
    y = model(x)
    assert y.shape == (4, 8, 3)
    y.pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_output_index_and_bad_input():
    model = VariateMamba(TSConfig(**TINY, output_index=2))
    assert model(torch.randn(2, 32, 3)).shape == (2, 8, 1)
    with pytest.raises(ValueError, match="look-back length 32"):
        model(torch.randn(2, 31, 3))
    with pytest.raises(ValueError, match="3 variables"):
        model(torch.randn(2, 32, 4))
    with pytest.raises(TypeError, match="float"):
        model(torch.ones(2, 32, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(32, 3))
    with pytest.raises(ValueError, match="unknown time-series model"):
        create_model("nope")
    with pytest.raises(ValueError, match="output_index"):
        TSConfig(**{**TINY, "output_index": 5})


def test_streaming_step_equals_parallel_forward():
    model = TimeStepMamba(TSConfig(**TINY)).eval()
    x = torch.randn(2, 12, 3)
    cache = model.allocate_inference_cache(2)
    outs = [model.step(x[:, t], cache) for t in range(x.shape[1])]
    with torch.no_grad():
        for t in (0, 5, 11):
            torch.testing.assert_close(outs[t], model(x[:, :t + 1]), atol=1e-4, rtol=1e-4)
    # a chunk (prefill) then single steps gives the same as single steps throughout
    cache2 = model.allocate_inference_cache(2)
    model.step(x[:, :6], cache2)
    last = None
    for t in range(6, 12):
        last = model.step(x[:, t], cache2)
    torch.testing.assert_close(last, outs[-1], atol=1e-4, rtol=1e-4)


def test_dlinear_starts_as_window_mean():
    model = DLinear(TSConfig(**TINY))
    x = torch.randn(2, 32, 3)
    with torch.no_grad():
        y = model(x)
    expected = x.mean(1, keepdim=True).expand(-1, 8, -1) * 2 + model.trend.bias[None, :, None] \
        + model.seasonal.bias[None, :, None] - x.mean(1, keepdim=True).expand(-1, 8, -1)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tokenizer", ["patch", "variate", "timestep"])
def test_classifier_on_every_tokenizer(tokenizer):
    model = SeriesClassifier(TSConfig(**TINY, tokenizer=tokenizer, num_classes=4))
    x = torch.randn(5, 32, 3)
    logits = model(x)
    assert logits.shape == (5, 4) and model.num_classes == 4
    loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, 4, (5,)))
    loss.backward()
    model.reset_classifier(2)
    assert model(x).shape == (5, 2)
    with pytest.raises(ValueError, match="num_classes"):
        SeriesClassifier(TSConfig(**TINY))


def test_save_load_round_trip(tmp_path):
    model = PatchTST(TSConfig(**TINY)).eval()
    model.save_pretrained(tmp_path / "m")
    again = PatchTST.from_pretrained(tmp_path / "m").eval()
    x = torch.randn(2, 32, 3)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


@pytest.mark.parametrize("name", ["patchmamba", "smamba", "patchtst"])
def test_linear_path_adds_a_linear_map_of_the_normalised_window(name):
    model = create_model(name, **TINY, linear_path=True, revin=True).eval()
    x = torch.randn(2, 32, 3) * 4 + 1
    with torch.no_grad():
        y = model(x)
        linear = model.linear
        model.linear = None
        y_net = model(x)
        model.linear = linear
        xn, (mean, std) = model.revin.normalize(x)
        expected = y_net + linear(xn.transpose(1, 2)).transpose(1, 2) * std  # the linear part, denormalised
    torch.testing.assert_close(y, expected, atol=1e-4, rtol=1e-4)
    model.train()
    model(x).pow(2).mean().backward()
    assert model.linear.weight.grad is not None and model.linear.weight.grad.abs().sum() > 0
    # DLinear is linear already and the streaming model has no window: both leave the extra path out
    assert create_model("dlinear", **TINY, linear_path=True).linear is None
    assert create_model("stepmamba", **TINY, linear_path=True).linear is None


def _window_loss(model, series: torch.Tensor) -> torch.Tensor:
    """Training loss of ``model`` over every window of ``series (T, C)`` (MSE on the series' scale)."""
    c = model.config
    windows = series.unfold(0, c.seq_len + c.pred_len, 1).transpose(1, 2)
    y = windows[:, c.seq_len:]
    if c.output_index is not None:
        y = y[..., c.output_index:c.output_index + 1]
    return (model(windows[:, :c.seq_len]) - y).pow(2).mean()


@pytest.mark.parametrize("revin, revin_affine", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("output_index", [None, 1])
@pytest.mark.parametrize("name", ["patchmamba", "smamba", "patchtst"])
def test_least_squares_linear_path_minimises_the_training_loss(name, output_index, revin, revin_affine):
    # A random walk whose variables have very different scales: the fitted map must minimise the
    # loss as training measures it (after RevIN is undone), so its gradient vanishes there.
    series = torch.randn(300, 3, dtype=torch.float64).cumsum(0) * torch.tensor([0.1, 1.0, 5.0], dtype=torch.float64)
    model = create_model(name, **TINY, linear_path=True, revin=revin, revin_affine=revin_affine,
                         output_index=output_index).double().eval()
    if revin_affine:   # a non-trivial affine map inside RevIN
        with torch.no_grad():
            model.revin.affine_weight.copy_(torch.tensor([0.5, 2.0, 1.5]))
            model.revin.affine_bias.copy_(torch.tensor([0.1, -0.3, 0.2]))
    info = model.fit_linear_path(series, ridge=0.0)
    assert info["windows"] == 300 - 40 + 1
    out = model.output_layer()
    assert out is not None and out.weight.abs().sum() == 0          # the network starts silent
    loss = _window_loss(model, series)
    torch.testing.assert_close(loss.item(), info["train_mse"], rtol=1e-6, atol=0)
    loss.backward()
    grad = torch.cat([model.linear.weight.grad.flatten(), model.linear.bias.grad])
    # ...while a small step away from the fit raises the loss and has a clear gradient
    with torch.no_grad():
        model.linear.weight.add_(1e-2 * torch.randn_like(model.linear.weight))
    assert _window_loss(model, series).item() > info["train_mse"]
    model.zero_grad()
    _window_loss(model, series).backward()
    moved = torch.cat([model.linear.weight.grad.flatten(), model.linear.bias.grad])
    assert grad.norm() < 1e-6 * moved.norm()


def test_least_squares_linear_path_bad_input():
    model = create_model("patchmamba", **TINY, linear_path=True)
    with pytest.raises(ValueError, match=r"expected series \(T, 3\)"):
        model.fit_linear_path(torch.randn(100, 2))
    with pytest.raises(ValueError, match="fewer than one window"):
        model.fit_linear_path(torch.randn(39, 3))
    bad = torch.randn(100, 3)
    bad[5, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model.fit_linear_path(bad)
    with pytest.raises(ValueError, match="no linear path"):
        create_model("patchmamba", **TINY).fit_linear_path(torch.randn(100, 3))
    with pytest.raises(ValueError, match="linear_init"):
        create_model("patchmamba", **TINY, linear_path=True, linear_init="ols")
