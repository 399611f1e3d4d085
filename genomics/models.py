"""Caduceus-style DNA models: BiMamba with tied projections, reverse-complement parameter
sharing (RCPS), task heads, post-hoc RC conjoining, and a same-harness Transformer baseline.

Reverse-complement (RC) action, used throughout:

- on token ids ``x (B, L)``: ``rc(x) = comp[x].flip(1)`` (``tokenizers.reverse_complement_ids``);
- on an RCPS hidden state ``h (B, L, D)`` (``D`` even, two halves of ``D/2``):
  ``R(h) = h.flip(1).flip(2)`` -- positions reversed and channels reversed, which swaps the two
  halves and reverses each;
- on LM logits ``(B, L, V)``: positions reversed and vocabulary permuted by ``comp``.

An RCPS model satisfies ``model(rc(x)) == R(model(x))`` exactly (to float rounding) for any
weights, because every layer is built to commute with ``R``:

- embedding: ``h = [E(x), E(comp x).flip(-1)]``;
- any sequence module ``M`` of width ``D/2`` (mixer, norm, MLP): ``[M(h1), R(M(R(h2)))]`` with
  the same weights for both halves (``RCPS``);
- LM head: ``logits = W h1 + (W h2.flip(-1))[..., comp]``;
- sequence pooling: ``pool(h1) + pool_rc(h2).flip(-1)`` is RC-invariant (for labels that do
  not change under RC, e.g. coding vs non-coding), ``pool(h1) - pool_rc(h2).flip(-1)`` changes
  sign (for labels that swap under RC, e.g. gene strand: ``rc_mode="antisymmetric"``).

Non-RCPS models can be made RC-symmetric at inference by ``RCConjoined`` (average of the
prediction on ``x`` and the mapped-back prediction on ``rc(x)``).
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from mambakit import Mamba, MultiOrderMixer, RMSNorm, bidirectional
from mambakit.hub import PretrainedMixin
from mambakit.ops.conv1d import causal_conv1d, conv_impl
from mambakit.ops.selective_scan import selective_scan
from mambakit.modules.channels_first import channels_to_channels, channels_to_tokens, tokens_to_channels
from mambakit.modules.mamba import ssm_param

from .tokenizers import complement_map

TASKS = ("backbone", "mlm", "causal_lm", "sequence", "token")
POOLINGS = ("mean", "max", "first", "last")
RC_MODES = ("invariant", "antisymmetric")


# ---- building blocks ----------------------------------------------------------------------------
class BiMamba(Mamba):
    """Bidirectional Mamba-1 mixer with tied in-/out-projections. ``(B, L, D) -> (B, L, D)``.

    One ``in_proj`` and one ``out_proj`` serve both directions (parameter-efficient
    bidirectionality, as in Caduceus); the reverse scan has its own ``conv1d_b``, ``x_proj_b``,
    ``dt_proj_b``, ``A_b_log`` and ``D_b``. Output: ``out_proj(y_fwd + flip(y_bwd(flip(x))))``.
    Not causal: no recurrent ``step``.
    """

    def __init__(self, d_model: int, **mamba_kwargs: Any) -> None:
        super().__init__(d_model, **mamba_kwargs)
        twin = Mamba(d_model, **mamba_kwargs)       # fresh, independently initialised reverse params
        self.conv1d_b, self.x_proj_b, self.dt_proj_b = twin.conv1d, twin.x_proj, twin.dt_proj
        self.A_b_log, self.D_b = twin.A_log, twin.D

    def _direction(self, xz: torch.Tensor, conv: nn.Conv1d, x_proj: nn.Linear, dt_proj: nn.Linear,
                   A_log: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
        x_in, z = xz.chunk(2, dim=1)                                                   # (B, D_in, L)
        x = causal_conv1d(x_in, conv.weight.squeeze(1), conv.bias, "silu",
                           impl=conv_impl(self.impl))                                # (B, D_in, L)
        x_dbl = channels_to_channels(x, x_proj.weight, x_proj.bias)                    # (B, R + 2N, L)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)
        dt = channels_to_channels(dt, dt_proj.weight)                                  # (B, D_in, L)
        A = -torch.exp(ssm_param(A_log))                                               # (D_in, N)
        return selective_scan(x, dt, A, B, C, ssm_param(D), z=z,
                              delta_bias=ssm_param(dt_proj.bias), delta_softplus=True, impl=self.impl)

    def forward(self, hidden_states: torch.Tensor, inference_params=None, **kwargs: Any) -> torch.Tensor:
        """``hidden_states (B, L, D)`` -> ``(B, L, D)``."""
        if inference_params is not None:
            raise ValueError("BiMamba reads the sequence in both directions: no recurrent inference")
        xz = tokens_to_channels(hidden_states, self.in_proj.weight, self.in_proj.bias)  # (B, 2*D_in, L)
        y_f = self._direction(xz, self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        y_b = self._direction(xz.flip(-1), self.conv1d_b, self.x_proj_b, self.dt_proj_b,
                              self.A_b_log, self.D_b).flip(-1)                         # (B, D_in, L)
        return channels_to_tokens(y_f + y_b, self.out_proj.weight, self.out_proj.bias)  # (B, L, D)


def rc_hidden(h: torch.Tensor) -> torch.Tensor:
    """The RC action on hidden states ``(B, L, D)``: reverse positions and channels."""
    return h.flip(1).flip(-1)


class RCPS(nn.Module):
    """Reverse-complement parameter sharing around a module of width ``D/2``.

    ``h (B, L, D)`` -> ``[M(h1), R(M(R(h2)))]`` ``(B, L, D)``; both halves go through ``M`` in one
    batched call. Equivariant: ``RCPS(R h) = R RCPS(h)`` for any ``M`` mapping ``(B, L, D/2)``
    to itself.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h1, h2 = h.chunk(2, dim=-1)
        both = self.module(torch.cat([h1, rc_hidden(h2)], dim=0))      # (2B, L, D/2)
        y1, y2 = both.chunk(2, dim=0)
        return torch.cat([y1, rc_hidden(y2)], dim=-1)


