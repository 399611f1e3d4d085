"""Plain step-by-step recurrences (float64) that the core ops are tested against, and random inputs.

These are written from the equations in the ops' docstrings, one time step at a time, with no
chunking, no closed forms and no fused arithmetic, so that they are obviously right. They are
differentiable (plain autograd), which gives reference gradients as well.
"""
from __future__ import annotations

from typing import Optional

import torch

F64 = torch.float64


# ----------------------------------------------------------------------------- oracles

def softplus64(x: torch.Tensor) -> torch.Tensor:
    """softplus with the usual threshold at 20 (identity above)."""
    return torch.where(x > 20, x, torch.log1p(torch.exp(x.clamp(max=20))))


def silu64(x: torch.Tensor) -> torch.Tensor:
    return x / (1 + torch.exp(-x))


def selective_scan_recurrence(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                              delta_softplus=False, initial_state=None, seq_idx=None):
    """Mamba-1 selective scan, one time step at a time in float64.

    ``u, delta, z (b, d, L)``, ``A (d, n)``, ``B, C (b, n, L)`` or ``(b, g, n, L)``,
    ``D, delta_bias (d,)``, ``initial_state (b, d, n)``, ``seq_idx (b, L)``.
    Returns ``out (b, d, L)`` and the state after the last step ``(b, d, n)``.
    """
    u, delta, A, B, C = (t.to(F64) for t in (u, delta, A, B, C))
    if B.dim() == 3:
        B = B.unsqueeze(1)
    if C.dim() == 3:
        C = C.unsqueeze(1)
    batch, dim, length = u.shape
    n_state = A.shape[1]
    per_group_B = dim // B.shape[1]
    per_group_C = dim // C.shape[1]
    h = (initial_state.to(F64) if initial_state is not None
         else torch.zeros(batch, dim, n_state, dtype=F64))
    outs = []
    for t in range(length):
        if seq_idx is not None and t > 0:
            new = (seq_idx[:, t] != seq_idx[:, t - 1]).view(batch, 1, 1)
            h = torch.where(new, torch.zeros_like(h), h)
        dt = delta[:, :, t]                                                    # (b, d)
        if delta_bias is not None:
            dt = dt + delta_bias.to(F64)
        if delta_softplus:
            dt = softplus64(dt)
        Bt = torch.stack([B[:, d // per_group_B, :, t] for d in range(dim)], dim=1)  # (b, d, n)
        Ct = torch.stack([C[:, d // per_group_C, :, t] for d in range(dim)], dim=1)
        h = torch.exp(dt.unsqueeze(-1) * A) * h + (dt * u[:, :, t]).unsqueeze(-1) * Bt
        y = (h * Ct).sum(-1)                                                   # (b, d)
        if D is not None:
            y = y + D.to(F64) * u[:, :, t]
        if z is not None:
            y = y * silu64(z[:, :, t].to(F64))
        outs.append(y)
    return torch.stack(outs, dim=-1), h


def causal_conv1d_recurrence(x, weight, bias=None, activation=None, initial_state=None, seq_idx=None):
    """Depthwise causal convolution, one output position and one tap at a time, in float64.

    ``out[b, d, t] = bias[d] + sum_k weight[d, k] * x[b, d, t - (W-1) + k]`` where times < 0
    read ``initial_state`` and, with ``seq_idx``, taps of another packed sequence read zero
    (the initial state belongs to the sequence at position 0).
    Returns ``out (b, d, L)`` and the last ``W - 1`` inputs ``(b, d, W - 1)``.
    """
    x, weight = x.to(F64), weight.to(F64)
    batch, dim, length = x.shape
    width = weight.shape[1]
    hist = (initial_state.to(F64) if initial_state is not None
            else torch.zeros(batch, dim, width - 1, dtype=F64))
    outs = []
    for t in range(length):
        acc = torch.zeros(batch, dim, dtype=F64)
        if bias is not None:
            acc = acc + bias.to(F64)
        for k in range(width):
            s = t - (width - 1) + k
            val = x[:, :, s] if s >= 0 else hist[:, :, s + width - 1]
            if seq_idx is not None:
                owner = seq_idx[:, max(s, 0)]
                same = (owner == seq_idx[:, t]).to(F64).unsqueeze(-1)            # (b, 1)
                val = val * same
            acc = acc + weight[:, k] * val
        if activation in ("silu", "swish"):
            acc = silu64(acc)
        outs.append(acc)
    full = torch.cat([hist, x], dim=-1)
    return torch.stack(outs, dim=-1), full[:, :, full.shape[-1] - (width - 1):]


# ----------------------------------------------------------------------------- inputs

def random_seq_idx(gen: torch.Generator, batch: int, length: int, p_break: float = 0.2) -> torch.Tensor:
    """``(batch, length)`` int32 ids of packed sequences, non-decreasing, random boundaries
    (at least one boundary whenever ``length > 1``)."""
    breaks = torch.rand(batch, length, generator=gen) < p_break
    breaks[:, 0] = False
    if length > 1:
        forced = torch.randint(1, length, (batch,), generator=gen)
        breaks[torch.arange(batch), forced] = True
    return breaks.to(torch.int64).cumsum(-1).to(torch.int32)


def scan_inputs(seed: int, batch: int = 2, dim: int = 4, n_state: int = 3, length: int = 17,
                groups: int = 2, bc_rank: int = 4, dtype: torch.dtype = F64, D: bool = True,
                z: bool = True, delta_bias: bool = True, softplus: bool = True,
                initial_state: bool = True, seq_idx: bool = False) -> dict:
    """Random, never-zero keyword arguments for ``selective_scan``.

    ``bc_rank=3`` gives ``B, C (b, n, L)`` (one group). Without softplus the steps are kept
    positive so that the recurrence decays as in a real model.
    """
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g, dtype=F64) * scale + shift).to(dtype)

    def pos(*shape, lo=0.05, hi=0.6):
        return (torch.rand(*shape, generator=g, dtype=F64) * (hi - lo) + lo).to(dtype)

    bc_shape = (batch, n_state, length) if bc_rank == 3 else (batch, groups, n_state, length)
    kw = dict(
        u=rnd(batch, dim, length),
        delta=rnd(batch, dim, length, scale=0.7, shift=-1.0) if softplus else pos(batch, dim, length),
        A=(-torch.exp(torch.randn(dim, n_state, generator=g, dtype=F64) * 0.5)).to(dtype),
        B=rnd(*bc_shape, scale=0.8),
        C=rnd(*bc_shape, scale=0.8),
        delta_softplus=softplus,
    )
    if D:
        kw["D"] = rnd(dim)
    if z:
        kw["z"] = rnd(batch, dim, length)
    if delta_bias:
        kw["delta_bias"] = rnd(dim, scale=0.3) if softplus else pos(dim, lo=0.01, hi=0.1)
    if initial_state:
        kw["initial_state"] = rnd(batch, dim, n_state)
    if seq_idx:
        kw["seq_idx"] = random_seq_idx(g, batch, length)
    return kw


DIFF_KEYS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


def with_grad(kw: dict) -> dict:
    """Copies of the floating inputs as leaves that require grad."""
    out = dict(kw)
    for k in DIFF_KEYS:
        if k in out and out[k] is not None:
            out[k] = out[k].detach().clone().requires_grad_(True)
    return out


def grads_of(kw: dict) -> dict:
    """Gradients of the leaves made by ``with_grad`` (an unused input's ``None`` becomes zeros)."""
    return {k: kw[k].grad if kw[k].grad is not None else torch.zeros_like(kw[k])
            for k in DIFF_KEYS if k in kw and kw[k] is not None}


# ----------------------------------------------------------------------------- small models

MAMBA_KW = dict(d_state=4, d_conv=4, expand=2)
MAMBA2_KW = dict(d_state=8, d_conv=4, expand=2, headdim=8, ngroups=2, chunk_size=8)


def randomize_(module: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """Fresh random weights everywhere (biases and norm weights included, never zero), keeping
    A_log and the dt bias in a sensible range so the recurrences stay stable."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            if name.endswith("A_log"):
                p.add_(noise * 0.1)
            elif name.endswith("dt_proj.bias") or name.endswith("dt_bias"):
                p.copy_(noise * 0.3 - 2.0)
            elif name.endswith("norm.weight") or name.endswith("norm_f.weight") or name.endswith("norm2.weight"):
                p.copy_(1.0 + noise * 0.2)
            else:
                p.copy_(noise * scale)
    return module


# ----------------------------------------------------------------------------- module oracles

def mamba_slow_path(m, hidden_states: torch.Tensor) -> torch.Tensor:
    """mamba_ssm's Mamba.forward without the fused kernels, from the module's weights: in_proj,
    ``conv1d(x)[..., :L]`` with padding W-1, SiLU, x_proj/dt_proj, the selective-scan recurrence
    gated by SiLU(z), out_proj. ``hidden_states (b, L, d_model)`` in float64."""
    import torch.nn.functional as F

    length = hidden_states.shape[1]
    xz = F.linear(hidden_states, m.in_proj.weight.to(F64),
                  None if m.in_proj.bias is None else m.in_proj.bias.to(F64)).transpose(1, 2)
    x, z = xz.chunk(2, dim=1)
    x = F.conv1d(x, m.conv1d.weight.to(F64), None if m.conv1d.bias is None else m.conv1d.bias.to(F64),
                 padding=m.d_conv - 1, groups=m.d_inner)[..., :length]
    x = silu64(x)
    x_dbl = F.linear(x.transpose(1, 2), m.x_proj.weight.to(F64))               # (b, L, R + 2N)
    dt, B, C = torch.split(x_dbl, [m.dt_rank, m.d_state, m.d_state], dim=-1)
    dt = (m.dt_proj.weight.to(F64) @ dt.transpose(1, 2))                       # (b, d_inner, L)
    # as mamba_ssm: A, D and the dt bias enter the scan through float32
    # A, D and the dt bias stay float64 in a float64 model (float32 only under half precision)
    A = -torch.exp(m.A_log.to(F64))
    y, _ = selective_scan_recurrence(x, dt, A, B.transpose(1, 2), C.transpose(1, 2), m.D.to(F64), z,
                                     delta_bias=m.dt_proj.bias.to(F64), delta_softplus=True)
    return F.linear(y.transpose(1, 2), m.out_proj.weight.to(F64),
                    None if m.out_proj.bias is None else m.out_proj.bias.to(F64))


def mamba2_slow_path(m, u: torch.Tensor) -> torch.Tensor:
    """mamba_ssm's Mamba2 computed one time step at a time from the module's weights, in float64:
    in_proj -> [z0, x0, z, xBC, dt]; causal conv + SiLU on xBC; per head
    ``h = exp(dt A) h + dt B x``, ``y = h C + D x``; gated grouped RMSNorm (or SiLU(z) gate);
    the optional MLP part; out_proj. ``u (b, L, d_model)``."""
    import torch.nn.functional as F

    batch, length, _ = u.shape
    H, P, N, G = m.nheads, m.headdim, m.d_state, m.ngroups
    zxbcdt = F.linear(u, m.in_proj.weight.to(F64), None if m.in_proj.bias is None else m.in_proj.bias.to(F64))
    d_mlp = (zxbcdt.shape[-1] - 2 * m.d_ssm - 2 * G * N - H) // 2
    z0, x0, z, xBC, dt = torch.split(zxbcdt, [d_mlp, d_mlp, m.d_ssm, m.d_ssm + 2 * G * N, H], dim=-1)
    xBC = F.conv1d(xBC.transpose(1, 2), m.conv1d.weight.to(F64),
                   None if m.conv1d.bias is None else m.conv1d.bias.to(F64),
                   padding=m.d_conv - 1, groups=xBC.shape[-1])[..., :length].transpose(1, 2)
    xBC = silu64(xBC)
    x, B, C = torch.split(xBC, [m.d_ssm, G * N, G * N], dim=-1)
    x = x.reshape(batch, length, H, P)
    B = B.reshape(batch, length, G, N)
    C = C.reshape(batch, length, G, N)
    dt = softplus64(dt + m.dt_bias.to(F64)).clamp(*m.dt_limit)
    A = -torch.exp(m.A_log.to(F64))  # float64 model: A stays float64
    D = m.D.to(F64).reshape(H, P) if m.D_has_hdim else m.D.to(F64).reshape(H, 1)
    h = torch.zeros(batch, H, P, N, dtype=F64)
    ys = []
    for t in range(length):
        for hd in range(H):
            g = hd // (H // G)
            h_new = (torch.exp(dt[:, t, hd] * A[hd]).view(batch, 1, 1) * h[:, hd]
                     + (dt[:, t, hd].view(batch, 1) * x[:, t, hd]).unsqueeze(-1) * B[:, t, g].unsqueeze(1))
            h = torch.cat([h[:, :hd], h_new.unsqueeze(1), h[:, hd + 1:]], dim=1)
        Cfull = C[:, t].repeat_interleave(H // G, dim=1)                       # (b, H, N)
        y = (h * Cfull.unsqueeze(2)).sum(-1) + D * x[:, t]                    # (b, H, P)
        if not m.rmsnorm:
            y = y * silu64(z[:, t].reshape(batch, H, P))
        ys.append(y.reshape(batch, H * P))
    y = torch.stack(ys, dim=1)                                                 # (b, L, d_ssm)
    if m.rmsnorm:
        gated = y if m.norm_before_gate else y * silu64(z)
        grouped = gated.reshape(batch, length, G, m.d_ssm // G)
        normed = grouped / torch.sqrt(grouped.pow(2).mean(-1, keepdim=True) + m.norm.eps)
        y = normed.reshape(batch, length, m.d_ssm) * m.norm.weight.to(F64)
        if m.norm_before_gate:
            y = y * silu64(z)
    if d_mlp > 0:
        y = torch.cat([silu64(z0) * x0, y], dim=-1)
    return F.linear(y, m.out_proj.weight.to(F64), None if m.out_proj.bias is None else m.out_proj.bias.to(F64))
