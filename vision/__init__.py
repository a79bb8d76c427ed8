"""Stage 1, learn to see: vision models, their training loop, checkpoints and metrics."""
