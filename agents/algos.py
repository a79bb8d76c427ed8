"""Algorithm name → SB3 class (a literal dict, as rl-zoo's ``ALGOS``), and a logger that writes nowhere."""

from __future__ import annotations

from stable_baselines3 import A2C, DQN, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger

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


def quiet_logger() -> Logger:
    """An SB3 logger with no folder and no outputs, for ``model.set_logger`` before ``learn()``.

    A model without a tensorboard dir otherwise gets SB3's default logger at every ``learn()``
    call, which makes an empty ``tempdir/SB3-<time>`` folder outside any run directory.
    """
    return Logger(folder=None, output_formats=[])
