"""Functions on tensors: the scans, the causal convolution and the decoding updates."""
