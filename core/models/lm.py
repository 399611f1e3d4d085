"""Causal language model: ``MambaBackbone`` with a token embedding and a tied LM head."""
from __future__ import annotations

import weakref
from typing import Optional

import torch
import torch.nn as nn

from ..cuda_graphs import DecodeGraph, parameter_fingerprint
from ..hub import PretrainedMixin
from ..modules.inference import InferenceParams
from .backbone import MambaBackbone
from .config import MambaConfig


class MambaLMHeadModel(PretrainedMixin, nn.Module):
    """``backbone`` (embedding + blocks + norm_f) and ``lm_head``; names as mamba_ssm.

    ``forward(input_ids (B, L)) -> logits (B, L, padded_vocab_size)``.
    """

    config_class = MambaConfig
    model_type = "mamba_lm"

    def __init__(self, config: Optional[MambaConfig] = None, **overrides) -> None:
        super().__init__()
        if config is None:
            config = MambaConfig(**overrides)
        elif overrides:
            config = MambaConfig.from_dict({**config.to_dict(), **overrides})
        if config.vocab_size <= 0:
            raise ValueError(f"MambaLMHeadModel needs vocab_size > 0, got {config.vocab_size}")
        self.config = config
        self.backbone = MambaBackbone(config)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight

    def allocate_inference_cache(self, batch_size: int, max_seqlen: int = 0, dtype=None) -> InferenceParams:
        return self.backbone.allocate_inference_cache(batch_size, max_seqlen, dtype=dtype)

    def forward(self, input_ids: torch.Tensor, inference_params: Optional[InferenceParams] = None,
                seq_idx: Optional[torch.Tensor] = None, cu_seqlens: Optional[torch.Tensor] = None,
                num_last_tokens: int = 0) -> torch.Tensor:
        """``input_ids (B, L)`` -> ``logits (B, L, V)`` (only the last ``num_last_tokens`` if > 0)."""
        hidden = self.backbone(input_ids, inference_params=inference_params, seq_idx=seq_idx,
                               cu_seqlens=cu_seqlens)
        if num_last_tokens > 0:
            hidden = hidden[:, -num_last_tokens:]
        return self.lm_head(hidden)

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, max_length: Optional[int] = None,
                 max_new_tokens: Optional[int] = None, top_k: int = 1, top_p: float = 0.0,
                 temperature: float = 1.0, eos_token_id: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, cuda_graph: Optional[bool] = None
                 ) -> torch.Tensor:
        """Sample continuations with the recurrent cache: one parallel prefill, then one
        constant-cost ``step`` per new token. ``top_k=1`` is greedy (mamba_ssm's default).

        ``cuda_graph`` (default: on for CUDA inputs) replays each decoding step as one captured
        CUDA graph instead of launching its kernels one by one; the graph and its cache are kept
        for the next call with the same batch size. The tokens are the same either way.

        Returns ``(B, L_total)`` ids; a row that emitted ``eos_token_id`` is padded with it.
        """
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids: expected shape (B, L) with L >= 1, got {tuple(input_ids.shape)}")
        if (max_length is None) == (max_new_tokens is None):
            raise ValueError("pass exactly one of max_length or max_new_tokens")
        new_tokens = max_new_tokens if max_new_tokens is not None else max_length - input_ids.shape[1]
        if new_tokens < 0:
            raise ValueError(f"max_length={max_length} is shorter than the prompt ({input_ids.shape[1]})")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if top_k < 0 or not 0.0 <= top_p <= 1.0:
            raise ValueError(f"expected top_k >= 0 and 0 <= top_p <= 1, got top_k={top_k}, top_p={top_p}")
        if cuda_graph and not input_ids.is_cuda:
            raise ValueError(f"cuda_graph=True needs input_ids on a CUDA device, got {input_ids.device}")
        batch = input_ids.shape[0]
        decode = None
        if (input_ids.is_cuda if cuda_graph is None else cuda_graph) and new_tokens > 1:
            decode, cache = self._decode_graph(batch, input_ids.device)
            cache.reset(input_ids.shape[1] + new_tokens, batch)        # the capture advanced the states
        else:
            cache = self.allocate_inference_cache(batch, input_ids.shape[1] + new_tokens)
        logits = self(input_ids, inference_params=cache, num_last_tokens=1)[:, -1]
        cache.seqlen_offset = input_ids.shape[1]
        out = [input_ids]
        finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        for _ in range(new_tokens):
            token = sample_token(logits[:, : self.config.vocab_size], top_k, top_p, temperature, generator)
            if eos_token_id is not None:
                token = torch.where(finished, torch.full_like(token, eos_token_id), token)
                finished |= token == eos_token_id
            out.append(token.unsqueeze(1))
            if eos_token_id is not None and bool(finished.all()):
                break
            if decode is not None:
                logits = decode(token.unsqueeze(1))
            else:
                logits = self(token.unsqueeze(1), inference_params=cache)[:, -1]
            cache.seqlen_offset += 1
        return torch.cat(out, dim=1)

    def _decode_graph(self, batch: int, device: torch.device) -> tuple[DecodeGraph, InferenceParams]:
        """The captured decoding step for ``batch`` rows and the cache it updates; captured on
        first use and again whenever the parameters were moved or re-created."""
        graphs = _DECODE_GRAPHS.setdefault(self, {})
        key = (batch, device, parameter_fingerprint(self))
        if key not in graphs:
            for stale in [k for k in graphs if k[2] != key[2]] + list(graphs)[:-3]:
                graphs.pop(stale, None)                                # moved parameters; keep 4 sizes
            cache = self.allocate_inference_cache(batch)
            graph = DecodeGraph(lambda token: self(token, inference_params=cache)[:, -1], batch, device)
            graphs[key] = (graph, cache)
        return graphs[key]


# Captured decoding graphs per model, outside the module so that copying or pickling a model
# never touches them; they go with the model.
_DECODE_GRAPHS: "weakref.WeakKeyDictionary[MambaLMHeadModel, dict]" = weakref.WeakKeyDictionary()


def sample_token(logits: torch.Tensor, top_k: int = 1, top_p: float = 0.0, temperature: float = 1.0,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Pick one token per row of ``logits (B, V)``: greedy for ``top_k == 1``, otherwise sample
    from the temperature-scaled distribution restricted to the top-k and/or nucleus top-p."""
    if top_k == 1:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k > 1:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cum - sorted_logits.softmax(-1) > top_p          # keep the smallest set above p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
