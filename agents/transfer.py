"""Stage 3, transfer: zero-shot evaluation of a trained policy in each domain.

Each episode has its own fixed seed: domain ``d`` (0 = source, then targets in config order) uses
seeds ``seed_base + d·100_000 + k`` for episodes ``k = 0..n-1``, so domains never share a seed
and re-running gives the same episodes. All episodes of a domain run side by side in one vector
env, so the frozen encoder sees them as one batch per step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from agents.encode import VecEncode
from agents.train import make_vec_env
from envs.factors import Domain
from vision.base import VisionModel

SEED_STRIDE = 100_000
MAX_PARALLEL = 64


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
