"""PPO steps/s on frozen latents (seek-avoid frames → VecEncode) ÷ PPO steps/s on a free env.

The baseline, measured in the same run, is the same PPO (same hyperparameters, same number of
envs) on a "free" vector env whose observations are random vectors of the latent size: no
rendering, no encoder. The ratio is what seeing through a frozen conv encoder costs (issue goal
≥ 0.6). With ``--device cuda`` it measures VecEncode twice, eager and with its CUDA graph (the
default on CUDA), and prints each one's encode time per vector step. Also prints evaluation
episodes/s of the transfer stage.

    python benchmarks/ppo_throughput.py [--steps 8192] [--size 64] [--latent 10] [--threads 2] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.algos import quiet_logger
from agents.encode import VecEncode
from agents.rollout import make_vec_env, run_episodes
from envs.registry import get_domain
from vision.vae import BetaVAE

HYPER = {"n_steps": 128, "batch_size": 256, "n_epochs": 4, "learning_rate": 3e-4, "gamma": 0.95}


class FreeLatentEnv(gym.Env):
    """Random latent-sized observations, 4 actions, zero reward, time limit: PPO's floor cost."""

    def __init__(self, dim: int, max_steps: int = 100) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.action_space = spaces.Discrete(4)
        self.max_steps, self.t = max_steps, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.standard_normal(self.observation_space.shape).astype(np.float32), {}

    def step(self, action):
        self.t += 1
        obs = self.np_random.standard_normal(self.observation_space.shape).astype(np.float32)
        return obs, 0.0, False, self.t >= self.max_steps, {}


def ppo_rate(env, steps: int) -> float:
    model = PPO("MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [64, 64]}, **HYPER)
    model.set_logger(quiet_logger())
    model.learn(HYPER["n_steps"] * env.num_envs)  # warm-up: one rollout + update
    t0 = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - t0), model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8192)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--latent", type=int, default=10)
    ap.add_argument("--n-envs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--device", default="cpu", help="where the frozen encoder runs (the policy stays on the CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder = BetaVAE((3, args.size, args.size), args.latent)
    source = get_domain("seek_avoid", "source")

    free = DummyVecEnv([lambda: FreeLatentEnv(args.latent) for _ in range(args.n_envs)])
    free.seed(0)
    base, _ = ppo_rate(free, args.steps)
    # On CUDA, the eager encoder and the CUDA-graphed one (VecEncode's default there), in turn.
    variants = [False, True] if args.device.startswith("cuda") else [False]
    rows = []
    for graphs in variants:
        enc_env = VecEncode(
            make_vec_env("seek_avoid", source, args.n_envs, 0, args.size), encoder, args.device, cuda_graphs=graphs
        )
        frames = enc_env.venv.reset()
        enc_env.encode(frames)
        t0 = time.perf_counter()
        for _ in range(200):
            enc_env.encode(frames)
        encode_ms = (time.perf_counter() - t0) / 200 * 1e3
        rate, model = ppo_rate(enc_env, args.steps)
        rows.append((graphs, rate, encode_ms))

    target = get_domain("seek_avoid", "target_floor_object")
    t0 = time.perf_counter()
    run_episodes(model, encoder, "seek_avoid", target, list(range(args.episodes)), size=args.size, device=args.device)
    eps = args.episodes / (time.perf_counter() - t0)

    print(f"PPO, {args.n_envs} envs, {args.steps} steps, {args.threads} torch threads, {args.size}px, {args.latent} latents, encoder on {args.device}")
    print(f"{'what':<46}{'steps/s':>10}{'ratio':>8}")
    print(f"{'free latent-sized vector env (baseline)':<46}{base:>10,.0f}{1.0:>8.2f}")
    for graphs, rate, encode_ms in rows:
        what = "seek_avoid frames → VecEncode(β-VAE)" + (", CUDA graph" if graphs else "")
        print(f"{what:<46}{rate:>10,.0f}{rate / base:>8.2f}   (encode {encode_ms:.3f} ms per {args.n_envs} frames)")
    print(f"transfer evaluation: {eps:.2f} episodes/s ({args.episodes} episodes of 100 steps, one batch)")


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "ppo_throughput.py"))
