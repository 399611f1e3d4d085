"""Scan orders: the order in which a mixer reads a token sequence, as data.

A scan order is an index permutation of the sequence (the same for the whole batch ``(L,)``
or one per sample ``(B, L)``), optionally with a flip of the channel axis (as the
reverse complement needs), and its exact inverse. ``MultiOrderMixer`` runs a mixer over
each order, maps every output back to the original positions, and merges them (``sum``,
``mean`` or ``concat`` + projection). Bidirectional, cross-scan, reverse-complement and graph
orderings are all instances; a domain declares which it wants.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from .ops.packing import seq_idx_from_cu_seqlens

MERGES = ("sum", "mean", "concat")


class ScanOrder:
    """Base class: the identity order. Subclasses override ``index``.

    ``index(length, device)`` returns ``perm`` with ``scanned[:, i] = x[:, perm[i]]``; it may be
    ``(L,)`` or ``(B, L)``. ``causal`` says whether the order keeps time order (so the mixer
    can run recurrently).
    """

    name = "forward"
    causal = True

    def __init__(self, flip_channels: bool = False) -> None:
        self.flip_channels = flip_channels

    def index(self, length: int, device: torch.device | str = "cpu") -> Optional[torch.Tensor]:
        """``None`` means the identity (no gather needed)."""
        return None

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, L, D)`` in original order -> ``(B, L, D)`` in scan order."""
        perm = self.index(x.shape[1], x.device)
        if perm is not None:
            x = _gather_time(x, perm)
        return x.flip(-1) if self.flip_channels else x

    def apply_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Per-position ids ``(B, L)`` (e.g. packed ``seq_idx``) in scan order (no channel flip)."""
        perm = self.index(ids.shape[1], ids.device)
        return ids if perm is None else _gather_time(ids.unsqueeze(-1), perm).squeeze(-1)

    def invert(self, y: torch.Tensor) -> torch.Tensor:
        """``y (B, L, D)`` in scan order -> ``(B, L, D)`` at the original positions."""
        if self.flip_channels:
            y = y.flip(-1)
        perm = self.index(y.shape[1], y.device)
        if perm is None:
            return y
        return _scatter_time(y, perm)

    def __repr__(self) -> str:
        flip = ", flip_channels=True" if self.flip_channels else ""
        return f"{type(self).__name__}({flip.lstrip(', ')})"


class Forward(ScanOrder):
    """Read tokens left to right."""


class Reverse(ScanOrder):
    """Read tokens right to left."""

    name = "reverse"
    causal = False

    def index(self, length: int, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.arange(length - 1, -1, -1, device=device)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flip(1)
        return x.flip(-1) if self.flip_channels else x

    def invert(self, y: torch.Tensor) -> torch.Tensor:
        if self.flip_channels:
            y = y.flip(-1)
        return y.flip(1)


class Permutation(ScanOrder):
    """A fixed permutation ``(L,)`` or per-sample permutations ``(B, L)``, or a function
    ``length -> perm`` for orders that depend on the length (e.g. a 2-D grid's column-major)."""

    name = "permutation"
    causal = False

    def __init__(self, perm: torch.Tensor | Callable[[int], torch.Tensor], flip_channels: bool = False,
                 name: str = "permutation") -> None:
        super().__init__(flip_channels)
        if isinstance(perm, torch.Tensor):
            check_permutation(perm)
        self._perm = perm
        self.name = name

    def index(self, length: int, device: torch.device | str = "cpu") -> torch.Tensor:
        perm = self._perm(length) if callable(self._perm) else self._perm
        if callable(self._perm):
            check_permutation(perm)
        if perm.shape[-1] != length:
            raise ValueError(f"scan order {self.name!r}: permutation has length {perm.shape[-1]}, "
                             f"the sequence has length {length}")
        return perm.to(device)


def check_permutation(perm: torch.Tensor) -> None:
    """Raise unless every row of ``perm (L,)`` or ``(B, L)`` is a permutation of ``0..L-1``."""
    if perm.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"permutation: expected an integer tensor, got {perm.dtype}")
    if perm.dim() not in (1, 2):
        raise ValueError(f"permutation: expected shape (L,) or (B, L), got {tuple(perm.shape)}")
    length = perm.shape[-1]
    expected = torch.arange(length, device=perm.device)
    if not torch.equal(perm.sort(-1).values, expected.expand_as(perm)):
        raise ValueError("permutation: each row must contain every index 0..L-1 exactly once")


def _check_batch(x: torch.Tensor, perm: torch.Tensor) -> None:
    if perm.dim() == 2 and perm.shape[0] != x.shape[0]:
        raise ValueError(f"scan order: per-sample permutations for batch {perm.shape[0]}, "
                         f"the input has batch {x.shape[0]}")


