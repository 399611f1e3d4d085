"""Depthwise causal 1-D convolution, as the ``causal_conv1d`` package computes it.

``out[b, d, t] = bias[d] + sum_k weight[d, k] * x[b, d, t - (W - 1) + k]`` with ``x`` at negative
times taken from ``initial_state (B, D, W - 1)`` (zeros when absent), then an optional SiLU.
With ``seq_idx (B, L)`` a tap never reads a position of another packed sequence.

Implementations: ``"reference"`` (this file, plain PyTorch) and ``"triton"`` (one fused kernel
forward and one backward, ``triton_conv1d.py``); ``"auto"`` takes Triton for CUDA tensors that
are not float64 and kernels up to ``MAX_WIDTH`` wide.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ._checks import (check_finite, check_impl, check_nonempty, check_same_device, check_seq_idx,
                      check_shape, check_tensor)

ACTIVATIONS = (None, "silu", "swish")
IMPLS = ("auto", "reference", "triton")


def _activate(x: torch.Tensor, activation: Optional[str]) -> torch.Tensor:
    return F.silu(x) if activation in ("silu", "swish") else x


def _check_activation(activation: Optional[str]) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected None or 'silu', got {activation!r}")


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                  activation: Optional[str] = None, initial_state: Optional[torch.Tensor] = None,
                  return_final_state: bool = False, seq_idx: Optional[torch.Tensor] = None,
                  impl: str = "auto") -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Causal depthwise convolution over time.

    Args:
        x: ``(B, D, L)``. weight: ``(D, W)``. bias: ``(D,)``.
        activation: ``None`` or ``"silu"``.
        initial_state: ``(B, D, W - 1)``, the inputs just before ``x`` (differentiable).
        return_final_state: also return the last ``W - 1`` inputs ``(B, D, W - 1)``, the
            ``initial_state`` of the next chunk.
        seq_idx: ``(B, L)`` packed-sequence ids; taps across a change of id read zeros.
            ``initial_state`` belongs to the sequence at position 0.
        impl: ``"auto"``, ``"reference"`` or ``"triton"`` (see the module docstring).

    Returns:
        ``out (B, D, L)`` in x's dtype (and the final state).
    """
    check_impl(impl, IMPLS)
    check_tensor("x", x, ndim=3)
    batch, dim, length = x.shape
    check_nonempty("x", length)
    check_tensor("weight", weight, ndim=2)
    if weight.shape[0] != dim:
        raise ValueError(f"weight: expected shape ({dim}, W) to match x's {dim} channels, got {tuple(weight.shape)}")
    width = weight.shape[1]
    if width < 1:
        raise ValueError(f"weight: expected a kernel width W >= 1, got shape {tuple(weight.shape)}")
    if bias is not None:
        check_tensor("bias", bias, ndim=1)
        check_shape("bias", bias, (dim,))
    if initial_state is not None:
        check_tensor("initial_state", initial_state, ndim=3)
        check_shape("initial_state", initial_state, (batch, dim, width - 1))
    _check_activation(activation)
    check_seq_idx(seq_idx, batch, length)
    check_same_device(x=x, weight=weight, bias=bias, initial_state=initial_state, seq_idx=seq_idx)
    check_finite("x", x)

    if _use_triton(impl, x, width):
        from .triton_conv1d import causal_conv1d_triton
        out = causal_conv1d_triton(x, weight, bias, initial_state, seq_idx, activation is not None)
        if not return_final_state:
            return out
        history = (initial_state.to(x.dtype) if initial_state is not None
                   else x.new_zeros(batch, dim, width - 1))
        tail = torch.cat([history, x[..., max(0, length - (width - 1)):]], dim=-1)
        return out, tail[..., tail.shape[-1] - (width - 1):]
    return _causal_conv1d_reference(x, weight, bias, activation, initial_state, return_final_state, seq_idx)


def conv_impl(mixer_impl: str) -> str:
    """The conv implementation that goes with a mixer's scan ``impl``: a forced ``"reference"``
    or ``"triton"`` applies to both; anything else (``"auto"``, ``"cpu"``) picks by device."""
    return mixer_impl if mixer_impl in ("reference", "triton") else "auto"


def _use_triton(impl: str, x: torch.Tensor, width: int) -> bool:
    import os

    if impl == "reference":
        return False
    if impl == "triton":
        if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
            raise NotImplementedError("impl='triton' needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1)")
        from .triton_conv1d import MAX_WIDTH
        if width > MAX_WIDTH:
            raise ValueError(f"impl='triton' takes kernels up to {MAX_WIDTH} wide, got width {width}")
        return True
    if not x.is_cuda or x.dtype == torch.float64:
        return False
    try:
        from .triton_conv1d import MAX_WIDTH
    except ImportError:
        return False
    return width <= MAX_WIDTH


def _causal_conv1d_reference(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                             activation: Optional[str], initial_state: Optional[torch.Tensor],
                             return_final_state: bool, seq_idx: Optional[torch.Tensor]
                             ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The specification (validated inputs)."""
    batch, dim, length = x.shape
    width = weight.shape[1]
    history = (initial_state.to(x.dtype) if initial_state is not None
               else x.new_zeros(batch, dim, width - 1))
    padded = torch.cat([history, x], dim=-1)                                  # (B, D, W-1+L)
    w = weight.to(x.dtype)
    if seq_idx is not None:
        # Sequence id of every position of `padded` (the initial state belongs to the sequence
        # at position 0): a tap reading another sequence's position contributes nothing.
        ids = torch.cat([seq_idx[:, :1].expand(batch, width - 1), seq_idx], dim=-1)  # (B, W-1+L)
    # A sum of W shifted, scaled copies: on CPU this is several times faster, forward and
    # backward, than the depthwise F.conv1d, and it takes the packed-sequence mask directly.
    out = None
    for k in range(width):
        tap = w[:, k:k + 1] * padded[..., k:k + length]                       # (B, D, L)
        if seq_idx is not None:
            tap = tap * (ids[:, k:k + length] == seq_idx).unsqueeze(1).to(x.dtype)
        out = tap if out is None else out + tap
    if bias is not None:
        out = out + bias.to(x.dtype)[:, None]
    out = _activate(out, activation)
    if not return_final_state:
        return out
    return out, padded[..., padded.shape[-1] - (width - 1):]


def causal_conv1d_update(x: torch.Tensor, conv_state: torch.Tensor, weight: torch.Tensor,
                         bias: Optional[torch.Tensor] = None,
                         activation: Optional[str] = None) -> torch.Tensor:
    """One decoding step: ``x (B, D)`` new inputs, ``conv_state (B, D, W)`` the last W inputs.

    Shifts ``conv_state`` left in place, appends ``x``, and returns the convolution output at
    the new position ``(B, D)`` (mamba_ssm's convention for ``conv_state``).
    """
    check_tensor("x", x, ndim=2)
    check_tensor("conv_state", conv_state, ndim=3)
    check_tensor("weight", weight, ndim=2)
    batch, dim = x.shape
    check_shape("conv_state", conv_state, (batch, dim, weight.shape[1]))
    check_shape("weight", weight, (dim, weight.shape[1]))
    if bias is not None:
        check_tensor("bias", bias, ndim=1)
        check_shape("bias", bias, (dim,))
    _check_activation(activation)
    check_finite("x", x)
    conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
    conv_state[:, :, -1] = x.to(conv_state.dtype)
    out = (conv_state * weight.to(conv_state.dtype)).sum(-1)                  # (B, D)
    if bias is not None:
        out = out + bias.to(out.dtype)
    return _activate(out, activation).to(x.dtype)
