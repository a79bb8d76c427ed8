"""Env throughput: seek-avoid v0 and v1 frames/s (single env, DummyVecEnv, ground-truth renders).

Baseline, measured in the same run: gymnasium's CartPole-v1 (no rendering) steps/s — the cost
of a Python env step with no pixels at all. Ratios show what drawing a frame costs. Each rate
is one process on one core.

    python benchmarks/env_throughput.py [--size 64] [--seconds 3] [--envs seek_avoid seek_avoid_v1]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

from envs.registry import get_domain, get_env_info, make_env


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


def measure(env_name: str, size: int, seconds: float, rng: np.random.Generator) -> list[tuple[str, float]]:
    """(what, per second) rows for one env: single env steps, DummyVecEnv(8) steps, ground-truth renders."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    single = rate(env_stepper(make_env(env_name, "vision", size=size, max_steps=100), rng), seconds)
    venv = DummyVecEnv([lambda: make_env(env_name, "vision", size=size) for _ in range(8)])
    venv.seed(0)
    venv.reset()
    vec_actions = rng.integers(4, size=(200, 8))

    def vec_run() -> int:
        for a in vec_actions:
            venv.step(a)
        return vec_actions.size

    vec = rate(vec_run, seconds)
    gt = get_env_info(env_name).ground_truth(size, get_domain(env_name, "vision"))
    factors = gt.sample_factors(1000, rng)
    render = rate(lambda: len(gt.sample_observations_from_factors(factors, rng)), seconds)
    return [
        (f"{env_name} env steps (1 env, frame rendered)", single),
        (f"{env_name} DummyVecEnv(8) env steps", vec),
        (f"{env_name} ground-truth renders → float CHW", render),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--envs", nargs="+", default=["seek_avoid", "seek_avoid_v1"])
    args = ap.parse_args()
    rng = np.random.default_rng(0)

    base = rate(env_stepper(gym.make("CartPole-v1"), rng), args.seconds)
    print(f"{args.seconds:.0f} s per measurement, {args.size}×{args.size} frames")
    print(f"{'what':<48}{'per s':>12}{'÷ CartPole':>12}")
    print(f"{'CartPole-v1 steps (baseline, no pixels)':<48}{base:>12,.0f}{1:>12.2f}")
    for env_name in args.envs:
        for name, r in measure(env_name, args.size, args.seconds, rng):
            print(f"{name:<48}{r:>12,.0f}{r / base:>12.2f}", flush=True)


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "env_throughput.py"))
