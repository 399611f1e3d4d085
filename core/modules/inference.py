"""Recurrent inference state for whole models.

Each mixer owns its state layout (``allocate_inference_cache``); ``InferenceParams`` holds
them per layer, like mamba_ssm's object of the same name, so a model can decode token by
token with memory that does not grow with the sequence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn

from ..ops._checks import check_finite


@dataclass
class InferenceParams:
    """Per-layer cached states for recurrent decoding.

    ``key_value_memory_dict[layer_idx]`` is the mixer's ``(conv_state, ssm_state)`` tuple;
    ``seqlen_offset`` counts the tokens already consumed.
    """

    max_seqlen: int = 0
    max_batch_size: int = 0
    seqlen_offset: int = 0
    batch_size_offset: int = 0
    key_value_memory_dict: dict = field(default_factory=dict)
    lengths_per_sample: Optional[torch.Tensor] = None

    def get_states(self, mixer: nn.Module, batch_size: int):
        """The states of ``mixer`` (by its ``layer_idx``), allocated on first use."""
        idx = getattr(mixer, "layer_idx", None)
        if idx is None:
            raise ValueError("a mixer used with inference_params needs a layer_idx")
        if idx not in self.key_value_memory_dict:
            self.key_value_memory_dict[idx] = mixer.allocate_inference_cache(batch_size, self.max_seqlen)
        states = self.key_value_memory_dict[idx]
        if states[0].shape[0] != batch_size:
            raise ValueError(f"cached state of layer {idx} has batch {states[0].shape[0]}, "
                             f"input has batch {batch_size}")
        return states

    def reset(self, max_seqlen: int, max_batch_size: int) -> None:
        self.max_seqlen, self.max_batch_size, self.seqlen_offset = max_seqlen, max_batch_size, 0
        for states in self.key_value_memory_dict.values():
            for s in states:
                s.zero_()

    def state_bytes(self) -> int:
        """Total bytes of cached state (constant in sequence length)."""
        return sum(s.numel() * s.element_size() for states in self.key_value_memory_dict.values()
                   for s in states)


def check_step_input(hidden_states: torch.Tensor, d_model: int, conv_state: torch.Tensor,
                     ssm_state: torch.Tensor) -> None:
    """``step`` takes ``(B, T, d_model)`` tokens and states of the same batch."""
    if not isinstance(hidden_states, torch.Tensor):
        raise TypeError(f"hidden_states: expected a torch.Tensor, got {type(hidden_states).__name__}")
    if hidden_states.dim() != 3 or hidden_states.shape[-1] != d_model:
        raise ValueError(f"hidden_states: expected shape (B, T, {d_model}), got {tuple(hidden_states.shape)}")
    if hidden_states.shape[1] == 0:
        raise ValueError("hidden_states: expected at least one token, got T = 0")
    if not hidden_states.dtype.is_floating_point:
        raise TypeError(f"hidden_states: expected a floating-point tensor, got {hidden_states.dtype}")
    check_finite("hidden_states", hidden_states)
    for name, s in (("conv_state", conv_state), ("ssm_state", ssm_state)):
        if s.shape[0] != hidden_states.shape[0]:
            raise ValueError(f"{name}: batch {s.shape[0]} does not match hidden_states batch "
                             f"{hidden_states.shape[0]}")
