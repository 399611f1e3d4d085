"""Vision models on the mambakit core: Vim and VMamba-style, registered with timm.

    import timm, mambakit.vision
    model = timm.create_model("vim_tiny_patch16_224", num_classes=10)

* ``scan_orders`` -- 2-D grid scan orders (Vim's bidirectional with a class token, VMamba's
  4-way cross-scan / cross-merge), exact inverses.
* ``tokenizers`` -- input checks/conversions, conv patch embedding, position-embedding resampling.
* ``layers`` -- ``MultiOrderMamba`` (Vim's bidirectional mixer) and ``SS2D`` (VMamba's).
* ``vim`` / ``vmamba`` -- the models, their timm configs and ``@register_model`` entries
  (``vim_{tiny,small,base}_patch16_224``, ``vmamba_{tiny,small,base}_224``).
* ``convert`` -- official Vim / VMamba checkpoint layouts <-> ours, with a report in words.
* ``data`` -- MNIST / Fashion-MNIST / CIFAR / ImageFolder readers (no downloads), timm transforms.
* ``recipes`` -- ``fashion-mnist-vim-tiny`` for ``mambakit train vision``.
"""
from .convert import ConversionReport, load_official, vim_from_official, vim_to_official, vmamba_from_official, vmamba_to_official
from .layers import SS2D, MultiOrderMamba
from .scan_orders import (GridOrder, bidirectional_orders, cross_merge, cross_scan, cross_scan_orders,
                          insert_class_token, remove_class_token)
from .tokenizers import PatchEmbed, prepare_images, resample_pos_embed
from .vim import Vim, VimConfig
from .vmamba import VMamba, VMambaConfig

__all__ = [
    "Vim", "VimConfig", "VMamba", "VMambaConfig", "MultiOrderMamba", "SS2D", "PatchEmbed",
    "prepare_images", "resample_pos_embed", "GridOrder", "cross_scan_orders", "cross_scan", "cross_merge",
    "bidirectional_orders", "insert_class_token", "remove_class_token", "ConversionReport",
    "load_official", "vim_from_official", "vim_to_official", "vmamba_from_official", "vmamba_to_official",
]
