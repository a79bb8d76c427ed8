"""Frame datasets from a uniform random policy, labelled with their scene factors.

DARLA's vision stage trains on frames an exploring agent sees (Higgins et al. 2017, sec. 3.1);
a uniform random policy in the *vision* domain is that agent here. Everything random comes
from ``seed`` (actions and every reset's seed), so a seed fixes the dataset bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

from envs.factors import Domain
from envs.registry import make_env


class FrameDataset(NamedTuple):
    """Frames and the scene factors each was rendered with."""

    frames: np.ndarray
    """uint8 (n, H, W, C), as the env returns them."""
    scenes: np.ndarray
    """int64 (n, S) scene factors (the env's ``info["scene"]``) of each frame."""


def _action_sampler(space: spaces.Space, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniform actions drawn at once (one Generator call, not n)."""
    if isinstance(space, spaces.Discrete):
        return rng.integers(space.n, size=n) + int(space.start)
    if isinstance(space, spaces.Box):
        return rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(space.dtype)
    raise TypeError(f"collect_frames supports Discrete and Box action spaces, got {space}")


def collect_frames(
    env_name: str,
    domain: str | Domain | Mapping[str, Sequence[int]],
    n: int,
    seed: int,
    size: int = 64,
    **env_kwargs: Any,
) -> FrameDataset:
    """``n`` frames from a uniform random policy in ``domain`` of env ``env_name``.

    Records each observation the policy acts on (reset frames included), resetting at episode
    end with a seed drawn from the same generator. Deterministic for a given ``seed``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    # Separate streams for actions and reset seeds, so a shorter dataset is a prefix of a
    # longer one with the same seed.
    action_rng, reset_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)
    )
    env = make_env(env_name, domain, size=size, **env_kwargs)
    try:
        actions = _action_sampler(env.action_space, action_rng, n)
        obs, info = env.reset(seed=int(reset_rng.integers(2**31 - 1)))
        frames = np.empty((n, *obs.shape), dtype=obs.dtype)
        scenes = np.empty((n, len(info["scene"])), dtype=np.int64)
        for i in range(n):
            frames[i] = obs
            scenes[i] = info["scene"]
            obs, _, terminated, truncated, info = env.step(actions[i])
            if terminated or truncated:
                obs, info = env.reset(seed=int(reset_rng.integers(2**31 - 1)))
    finally:
        env.close()
    return FrameDataset(frames, scenes)
