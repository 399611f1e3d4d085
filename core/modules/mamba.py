"""The Mamba-1 mixer (selective SSM block), with mamba_ssm's parameters, init and cache."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.conv1d import causal_conv1d, causal_conv1d_update, conv_impl
from ..ops.selective_scan import selective_scan
from ..ops.state_update import selective_state_update
from ..ops.time_layout import padded_length, scan_time_multiple
from .channels_first import channels_to_channels, channels_to_tokens, tokens_to_channels
from .mixer import RecurrentMixer


def ssm_param(p: torch.Tensor) -> torch.Tensor:
    """A, D and the dt bias enter the scan in float32 when the model is in half precision (as
    mamba_ssm), and keep float64 in a float64 model."""
    return p if p.dtype == torch.float64 else p.float()


def init_dt_bias(size: int, dt_min: float, dt_max: float, dt_init_floor: float,
                 device=None) -> torch.Tensor:
    """Bias whose softplus is log-uniform in ``[dt_min, dt_max]`` (inverse softplus of dt)."""
    dt = torch.exp(torch.rand(size, device=device) * (math.log(dt_max) - math.log(dt_min))
                   + math.log(dt_min)).clamp(min=dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))


class Mamba(RecurrentMixer):
    """Mamba-1 mixer over ``(B, L, d_model)``.

    in_proj -> (x, z); x -> causal depthwise conv -> SiLU -> selective scan (input-dependent
    dt, B, C from x_proj / dt_proj) gated by SiLU(z) -> out_proj. Constructor arguments,
    initialisation and parameter names are mamba_ssm's, so its state dicts load unchanged.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: float = 2,
                 dt_rank: int | str = "auto", dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init: str = "random", dt_scale: float = 1.0, dt_init_floor: float = 1e-4,
                 conv_bias: bool = True, bias: bool = False, use_fast_path: bool = True,
                 layer_idx: Optional[int] = None, impl: str = "auto", device=None, dtype=None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.layer_idx = layer_idx
        self.impl = impl
        self.use_fast_path = use_fast_path  # kept for signature compatibility with mamba_ssm

        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias, **factory)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias, **factory)
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)

        dt_init_std = self.dt_rank ** -0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        else:
            raise ValueError(f"dt_init: expected 'constant' or 'random', got {dt_init!r}")
        with torch.no_grad():
            self.dt_proj.bias.copy_(init_dt_bias(self.d_inner, dt_min, dt_max, dt_init_floor, device))
        self.dt_proj.bias._no_reinit = True

        # S4D-real initialisation: A[d, n] = -(n + 1)
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    # ---- parallel path ---------------------------------------------------------------------
    def _scan_stateless(self, hidden_states: torch.Tensor, seq_idx: Optional[torch.Tensor]) -> torch.Tensor:
        """Without states to keep, the sequence is padded at its end to whole rows of
        ``TIME_ALIGN`` steps where the Triton scan reads it: every ``(B, channels, L)`` tensor is
        then contiguous with aligned rows and read in place (unaligned rows cost a strided copy of
        x, dt, z, B and C forward and more backward). The layer is causal, so the real positions
        never see the padding; the padded steps' final state is never returned."""
        length = hidden_states.shape[1]
        padded = padded_length(length, scan_time_multiple(hidden_states, self.impl))
        if padded == length:
            return super()._scan_stateless(hidden_states, seq_idx)
        tokens = F.pad(hidden_states, (0, 0, 0, padded - length))            # (B, Lp, d_model)
        if seq_idx is not None:       # the padding continues the last packed sequence
            seq_idx = torch.cat([seq_idx, seq_idx[:, -1:].expand(-1, padded - length)], 1)
        return super()._scan_stateless(tokens, seq_idx)[:, :length].contiguous()

    def _scan(self, hidden_states: torch.Tensor, conv_state: Optional[torch.Tensor],
              ssm_state: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor]):
        """Parallel path from optional cached states ``conv_state (B, D_in, W)``,
        ``ssm_state (B, D_in, N)``; returns ``(out, new conv_state, new ssm_state)``."""
        # Produce (B, channels, L) tensors that are contiguous along L: the scan kernels read
        # them along time, and strided reads there cost several times the scan itself on a GPU.
        # (Batched products with the weights expanded over the batch read and write these layouts
        # in place; see channels_first.py.)
        xz = tokens_to_channels(hidden_states, self.in_proj.weight, self.in_proj.bias)  # (B, 2*D_in, L)
        x_in, z = xz.chunk(2, dim=1)                                          # (B, D_in, L) each
        x = causal_conv1d(x_in, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu",
                          initial_state=None if conv_state is None else conv_state[..., 1:],
                          seq_idx=seq_idx, impl=conv_impl(self.impl))         # (B, D_in, L)
        x_dbl = channels_to_channels(x, self.x_proj.weight, self.x_proj.bias)  # (B, R + 2N, L)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)
        dt = channels_to_channels(dt, self.dt_proj.weight)                    # (B, D_in, L)
        A = -torch.exp(ssm_param(self.A_log))                                    # (D_in, N)
        y, last_state = selective_scan(
            x, dt, A, B, C, ssm_param(self.D), z=z,                           # B, C: (B, N, L) views
            delta_bias=ssm_param(self.dt_proj.bias), delta_softplus=True, return_last_state=True,
            initial_state=ssm_state, seq_idx=seq_idx, impl=self.impl)         # (B, D_in, L)
        out = channels_to_tokens(y, self.out_proj.weight, self.out_proj.bias)  # (B, L, d_model)
        new_conv_state = None
        if conv_state is not None:
            new_conv_state = torch.cat([conv_state, x_in.to(conv_state.dtype)], -1)[..., -self.d_conv:]
        return out, new_conv_state, last_state

    # ---- recurrent path --------------------------------------------------------------------
    def allocate_inference_cache(self, batch_size: int, max_seqlen: int = 0, dtype=None
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero states: ``conv_state (B, d_inner, d_conv)``, ``ssm_state (B, d_inner, d_state)``.

        Their size does not depend on ``max_seqlen`` (kept for mamba_ssm compatibility).
        """
        device = self.out_proj.weight.device
        conv_dtype = dtype or self.conv1d.weight.dtype
        conv_state = torch.zeros(batch_size, self.d_inner, self.d_conv, device=device, dtype=conv_dtype)
        ssm_state = torch.zeros(batch_size, self.d_inner, self.d_state, device=device,
                                dtype=dtype or torch.float32)
        return conv_state, ssm_state

    def _step_token(self, hidden_states: torch.Tensor, conv_state: torch.Tensor,
                    ssm_state: torch.Tensor) -> torch.Tensor:
        xz = self.in_proj(hidden_states)                                      # (B, 2*D_in)
        x, z = xz.chunk(2, dim=-1)                                            # (B, D_in)
        x = causal_conv1d_update(x, conv_state, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu")
        x_db = self.x_proj(x)                                                 # (B, R + 2N)
        dt, B, C = torch.split(x_db, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = dt @ self.dt_proj.weight.t()                                     # (B, D_in)
        A = -torch.exp(ssm_param(self.A_log))
        y = selective_state_update(ssm_state, x, dt, A, B, C, ssm_param(self.D), z=z,
                                   dt_bias=ssm_param(self.dt_proj.bias), dt_softplus=True)
        return self.out_proj(y)
