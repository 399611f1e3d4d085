"""The copy-free linear maps into/within/out of the channels-first layout equal F.linear."""
import pytest
import torch
import torch.nn.functional as F

from mambakit.modules.channels_first import channels_to_channels, channels_to_tokens, tokens_to_channels


@pytest.mark.parametrize("length", [2, 11])   # 6*5 > 2*(6+5): batch folded; 11: weight expanded
@pytest.mark.parametrize("bias", [True, False])
def test_maps_equal_linear_forward_and_backward(bias, length):
    b, i, o = 3, 6, 5
    w = torch.randn(o, i, dtype=torch.float64, requires_grad=True)
    bb = torch.randn(o, dtype=torch.float64, requires_grad=True) if bias else None
    tokens = torch.randn(b, length, i, dtype=torch.float64, requires_grad=True)
    chans = torch.randn(b, i, length, dtype=torch.float64, requires_grad=True)
    cases = [
        (tokens_to_channels(tokens, w, bb), F.linear(tokens, w, bb).transpose(1, 2), tokens),
        (channels_to_channels(chans, w, bb), F.linear(chans.transpose(1, 2), w, bb).transpose(1, 2), chans),
        (channels_to_tokens(chans, w, bb), F.linear(chans.transpose(1, 2), w, bb), chans),
    ]
    for ours, ref, x in cases:
        torch.testing.assert_close(ours, ref)
        g = torch.randn_like(ref)
        leaves = [x, w] + ([bb] if bias else [])
        torch.testing.assert_close(torch.autograd.grad(ours, leaves, g), torch.autograd.grad(ref, leaves, g))
    assert cases[0][0].is_contiguous() and cases[2][0].is_contiguous()
    # a strided (non-contiguous) channels-first input is read in place
    strided = torch.randn(b, 2 * i, length, dtype=torch.float64)[:, ::2]
    torch.testing.assert_close(channels_to_channels(strided, w), torch.einsum("oi,bil->bol", w, strided))


def test_short_sequences_fold_the_batch_long_ones_expand_the_weight():
    from mambakit.modules.channels_first import _fold_batch
    w = torch.empty(256, 64)                 # a patch model's in_proj: 12 patches per series
    assert _fold_batch(12, w) and not _fold_batch(1024, w)


def test_autocast_computes_in_the_autocast_dtype():
    w = torch.randn(5, 6)
    for length in (1, 7):                    # folded and expanded paths
        x = torch.randn(2, length, 6)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = tokens_to_channels(x, w)
            ref = F.linear(x, w).transpose(1, 2)
        assert out.dtype == ref.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), ref.float(), atol=2e-2, rtol=2e-2)
