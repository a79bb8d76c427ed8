"""How well the RL half can do on reacher when vision is perfect: PPO on the true state.

A policy on frozen latents can only be as good as (1) what the latents encode and (2) what the
RL algorithm makes of a perfect encoding at the same budget. This script measures (2): PPO with
the same hyperparameters as ``configs/reacher_cpu.yaml`` on the env's true state (cos/sin of both
joints, fingertip and target positions) instead of latents, then evaluates on the same episode
seeds as stage 3 and prints the normalised score, (return − random) ÷ (oracle − random), with
the random policy and the scripted oracle measured on those episodes. Compare a run's
normalised source score with this ceiling.

    python benchmarks/reacher_state_ceiling.py [--steps 300000] [--seeds 0 1 2] [--size 32]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from envs.reacher import forward_kinematics, target_position
from envs.registry import get_domain, make_env

HYPERPARAMS = dict(n_steps=256, batch_size=256, n_epochs=10, learning_rate=3e-4, gamma=0.95, gae_lambda=0.95)


class TrueState(gym.ObservationWrapper):
    """Observe the state the frame shows: joint angles (cos, sin), fingertip and target (x, y)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Box(-2.0, 2.0, shape=(8,), dtype=np.float32)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        q1, q2, ta, tr = self.env.unwrapped._state
        _, tip = forward_kinematics(q1, q2)
        target = target_position(ta, tr)
        return np.array([np.cos(q1), np.sin(q1), np.cos(q2), np.sin(q2), *tip, *target], dtype=np.float32)


def episodes(policy, domain, seeds, size: int, max_steps: int, state: bool) -> list[float]:
    """Returns per episode; ``policy(obs, env)`` gives the action."""
    out = []
    for s in seeds:
        env = make_env("reacher", domain, size=size, max_steps=max_steps)
        env = TrueState(env) if state else env
        obs, _ = env.reset(seed=int(s))
        ret, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(policy(obs, env))
            ret += float(r)
            done = term or trunc
        out.append(ret)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--episodes", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    source = get_domain("reacher", "source")
    eval_seeds = list(range(1_000_000, 1_000_000 + args.episodes))  # stage 3's seed_base for the source
    rng = np.random.default_rng(0)
    random_ret = np.mean(episodes(lambda o, e: rng.uniform(-1, 1, 2), source, eval_seeds, args.size, 100, False))
    oracle_ret = np.mean(episodes(lambda o, e: e.unwrapped.oracle_action(), source, eval_seeds, args.size, 100, False))
    print(f"random {random_ret:.1f}, oracle {oracle_ret:.1f} per episode on {args.episodes} source episodes")
    for seed in args.seeds:
        venv = DummyVecEnv([lambda: TrueState(make_env("reacher", source, size=args.size, max_steps=100)) for _ in range(8)])
        venv.seed(seed)
        model = PPO("MlpPolicy", venv, seed=seed, policy_kwargs={"net_arch": [64, 64]}, verbose=0, **HYPERPARAMS)
        t0 = time.perf_counter()
        model.learn(args.steps)
        wall = time.perf_counter() - t0
        ret = np.mean(episodes(lambda o, e, m=model: m.predict(o, deterministic=True)[0], source, eval_seeds, args.size, 100, True))
        norm = (ret - random_ret) / (oracle_ret - random_ret)
        print(f"PPO on the true state, seed {seed}: {args.steps} steps in {wall:.0f} s; return {ret:.1f}, normalised {norm:.2f}")


if __name__ == "__main__":
    main()
