"""Images -> patch tokens: input checks and conversions, conv patch embedding, position embedding
resampling.

Input policy (the same for every vision model here), applied by ``prepare_images``:

* ``x`` must be a floating tensor ``(B, C, H, W)`` without NaN/Inf (``ValueError`` otherwise).
* Channels: a model built for 3 channels accepts 1-channel (grayscale, repeated to RGB) and
  4-channel (RGBA, the alpha channel is dropped) input; a 1-channel model accepts RGB (converted
  to luma with the ITU-R BT.601 weights 0.299, 0.587, 0.114). Any other count is a ``ValueError``.
* Sizes that are not a multiple of the patch stride are zero-padded at the right and bottom
  (``pad="pad"``, zero is the dataset mean after normalisation) or rejected (``pad="error"``).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mambakit.cuda_graphs import is_capturing

PAD_POLICIES = ("pad", "error")
_LUMA = (0.299, 0.587, 0.114)


def to_2tuple(value, name: str) -> tuple[int, int]:
    """``int`` or a pair of ints -> ``(int, int)``, each >= 1."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"{name}: expected an int >= 1 or a pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


def prepare_images(x: torch.Tensor, in_chans: int, stride: tuple[int, int], pad: str = "pad",
                   min_size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """Validate and convert ``x (B, C, H, W)`` to ``(B, in_chans, H', W')`` as the module doc says.

    ``H' = ceil(H / stride_h) * stride_h`` when padding; ``min_size`` (the patch size) is the
    smallest image accepted.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images: expected a torch.Tensor (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        hint = " (add a batch axis with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(f"images: expected shape (B, C, H, W), got {tuple(x.shape)}{hint}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"images: expected a float tensor (normalised pixels), got {x.dtype}; "
                        "convert uint8 images with the model's transform first")
    if x.shape[0] == 0:
        raise ValueError("images: got an empty batch")
    # (skipped while a CUDA graph is captured: the check reads the answer back on the host)
    if not is_capturing() and not torch.isfinite(x).all():
        raise ValueError("images: found NaN or Inf pixels; clean or mask the input before the model")
    c = x.shape[1]
    if c != in_chans:
        if in_chans == 3 and c == 1:
            x = x.expand(-1, 3, -1, -1)
        elif in_chans == 3 and c == 4:
            x = x[:, :3]
        elif in_chans == 1 and c == 3:
            w = x.new_tensor(_LUMA).view(1, 3, 1, 1)
            x = (x * w).sum(1, keepdim=True)
        else:
            raise ValueError(f"images: the model takes {in_chans} channels, got {c} "
                             "(only grayscale<->RGB and RGBA->RGB are converted)")
    h, w = x.shape[-2:]
    if min_size is not None and (h < min_size[0] or w < min_size[1]):
        raise ValueError(f"images: {h}x{w} is smaller than one patch {min_size[0]}x{min_size[1]}")
    if pad not in PAD_POLICIES:
        raise ValueError(f"pad: expected one of {PAD_POLICIES}, got {pad!r}")
    sh, sw = stride
    ph, pw = (-h) % sh, (-w) % sw
    if ph or pw:
        if pad == "error":
            raise ValueError(f"images: {h}x{w} is not a multiple of the patch stride {sh}x{sw}; "
                             "resize, or build the model with pad='pad'")
        x = F.pad(x, (0, pw, 0, ph))
    return x


class PatchEmbed(nn.Module):
    """Conv patch embedding: ``(B, C, H, W)`` -> tokens ``(B, h*w, D)`` row-major, and ``(h, w)``.

    ``patch_size`` is the kernel and ``stride`` the step (``stride < patch_size`` gives
    overlapping patches, as Vim's long-sequence fine-tuning); ``h = (H - p) // s + 1``.
    ``flatten=False`` returns a channels-last map ``(B, h, w, D)`` instead.
    """

    def __init__(self, img_size=224, patch_size=16, stride=None, in_chans: int = 3, embed_dim: int = 192,
                 norm_layer: Optional[type] = None, flatten: bool = True, pad: str = "pad") -> None:
        super().__init__()
        self.img_size = to_2tuple(img_size, "img_size")
        self.patch_size = to_2tuple(patch_size, "patch_size")
        self.stride = to_2tuple(stride if stride is not None else patch_size, "stride")
        if not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f"in_chans: expected an int >= 1, got {in_chans!r}")
        if pad not in PAD_POLICIES:
            raise ValueError(f"pad: expected one of {PAD_POLICIES}, got {pad!r}")
        self.in_chans, self.embed_dim, self.flatten, self.pad = in_chans, embed_dim, flatten, pad
        self.grid_size = self.grid_for(self.img_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.stride)
        self.norm = norm_layer(embed_dim) if norm_layer is not None else nn.Identity()

    def grid_for(self, size: tuple[int, int]) -> tuple[int, int]:
        """Token grid ``(h, w)`` for an image of ``size = (H, W)`` (after padding)."""
        h, w = (max(size[i], self.patch_size[i]) for i in range(2))
        h, w = h + (-h) % self.stride[0], w + (-w) % self.stride[1]
        return ((h - self.patch_size[0]) // self.stride[0] + 1, (w - self.patch_size[1]) // self.stride[1] + 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = prepare_images(x, self.in_chans, self.stride, self.pad, self.patch_size)
        x = self.proj(x)                                                       # (B, D, h, w)
        hw = (x.shape[-2], x.shape[-1])
        x = x.permute(0, 2, 3, 1)                                              # (B, h, w, D)
        x = self.norm(x)
        return (x.flatten(1, 2) if self.flatten else x), hw                    # (B, h*w, D)


def resample_pos_embed(pos_embed: torch.Tensor, new_size: tuple[int, int], old_size: Optional[tuple[int, int]] = None,
                       mode: str = "bicubic") -> torch.Tensor:
    """Interpolate a grid position embedding ``(1, h0*w0, D)`` to ``(1, h*w, D)``.

    ``old_size`` defaults to a square grid. Values are interpolated in float32 (bicubic,
    ``align_corners=False``) and cast back; the same grid is returned unchanged.
    """
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"pos_embed: expected (1, N, D), got {tuple(pos_embed.shape)}")
    n = pos_embed.shape[1]
    if old_size is None:
        side = int(math.isqrt(n))
        if side * side != n:
            raise ValueError(f"pos_embed has {n} positions, not a square grid: pass old_size")
        old_size = (side, side)
    if old_size[0] * old_size[1] != n:
        raise ValueError(f"pos_embed has {n} positions, old_size {old_size} has {old_size[0] * old_size[1]}")
    if tuple(new_size) == tuple(old_size):
        return pos_embed
    dim = pos_embed.shape[-1]
    grid = pos_embed.float().reshape(1, old_size[0], old_size[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_size), mode=mode, align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, new_size[0] * new_size[1], dim).to(pos_embed.dtype)
