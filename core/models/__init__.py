"""Networks assembled from the core modules."""
from .backbone import MambaBackbone
from .config import MambaConfig
from .lm import MambaLMHeadModel
from .transformer import CausalTransformerLM, KVCache

__all__ = ["CausalTransformerLM", "KVCache", "MambaBackbone", "MambaConfig", "MambaLMHeadModel"]
