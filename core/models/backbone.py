"""The Mamba backbone: a stack of residual blocks over ``(B, L, d_model)`` tokens.

Laid out like mamba_ssm's ``MixerModel`` (``embedding``, ``layers``, ``norm_f``) so that its
state dicts load unchanged; scan orders, gradient checkpointing and a tokens-in path without an
embedding are mambakit's additions.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Optional

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ..cuda_graphs import is_capturing
from ..hub import PretrainedMixin
from ..modules.block import Block, GatedMLP
from ..modules.inference import InferenceParams
from ..modules.mamba import Mamba
from ..modules.mamba2 import Mamba2
from ..modules.norms import RMSNorm
from ..scan_orders import Forward, MultiOrderMixer, ScanOrder, resolve_orders
from .config import MambaConfig

MIXERS = {"Mamba1": Mamba, "Mamba2": Mamba2}


def _mixer_factory(config: MambaConfig, layer_idx: int, orders: list[ScanOrder]):
    ssm_cfg = dict(config.ssm_cfg)
    mixer_cls = MIXERS[ssm_cfg.pop("layer", "Mamba1")]
    single = partial(mixer_cls, layer_idx=layer_idx, **ssm_cfg)
    if len(orders) == 1 and type(orders[0]) is Forward and not orders[0].flip_channels:
        return single
    return partial(MultiOrderMixer, mixer_cls=single, orders=orders, merge=config.merge,
                   share_mixer=config.share_mixer)


class MambaBackbone(PretrainedMixin, nn.Module):
    """Embedding (if ``vocab_size > 0``) -> ``n_layer`` blocks -> final norm.

    ``forward`` takes token ids ``(B, L)`` (with an embedding) or features ``(B, L, d_model)``
    and returns ``(B, L, d_model)``. ``scan_orders`` (e.g. ``["bidirectional"]`` or ScanOrder
    objects) makes every layer read the sequence in each order and merge the results.
    """

    config_class = MambaConfig
    model_type = "mamba_backbone"

    def __init__(self, config: Optional[MambaConfig] = None, scan_orders=None, **overrides) -> None:
        super().__init__()
        if config is None:
            config = MambaConfig(**overrides)
        elif overrides:
            config = MambaConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config
        orders = resolve_orders(scan_orders if scan_orders is not None else config.scan_orders)
        self.scan_orders = orders
        self.gradient_checkpointing = config.gradient_checkpointing
        norm_cls = partial(RMSNorm if config.rms_norm else nn.LayerNorm, eps=config.norm_epsilon)
        mlp_cls = (partial(GatedMLP, hidden_features=config.d_intermediate)
                   if config.d_intermediate > 0 else None)
        if config.vocab_size > 0:
            self.embedding = nn.Embedding(config.padded_vocab_size, config.d_model)
        self.layers = nn.ModuleList([
            Block(config.d_model, _mixer_factory(config, i, orders), mlp_cls=mlp_cls, norm_cls=norm_cls,
                  residual_in_fp32=config.residual_in_fp32)
            for i in range(config.n_layer)])
        self.norm_f = norm_cls(config.d_model)
        self.init_weights()

    @property
    def num_features(self) -> int:
        return self.config.d_model

    @property
    def is_causal(self) -> bool:
        return len(self.scan_orders) == 1 and self.scan_orders[0].causal

    def init_weights(self, initializer_range: float = 0.02, n_residuals_per_layer: int = 1) -> None:
        """mamba_ssm's scheme: zero linear biases, N(0, 0.02) embeddings, and output projections
        scaled by ``1/sqrt(n_residuals_per_layer * n_layer)`` (GPT-2's prenorm rescaling)."""
        n_res = n_residuals_per_layer * (2 if self.config.d_intermediate > 0 else 1)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                if not getattr(module.bias, "_no_reinit", False):
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=initializer_range)
        for name, p in self.named_parameters():
            if name.endswith("out_proj.weight") or name.endswith("fc2.weight"):
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))
                with torch.no_grad():
                    p /= math.sqrt(n_res * self.config.n_layer)

    def allocate_inference_cache(self, batch_size: int, max_seqlen: int = 0, dtype=None) -> InferenceParams:
        """A cache with every layer's zero state (constant size in sequence length)."""
        params = InferenceParams(max_seqlen=max_seqlen, max_batch_size=batch_size)
        for i, layer in enumerate(self.layers):
            params.key_value_memory_dict[i] = layer.allocate_inference_cache(batch_size, max_seqlen, dtype=dtype)
        return params

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, L)`` -> ``(B, L, D)`` through the embedding; features pass through."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.dtype in (torch.int32, torch.int64):
            if not hasattr(self, "embedding"):
                raise TypeError("this backbone has no embedding (vocab_size=0): pass features (B, L, d_model)")
            if x.dim() != 2:
                raise ValueError(f"input_ids: expected shape (B, L), got {tuple(x.shape)}")
            checkable = x.numel() and not torch.compiler.is_compiling() and not is_capturing()
            if checkable and (int(x.min()) < 0 or int(x.max()) >= self.config.vocab_size):
                raise ValueError(f"input_ids: ids must lie in [0, {self.config.vocab_size}), "
                                 f"got range [{int(x.min())}, {int(x.max())}]")
            return self.embedding(x)
        if not x.dtype.is_floating_point:
            raise TypeError(f"expected token ids (int64) or float features, got {x.dtype}")
        if x.dim() != 3 or x.shape[-1] != self.config.d_model:
            raise ValueError(f"features: expected shape (B, L, {self.config.d_model}), got {tuple(x.shape)}")
        return x

    def forward(self, x: torch.Tensor, inference_params: Optional[InferenceParams] = None,
                seq_idx: Optional[torch.Tensor] = None, cu_seqlens: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        """``x``: ids ``(B, L)`` or features ``(B, L, d_model)`` -> hidden states ``(B, L, d_model)``."""
        hidden = self.embed(x)
        if hidden.shape[1] == 0:
            raise ValueError("expected a sequence of length >= 1, got length 0")
        kwargs = {}
        if seq_idx is not None:
            kwargs["seq_idx"] = seq_idx
        if cu_seqlens is not None:
            kwargs["cu_seqlens"] = cu_seqlens
        residual = None
        use_ckpt = self.gradient_checkpointing and self.training and inference_params is None
        for layer in self.layers:
            if use_ckpt:
                hidden, residual = checkpoint(layer, hidden, residual, use_reentrant=False, **kwargs)
            else:
                hidden, residual = layer(hidden, residual, inference_params=inference_params, **kwargs)
        residual = hidden + residual if residual is not None else hidden
        return self.norm_f(residual.to(self.norm_f.weight.dtype))
