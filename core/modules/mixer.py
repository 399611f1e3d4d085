"""What the Mamba and Mamba2 mixers share: the parallel/recurrent dispatch of ``forward`` and
the multi-token ``step``. A mixer implements ``_scan`` (parallel, from optional states) and
``_step_token`` (one token on the cached states)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..ops.packing import seq_idx_from_cu_seqlens
from .inference import InferenceParams, check_step_input


class RecurrentMixer(nn.Module):
    d_model: int

    def _scan(self, hidden_states: torch.Tensor, conv_state: Optional[torch.Tensor],
              ssm_state: Optional[torch.Tensor], seq_idx: Optional[torch.Tensor]
              ) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """Parallel path from optional cached states -> ``(out, new conv_state, new ssm_state)``."""
        raise NotImplementedError

    def _step_token(self, hidden_states: torch.Tensor, conv_state: torch.Tensor,
                    ssm_state: torch.Tensor) -> torch.Tensor:
        """One token ``(B, d_model)`` -> ``(B, d_model)``, updating the states in place."""
        raise NotImplementedError

    def forward(self, hidden_states: torch.Tensor, inference_params: Optional[InferenceParams] = None,
                seq_idx: Optional[torch.Tensor] = None, cu_seqlens: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        """``hidden_states (B, L, d_model)`` -> ``(B, L, d_model)``.

        With ``inference_params`` the layer reads and updates its cached state (prefill or
        decoding). ``seq_idx (B, L)`` / ``cu_seqlens`` mark packed sequences.
        """
        if cu_seqlens is not None:
            seq_idx = seq_idx_from_cu_seqlens(cu_seqlens, hidden_states.shape[1]).to(hidden_states.device)
        if inference_params is not None:
            conv_state, ssm_state = inference_params.get_states(self, hidden_states.shape[0])
            out, _, _ = self.step(hidden_states, conv_state, ssm_state)
            return out
        return self._scan_stateless(hidden_states, seq_idx)

    def _scan_stateless(self, hidden_states: torch.Tensor, seq_idx: Optional[torch.Tensor]) -> torch.Tensor:
        """The parallel path when no state is read or kept: ``(B, L, d_model)`` -> same."""
        out, _, _ = self._scan(hidden_states, None, None, seq_idx)
        return out

    def step(self, hidden_states: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance the recurrent state by ``T`` tokens: ``hidden_states (B, T, d_model)``.

        ``T = 1`` takes the single-token update ops; ``T > 1`` (chunked prefill, multi-token
        decoding) runs the parallel scan from the cached states. States are updated in place
        and also returned: ``(out (B, T, d_model), conv_state, ssm_state)``.
        """
        check_step_input(hidden_states, self.d_model, conv_state, ssm_state)
        if hidden_states.shape[1] > 1:
            out, new_conv, last = self._scan(hidden_states, conv_state, ssm_state, None)
            conv_state.copy_(new_conv)
            ssm_state.copy_(last)
            return out, conv_state, ssm_state
        out = self._step_token(hidden_states.squeeze(1), conv_state, ssm_state)
        return out.unsqueeze(1), conv_state, ssm_state
