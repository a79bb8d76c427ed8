"""Algorithm name → SB3 class (a literal dict, as rl-zoo's ``ALGOS``)."""

from __future__ import annotations

from stable_baselines3 import A2C, DQN, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "sac": SAC}

#: Which action spaces each algorithm supports (SB3's own restriction, checked early).
ACTION_KINDS: dict[str, tuple[str, ...]] = {
    "ppo": ("discrete", "continuous"),
    "a2c": ("discrete", "continuous"),
    "dqn": ("discrete",),
    "sac": ("continuous",),
}


def get_algo(name: str) -> type[BaseAlgorithm]:
    try:
        return ALGOS[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; choose from {sorted(ALGOS)}") from None
