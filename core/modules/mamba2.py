"""The Mamba-2 mixer (SSD with heads and groups), with mamba_ssm's parameters, init and cache."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.conv1d import causal_conv1d, causal_conv1d_update, conv_impl
from ..ops.ssd import ssd_chunk_scan, ssd_state_update
from .mixer import RecurrentMixer
from .mamba import init_dt_bias, ssm_param
from .norms import RMSNormGated


class Mamba2(RecurrentMixer):
    """Mamba-2 mixer over ``(B, L, d_model)``.

    ``in_proj`` gives ``[z, xBC, dt]`` (plus an optional gated-MLP part when ``d_ssm <
    d_inner``); ``xBC`` goes through the causal conv and SiLU and is split into ``x (H heads x
    headdim)``, ``B`` and ``C`` (``ngroups x d_state``); the SSD scan runs per head with a
    scalar decay; the output is normalised by a gated RMSNorm with ``z`` and projected back.
    """

    def __init__(self, d_model: int, d_state: int = 128, d_conv: int = 4,
                 conv_init: Optional[float] = None, expand: int = 2, headdim: int = 64,
                 d_ssm: Optional[int] = None, ngroups: int = 1, A_init_range: tuple = (1, 16),
                 D_has_hdim: bool = False, rmsnorm: bool = True, norm_before_gate: bool = False,
                 dt_min: float = 0.001, dt_max: float = 0.1, dt_init_floor: float = 1e-4,
                 dt_limit: tuple = (0.0, float("inf")), bias: bool = False, conv_bias: bool = True,
                 chunk_size: int = 256, use_mem_eff_path: bool = True, layer_idx: Optional[int] = None,
                 impl: str = "auto", device=None, dtype=None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.headdim = headdim
        self.d_ssm = self.d_inner if d_ssm is None else d_ssm
        if self.d_ssm % headdim:
            raise ValueError(f"d_ssm={self.d_ssm} (expand * d_model) must be a multiple of headdim={headdim}")
        self.ngroups = ngroups
        self.nheads = self.d_ssm // headdim
        if self.nheads % ngroups:
            raise ValueError(f"ngroups={ngroups} must divide the number of heads {self.nheads}")
        self.D_has_hdim, self.rmsnorm, self.norm_before_gate = D_has_hdim, rmsnorm, norm_before_gate
        self.dt_limit = tuple(dt_limit)
        self.chunk_size = chunk_size
        self.layer_idx = layer_idx
        self.impl = impl
        self.use_mem_eff_path = use_mem_eff_path  # signature compatibility with mamba_ssm

        d_in_proj = 2 * self.d_inner + 2 * ngroups * d_state + self.nheads
        self.in_proj = nn.Linear(d_model, d_in_proj, bias=bias, **factory)
        self.conv_dim = self.d_ssm + 2 * ngroups * d_state
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, kernel_size=d_conv, groups=self.conv_dim,
                                padding=d_conv - 1, bias=conv_bias, **factory)
        if conv_init is not None:
            nn.init.uniform_(self.conv1d.weight, -conv_init, conv_init)
        self.act = nn.SiLU()

        self.dt_bias = nn.Parameter(init_dt_bias(self.nheads, dt_min, dt_max, dt_init_floor, device))
        self.dt_bias._no_weight_decay = True
        if not 0 < A_init_range[0] <= A_init_range[1]:
            raise ValueError(f"A_init_range must be positive and increasing, got {A_init_range}")
        A = torch.empty(self.nheads, dtype=torch.float32, device=device).uniform_(*A_init_range)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_ssm if D_has_hdim else self.nheads, device=device))
        self.D._no_weight_decay = True
        if rmsnorm:
            self.norm = RMSNormGated(self.d_ssm, eps=1e-5, norm_before_gate=norm_before_gate,
                                     group_size=self.d_ssm // ngroups, **factory)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    @property
    def d_mlp(self) -> int:
        return (self.in_proj.out_features - 2 * self.d_ssm - 2 * self.ngroups * self.d_state
                - self.nheads) // 2

    def _split(self, zxbcdt: torch.Tensor):
        """``(..., d_in_proj)`` -> z0, x0 (MLP part), z (..., d_ssm), xBC (..., conv_dim), dt (..., H)."""
        return torch.split(zxbcdt, [self.d_mlp, self.d_mlp, self.d_ssm, self.conv_dim, self.nheads], dim=-1)

    def _D(self) -> torch.Tensor:
        return self.D.view(self.nheads, self.headdim) if self.D_has_hdim else self.D

    def _finish(self, y: torch.Tensor, z: torch.Tensor, z0: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Gated norm, the optional MLP part, and out_proj. ``y, z (..., d_ssm)``."""
        if self.rmsnorm:
            y = self.norm(y, z)
        if self.d_mlp > 0:
            y = torch.cat([F.silu(z0) * x0, y], dim=-1)
        return self.out_proj(y)

    # ---- parallel path ---------------------------------------------------------------------
    def _scan(self, u: torch.Tensor, conv_state: Optional[torch.Tensor],
              ssm_state: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor]):
        batch, length, _ = u.shape
        z0, x0, z, xBC_in, dt = self._split(self.in_proj(u))                 # (B, L, ...)
        xBC = causal_conv1d(xBC_in.transpose(1, 2), self.conv1d.weight.squeeze(1), self.conv1d.bias,
                            "silu", initial_state=None if conv_state is None else conv_state[..., 1:],
                            seq_idx=seq_idx, impl=conv_impl(self.impl)).transpose(1, 2)                 # (B, L, conv_dim)
        x, B, C = torch.split(xBC, [self.d_ssm, self.ngroups * self.d_state,
                                    self.ngroups * self.d_state], dim=-1)
        A = -torch.exp(ssm_param(self.A_log))                                    # (H,)
        y, final = ssd_chunk_scan(
            x.unflatten(-1, (self.nheads, self.headdim)), dt, A,
            B.unflatten(-1, (self.ngroups, self.d_state)), C.unflatten(-1, (self.ngroups, self.d_state)),
            chunk_size=self.chunk_size, D=self._D(), z=None if self.rmsnorm else z.unflatten(-1, (self.nheads, self.headdim)),
            dt_bias=self.dt_bias, dt_softplus=True, dt_limit=self.dt_limit, initial_states=ssm_state,
            seq_idx=seq_idx, return_final_states=True, impl=self.impl)        # (B, L, H, P)
        out = self._finish(y.flatten(-2), z, z0, x0)                          # (B, L, d_model)
        new_conv_state = None
        if conv_state is not None:
            xt = xBC_in.transpose(1, 2).to(conv_state.dtype)
            new_conv_state = torch.cat([conv_state, xt], -1)[..., -self.d_conv:]
        return out, new_conv_state, final

    # ---- recurrent path --------------------------------------------------------------------
    def allocate_inference_cache(self, batch_size: int, max_seqlen: int = 0, dtype=None
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``conv_state (B, conv_dim, d_conv)``, ``ssm_state (B, nheads, headdim, d_state)``."""
        device = self.out_proj.weight.device
        conv_state = torch.zeros(batch_size, self.conv_dim, self.d_conv, device=device,
                                 dtype=dtype or self.conv1d.weight.dtype)
        ssm_state = torch.zeros(batch_size, self.nheads, self.headdim, self.d_state, device=device,
                                dtype=dtype or torch.float32)
        return conv_state, ssm_state

    def _step_token(self, hidden_states: torch.Tensor, conv_state: torch.Tensor,
                    ssm_state: torch.Tensor) -> torch.Tensor:
        z0, x0, z, xBC, dt = self._split(self.in_proj(hidden_states))         # (B, ...)
        xBC = causal_conv1d_update(xBC, conv_state, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu")
        x, B, C = torch.split(xBC, [self.d_ssm, self.ngroups * self.d_state,
                                    self.ngroups * self.d_state], dim=-1)
        A = -torch.exp(ssm_param(self.A_log))
        y = ssd_state_update(
            ssm_state, x.unflatten(-1, (self.nheads, self.headdim)), dt, A,
            B.unflatten(-1, (self.ngroups, self.d_state)), C.unflatten(-1, (self.ngroups, self.d_state)),
            D=self._D(), z=None if self.rmsnorm else z.unflatten(-1, (self.nheads, self.headdim)),
            dt_bias=self.dt_bias, dt_softplus=True, dt_limit=self.dt_limit)  # (B, H, P)
        return self._finish(y.flatten(-2), z, z0, x0)
