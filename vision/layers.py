"""Vision mixers: one selective scan per scan order, all orders in a single fused scan call.

* ``MultiOrderMamba`` -- Vim's bidirectional Mamba ("bimamba v2"): a shared ``in_proj`` and
  ``out_proj``, and per order its own causal conv1d, ``x_proj``, ``dt_proj``, ``A_log`` and
  ``D`` (``branches[k]``, mamba_ssm names). Output ``out_proj(mean_k invert_k(y_k))``.
* ``SS2D`` -- VMamba's 2-D selective scan: ``in_proj`` -> depthwise 3x3 conv + SiLU on the map ->
  cross-scan (4 orders) -> per-order ``x_proj``/``dt_proj``/``A_log``/``D`` -> cross-merge (sum)
  -> LayerNorm -> gate ``* SiLU(z)`` -> ``out_proj``.

The ``K`` orders are stacked along channels, ``(B, K*E, L)``, with ``K`` groups of ``B``/``C``, so
the core ``selective_scan`` runs them in one call (Triton on GPU, Numba on CPU). On a GPU Vim's
forward/reverse mixer pads the sequence at its end to aligned rows and flips the tokens before
``in_proj``, so nothing between ``in_proj`` and the scan is copied (``benchmarks/layout_traffic.py``).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mambakit.modules.channels_first import channels_to_tokens, tokens_to_channels
from mambakit.modules.mamba import init_dt_bias, ssm_param
from mambakit.ops.conv1d import causal_conv1d, conv_impl
from mambakit.ops.selective_scan import selective_scan
from mambakit.ops.time_layout import padded_length, scan_time_multiple
from mambakit.scan_orders import Forward, Reverse, ScanOrder

from .scan_orders import cross_merge_channels, cross_scan_channels, merge_stack, scan_stack


class SSMBranch(nn.Module):
    """The per-order parameters of a selective SSM over ``d_inner`` channels (mamba_ssm names):
    ``conv1d`` (optional, causal depthwise), ``x_proj (R + 2N, E)``, ``dt_proj``, ``A_log (E, N)``,
    ``D (E,)``; initialised as mamba_ssm's Mamba."""

    def __init__(self, d_inner: int, d_state: int, dt_rank: int, d_conv: int = 0, conv_bias: bool = True,
                 dt_min: float = 0.001, dt_max: float = 0.1, dt_init_floor: float = 1e-4) -> None:
        super().__init__()
        if d_conv > 0:
            self.conv1d = nn.Conv1d(d_inner, d_inner, kernel_size=d_conv, groups=d_inner,
                                    padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        std = dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        with torch.no_grad():
            self.dt_proj.bias.copy_(init_dt_bias(d_inner, dt_min, dt_max, dt_init_floor))
        self.dt_proj.bias._no_reinit = True
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)   # (E, N)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(d_inner))
        self.D._no_weight_decay = True


def _scan_branches(xs: torch.Tensor, branches: Sequence[SSMBranch], d_state: int, dt_rank: int,
                   z: Optional[torch.Tensor] = None, impl: str = "auto") -> torch.Tensor:
    """Run ``K`` branches on their own sequences in one scan call.

    ``xs (B, K, E, L)`` (post conv/activation), ``z (B, K, E, L)`` optional gate -> ``(B, K, E, L)``.
    """
    b, k, e, length = xs.shape
    w_x = torch.stack([br.x_proj.weight for br in branches])                  # (K, R + 2N, E)
    w_dt = torch.stack([br.dt_proj.weight for br in branches])                # (K, E, R)
    dt_bias = ssm_param(torch.cat([br.dt_proj.bias for br in branches]))         # (K*E,)
    A = -torch.exp(ssm_param(torch.cat([br.A_log for br in branches])))          # (K*E, N)
    D = ssm_param(torch.cat([br.D for br in branches]))                          # (K*E,)
    # batched matmuls over (B, K) read xs and dt in place (an einsum would first copy them into
    # a (K, E, B*L) layout)
    x_dbl = torch.matmul(w_x.to(xs.dtype), xs)                                # (B, K, R + 2N, L)
    dt, B_, C_ = torch.split(x_dbl, [dt_rank, d_state, d_state], dim=2)
    dt = torch.matmul(w_dt.to(xs.dtype), dt)                                  # (B, K, E, L)
    y = selective_scan(xs.reshape(b, k * e, length), dt.reshape(b, k * e, length), A,
                       B_, C_, D,
                       z=None if z is None else z.reshape(b, k * e, length),
                       delta_bias=dt_bias, delta_softplus=True, impl=impl)    # (B, K*E, L)
    return y.view(b, k, e, length)


