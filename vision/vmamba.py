"""VMamba-style hierarchical model (Liu et al. 2024, arXiv:2401.10166, first release) on the
mambakit core, timm-native.

Image -> 4x4 conv patches + LayerNorm (channels-last map) -> 4 stages of VSS blocks
(``x + drop_path(SS2D(LayerNorm(x)))``, SS2D = cross-scan selective scan) with Swin-style patch
merging (2x2 neighbours -> LayerNorm -> linear 4C -> 2C) after stages 1-3 -> LayerNorm ->
global average pool -> linear head. ``forward_features(x, return_stages=True)`` gives the
per-stage maps ``(B, C_i, H/2^(i+2), W/2^(i+2))`` for dense heads.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .layers import SS2D
from .tokenizers import PAD_POLICIES, PatchEmbed, to_2tuple


@dataclass
class VMambaConfig:
    """VMamba hyper-parameters; defaults are VMamba-T (v0): depths 2-2-9-2, dims 96-768."""

    img_size: int | tuple = 224
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 1000
    depths: list = field(default_factory=lambda: [2, 2, 9, 2])
    dims: list = field(default_factory=lambda: [96, 192, 384, 768])
    d_state: int = 16
    d_conv: int = 3
    expand: float = 2.0
    drop_rate: float = 0.0
    drop_path_rate: float = 0.2
    norm_eps: float = 1e-5
    pad: str = "pad"
    impl: str = "auto"

    def validate(self) -> "VMambaConfig":
        to_2tuple(self.img_size, "img_size")
        if len(self.depths) != len(self.dims) or not self.depths:
            raise ValueError(f"VMambaConfig: depths {self.depths} and dims {self.dims} must have the same length >= 1")
        if any(int(d) < 1 for d in self.depths) or any(int(d) < 1 for d in self.dims):
            raise ValueError("VMambaConfig: depths and dims must be >= 1")
        for i in range(1, len(self.dims)):
            if self.dims[i] != 2 * self.dims[i - 1]:
                raise ValueError(f"VMambaConfig: patch merging doubles the width; dims {self.dims} do not")
        if self.pad not in PAD_POLICIES:
            raise ValueError(f"VMambaConfig.pad: expected one of {PAD_POLICIES}, got {self.pad!r}")
        if not 0 <= self.drop_path_rate < 1:
            raise ValueError("VMambaConfig.drop_path_rate must lie in [0, 1)")
        return self


class PatchMerging(nn.Module):
    """``(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C)``: concat the 2x2 neighbours (order
    (0,0), (1,0), (0,1), (1,1)), LayerNorm(4C), linear to 2C. Odd sizes are zero-padded."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class VSSBlock(nn.Module):
    """``x + drop_path(SS2D(LayerNorm(x)))`` over ``(B, H, W, C)``."""

    def __init__(self, dim: int, d_state: int, d_conv: int, expand: float, drop_path: float,
                 eps: float, impl: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mixer = SS2D(dim, d_state=d_state, d_conv=d_conv, expand=expand, impl=impl)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.mixer(self.norm(x)))


class VMambaStage(nn.Module):
    def __init__(self, dim: int, depth: int, drop_paths: list, downsample: bool, **block_kw) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([VSSBlock(dim, drop_path=dp, **block_kw) for dp in drop_paths])
        self.downsample = PatchMerging(dim, block_kw["eps"]) if downsample else nn.Identity()


