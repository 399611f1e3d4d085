"""Vision Mamba (Vim, Zhu et al. 2024, arXiv:2401.09417) on the mambakit core, timm-native.

Image -> conv patches (row-major) + absolute position embedding -> class token inserted (middle
by default, as the published Vim) -> ``depth`` residual blocks of a bidirectional Mamba
(forward + backward scan, shared in/out projections, outputs averaged) with RMSNorm -> final
RMSNorm -> class token (or mean of patch tokens) -> linear head.

Parameter names follow the official Vim except the per-direction SSM parameters
(``mixer.branches.{0,1}.*``) and the split position embedding (``pos_embed`` for the patch grid,
``cls_pos_embed`` for the class token); ``mambakit.vision.convert`` maps official checkpoints.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import partial
from typing import Any, Optional

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from mambakit import PretrainedMixin

from mambakit.modules.block import Block
from mambakit.modules.norms import RMSNorm

from .layers import MultiOrderMamba
from .scan_orders import CLS_POSITIONS, bidirectional_orders, class_token_index, insert_class_token
from .tokenizers import PAD_POLICIES, PatchEmbed, resample_pos_embed, to_2tuple

POOLS = ("cls", "mean")


@dataclass
class VimConfig:
    """Vim hyper-parameters. Defaults are Vim-Tiny (embed 192, depth 24, d_state 16, patch 16)."""

    img_size: int | tuple = 224
    patch_size: int | tuple = 16
    stride: Optional[int | tuple] = None          # None: non-overlapping (stride = patch_size)
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 192
    depth: int = 24
    d_state: int = 16
    d_conv: int = 4
    expand: float = 2.0
    cls_position: str = "middle"                  # "start", "middle" (official) or "none"
    global_pool: str = "cls"                      # "cls" (official with a class token) or "mean"
    divide_out: bool = True                       # average the two directions (official "div2")
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    norm_eps: float = 1e-5
    residual_in_fp32: bool = True
    pad: str = "pad"                              # non-multiple-of-stride sizes: "pad" or "error"
    impl: str = "auto"

    def validate(self) -> "VimConfig":
        to_2tuple(self.img_size, "img_size")
        to_2tuple(self.patch_size, "patch_size")
        if self.stride is not None:
            to_2tuple(self.stride, "stride")
        for name in ("in_chans", "embed_dim", "depth", "d_state", "d_conv"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"VimConfig.{name}: expected an int >= 1, got {value!r}")
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(f"VimConfig.num_classes: expected an int >= 0, got {self.num_classes!r}")
        if self.cls_position not in CLS_POSITIONS:
            raise ValueError(f"VimConfig.cls_position: expected one of {CLS_POSITIONS}, got {self.cls_position!r}")
        if self.global_pool not in POOLS:
            raise ValueError(f"VimConfig.global_pool: expected one of {POOLS}, got {self.global_pool!r}")
        if self.global_pool == "cls" and self.cls_position == "none":
            raise ValueError("VimConfig: global_pool='cls' needs a class token (cls_position != 'none')")
        if self.pad not in PAD_POLICIES:
            raise ValueError(f"VimConfig.pad: expected one of {PAD_POLICIES}, got {self.pad!r}")
        if not 0 <= self.drop_path_rate < 1 or not 0 <= self.drop_rate < 1:
            raise ValueError("VimConfig: drop_rate and drop_path_rate must lie in [0, 1)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VimConfig":
        """Inverse of ``to_dict`` (JSON lists become tuples); unknown keys are refused."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names - {"model_type"})
        if unknown:
            raise ValueError(f"VimConfig: unknown fields {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


class VimBlock(Block):
    """Core pre-norm residual block with stochastic depth on the mixer output (as Vim's Block):
    ``residual = residual + drop_path(hidden); hidden = mixer(norm(residual))``."""

    def __init__(self, dim: int, mixer_cls, norm_cls, residual_in_fp32: bool, drop_path: float) -> None:
        super().__init__(dim, mixer_cls, norm_cls=norm_cls, residual_in_fp32=residual_in_fp32)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _add(self, hidden_states: torch.Tensor, residual: Optional[torch.Tensor]) -> torch.Tensor:
        if residual is not None:
            hidden_states = self.drop_path(hidden_states)
        return super()._add(hidden_states, residual)


class Vim(PretrainedMixin, nn.Module):
    """Vision Mamba classifier: images ``(B, C, H, W)`` -> logits ``(B, num_classes)``.

    ``forward_features`` returns the normalised tokens ``(B, N (+1), D)`` (class token at
    ``cls_index(N)``); ``forward_head`` pools and classifies. Any image size works: the patch
    position embedding is bicubically resampled to the new grid (fine-tune at 224, run at 1024).
    """

    config_class = VimConfig
    model_type = "vim"

    def __init__(self, config: Optional[VimConfig] = None, **kwargs) -> None:
        super().__init__()
        kwargs.pop("pretrained_cfg", None)
        kwargs.pop("pretrained_cfg_overlay", None)
        if config is None:
            config = VimConfig(**kwargs)
        elif kwargs:
            config = VimConfig(**{**asdict(config), **kwargs})
        self.config = config.validate()
        c = config
        self.num_classes, self.global_pool = c.num_classes, c.global_pool
        self.num_features = self.embed_dim = self.head_hidden_size = c.embed_dim
        self.cls_position = c.cls_position
        self.num_prefix_tokens = 0 if c.cls_position == "none" else 1
        self.patch_embed = PatchEmbed(c.img_size, c.patch_size, c.stride, c.in_chans, c.embed_dim, pad=c.pad)
        if self.num_prefix_tokens:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
            self.cls_pos_embed = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, c.embed_dim))
        self.pos_drop = nn.Dropout(c.drop_rate)
        dpr = torch.linspace(0, c.drop_path_rate, c.depth).tolist()
        mixer = partial(MultiOrderMamba, orders=bidirectional_orders(), d_state=c.d_state, d_conv=c.d_conv,
                        expand=c.expand, divide_out=c.divide_out, impl=c.impl)
        norm = partial(RMSNorm, eps=c.norm_eps)
        self.layers = nn.ModuleList([VimBlock(c.embed_dim, mixer, norm, c.residual_in_fp32, dpr[i])
                                     for i in range(c.depth)])
        self.norm_f = norm(c.embed_dim)
        self.head_drop = nn.Dropout(c.drop_rate)
        self.head = nn.Linear(c.embed_dim, c.num_classes) if c.num_classes > 0 else nn.Identity()
        self.init_weights()

    # ---- init -------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Truncated-normal(0.02) embeddings, patch conv and head; zero linear biases (except
        ``dt_proj``); ``out_proj`` Kaiming-uniform divided by ``sqrt(depth)`` (prenorm rescaling)."""
        trunc_normal_(self.pos_embed, std=0.02)
        if self.num_prefix_tokens:
            trunc_normal_(self.cls_token, std=0.02)
            trunc_normal_(self.cls_pos_embed, std=0.02)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and m.bias is not None and not getattr(m.bias, "_no_reinit", False):
                nn.init.zeros_(m.bias)
        if isinstance(self.head, nn.Linear):
            trunc_normal_(self.head.weight, std=0.02)
        trunc_normal_(self.patch_embed.proj.weight, std=0.02)
        nn.init.zeros_(self.patch_embed.proj.bias)
        for name, p in self.named_parameters():
            if name.endswith("out_proj.weight"):
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))
                with torch.no_grad():
                    p /= math.sqrt(self.config.depth)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "cls_pos_embed"}

    # ---- timm contract ----------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """New (freshly initialised) head with ``num_classes`` outputs; 0 gives pooled features."""
        if global_pool is not None:
            if global_pool not in POOLS or (global_pool == "cls" and not self.num_prefix_tokens):
                raise ValueError(f"global_pool: expected one of {POOLS} (cls needs a class token), got {global_pool!r}")
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def cls_index(self, num_patches: int) -> Optional[int]:
        return class_token_index(num_patches, self.cls_position)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W)`` -> normalised tokens ``(B, h*w (+1), D)``."""
        x, grid = self.patch_embed(x)                                          # (B, N, D)
        x = x + resample_pos_embed(self.pos_embed, grid, self.patch_embed.grid_size)
        if self.num_prefix_tokens:
            x, _ = insert_class_token(x, self.cls_token + self.cls_pos_embed, self.cls_position)  # (B, N+1, D)
        x = self.pos_drop(x)
        hidden, residual = x, None
        for layer in self.layers:
            hidden, residual = layer(hidden, residual)
        residual = hidden + residual if residual is not None else hidden
        return self.norm_f(residual.to(self.norm_f.weight.dtype))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens ``(B, L, D)`` -> pooled ``(B, D)`` (``pre_logits``) or logits ``(B, num_classes)``."""
        if self.global_pool == "cls":
            x = x[:, self.cls_index(x.shape[1] - 1)]
        elif self.num_prefix_tokens:
            index = self.cls_index(x.shape[1] - 1)
            x = torch.cat([x[:, :index], x[:, index + 1:]], 1).mean(1)
        else:
            x = x.mean(1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---- checkpoints --------------------------------------------------------------------------
def checkpoint_filter_fn(state_dict: dict, model: Vim) -> dict:
    """timm's hook: accept an official Vim checkpoint (``{'model': ...}`` or bare) or ours, and
    return our layout with the position embedding resampled to ``model``'s grid."""
    from .convert import vim_prepare_state_dict

    converted, _ = vim_prepare_state_dict(state_dict, model)
    return converted


