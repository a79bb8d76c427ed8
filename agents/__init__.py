"""Stages 2 and 3, learn to act and transfer: SB3 policies on frozen latents."""