class RCPSEmbedding(nn.Module):
    """Token ids ``(B, L)`` -> ``(B, L, 2 * dim)``: ``[E(x), E(comp x).flip(-1)]``."""

    def __init__(self, vocab_size: int, dim: int, comp_map: list[int]) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.register_buffer("comp", torch.tensor(comp_map, dtype=torch.long), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.embedding(ids), self.embedding(self.comp[ids]).flip(-1)], dim=-1)


class ResidualBlock(nn.Module):
    """Pre-norm residual block: ``residual += hidden; hidden = mixer(norm(residual))``."""

    def __init__(self, norm: nn.Module, mixer: nn.Module) -> None:
        super().__init__()
        self.norm, self.mixer = norm, mixer

    def forward(self, hidden: torch.Tensor, residual: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        residual = hidden if residual is None else hidden + residual
        return self.mixer(self.norm(residual)), residual


# ---- configuration ------------------------------------------------------------------------------
@dataclass
class CaduceusConfig:
    """A Caduceus-style DNA model and its task head.

    ``d_model`` is the hidden width; with ``rcps`` each strand half has ``d_model // 2`` channels
    (so ``d_model`` must be even). ``bidirectional`` uses BiMamba (``tie_projections``) or two
    separate Mamba mixers (``tie_projections=False``); ``bidirectional=False`` is a causal
    Mamba stack (needed for ``task="causal_lm"``). ``task``: ``backbone`` (hidden states),
    ``mlm`` / ``causal_lm`` (logits over the vocabulary), ``sequence`` (``(B, num_classes)``),
    ``token`` (``(B, L, num_classes)``).
    """

    vocab_size: int = 9
    d_model: int = 128
    n_layer: int = 4
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    bidirectional: bool = True
    tie_projections: bool = True
    rcps: bool = True
    complement_map: list = field(default_factory=complement_map)
    norm_epsilon: float = 1e-5
    task: str = "mlm"
    num_classes: int = 2
    pooling: str = "mean"
    rc_mode: str = "invariant"
    max_length: int = 0          # 0: no limit; otherwise longer inputs raise ValueError
    gradient_checkpointing: bool = False   # recompute each layer in backward (long sequences)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layer", "d_state", "d_conv", "expand"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.rcps and self.d_model % 2:
            raise ValueError(f"d_model={self.d_model}: RCPS needs an even width (two strand halves)")
        if len(self.complement_map) != self.vocab_size or sorted(self.complement_map) != list(range(self.vocab_size)):
            raise ValueError("complement_map: expected a permutation of range(vocab_size)")
        if any(self.complement_map[self.complement_map[i]] != i for i in range(self.vocab_size)):
            raise ValueError("complement_map: must be an involution (complement of complement = self)")
        if self.task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {self.task!r}")
        if self.task == "causal_lm" and (self.bidirectional or self.rcps):
            raise ValueError("task='causal_lm' needs a causal model: bidirectional=False and rcps=False "
                             "(a reverse scan or the RC strand half would see the next base)")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {self.pooling!r}")
        if self.rc_mode not in RC_MODES:
            raise ValueError(f"rc_mode: expected one of {RC_MODES}, got {self.rc_mode!r}")
        if self.rc_mode == "antisymmetric" and self.num_classes != 2:
            raise ValueError("rc_mode='antisymmetric' (labels that swap under RC) needs num_classes=2")
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes: expected an int >= 2, got {self.num_classes!r}")
        if not isinstance(self.max_length, int) or self.max_length < 0:
            raise ValueError(f"max_length: expected an int >= 0, got {self.max_length!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"model_type", "mambakit_version"})
        if unknown:
            warnings.warn(f"{cls.__name__}: ignoring unknown keys {unknown}", stacklevel=2)
        return cls(**{k: v for k, v in data.items() if k in known})


def check_ids(ids: torch.Tensor, vocab_size: int, max_length: int = 0) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``ids`` are int token ids ``(B, L)`` in range."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"input_ids: expected a torch.Tensor, got {type(ids).__name__}")
    if ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"input_ids: expected int64 token ids, got {ids.dtype}")
    if ids.dim() != 2:
        raise ValueError(f"input_ids: expected shape (B, L), got {tuple(ids.shape)}")
    if ids.shape[1] == 0:
        raise ValueError("input_ids: empty sequence (length 0)")
    if max_length and ids.shape[1] > max_length:
        raise ValueError(f"input_ids: length {ids.shape[1]} exceeds max_length={max_length}")
    if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
        raise ValueError(f"input_ids: ids must lie in [0, {vocab_size}), got range [{int(ids.min())}, {int(ids.max())}]")


# ---- heads (shared by the Caduceus models and the Transformer baseline) -------------------------
def _pool(h: torch.Tensor, how: str, mask: Optional[torch.Tensor], reverse: bool = False) -> torch.Tensor:
    """``h (B, L, C)`` -> ``(B, C)``; ``reverse`` swaps first/last (for the RC strand half)."""
    if how == "mean":
        if mask is None:
            return h.mean(1)
        m = mask.to(h.dtype).unsqueeze(-1)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)
    if how == "max":
        if mask is not None:
            h = h.masked_fill(~mask.bool().unsqueeze(-1), float("-inf"))
        return h.max(1).values
    if mask is not None:
        raise ValueError(f"pooling={how!r} with padding is ambiguous; use 'mean' or 'max' with attention_mask")
    first = (how == "first") != reverse
    return h[:, 0] if first else h[:, -1]


