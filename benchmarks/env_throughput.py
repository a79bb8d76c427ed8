"""Env throughput: seek-avoid frames/s (single env, DummyVecEnv, ground-truth renders).

Baseline, measured in the same run: gymnasium's CartPole-v1 (no rendering) steps/s — the cost
of a Python env step with no pixels at all. Ratios show what drawing a 64×64 frame costs.

    python benchmarks/env_throughput.py [--size 64] [--seconds 3]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

from envs.registry import get_domain, make_env
from envs.seek_avoid import SeekAvoidGroundTruth


def rate(fn, seconds: float) -> float:
    """Calls of ``fn`` per second (each call returns how many items it produced)."""
    fn()  # warm-up (caches, first reset)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += fn()
    return n / (time.perf_counter() - t0)


def env_stepper(env: gym.Env, rng: np.random.Generator):
    env.reset(seed=0)
    actions = rng.integers(env.action_space.n, size=1000)

    def run() -> int:
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
        return len(actions)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    rng = np.random.default_rng(0)

    base = rate(env_stepper(gym.make("CartPole-v1"), rng), args.seconds)
    single = rate(env_stepper(make_env("seek_avoid", "vision", size=args.size, max_steps=100), rng), args.seconds)

    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([lambda: make_env("seek_avoid", "vision", size=args.size) for _ in range(8)])
    venv.seed(0)
    venv.reset()
    vec_actions = rng.integers(4, size=(200, 8))

    def vec_run() -> int:
        for a in vec_actions:
            venv.step(a)
        return vec_actions.size

    vec = rate(vec_run, args.seconds)

    gt = SeekAvoidGroundTruth(args.size, get_domain("seek_avoid", "vision"))
    factors = gt.sample_factors(1000, rng)
    render = rate(lambda: len(gt.sample_observations_from_factors(factors, rng)), args.seconds)

    print(f"seek_avoid at {args.size}×{args.size}, {args.seconds:.0f} s per measurement")
    print(f"{'what':<44}{'per s':>12}{'÷ CartPole':>12}")
    rows = [
        ("CartPole-v1 steps (baseline, no pixels)", base),
        ("seek_avoid env steps (1 env, frame rendered)", single),
        ("seek_avoid DummyVecEnv(8) env steps", vec),
        ("ground-truth renders → float CHW images", render),
    ]
    for name, r in rows:
        print(f"{name:<44}{r:>12,.0f}{r / base:>12.2f}")


if __name__ == "__main__":
    main()
