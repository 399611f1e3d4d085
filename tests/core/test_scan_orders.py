"""Scan orders as data: apply/invert are exact inverses, their semantics, and MultiOrderMixer."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from mambakit import (Forward, Mamba, MultiOrderMixer, Permutation, Reverse, ScanOrder, bidirectional,
                      resolve_orders)


def rand(seed, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def random_perm(seed, batch, length, per_sample):
    g = torch.Generator().manual_seed(seed)
    if per_sample:
        return torch.stack([torch.randperm(length, generator=g) for _ in range(batch)])
    return torch.randperm(length, generator=g)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 4), length=st.integers(1, 30),
       dim=st.integers(1, 6), kind=st.sampled_from(["forward", "reverse", "perm1d", "perm2d", "callable"]),
       flip=st.booleans(), int32=st.booleans())
def test_apply_then_invert_is_exactly_the_identity(seed, batch, length, dim, kind, flip, int32):
    x = rand(seed, batch, length, dim)
    perm = random_perm(seed + 1, batch, length, per_sample=kind == "perm2d")
    if int32:
        perm = perm.to(torch.int32)
    order = {"forward": lambda: Forward(flip_channels=flip),
             "reverse": lambda: Reverse(flip_channels=flip),
             "perm1d": lambda: Permutation(perm, flip_channels=flip),
             "perm2d": lambda: Permutation(perm, flip_channels=flip),
             "callable": lambda: Permutation(lambda n: torch.arange(n).roll(seed % n), flip_channels=flip),
             }[kind]()
    scanned = order.apply(x)
    assert scanned.shape == x.shape
    assert torch.equal(order.invert(scanned), x)
    y = rand(seed + 2, batch, length, dim)
    assert torch.equal(order.apply(order.invert(y)), y)

    # what apply means: scanned[:, i] = x[:, perm[i]] (per row for 2-D), channels reversed if flipped
    expected_perm = {"forward": torch.arange(length), "reverse": torch.arange(length - 1, -1, -1),
                     "perm1d": perm, "perm2d": perm,
                     "callable": torch.arange(length).roll(seed % length)}[kind].long()
    expected_perm = expected_perm.expand(batch, length) if expected_perm.dim() == 1 else expected_perm
    for b in range(batch):
        ref = x[b, expected_perm[b]]
        if flip:
            ref = ref.flip(-1)
        assert torch.equal(scanned[b], ref)


def test_reverse_and_flip_semantics():
    x = torch.arange(24.0).view(2, 3, 4)
    assert torch.equal(Reverse().apply(x), x[:, [2, 1, 0]])
    assert torch.equal(Forward(flip_channels=True).apply(x), x[..., [3, 2, 1, 0]])
    assert torch.equal(Reverse(flip_channels=True).apply(x), x[:, [2, 1, 0]][..., [3, 2, 1, 0]])
    assert Forward().causal and not Reverse().causal and not Permutation(torch.tensor([1, 0])).causal
    assert Forward().index(5) is None
    assert torch.equal(Reverse().index(4), torch.tensor([3, 2, 1, 0]))


def test_permutation_length_mismatch_raises():
    order = Permutation(torch.tensor([2, 0, 1]))
    with pytest.raises(ValueError):
        order.apply(torch.zeros(1, 4, 2) + 1.0)


def test_resolve_orders():
    assert [type(o) for o in resolve_orders(None)] == [Forward]
    assert [type(o) for o in resolve_orders("bidirectional")] == [Forward, Reverse]
    assert [type(o) for o in resolve_orders(["reverse", Forward()])] == [Reverse, Forward]
    assert [type(o) for o in bidirectional()] == [Forward, Reverse]
    with pytest.raises(ValueError):
        resolve_orders(["sideways"])
    with pytest.raises(ValueError):
        resolve_orders([])


# ----------------------------------------------------------------------------- MultiOrderMixer

class CumSumMixer(nn.Module):
    """A causal 'mixer' whose output at i is a scaled running sum of the inputs up to i."""

    def __init__(self, dim):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim) * 0.5)

    def forward(self, x, **kwargs):
        return x.cumsum(1) * self.scale


def test_multi_order_merges_by_hand(seed):
    x = rand(seed, 2, 7, 3, dtype=torch.float64)
    fwd = x.cumsum(1) * 0.5
    bwd = x.flip(1).cumsum(1).flip(1) * 0.5
    summed = MultiOrderMixer(3, CumSumMixer, bidirectional(), merge="sum").double()
    mean = MultiOrderMixer(3, CumSumMixer, bidirectional(), merge="mean").double()
    torch.testing.assert_close(summed(x), fwd + bwd)
    torch.testing.assert_close(mean(x), (fwd + bwd) / 2)
    concat = MultiOrderMixer(3, CumSumMixer, bidirectional(), merge="concat").double()
    assert concat.merge_proj.weight.shape == (3, 6)
    torch.testing.assert_close(concat(x), torch.cat([fwd, bwd], -1) @ concat.merge_proj.weight.t())


def test_multi_order_with_a_permutation_and_channel_flip(seed):
    x = rand(seed, 2, 6, 4, dtype=torch.float64)
    perm = random_perm(seed + 1, 2, 6, per_sample=True)
    order = Permutation(perm, flip_channels=True)
    mixer = MultiOrderMixer(4, CumSumMixer, [order], merge="sum").double()
    expected = order.invert(order.apply(x).cumsum(1) * 0.5)
    torch.testing.assert_close(mixer(x), expected)
    # row by row, by hand
    for b in range(2):
        scanned = x[b, perm[b]].flip(-1).cumsum(0) * 0.5
        back = torch.empty_like(scanned)
        back[perm[b]] = scanned.flip(-1)
        torch.testing.assert_close(mixer(x)[b], back)


def test_multi_order_per_call_orders(seed):
    """Orders passed to one call replace the configured ones, position by position (each runs
    with that position's mixer); the next call without them scans as configured again."""
    x = rand(seed, 2, 6, 3, dtype=torch.float64)
    mixer = MultiOrderMixer(3, CumSumMixer, bidirectional(), merge="sum").double()
    with torch.no_grad():
        mixer.mixers[1].scale.fill_(2.0)
    perm = random_perm(seed + 1, 2, 6, per_sample=True)
    order = Permutation(perm)
    got = mixer(x, orders=[order, Forward()])
    expected = order.invert(order.apply(x).cumsum(1) * 0.5) + x.cumsum(1) * 2.0
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(mixer(x), x.cumsum(1) * 0.5 + x.flip(1).cumsum(1).flip(1) * 2.0)
    with pytest.raises(ValueError, match="2 ScanOrder"):
        mixer(x, orders=[order])
    with pytest.raises(ValueError, match="2 ScanOrder"):
        mixer(x, orders=["forward", "reverse"])


@pytest.mark.parametrize("merge", ["sum", "mean", "concat"])
@pytest.mark.parametrize("share", [False, True])
def test_multi_order_mamba_shapes_and_parameters(merge, share, seed):
    torch.manual_seed(seed)
    orders = [Forward(), Reverse(), Permutation(lambda n: torch.arange(n).roll(1))]
    mixer = MultiOrderMixer(8, lambda d: Mamba(d, d_state=4, layer_idx=3), orders, merge=merge,
                            share_mixer=share)
    assert len(mixer.mixers) == (1 if share else 3)
    assert mixer.layer_idx == 3
    x = rand(seed, 2, 9, 8)
    out = mixer(x)
    assert out.shape == (2, 9, 8) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in mixer.parameters())


