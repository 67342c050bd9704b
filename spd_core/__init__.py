"""spd_core: Stochastic Parameter Decomposition in plain PyTorch (no Ray, no gRPC)."""

__version__ = "0.1.0"
