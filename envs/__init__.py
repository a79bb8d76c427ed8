"""Environments with controllable factors of variation (layer 1: knows nothing of models)."""
