"""Scan orders for 2-D token grids, as core ``ScanOrder`` instances.

A grid of ``H x W`` patch tokens is flattened row-major into a sequence ``(B, H*W, D)``
(token ``(i, j)`` at position ``i * W + j``). Two families of orders read it:

* Vim's bidirectional scan: the row-major sequence (optionally with a class token inserted at
  the start or the middle) read forward and backward -- the core ``Forward`` / ``Reverse``.
* VMamba's cross-scan: row-major, column-major, and both reversed (``GridOrder``). The four
  outputs are mapped back to row-major positions and summed ("cross-merge").

Every order is an index permutation with an exact inverse (``apply`` then ``invert`` is the
identity), which the tests check.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional, Sequence

import torch

from mambakit.scan_orders import Forward, Reverse, ScanOrder

GRID_ORDERS = ("row", "col", "row_rev", "col_rev")
CLS_POSITIONS = ("start", "middle", "none")


@lru_cache(maxsize=64)
def _grid_perm(kind: str, height: int, width: int) -> torch.Tensor:
    """Positions (row-major) in the order ``kind`` reads them, ``(H*W,)`` int64 on CPU."""
    grid = torch.arange(height * width).view(height, width)                  # (H, W) row-major ids
    if kind.startswith("col"):
        grid = grid.t()                                                       # (W, H): column-major
    perm = grid.reshape(-1)
    return perm.flip(0) if kind.endswith("_rev") else perm


class GridOrder(ScanOrder):
    """One of VMamba's four cross-scan directions over an ``H x W`` row-major token grid.

    ``kind``: ``"row"`` (row-major), ``"col"`` (column-major), ``"row_rev"``, ``"col_rev"``.
    ``apply``/``invert`` map ``(B, H*W, D)`` between row-major and scan order.
    """

    def __init__(self, kind: str, height: int, width: int) -> None:
        super().__init__(flip_channels=False)
        if kind not in GRID_ORDERS:
            raise ValueError(f"grid order: expected one of {GRID_ORDERS}, got {kind!r}")
        if int(height) < 1 or int(width) < 1:
            raise ValueError(f"grid order: height and width must be >= 1, got {height}x{width}")
        self.kind, self.height, self.width = kind, int(height), int(width)
        self.name = kind
        self.causal = kind == "row"

    def index(self, length: int, device: torch.device | str = "cpu") -> Optional[torch.Tensor]:
        if length != self.height * self.width:
            raise ValueError(f"grid order {self.kind!r}: a {self.height}x{self.width} grid has "
                             f"{self.height * self.width} tokens, the sequence has {length}")
        if self.kind == "row":
            return None
        return _grid_perm(self.kind, self.height, self.width).to(device)

    def __repr__(self) -> str:
        return f"GridOrder({self.kind!r}, {self.height}, {self.width})"


def cross_scan_orders(height: int, width: int) -> list[ScanOrder]:
    """VMamba's four directions for an ``H x W`` grid: row, column, row reversed, column reversed."""
    return [GridOrder(kind, height, width) for kind in GRID_ORDERS]


def bidirectional_orders() -> list[ScanOrder]:
    """Vim's scan: the token sequence (class token included) forward and backward."""
    return [Forward(), Reverse()]


def scan_stack(x: torch.Tensor, orders: Sequence[ScanOrder]) -> torch.Tensor:
    """``x (B, L, D)`` -> ``(B, K, L, D)``: the sequence as each of the ``K`` orders reads it."""
    return torch.stack([order.apply(x) for order in orders], dim=1)


def merge_stack(ys: torch.Tensor, orders: Sequence[ScanOrder], reduce: str = "sum") -> torch.Tensor:
    """``ys (B, K, L, D)`` in each order's scan order -> ``(B, L, D)`` at the original positions,
    summed (``"sum"``, VMamba's cross-merge) or averaged (``"mean"``, Vim's ``divide_out``)."""
    if ys.shape[1] != len(orders):
        raise ValueError(f"merge_stack: {ys.shape[1]} outputs for {len(orders)} orders")
    if reduce not in ("sum", "mean"):
        raise ValueError(f"merge_stack: reduce must be 'sum' or 'mean', got {reduce!r}")
    out = orders[0].invert(ys[:, 0])
    for k in range(1, len(orders)):
        out = out + orders[k].invert(ys[:, k])
    return out / len(orders) if reduce == "mean" else out


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """VMamba cross-scan of a channels-last map ``x (B, H, W, C)`` -> ``(B, 4, H*W, C)``."""
    if x.dim() != 4:
        raise ValueError(f"cross_scan: expected (B, H, W, C), got {tuple(x.shape)}")
    b, h, w, c = x.shape
    return scan_stack(x.reshape(b, h * w, c), cross_scan_orders(h, w))


