"""Helpers shared by analyses (not analyses themselves): prompt inputs, activations, attention maps."""
