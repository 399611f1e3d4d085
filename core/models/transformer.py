"""A causal Transformer language model of the same interface as ``MambaLMHeadModel``: the
baseline of the synthetic tasks and of the generation benchmarks.

A pre-norm GPT-style stack with *sinusoidal* absolute positions (defined at any length, so the
model can be evaluated far past its training length), attention through
``torch.nn.functional.scaled_dot_product_attention`` with ``is_causal=True`` (no ``(L, L)`` mask is
built), and a key/value cache for greedy generation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

def sinusoidal_positions(start: int, length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Positions ``start .. start + length - 1`` as the original Transformer's sines and
    cosines: ``(length, dim)``, defined for any position (no table to outgrow)."""
    if dim % 2:
        raise ValueError(f"sinusoidal positions need an even width, got {dim}")
    pos = torch.arange(start, start + length, device=device, dtype=torch.float64).unsqueeze(1)   # (L, 1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim)
    angles = pos * freq                                                                         # (L, dim/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1).to(dtype)               # (L, dim)


@dataclass
class KVCache:
    """Keys and values of every layer, ``(B, H, max_len, head_dim)`` each, filled up to ``length``."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int = 0

    @property
    def max_len(self) -> int:
        return self.keys[0].shape[2]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention on ``(B, L, D)`` through torch SDPA."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, cache: Optional[KVCache] = None, layer: int = 0) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, H, T, hd)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            start = cache.length
            cache.keys[layer][:, :, start:start + t] = k
            cache.values[layer][:, :, start:start + t] = v
            k_all, v_all = cache.keys[layer][:, :, :start + t], cache.values[layer][:, :, :start + t]
            if t == 1:      # one new query sees every cached key
                y = F.scaled_dot_product_attention(q, k_all, v_all)
            elif start == 0:
                y = F.scaled_dot_product_attention(q, k_all, v_all, is_causal=True)
            else:           # a block of queries after a prefix: query i sees keys 0 .. start + i
                allowed = torch.ones(t, start + t, dtype=torch.bool, device=x.device).tril(start)
                y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=allowed)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))`` (GELU MLP)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor, cache: Optional[KVCache] = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cache, layer)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class CausalTransformerLM(nn.Module):
    """GPT-style causal language model with sinusoidal positions.

    ``forward(input_ids (B, L)) -> logits (B, L, vocab_size)``; with a ``KVCache`` (from
    ``allocate_kv_cache``) it continues from the cached positions, as ``generate`` does.
    """

    def __init__(self, vocab_size: int, d_model: int = 64, n_layer: int = 2, n_heads: int = 4,
                 d_ff: int = 128) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layer", n_layer),
                            ("n_heads", n_heads), ("d_ff", d_ff)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if d_model % 2:
            raise ValueError(f"d_model must be even (sinusoidal positions), got {d_model}")
        self.vocab_size, self.d_model = vocab_size, d_model
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layer)])
        self.norm_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.embedding.weight
        # Token vectors of unit scale (std d^-1/2, times sqrt(d) in forward), as large as the sinusoids
        # they are added to; small GPT-style embeddings would drown in the positions.
        nn.init.normal_(self.embedding.weight, std=d_model ** -0.5)

    def allocate_kv_cache(self, batch_size: int, max_len: int, dtype=None) -> KVCache:
        """Empty key/value buffers for ``batch_size`` sequences of up to ``max_len`` tokens."""
        attn = self.layers[0].attn
        p = self.embedding.weight
        shape = (batch_size, attn.n_heads, max_len, attn.head_dim)
        make = partial(torch.zeros, shape, device=p.device, dtype=dtype or p.dtype)
        return KVCache([make() for _ in self.layers], [make() for _ in self.layers])

    def forward(self, input_ids: torch.Tensor, cache: Optional[KVCache] = None,
                num_last_tokens: int = 0) -> torch.Tensor:
        """``input_ids (B, T)`` -> ``logits (B, T, V)`` (the last ``num_last_tokens`` if > 0)."""
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"input_ids: expected int64 ids of shape (B, L), got {input_ids.dtype} "
                             f"{tuple(input_ids.shape)}")
        start = cache.length if cache is not None else 0
        t = input_ids.shape[1]
        if cache is not None and start + t > cache.max_len:
            raise ValueError(f"KV cache holds {cache.max_len} positions; {start} used + {t} new do not fit")
        x = self.embedding(input_ids) * math.sqrt(self.d_model)
        x = x + sinusoidal_positions(start, t, self.d_model, device=x.device, dtype=x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x, cache, i)
        if cache is not None:
            cache.length = start + t
        if num_last_tokens > 0:
            x = x[:, -num_last_tokens:]
        return self.lm_head(self.norm_f(x))

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy decoding with the KV cache: one prefill, then one token per step.
        Returns ``(B, L + max_new_tokens)`` ids."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        cache = self.allocate_kv_cache(input_ids.shape[0], input_ids.shape[1] + max_new_tokens)
        logits = self(input_ids, cache, num_last_tokens=1)[:, -1]
        out = [input_ids]
        for i in range(max_new_tokens):
            token = logits.argmax(-1, keepdim=True)
            out.append(token)
            if i + 1 < max_new_tokens:
                logits = self(token, cache)[:, -1]
        return torch.cat(out, dim=1)