class VMamba(nn.Module):
    """VMamba-style classifier: images ``(B, C, H, W)`` -> logits ``(B, num_classes)``.

    Any input size works (linear cost in the number of pixels); sizes that are not a multiple
    of 4 are padded (``pad="pad"``), odd stage maps are padded before merging.
    """

    def __init__(self, config: Optional[VMambaConfig] = None, **kwargs) -> None:
        super().__init__()
        kwargs.pop("pretrained_cfg", None)
        kwargs.pop("pretrained_cfg_overlay", None)
        if config is None:
            config = VMambaConfig(**kwargs)
        elif kwargs:
            config = VMambaConfig(**{**asdict(config), **kwargs})
        self.config = c = config.validate()
        self.num_classes = c.num_classes
        self.num_features = self.head_hidden_size = c.dims[-1]
        self.global_pool = "avg"
        self.patch_embed = PatchEmbed(c.img_size, c.patch_size, None, c.in_chans, c.dims[0],
                                      norm_layer=partial(nn.LayerNorm, eps=c.norm_eps), flatten=False, pad=c.pad)
        dpr = torch.linspace(0, c.drop_path_rate, sum(c.depths)).tolist()
        self.stages = nn.ModuleList()
        start = 0
        for i, (depth, dim) in enumerate(zip(c.depths, c.dims)):
            self.stages.append(VMambaStage(dim, depth, dpr[start:start + depth], i < len(c.depths) - 1,
                                           d_state=c.d_state, d_conv=c.d_conv, expand=c.expand,
                                           eps=c.norm_eps, impl=c.impl))
            start += depth
        self.feature_info = [dict(num_chs=d, reduction=c.patch_size * 2 ** i, module=f"stages.{i}")
                             for i, d in enumerate(c.dims)]
        self.norm = nn.LayerNorm(c.dims[-1], eps=c.norm_eps)
        self.head_drop = nn.Dropout(c.drop_rate)
        self.head = nn.Linear(c.dims[-1], c.num_classes) if c.num_classes > 0 else nn.Identity()
        self.init_weights()

    def init_weights(self) -> None:
        """Truncated-normal(0.02) linear weights except the SSM's ``dt_proj`` (Mamba init kept),
        zero biases except ``dt_proj``, LayerNorms at (1, 0)."""
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and not name.endswith("dt_proj") and not name.endswith("x_proj"):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool not in (None, "avg"):
            raise ValueError(f"global_pool: only 'avg' is supported, got {global_pool!r}")
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def forward_features(self, x: torch.Tensor, return_stages: bool = False):
        """``x (B, C, H, W)`` -> the final normalised map ``(B, h, w, C_last)`` (channels-last),
        or with ``return_stages`` the list of per-stage maps ``[(B, C_i, h_i, w_i)]`` (NCHW, taken
        before each patch merging; the last one after the final norm)."""
        x, _ = self.patch_embed(x)                                             # (B, H/4, W/4, C0)
        stages = []
        for i, stage in enumerate(self.stages):
            for block in stage.blocks:
                x = block(x)
            if i == len(self.stages) - 1:
                x = self.norm(x)
            if return_stages:
                stages.append(x.permute(0, 3, 1, 2))
            x = stage.downsample(x)
        return stages if return_stages else x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, h, w, C)`` -> pooled ``(B, C)`` or logits ``(B, num_classes)``."""
        x = self.head_drop(x.mean(dim=(1, 2)))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict: dict, model: VMamba) -> dict:
    """timm's hook: official VMamba (v0 layout, ``{'model': ...}`` or bare) or ours -> ours."""
    from .convert import vmamba_prepare_state_dict

    converted, _ = vmamba_prepare_state_dict(state_dict, model)
    return converted


def _cfg(**kwargs) -> dict:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.875, "interpolation": "bicubic", "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.proj", "classifier": "head", "license": "mit",
        "paper_ids": "arXiv:2401.10166", **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "vmamba_tiny_224.in1k": _cfg(),
    "vmamba_small_224.in1k": _cfg(),
    "vmamba_base_224.in1k": _cfg(),
})

# Published sizes of the first VMamba release (arXiv:2401.10166v1, Table 1).
VMAMBA_SIZES = {
    "vmamba_tiny_224": dict(depths=[2, 2, 9, 2], dims=[96, 192, 384, 768], drop_path_rate=0.2),
    "vmamba_small_224": dict(depths=[2, 2, 27, 2], dims=[96, 192, 384, 768], drop_path_rate=0.3),
    "vmamba_base_224": dict(depths=[2, 2, 27, 2], dims=[128, 256, 512, 1024], drop_path_rate=0.5),
}


def _create_vmamba(variant: str, pretrained: bool = False, **kwargs) -> VMamba:
    return build_model_with_cfg(VMamba, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                **{**VMAMBA_SIZES[variant], **kwargs})


@register_model
def vmamba_tiny_224(pretrained: bool = False, **kwargs) -> VMamba:
    """VMamba-T (v0): 22M parameters, 82.2% ImageNet top-1 (paper v1)."""
    return _create_vmamba("vmamba_tiny_224", pretrained, **kwargs)


@register_model
def vmamba_small_224(pretrained: bool = False, **kwargs) -> VMamba:
    """VMamba-S (v0): 44M parameters, 83.5% ImageNet top-1 (paper v1)."""
    return _create_vmamba("vmamba_small_224", pretrained, **kwargs)


@register_model
def vmamba_base_224(pretrained: bool = False, **kwargs) -> VMamba:
    """VMamba-B (v0): 75M parameters, 83.2% ImageNet top-1 (paper v1)."""
    return _create_vmamba("vmamba_base_224", pretrained, **kwargs)
