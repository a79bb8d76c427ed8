"""Stage 3, transfer: zero-shot evaluation of a trained policy in each domain.

Each episode has its own fixed seed: domain ``d`` (0 = source, then targets in config order) uses
seeds ``seed_base + d·100_000 + k`` for episodes ``k = 0..n-1``, so domains never share a seed
and re-running gives the same episodes. All episodes of a domain run side by side in one vector
env, so the frozen encoder sees them as one batch per step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from agents.rollout import make_vec_env, rollouts, run_episodes
from envs.factors import Domain
from vision.base import VisionModel

SEED_STRIDE = 100_000


class Episode(NamedTuple):
    domain: str
    episode: int
    env_seed: int
    """The reset seed of this episode (not the policy's training seed)."""
    ret: float
    length: int


def episode_seeds(domain_index: int, n_episodes: int, seed_base: int) -> list[int]:
    if n_episodes > SEED_STRIDE:
        raise ValueError(f"at most {SEED_STRIDE} episodes per domain")
    start = seed_base + domain_index * SEED_STRIDE
    return list(range(start, start + n_episodes))


def evaluate_transfer(
    model: BaseAlgorithm,
    encoder: VisionModel | None,
    env_name: str,
    domains: Mapping[str, Domain],
    *,
    n_episodes: int = 20,
    seed_base: int = 1_000_000,
    size: int = 64,
    max_steps: int = 100,
    deterministic: bool = False,
    device: str | torch.device = "cpu",
    record: dict[str, tuple[np.ndarray, np.ndarray | None]] | None = None,
) -> list[Episode]:
    """Evaluate ``model`` zero-shot on every domain (source first by convention).

    ``record``, where given, is filled with each domain's first episode as ``name → (frames,
    scene)`` (see :func:`rollouts`): the very episode whose return is episode 0's.
    """
    model.set_random_seed(seed_base)  # stochastic actions are reproducible too
    episodes: list[Episode] = []
    for d, (name, domain) in enumerate(domains.items()):
        seeds = episode_seeds(d, n_episodes, seed_base)
        keep = None if record is None else (lambda frames, scene, name=name: record.__setitem__(name, (frames, scene)))
        results = run_episodes(
            model, encoder, env_name, domain, seeds,
            size=size, max_steps=max_steps, deterministic=deterministic, device=device, on_frames=keep,
        )
        episodes += [Episode(name, k, s, r, n) for k, (s, (r, n)) in enumerate(zip(seeds, results))]
    return episodes


class RandomPolicy:
    """Uniform random actions (seeded): the 0 of normalised scores. Duck-types ``predict``."""

    def __init__(self, action_space) -> None:
        self.action_space = action_space

    def set_random_seed(self, seed: int) -> None:
        self.action_space.seed(seed)

    def predict(self, obs: np.ndarray, deterministic: bool = False) -> tuple[np.ndarray, None]:
        return np.stack([self.action_space.sample() for _ in range(len(obs))]), None


def run_oracle_episodes(
    env_name: str, domain: Domain, seeds: list[int], *, size: int = 64, max_steps: int = 100
) -> list[tuple[float, int]] | None:
    """The env's scripted expert (``oracle_action()`` on the true state) on the given episodes.

    The 1 of normalised scores. ``None`` when the env has no oracle.
    """
    probe = make_vec_env(env_name, domain, 1, 0, size, max_steps)
    has_oracle = hasattr(probe.envs[0].unwrapped, "oracle_action")
    probe.close()
    if not has_oracle:
        return None

    def act(venv: VecEnv, obs: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(e.unwrapped.oracle_action()) for e in venv.envs])

    return rollouts(env_name, domain, seeds, size, max_steps, act)