def _gather_time(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    _check_batch(x, perm)
    if perm.dim() == 1:
        return x.index_select(1, perm)
    return torch.gather(x, 1, perm.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _scatter_time(y: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    _check_batch(y, perm)
    if perm.dim() == 1:
        return y.index_select(1, torch.argsort(perm))
    out = torch.empty_like(y)
    return out.scatter_(1, perm.unsqueeze(-1).expand(-1, -1, y.shape[-1]), y)


ORDERS_BY_NAME = {"forward": Forward, "reverse": Reverse}


def resolve_orders(orders: Sequence[ScanOrder | str] | None) -> list[ScanOrder]:
    """Names ('forward', 'reverse', 'bidirectional') or ScanOrder objects -> ScanOrder list."""
    if orders is None:
        return [Forward()]
    if isinstance(orders, (str, ScanOrder)):
        orders = [orders]
    resolved: list[ScanOrder] = []
    for order in orders:
        if isinstance(order, ScanOrder):
            resolved.append(order)
        elif order == "bidirectional":
            resolved.extend([Forward(), Reverse()])
        elif order in ORDERS_BY_NAME:
            resolved.append(ORDERS_BY_NAME[order]())
        else:
            raise ValueError(f"unknown scan order {order!r}; expected one of "
                             f"{sorted([*ORDERS_BY_NAME, 'bidirectional'])} or a ScanOrder")
    if not resolved:
        raise ValueError("expected at least one scan order")
    return resolved


def bidirectional() -> list[ScanOrder]:
    """Forward and reverse (Vim's and Caduceus's bidirectional scan)."""
    return [Forward(), Reverse()]


class MultiOrderMixer(nn.Module):
    """Runs a mixer over several scan orders and merges the outputs. ``(B, L, D) -> (B, L, D)``.

    ``share_mixer`` uses one set of weights for every order (parameter-efficient
    bidirectionality); otherwise each order has its own mixer in ``mixers``. ``forward(...,
    orders=[...])`` scans in other orders for that call only (one per configured order, each run by
    that order's mixer): orders that change with every batch, such as graph node orderings or
    random permutations for augmentation.
    """

    def __init__(self, dim: int, mixer_cls: Callable[[int], nn.Module], orders: Sequence[ScanOrder | str],
                 merge: str = "sum", share_mixer: bool = False) -> None:
        super().__init__()
        if merge not in MERGES:
            raise ValueError(f"merge: expected one of {MERGES}, got {merge!r}")
        self.orders = resolve_orders(orders)
        self.merge = merge
        self.share_mixer = share_mixer
        n_mixers = 1 if share_mixer else len(self.orders)
        self.mixers = nn.ModuleList([mixer_cls(dim) for _ in range(n_mixers)])
        if merge == "concat":
            self.merge_proj = nn.Linear(dim * len(self.orders), dim, bias=False)

    def forward(self, hidden_states: torch.Tensor, inference_params=None,
                orders: Optional[Sequence[ScanOrder]] = None, **mixer_kwargs) -> torch.Tensor:
        """``hidden_states (B, L, D) -> (B, L, D)``; ``orders``: this call's scan orders (default:
        the configured ones), as many as configured."""
        if orders is None:
            orders = self.orders
        elif len(orders) != len(self.orders) or not all(isinstance(o, ScanOrder) for o in orders):
            raise ValueError(f"orders: expected {len(self.orders)} ScanOrder objects (one per configured "
                             f"order), got {[type(o).__name__ for o in orders]}")
        if inference_params is not None:
            if len(orders) != 1 or not orders[0].causal:
                raise ValueError("recurrent inference needs a single causal (forward) scan order; "
                                 f"this layer scans {[o.name for o in orders]}")
            return self.mixers[0](hidden_states, inference_params=inference_params, **mixer_kwargs)
        seq_idx = mixer_kwargs.pop("seq_idx", None)
        cu_seqlens = mixer_kwargs.pop("cu_seqlens", None)
        if cu_seqlens is not None:
            if seq_idx is not None:
                raise ValueError("pass either seq_idx or cu_seqlens, not both")
            seq_idx = seq_idx_from_cu_seqlens(cu_seqlens, hidden_states.shape[1]).to(hidden_states.device)
        outs = []
        for k, order in enumerate(orders):
            mixer = self.mixers[0 if self.share_mixer else k]
            kwargs = dict(mixer_kwargs)
            if seq_idx is not None:
                # Packed sequences read in this order: the scan resets wherever the id changes,
                # so no state crosses from one sequence into another in any order.
                kwargs["seq_idx"] = order.apply_ids(seq_idx)
            outs.append(order.invert(mixer(order.apply(hidden_states), **kwargs)))
        if self.merge == "concat":
            return self.merge_proj(torch.cat(outs, dim=-1))
        merged = torch.stack(outs, dim=0).sum(0)
        return merged / len(outs) if self.merge == "mean" else merged

    def allocate_inference_cache(self, batch_size: int, max_seqlen: int = 0, dtype=None):
        if len(self.orders) != 1 or not self.orders[0].causal:
            raise ValueError("recurrent inference needs a single causal (forward) scan order")
        return self.mixers[0].allocate_inference_cache(batch_size, max_seqlen, dtype=dtype)

    @property
    def layer_idx(self) -> Optional[int]:
        return getattr(self.mixers[0], "layer_idx", None)