class LMHead(nn.Module):
    """Hidden ``(B, L, D)`` -> logits ``(B, L, V)``; RCPS-equivariant when ``rcps``."""

    def __init__(self, d_model: int, vocab_size: int, rcps: bool, comp_map: list[int]) -> None:
        super().__init__()
        self.rcps = rcps
        self.proj = nn.Linear(d_model // 2 if rcps else d_model, vocab_size, bias=False)
        self.register_buffer("comp", torch.tensor(comp_map, dtype=torch.long), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.rcps:
            return self.proj(h)
        h1, h2 = h.chunk(2, dim=-1)
        return self.proj(h1) + self.proj(h2.flip(-1))[..., self.comp]


class SequenceHead(nn.Module):
    """Hidden ``(B, L, D)`` -> class logits ``(B, C)`` after pooling.

    With ``rcps``: ``rc_mode="invariant"`` gives the same logits for ``x`` and ``rc(x)``;
    ``"antisymmetric"`` (2 classes) swaps the two logits under RC. Without RCPS ``rc_mode`` has
    no effect (use ``RCConjoined(..., "sequence" | "sequence_swap")`` for a symmetric model).
    """

    def __init__(self, d_model: int, num_classes: int, pooling: str, rcps: bool, rc_mode: str) -> None:
        super().__init__()
        self.pooling, self.rcps, self.rc_mode = pooling, rcps, rc_mode
        width = d_model // 2 if rcps else d_model
        anti = rcps and rc_mode == "antisymmetric"
        self.proj = nn.Linear(width, 1 if anti else num_classes, bias=not anti)

    def pooled(self, h: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Pooled features ``(B, D)`` (``(B, D/2)`` with RCPS)."""
        if not self.rcps:
            return _pool(h, self.pooling, mask)
        h1, h2 = h.chunk(2, dim=-1)
        p1 = _pool(h1, self.pooling, mask)
        p2 = _pool(h2, self.pooling, mask, reverse=True).flip(-1)
        return p1 - p2 if self.rc_mode == "antisymmetric" else p1 + p2

    def forward(self, h: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.proj(self.pooled(h, mask))
        if self.rcps and self.rc_mode == "antisymmetric":
            return torch.cat([-0.5 * out, 0.5 * out], dim=-1)
        return out


class TokenHead(nn.Module):
    """Hidden ``(B, L, D)`` -> per-base class logits ``(B, L, C)`` (RC-invariant labels under
    RCPS: ``logits(rc x) == logits(x).flip(1)``)."""

    def __init__(self, d_model: int, num_classes: int, rcps: bool) -> None:
        super().__init__()
        self.rcps = rcps
        self.proj = nn.Linear(d_model // 2 if rcps else d_model, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.rcps:
            h1, h2 = h.chunk(2, dim=-1)
            h = h1 + h2.flip(-1)
        return self.proj(h)


def build_head(task: str, d_model: int, vocab_size: int, num_classes: int, pooling: str, rcps: bool,
               rc_mode: str, comp_map: list[int]) -> Optional[nn.Module]:
    if task in ("mlm", "causal_lm"):
        return LMHead(d_model, vocab_size, rcps, comp_map)
    if task == "sequence":
        return SequenceHead(d_model, num_classes, pooling, rcps, rc_mode)
    if task == "token":
        return TokenHead(d_model, num_classes, rcps)
    return None


class _TaskModel(PretrainedMixin, nn.Module):
    """Shared ``forward``: ``input_ids (B, L)`` [+ ``attention_mask (B, L)``] -> task output."""

    def forward_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        check_ids(input_ids, self.config.vocab_size, self.config.max_length)
        return self.backbone(input_ids)

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``backbone``: ``(B, L, D)``; ``mlm``/``causal_lm``: ``(B, L, V)``; ``sequence``:
        ``(B, C)``; ``token``: ``(B, L, C)``."""
        h = self.forward_features(input_ids)
        if self.head is None:
            return h
        if isinstance(self.head, SequenceHead):
            if attention_mask is not None and attention_mask.shape != input_ids.shape:
                raise ValueError(f"attention_mask: expected shape {tuple(input_ids.shape)}, "
                                 f"got {tuple(attention_mask.shape)}")
            return self.head(h, attention_mask)
        return self.head(h)

    @property
    def num_features(self) -> int:
        return self.config.d_model

    def reset_classifier(self, num_classes: int, task: str = "sequence", pooling: Optional[str] = None,
                         rc_mode: Optional[str] = None) -> None:
        """Replace the head (e.g. MLM -> sequence classification for fine-tuning)."""
        cfg = self.config.to_dict()
        cfg.update(task=task, num_classes=num_classes, pooling=pooling or self.config.pooling,
                   rc_mode=rc_mode or self.config.rc_mode)
        self.config = type(self.config).from_dict(cfg)
        rcps = getattr(self.config, "rcps", False)
        self.head = build_head(task, self.config.d_model, self.config.vocab_size, num_classes,
                               self.config.pooling, rcps, self.config.rc_mode, self.config.complement_map)


# ---- the Caduceus model -------------------------------------------------------------------------
class CaduceusBackbone(nn.Module):
    """Token ids ``(B, L)`` -> hidden states ``(B, L, d_model)`` (see ``CaduceusConfig``)."""

    def __init__(self, config: CaduceusConfig) -> None:
        super().__init__()
        self.config = config
        width = config.d_model // 2 if config.rcps else config.d_model
        mamba_kw = dict(d_state=config.d_state, d_conv=config.d_conv, expand=config.expand)

        def mixer(i: int) -> nn.Module:
            if not config.bidirectional:
                m: nn.Module = Mamba(width, layer_idx=i, **mamba_kw)
            elif config.tie_projections:
                m = BiMamba(width, layer_idx=i, **mamba_kw)
            else:
                m = MultiOrderMixer(width, lambda d: Mamba(d, layer_idx=i, **mamba_kw), bidirectional(),
                                    merge="sum", share_mixer=False)
            return RCPS(m) if config.rcps else m

        def norm() -> nn.Module:
            n = RMSNorm(width, eps=config.norm_epsilon)
            return RCPS(n) if config.rcps else n

        if config.rcps:
            self.embedding: nn.Module = RCPSEmbedding(config.vocab_size, width, config.complement_map)
        else:
            self.embedding = nn.Embedding(config.vocab_size, width)
        self.layers = nn.ModuleList([ResidualBlock(norm(), mixer(i)) for i in range(config.n_layer)])
        self.norm_f = norm()
        self.init_weights()

    def init_weights(self, std: float = 0.02) -> None:
        """N(0, 0.02) embeddings, zero biases (the dt bias keeps its Mamba init), out_proj
        rescaled by ``1/sqrt(n_layer)``."""
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
            elif isinstance(module, nn.Linear) and module.bias is not None and not getattr(module.bias, "_no_reinit", False):
                nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith("out_proj.weight"):
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))
                with torch.no_grad():
                    p /= math.sqrt(self.config.n_layer)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden, residual = self.embedding(input_ids), None          # (B, L, D)
        use_ckpt = self.config.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if use_ckpt:
                hidden, residual = checkpoint(layer, hidden, residual, use_reentrant=False)
            else:
                hidden, residual = layer(hidden, residual)
        return self.norm_f(hidden + residual)


class Caduceus(_TaskModel):
    """A Caduceus-style DNA model: ``CaduceusBackbone`` + the head chosen by ``config.task``.

    ``Caduceus(CaduceusConfig(task="mlm"))(ids (B, L)) -> logits (B, L, vocab_size)``;
    ``save_pretrained`` / ``from_pretrained`` as every mambakit model.
    """

    config_class = CaduceusConfig
    model_type = "caduceus"

    def __init__(self, config: Optional[CaduceusConfig] = None, **overrides: Any) -> None:
        super().__init__()
        if config is None:
            config = CaduceusConfig(**overrides)
        elif overrides:
            config = CaduceusConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config
        self.backbone = CaduceusBackbone(config)
        self.head = build_head(config.task, config.d_model, config.vocab_size, config.num_classes,
                               config.pooling, config.rcps, config.rc_mode, config.complement_map)


# ---- post-hoc conjoining ------------------------------------------------------------------------
class RCConjoined(nn.Module):
    """RC-symmetrise any model at inference: ``0.5 * (f(x) + map_back(f(rc x)))``.

    ``output``: ``"lm"`` (logits ``(B, L, V)``: flip positions, permute vocabulary),
    ``"sequence"`` (``(B, C)``, RC-invariant labels), ``"sequence_swap"`` (``(B, 2)``, labels that
    swap under RC, e.g. strand), ``"token"`` (``(B, L, C)``: flip positions).
    """

    OUTPUTS = ("lm", "sequence", "sequence_swap", "token")

    def __init__(self, model: nn.Module, output: str, comp_map: Optional[list[int]] = None) -> None:
        super().__init__()
        if output not in self.OUTPUTS:
            raise ValueError(f"output: expected one of {self.OUTPUTS}, got {output!r}")
        self.model, self.output = model, output
        self.register_buffer("comp", torch.tensor(comp_map or complement_map(), dtype=torch.long), persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        check_ids(input_ids, len(self.comp))
        y = self.model(input_ids)
        y_rc = self.model(self.comp[input_ids].flip(1))
        if self.output == "lm":
            y_rc = y_rc.flip(1)[..., self.comp]
        elif self.output == "token":
            y_rc = y_rc.flip(1)
        elif self.output == "sequence_swap":
            y_rc = y_rc.flip(-1)
        return 0.5 * (y + y_rc)


# ---- Transformer baseline ------------------------------------------------------------------------
@dataclass
class DNATransformerConfig:
    """A pre-norm Transformer encoder with learned positions; same tasks and heads as
    ``CaduceusConfig`` (no RCPS). ``causal=True`` masks attention to the past."""

    vocab_size: int = 9
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_ff: int = 512
    max_length: int = 1024
    causal: bool = False
    dropout: float = 0.0
    task: str = "mlm"
    num_classes: int = 2
    pooling: str = "mean"
    rc_mode: str = "invariant"
    complement_map: list = field(default_factory=complement_map)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layer", "n_head", "d_ff", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if self.task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {self.task!r}")
        if self.task == "causal_lm" and not self.causal:
            raise ValueError("task='causal_lm' needs causal=True")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {self.pooling!r}")

    to_dict = CaduceusConfig.to_dict
    from_dict = classmethod(CaduceusConfig.from_dict.__func__)


class TransformerBackbone(nn.Module):
    """Token ids ``(B, L)`` -> ``(B, L, d_model)``: embedding + positions + encoder layers."""

    def __init__(self, config: DNATransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position = nn.Embedding(config.max_length, config.d_model)
        layer = nn.TransformerEncoderLayer(config.d_model, config.n_head, config.d_ff, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.n_layer, enable_nested_tensor=False)
        self.norm_f = nn.LayerNorm(config.d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)
        nn.init.normal_(self.position.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        h = self.embedding(input_ids) + self.position(torch.arange(length, device=input_ids.device))
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=h.device) if self.config.causal else None
        return self.norm_f(self.encoder(h, mask=mask, is_causal=self.config.causal))


class DNATransformer(_TaskModel):
    """Transformer baseline with the same call contract as ``Caduceus``."""

    config_class = DNATransformerConfig
    model_type = "dna_transformer"

    def __init__(self, config: Optional[DNATransformerConfig] = None, **overrides: Any) -> None:
        super().__init__()
        if config is None:
            config = DNATransformerConfig(**overrides)
        elif overrides:
            config = DNATransformerConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config
        self.backbone = TransformerBackbone(config)
        self.head = build_head(config.task, config.d_model, config.vocab_size, config.num_classes,
                               config.pooling, False, config.rc_mode, config.complement_map)


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (tied tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (nats) over positions with ``targets >= 0``: ``logits (B, L, V)``,
    ``targets (B, L)`` (``-100`` = not scored)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
