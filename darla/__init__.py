"""darla: zero-shot transfer in RL through disentangled vision (DARLA, Higgins et al. 2017)."""

__version__ = "0.1.0"