def cross_merge(ys: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of ``cross_scan`` followed by a sum: ``ys (B, 4, H*W, C)`` -> ``(B, H, W, C)``."""
    if ys.dim() != 4 or ys.shape[1] != 4 or ys.shape[2] != height * width:
        raise ValueError(f"cross_merge: expected (B, 4, {height * width}, C), got {tuple(ys.shape)}")
    merged = merge_stack(ys, cross_scan_orders(height, width), "sum")          # (B, H*W, C)
    return merged.view(ys.shape[0], height, width, ys.shape[-1])


@lru_cache(maxsize=64)
def _cross_scan_index(height: int, width: int, padded: int, device: str) -> torch.Tensor:
    """``(4, padded)``: the row-major position each cross-scan order reads at step ``t``; the
    padding steps ``t >= H*W`` read position 0 (their results are discarded)."""
    length = height * width
    index = torch.zeros(len(GRID_ORDERS), padded, dtype=torch.long)
    for k, kind in enumerate(GRID_ORDERS):
        index[k, :length] = _grid_perm(kind, height, width)
    return index.to(device)


@lru_cache(maxsize=64)
def _cross_merge_index(height: int, width: int, device: str) -> torch.Tensor:
    """``(4, H*W)``: the step at which each cross-scan order reads row-major position ``p``."""
    return torch.stack([torch.argsort(_grid_perm(kind, height, width)) for kind in GRID_ORDERS]).to(device)


def cross_scan_channels(x: torch.Tensor, padded: Optional[int] = None) -> torch.Tensor:
    """Channels-first cross-scan: ``x (B, C, H, W)`` -> ``(B, 4, C, Lp)``, contiguous, the four
    orders' sequences (row, column, both reversed) in one gather; ``Lp = padded`` (default
    ``H*W``) adds steps at the end of every sequence (causal scans never read them back)."""
    if x.dim() != 4:
        raise ValueError(f"cross_scan_channels: expected (B, C, H, W), got {tuple(x.shape)}")
    b, c, h, w = x.shape
    padded = h * w if padded is None else padded
    if padded < h * w:
        raise ValueError(f"cross_scan_channels: padded={padded} is shorter than the {h * w} tokens")
    flat = x.reshape(b, 1, c, h * w).expand(b, len(GRID_ORDERS), c, h * w)
    index = _cross_scan_index(h, w, padded, str(x.device)).view(1, -1, 1, padded)
    return flat.gather(-1, index.expand(b, -1, c, -1))


def cross_merge_channels(ys: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of ``cross_scan_channels`` summed over the orders: ``ys (B, 4, C, >= H*W)`` (scan
    order, padding ignored) -> ``(B, C, H*W)`` at row-major positions."""
    length = height * width
    if ys.dim() != 4 or ys.shape[1] != len(GRID_ORDERS) or ys.shape[-1] < length:
        raise ValueError(f"cross_merge_channels: expected (B, 4, C, >= {length}), got {tuple(ys.shape)}")
    b, k, c, _ = ys.shape
    index = _cross_merge_index(height, width, str(ys.device)).view(1, k, 1, length)
    return ys.gather(-1, index.expand(b, -1, c, -1)).sum(1)


def class_token_index(num_patches: int, position: str) -> Optional[int]:
    """Where Vim puts the class token in a sequence of ``num_patches`` patches: ``0`` (start),
    ``num_patches // 2`` (middle, as the official Vim) or ``None``."""
    if position not in CLS_POSITIONS:
        raise ValueError(f"class token position: expected one of {CLS_POSITIONS}, got {position!r}")
    if position == "none":
        return None
    return 0 if position == "start" else num_patches // 2


def insert_class_token(patches: torch.Tensor, cls: torch.Tensor, position: str) -> tuple[torch.Tensor, Optional[int]]:
    """``patches (B, N, D)``, ``cls (B or 1, 1, D)`` -> ``(B, N + 1, D)`` (or ``(B, N, D)`` for
    ``"none"``) and the class token's index."""
    index = class_token_index(patches.shape[1], position)
    if index is None:
        return patches, None
    cls = cls.expand(patches.shape[0], -1, -1)
    return torch.cat([patches[:, :index], cls, patches[:, index:]], dim=1), index


def remove_class_token(tokens: torch.Tensor, index: Optional[int]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Inverse of ``insert_class_token``: ``(B, N + 1, D)`` -> patches ``(B, N, D)``, cls ``(B, D)``."""
    if index is None:
        return tokens, None
    return torch.cat([tokens[:, :index], tokens[:, index + 1:]], dim=1), tokens[:, index]
