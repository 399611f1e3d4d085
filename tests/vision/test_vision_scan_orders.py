"""2-D scan orders: exact inverses, the right reading orders, class-token insertion."""
from __future__ import annotations

import pytest
import torch

from mambakit.scan_orders import Forward, Reverse
from mambakit.vision.scan_orders import (GRID_ORDERS, GridOrder, bidirectional_orders, class_token_index,
                                         cross_merge, cross_scan, cross_scan_orders, insert_class_token,
                                         merge_stack, remove_class_token, scan_stack)


@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (4, 4), (7, 2)])
def test_grid_orders_are_exactly_invertible(seed, h, w):
    x = torch.randn(2, h * w, 6)
    for kind in GRID_ORDERS:
        order = GridOrder(kind, h, w)
        assert torch.equal(order.invert(order.apply(x)), x)


def test_grid_orders_read_in_the_stated_order(seed):
    h, w = 3, 4
    grid = torch.randn(1, h, w, 2)
    x = grid.reshape(1, h * w, 2)
    row, col, row_rev, col_rev = (GridOrder(k, h, w).apply(x) for k in GRID_ORDERS)
    assert torch.equal(row, x)
    assert torch.equal(col, grid.transpose(1, 2).reshape(1, h * w, 2))
    assert torch.equal(row_rev, x.flip(1))
    assert torch.equal(col_rev, col.flip(1))
    assert GridOrder("row", h, w).causal and not GridOrder("col", h, w).causal


def test_cross_scan_then_merge_sums_four_copies(seed):
    b, h, w, c = 2, 5, 3, 4
    x = torch.randn(b, h, w, c)
    ys = cross_scan(x)
    assert ys.shape == (b, 4, h * w, c)
    assert torch.allclose(cross_merge(ys, h, w), 4 * x)
    # each direction separately inverts to the identity
    orders = cross_scan_orders(h, w)
    for k, order in enumerate(orders):
        assert torch.equal(order.invert(ys[:, k]), x.reshape(b, h * w, c))


@pytest.mark.parametrize("padded", [None, 16, 20])
def test_channels_first_cross_scan_matches_the_token_major_one(seed, padded):
    """``cross_scan_channels`` is ``cross_scan`` in the (B, 4, C, Lp) layout the scan reads, with
    padding steps appended; ``cross_merge_channels`` inverts each order and sums, gradients too."""
    from mambakit.vision.scan_orders import cross_merge_channels, cross_scan_channels

    b, h, w, c = 2, 5, 3, 4
    x = torch.randn(b, h, w, c, dtype=torch.float64, requires_grad=True)
    ys = cross_scan_channels(x.permute(0, 3, 1, 2), padded)
    assert ys.shape == (b, 4, c, padded or h * w) and ys.is_contiguous()
    torch.testing.assert_close(ys[..., :h * w], cross_scan(x).transpose(2, 3), rtol=0, atol=0)
    weights = torch.randn(4, dtype=torch.float64).view(1, 4, 1, 1)
    merged = cross_merge_channels(ys * weights, h, w)                   # (B, C, H*W)
    expected = sum(weights[0, k, 0, 0] * x for k in range(4)).permute(0, 3, 1, 2).reshape(b, c, h * w)
    torch.testing.assert_close(merged, expected)
    g = torch.randn_like(merged)
    (grad,) = torch.autograd.grad(merged, x, g)
    torch.testing.assert_close(grad, weights.sum() * g.view(b, c, h, w).permute(0, 2, 3, 1))
    with pytest.raises(ValueError, match="shorter"):
        cross_scan_channels(x.permute(0, 3, 1, 2), h * w - 1)
    with pytest.raises(ValueError, match="cross_merge_channels"):
        cross_merge_channels(ys[:, :3], h, w)


def test_merge_stack_mean_and_bidirectional(seed):
    x = torch.randn(3, 9, 5)
    orders = bidirectional_orders()
    assert isinstance(orders[0], Forward) and isinstance(orders[1], Reverse)
    stacked = scan_stack(x, orders)
    assert torch.equal(stacked[:, 1], x.flip(1))
    assert torch.allclose(merge_stack(stacked, orders, "mean"), x)
    with pytest.raises(ValueError, match="reduce"):
        merge_stack(stacked, orders, "max")


@pytest.mark.parametrize("position,expected", [("start", 0), ("middle", 98), ("none", None)])
def test_class_token_round_trip(seed, position, expected):
    patches, cls = torch.randn(2, 196, 8), torch.randn(1, 1, 8)
    assert class_token_index(196, position) == expected
    tokens, index = insert_class_token(patches, cls, position)
    assert index == expected
    assert tokens.shape[1] == 196 + (position != "none")
    back, cls_out = remove_class_token(tokens, index)
    assert torch.equal(back, patches)
    if expected is not None:
        assert torch.equal(cls_out, cls.expand(2, 1, 8)[:, 0])


def test_bad_orders_raise():
    with pytest.raises(ValueError, match="grid order"):
        GridOrder("diagonal", 2, 2)
    with pytest.raises(ValueError, match="3x3 grid has 9 tokens"):
        GridOrder("col", 3, 3).apply(torch.randn(1, 10, 2))
    with pytest.raises(ValueError, match="class token position"):
        class_token_index(4, "end")
    with pytest.raises(ValueError, match="cross_scan"):
        cross_scan(torch.randn(4, 4, 4))


def test_grid_orders_plug_into_the_core_backbone(seed):
    """The cross-scan orders are plain core ScanOrders: MambaBackbone applies and inverts them."""
    from mambakit import MambaBackbone

    h, w, d = 3, 4, 8
    backbone = MambaBackbone(d_model=d, n_layer=1, ssm_cfg={"d_state": 4, "impl": "reference"},
                             scan_orders=cross_scan_orders(h, w)).eval()
    x = torch.randn(2, h * w, d)
    y = backbone(x)
    assert y.shape == (2, h * w, d) and torch.isfinite(y).all()
    # equivariance: transposing the grid swaps the row- and column-major mixers' roles, so the
    # output of a backbone whose mixers are swapped accordingly matches the transposed output
    mixers = backbone.layers[0].mixer.mixers
    swapped = MambaBackbone(d_model=d, n_layer=1, ssm_cfg={"d_state": 4, "impl": "reference"},
                            scan_orders=cross_scan_orders(w, h)).eval()
    swapped.load_state_dict(backbone.state_dict())
    sm = swapped.layers[0].mixer.mixers
    for a, b in ((0, 1), (1, 0), (2, 3), (3, 2)):
        sm[a].load_state_dict(mixers[b].state_dict())
    xt = x.view(2, h, w, d).transpose(1, 2).reshape(2, h * w, d)
    yt = swapped(xt)
    assert torch.allclose(yt, y.view(2, h, w, d).transpose(1, 2).reshape(2, h * w, d), atol=1e-5)
