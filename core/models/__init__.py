"""Networks assembled from the core modules."""
from .backbone import MambaBackbone
from .config import MambaConfig
from .lm import MambaLMHeadModel

__all__ = ["MambaBackbone", "MambaConfig", "MambaLMHeadModel"]