def test_shared_mixer_single_weights(seed):
    mixer = MultiOrderMixer(3, CumSumMixer, bidirectional(), share_mixer=True).double()
    with torch.no_grad():
        mixer.mixers[0].scale.copy_(torch.tensor([1.0, 2.0, 3.0]))
    x = rand(seed, 1, 5, 3, dtype=torch.float64)
    expected = (x.cumsum(1) + x.flip(1).cumsum(1).flip(1)) * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(mixer(x), expected)


@pytest.mark.parametrize("cu", [torch.tensor([0, 3, 4, 10]), torch.tensor([0, 10])])
def test_causal_orders_receive_packed_sequences(cu, seed):
    """seq_idx / cu_seqlens reach the mixer of a causal order: the forward (channel-flipped)
    scan of packed sequences equals scanning each one on its own."""
    torch.manual_seed(seed)
    mixer = MultiOrderMixer(8, lambda d: Mamba(d, d_state=4), [Forward(flip_channels=True)]).double()
    x = rand(seed, 1, 10, 8, dtype=torch.float64)
    separate = torch.cat([mixer(x[:, a:b]) for a, b in zip(cu[:-1].tolist(), cu[1:].tolist())], dim=1)
    torch.testing.assert_close(mixer(x, cu_seqlens=cu), separate, rtol=1e-9, atol=1e-11)
    if len(cu) > 2:
        assert not torch.allclose(mixer(x)[:, 3:], separate[:, 3:])


def test_multi_order_bad_merge_raises():
    with pytest.raises(ValueError):
        MultiOrderMixer(3, CumSumMixer, bidirectional(), merge="max")


def test_scan_order_repr_and_base():
    assert isinstance(Forward(), ScanOrder)
    assert "flip_channels=True" in repr(Reverse(flip_channels=True))


def test_bidirectional_backbone_keeps_packed_sequences_apart():
    import mambakit
    """Packed sequences read in reverse reset at the same boundaries: packed == one by one."""
    torch.manual_seed(int.from_bytes(__import__("os").urandom(2), "little"))
    bb = mambakit.MambaBackbone(d_model=16, n_layer=2, ssm_cfg={"d_state": 4},
                                scan_orders=["bidirectional"]).double()
    a, b = torch.randn(1, 7, 16, dtype=torch.float64), torch.randn(1, 5, 16, dtype=torch.float64)
    packed = bb(torch.cat([a, b], 1), cu_seqlens=torch.tensor([0, 7, 12]))
    separate = torch.cat([bb(a), bb(b)], 1)
    torch.testing.assert_close(packed, separate, rtol=1e-10, atol=1e-10)
