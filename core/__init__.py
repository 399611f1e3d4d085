"""mambakit: selective state space models (Mamba-1, Mamba-2) for every domain, on CPU and GPU.

The core: selective-scan ops with a PyTorch reference and fast CPU/GPU paths, the Mamba and
Mamba2 mixers, blocks, the backbone, scan orders, recurrent inference and save/load.
"""
from .cuda_graphs import CUDAGraphModule
from .hub import PretrainedMixin
from .models import MambaBackbone, MambaConfig, MambaLMHeadModel
from .modules.block import Block, GatedMLP
from .modules.inference import InferenceParams
from .modules.mamba import Mamba
from .modules.mamba2 import Mamba2
from .modules.norms import RMSNorm, RMSNormGated
from .ops.conv1d import causal_conv1d, causal_conv1d_update
from .ops.packing import seq_idx_from_cu_seqlens
from .ops.selective_scan import selective_scan
from .ops.ssd import ssd_chunk_scan, ssd_state_update
from .ops.state_update import selective_state_update
from .scan_orders import (Forward, MultiOrderMixer, Permutation, Reverse, ScanOrder, bidirectional,
                          resolve_orders)

__version__ = "0.1.0"

__all__ = [
    "selective_scan", "ssd_chunk_scan", "causal_conv1d", "causal_conv1d_update",
    "selective_state_update", "ssd_state_update", "seq_idx_from_cu_seqlens",
    "Mamba", "Mamba2", "Block", "GatedMLP", "RMSNorm", "RMSNormGated", "InferenceParams",
    "MambaBackbone", "MambaConfig", "MambaLMHeadModel", "PretrainedMixin",
    "ScanOrder", "Forward", "Reverse", "Permutation", "MultiOrderMixer", "bidirectional",
    "resolve_orders", "CUDAGraphModule",
]