def _cfg(**kwargs) -> dict:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": None,
        "crop_pct": 0.875, "interpolation": "bicubic", "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.proj", "classifier": "head", "license": "apache-2.0",
        "paper_ids": "arXiv:2401.09417", **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "vim_tiny_patch16_224.in1k": _cfg(),
    "vim_small_patch16_224.in1k": _cfg(),
    "vim_base_patch16_224.in1k": _cfg(),
})

# Published sizes (Zhu et al. 2024, Table 1 and the official repository's model definitions).
VIM_SIZES = {
    "vim_tiny_patch16_224": dict(patch_size=16, embed_dim=192, depth=24, d_state=16),
    "vim_small_patch16_224": dict(patch_size=16, embed_dim=384, depth=24, d_state=16),
    "vim_base_patch16_224": dict(patch_size=16, embed_dim=768, depth=24, d_state=16),
}


def _create_vim(variant: str, pretrained: bool = False, **kwargs) -> Vim:
    return build_model_with_cfg(Vim, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                **{**VIM_SIZES[variant], **kwargs})


@register_model
def vim_tiny_patch16_224(pretrained: bool = False, **kwargs) -> Vim:
    """Vim-Tiny: 7M parameters, 76.1% ImageNet top-1 (paper)."""
    return _create_vim("vim_tiny_patch16_224", pretrained, **kwargs)


@register_model
def vim_small_patch16_224(pretrained: bool = False, **kwargs) -> Vim:
    """Vim-Small: 26M parameters, 80.5% ImageNet top-1 (paper)."""
    return _create_vim("vim_small_patch16_224", pretrained, **kwargs)


@register_model
def vim_base_patch16_224(pretrained: bool = False, **kwargs) -> Vim:
    """Vim-Base: 98M parameters, 81.9% ImageNet top-1 (paper, later revision)."""
    return _create_vim("vim_base_patch16_224", pretrained, **kwargs)