class MultiOrderMamba(nn.Module):
    """Vim's bidirectional Mamba generalised to any scan orders. ``(B, L, D) -> (B, L, D)``.

    ``orders`` are core ``ScanOrder`` objects (Vim: ``[Forward(), Reverse()]``); each reads the
    sequence (class token included) through its own conv/SSM branch; outputs are mapped back and
    averaged (``divide_out=True``, Vim's ``if_devide_out``) or summed, then projected.
    """

    #: Time padding of the channels-first activations: ``"auto"`` pads to a multiple of
    #: ``TIME_ALIGN`` steps where the Triton scan reads them (``scan_time_multiple``), so that every
    #: tensor the conv and the scan read has aligned rows and none is copied; an int forces that
    #: multiple (1: none).
    time_align: int | str = "auto"
    #: Where a reverse order flips the sequence: ``True`` on the ``(B, Lp, d_model)`` tokens, with
    #: ``in_proj`` applied to each reading (K times its FLOPs, no pass over the 2E channels: the
    #: better trade on a GPU); ``False`` on the ``(B, 2E, Lp)`` channels after one ``in_proj``
    #: (the better trade on a CPU); ``"auto"`` picks by device.
    flip_tokens: bool | str = "auto"

    def __init__(self, d_model: int, orders: Sequence[ScanOrder], d_state: int = 16, d_conv: int = 4,
                 expand: float = 2, dt_rank: int | str = "auto", divide_out: bool = True,
                 conv_bias: bool = True, bias: bool = False, impl: str = "auto") -> None:
        super().__init__()
        if not orders:
            raise ValueError("MultiOrderMamba: expected at least one scan order")
        self.orders = list(orders)
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.divide_out, self.impl = divide_out, impl
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.branches = nn.ModuleList([SSMBranch(self.d_inner, d_state, self.dt_rank, d_conv, conv_bias)
                                       for _ in self.orders])
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, hidden_states: torch.Tensor, **_: object) -> torch.Tensor:
        if all(type(o) in (Forward, Reverse) and not o.flip_channels for o in self.orders):
            return self._forward_channels_first(hidden_states)
        b, length, _ = hidden_states.shape
        k, e = len(self.orders), self.d_inner
        xz = self.in_proj(hidden_states)                                      # (B, L, 2E)
        xz = scan_stack(xz, self.orders)                                      # (B, K, L, 2E)
        xz = xz.transpose(2, 3)                                               # (B, K, 2E, L)
        x, z = xz[:, :, :e], xz[:, :, e:]                                     # (B, K, E, L) each
        w = torch.cat([br.conv1d.weight.squeeze(1) for br in self.branches])  # (K*E, W)
        bias = (torch.cat([br.conv1d.bias for br in self.branches])
                if self.branches[0].conv1d.bias is not None else None)
        x = causal_conv1d(x.reshape(b, k * e, length), w.to(x.dtype),
                          None if bias is None else bias.to(x.dtype), "silu", impl=conv_impl(self.impl))  # (B, K*E, L)
        y = _scan_branches(x.view(b, k, e, length), self.branches, self.d_state, self.dt_rank,
                           z=z, impl=self.impl)                               # (B, K, E, L)
        y = merge_stack(y.transpose(2, 3), self.orders,
                        "mean" if self.divide_out else "sum")                 # (B, L, E)
        return self.out_proj(y)

    def _time_multiple(self, x: torch.Tensor) -> int:
        return scan_time_multiple(x, self.impl) if self.time_align == "auto" else int(self.time_align)

    def _readings(self, tokens: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded tokens ``(B, Lp, D)`` -> ``x (B, K*E, Lp)`` and ``z (B, K, E, Lp)``, contiguous:
        block ``k`` is ``in_proj`` of the sequence in order ``k``'s reading."""
        b, padded, d = tokens.shape
        k, e = len(self.orders), self.d_inner
        reverse = [type(o) is Reverse for o in self.orders]
        w_in, b_in = self.in_proj.weight, self.in_proj.bias
        flip_tokens = tokens.is_cuda if self.flip_tokens == "auto" else bool(self.flip_tokens)
        if flip_tokens:
            stacked = torch.stack([_reverse_prefix(tokens, length, 1) if r else tokens for r in reverse], 1)
            stacked = stacked.view(b * k, padded, d)                          # (B*K, Lp, D)
            xs = tokens_to_channels(stacked, w_in[:e], None if b_in is None else b_in[:e])
            zs = tokens_to_channels(stacked, w_in[e:], None if b_in is None else b_in[e:])
            return xs.view(b, k * e, padded), zs.view(b, k, e, padded)
        xz = tokens_to_channels(tokens, w_in, b_in)                           # (B, 2E, Lp)

        def stack(t: torch.Tensor) -> torch.Tensor:                           # (B, E, Lp) -> (B, K*E, Lp)
            return torch.cat([_reverse_prefix(t, length, 2) if r else t for r in reverse], dim=1)
        return stack(xz[:, :e]), stack(xz[:, e:]).view(b, k, e, padded)

    def _forward_channels_first(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The same function for forward/reverse orders (Vim's), computed in the ``(B, C, L)``
        layout the conv and the scan read, with no copy of the activations between in_proj and
        the scan.

        The sequence is padded at its end to ``Lp`` steps (a multiple of ``time_align``), and a
        reverse order reads the ``L`` real tokens backwards with the padding still at the end.
        Every order is causal in its own reading order, so the real positions never see the
        padding, and all the ``(B, K*E, Lp)`` tensors are contiguous with aligned rows: the scan
        reads them in place (unaligned rows cost a strided copy of u, dt, z, B and C per layer).
        """
        b, length, _ = hidden_states.shape
        k, e = len(self.orders), self.d_inner
        padded = padded_length(length, self._time_multiple(hidden_states))
        tokens = F.pad(hidden_states, (0, 0, 0, padded - length)) if padded > length else hidden_states
        xs, zs = self._readings(tokens, length)
        w = torch.cat([br.conv1d.weight.squeeze(1) for br in self.branches])  # (K*E, W)
        bias = (torch.cat([br.conv1d.bias for br in self.branches])
                if self.branches[0].conv1d.bias is not None else None)
        xs = causal_conv1d(xs, w.to(xs.dtype), None if bias is None else bias.to(xs.dtype), "silu",
                           impl=conv_impl(self.impl))                         # (B, K*E, Lp)
        y = _scan_branches(xs.view(b, k, e, padded), self.branches, self.d_state, self.dt_rank,
                           z=zs, impl=self.impl)[..., :length]                # (B, K, E, L)
        merged = y[:, 0].flip(-1) if type(self.orders[0]) is Reverse else y[:, 0]
        for i in range(1, k):
            merged = merged + (y[:, i].flip(-1) if type(self.orders[i]) is Reverse else y[:, i])  # (B, E, L)
        # the mean over orders is folded into out_proj's (D, E) weight: no pass over (B, E, L)
        w_out = self.out_proj.weight / k if self.divide_out else self.out_proj.weight
        return channels_to_tokens(merged, w_out, self.out_proj.bias)          # (B, L, D)


def _reverse_prefix(x: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    """``x`` with its first ``length`` entries along ``dim`` reversed and the rest in place."""
    if length == x.shape[dim]:
        return x.flip(dim)
    head, tail = x.narrow(dim, 0, length), x.narrow(dim, length, x.shape[dim] - length)
    return torch.cat([head.flip(dim), tail], dim)


class SS2D(nn.Module):
    """VMamba's 2-D selective scan over a channels-last map ``(B, H, W, C) -> (B, H, W, C)``."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 3, expand: float = 2,
                 dt_rank: int | str = "auto", conv_bias: bool = True, bias: bool = False,
                 impl: str = "auto") -> None:
        super().__init__()
        self.d_model, self.d_state = d_model, d_state
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.impl = impl
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv2d = nn.Conv2d(self.d_inner, self.d_inner, kernel_size=d_conv, padding=(d_conv - 1) // 2,
                                groups=self.d_inner, bias=conv_bias)
        self.branches = nn.ModuleList([SSMBranch(self.d_inner, d_state, self.dt_rank, 0) for _ in range(4)])
        self.out_norm = nn.LayerNorm(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, H, W, C)`` -> ``(B, H, W, C)``. The four orders are gathered straight into the
        ``(B, 4, E, Lp)`` layout the scan reads (padded at the end to aligned rows where the
        Triton scan reads them), so nothing between the conv and the scan is copied again."""
        b, h, w, _ = x.shape
        e, length = self.d_inner, h * w
        x, z = self.in_proj(x).chunk(2, dim=-1)                               # (B, H, W, E) each
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))                        # (B, E, H, W)
        padded = padded_length(length, scan_time_multiple(x, self.impl))
        xs = cross_scan_channels(x, padded)                                   # (B, 4, E, Lp)
        y = _scan_branches(xs, self.branches, self.d_state, self.dt_rank, impl=self.impl)  # (B, 4, E, Lp)
        y = cross_merge_channels(y, h, w)                                     # (B, E, L)
        y = y.transpose(1, 2).reshape(b, h, w, e)                             # (B, H, W, E)
        y = self.out_norm(y) * F.silu(z)
        return self.out_proj(y)
