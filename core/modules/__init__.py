"""``nn.Module``s that own parameters and call the ops."""
