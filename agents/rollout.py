"""Episodes in a domain: the seeded vector env, and rollouts of any policy, side by side.

Shared by training (evaluations every ``eval_every`` steps, :mod:`agents.train`) and zero-shot
transfer (:mod:`agents.transfer`). :func:`make_vec_env` seeds env ``i`` with ``seed + i``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from agents.encode import VecEncode
from envs.factors import Domain
from envs.registry import make_env
from vision.base import VisionModel

MAX_PARALLEL = 64


def make_vec_env(
    env_name: str,
    domain: Domain,
    n_envs: int,
    seed: int,
    size: int = 64,
    max_steps: int = 100,
    monitor_dir: Path | None = None,
    monitor_append: bool = False,
) -> VecEnv:
    """A seeded DummyVecEnv of ``n_envs`` envs in ``domain`` (SubprocVecEnv rarely pays on 2 cores)."""

    def thunk(i: int) -> Callable[[], Any]:
        def _make():
            env = make_env(env_name, domain, size=size, max_steps=max_steps)
            filename = str(monitor_dir / f"{i}") if monitor_dir is not None else None
            return Monitor(env, filename=filename, override_existing=not monitor_append)

        return _make

    if monitor_dir is not None:
        monitor_dir.mkdir(parents=True, exist_ok=True)
    venv = DummyVecEnv([thunk(i) for i in range(n_envs)])
    venv.seed(seed)
    venv.action_space.seed(seed)
    return venv


def run_episodes(
    model: BaseAlgorithm,
    encoder: VisionModel | None,
    env_name: str,
    domain: Domain,
    seeds: list[int],
    *,
    size: int = 64,
    max_steps: int = 100,
    deterministic: bool = False,
    device: str | torch.device = "cpu",
    on_frames: Callable[[np.ndarray, np.ndarray | None], None] | None = None,
) -> list[tuple[float, int]]:
    """One episode per seed, in order; returns (return, length) per episode.

    ``encoder`` None: the policy observes raw frames (pixel baselines, DARLA_FT). ``on_frames``:
    see :func:`rollouts`.
    """
    def act(venv: VecEnv, obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=deterministic)[0]

    wrap = (lambda venv: VecEncode(venv, encoder, device)) if encoder is not None else None
    return rollouts(env_name, domain, seeds, size, max_steps, act, wrap, on_frames)


def rollouts(
    env_name: str, domain: Domain, seeds: list[int], size: int, max_steps: int,
    act: Callable[[VecEnv, np.ndarray], np.ndarray], wrap: Callable[[VecEnv], VecEnv] | None = None,
    on_frames: Callable[[np.ndarray, np.ndarray | None], None] | None = None,
) -> list[tuple[float, int]]:
    """One episode per seed, up to :data:`MAX_PARALLEL` side by side; ``act(venv, obs)`` picks actions.

    ``on_frames(frames, scene)``, where given, receives the first episode's raw frames (uint8
    (T + 1, H, W, C): its reset frame and the frame after each step) and scene factor classes
    (``info["scene"]``, None when the env has none): a video of an evaluated episode, at no
    extra env step.
    """
    out: list[tuple[float, int]] = []
    for start in range(0, len(seeds), MAX_PARALLEL):
        chunk = seeds[start : start + MAX_PARALLEL]
        # make_vec_env seeds env i with chunk[0] + i; the seeds are consecutive by construction.
        assert chunk == list(range(chunk[0], chunk[0] + len(chunk)))
        venv = make_vec_env(env_name, domain, len(chunk), chunk[0], size, max_steps)
        tap = _FrameTap(venv) if on_frames is not None and start == 0 else None
        if tap is not None:
            venv = tap
        if wrap is not None:
            venv = wrap(venv)
        obs = venv.reset()
        n = len(chunk)
        returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
        finished = np.zeros(n, dtype=bool)
        while not finished.all():
            obs, rewards, dones, _ = venv.step(act(venv, obs))
            live = ~finished
            returns[live] += rewards[live]
            lengths[live] += 1
            finished |= dones  # DummyVecEnv auto-resets; later steps of a finished env are ignored
        venv.close()
        if tap is not None and on_frames is not None:
            on_frames(np.stack(tap.frames), tap.scene)
        out += list(zip(returns.tolist(), lengths.tolist()))
    return out


class _FrameTap(VecEnvWrapper):
    """Keeps every raw frame of env 0's first episode, below any encoder, its terminal frame included."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.frames: list[np.ndarray] = []
        self.scene: np.ndarray | None = None
        self._done = False

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        self.frames, self._done = [np.array(obs[0])], False
        infos = getattr(self.venv, "reset_infos", None)
        scene = infos[0].get("scene") if infos else None
        self.scene = None if scene is None else np.asarray(scene)
        return obs

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        if not self._done:
            # DummyVecEnv auto-resets: the last frame of a finished episode is its terminal observation
            self.frames.append(np.array(infos[0]["terminal_observation"] if dones[0] else obs[0]))
            self._done = bool(dones[0])
        return obs, rewards, dones, infos
