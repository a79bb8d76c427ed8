"""How well the RL half can do when vision is perfect: PPO on the env's true state (or on pixels).

A policy on frozen latents can only be as good as (1) what the latents encode and (2) what the
RL algorithm makes of a perfect encoding at the same budget. This script measures (2): PPO with
a preset's hyperparameters on the env's true state instead of latents, evaluated on the same
episode seeds as stage 3, and prints the normalised score, (return − random) ÷ (oracle −
random), with the random policy and the scripted oracle measured on those episodes. Compare a
run's normalised source score with this ceiling.

- reacher: cos/sin of both joints, fingertip and target (x, y) — ``configs/reacher_cpu.yaml``'s PPO.
- seek_avoid: agent, good and bad object cells scaled to [0, 1] and the layout one-hot — the
  factors a perfectly disentangled encoder would hand over — with
  ``configs/darla_seek_avoid.yaml``'s PPO (or ``--preset seek_avoid_cpu``:
  ``configs/seek_avoid_cpu.yaml``'s).
- seek_avoid_v1: the env's own ``true_state()`` (cells scaled to [0, 1], object set one-hot),
  with ``configs/seek_avoid_cpu.yaml``'s PPO (the preset that runs v1 on a CPU).

    python benchmarks/state_ceiling.py --env reacher [--steps 300000] [--seeds 0 1 2]
    python benchmarks/state_ceiling.py --env seek_avoid --steps 1000000 --eval-every 100000
    python benchmarks/state_ceiling.py --env seek_avoid_v1 --steps 150000 --eval-every 50000

``--observe pixels`` trains the preset's end-to-end ``pixels`` method instead (``--method`` picks
another pixel method, e.g. ``pixels_aug``), exactly as stage 2 builds it (the preset's frame size,
encoder architecture and PPO), and scores its last policy on the same episodes against the same
references: does an agent that sees only frames learn the task at this budget? Its
``--eval-every`` lines are stage 2's own source evaluations (``agent.eval_episodes`` episodes).

    python benchmarks/state_ceiling.py --env seek_avoid_v1 --observe pixels --steps 150000 --eval-every 50000

``-o KEY=VALUE`` applies a config override to the preset first, as ``darla pipeline --set`` does
(``-o agent.hyperparams.learning_rate=1.0e-3``): try other PPO settings without editing it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.algos import quiet_logger
from agents.rollout import rollouts, run_episodes
from agents.transfer import RandomPolicy, episode_seeds, evaluate_transfer, run_oracle_episodes
from darla.config import load_config
from envs.reacher import forward_kinematics, target_position
from envs.registry import get_domain, make_env
from envs.seek_avoid import INTERIOR, LAYOUTS, SCENE_SPACE
from envs.seek_avoid_v1 import OBJECT_SETS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRESETS = {
    "reacher": "reacher_cpu.yaml",
    "reacher_methods": "reacher_methods.yaml",
    "seek_avoid": "darla_seek_avoid.yaml",
    "seek_avoid_cpu": "seek_avoid_cpu.yaml",
    "seek_avoid_v1": "seek_avoid_cpu.yaml",
}


def true_state(env: gym.Env, env_name: str) -> np.ndarray:
    """The state the frame shows, as a perfect encoder would hand it over (see the module doc)."""
    u = env.unwrapped
    if hasattr(u, "true_state"):
        return u.true_state()
    if env_name == "reacher":
        q1, q2, ta, tr = u._state
        _, tip = forward_kinematics(q1, q2)
        target = target_position(ta, tr)
        return np.array([np.cos(q1), np.sin(q1), np.cos(q2), np.sin(q2), *tip, *target], dtype=np.float32)
    cells = np.array([*u._agent, *u._good, *u._bad], dtype=np.float32) / (INTERIOR - 1)
    layout = np.zeros(len(LAYOUTS), dtype=np.float32)
    layout[int(u._scene[SCENE_SPACE.index("layout")])] = 1.0
    return np.concatenate([cells, layout])


class TrueState(gym.ObservationWrapper):
    """Observe :func:`true_state` instead of the frame (training envs)."""

    def __init__(self, env: gym.Env, env_name: str) -> None:
        super().__init__(env)
        self.env_name = env_name
        dim = {"reacher": 8, "seek_avoid": 6 + len(LAYOUTS)}.get(env_name, 6 + len(OBJECT_SETS))
        self.observation_space = gym.spaces.Box(-2.0, 2.0, shape=(dim,), dtype=np.float32)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        return true_state(self.env, self.env_name)


def train_pixels(preset: Path, method: str, seed: int, steps: int, eval_every: int, overrides: list[str] | None = None):
    """Stage 2's ``method`` (a pixel method of ``preset``) for ``steps`` steps: (last policy, evaluations, steps trained).

    The steps come from the training run: a policy loaded as weights only does not carry its count."""
    from agents.train import load_agent, train_agent
    from darla.stages.agent import agent_spec
    from darla.stages.common import domains_of

    cfg = load_config(preset, overrides or [])
    if method not in cfg.methods or cfg.methods[method].observe != "pixels":
        pixel = [m for m, mc in cfg.methods.items() if mc.observe == "pixels"]
        raise SystemExit(f"{preset.name} has no pixel method {method!r}; its pixel methods are {pixel}")
    spec = dataclasses.replace(
        agent_spec(cfg, method, seed, None), total_timesteps=steps, eval_every=eval_every, select="last", log_targets=False
    )
    _, source, _ = domains_of(cfg)
    with tempfile.TemporaryDirectory(prefix="pixels_ceiling_") as tmp:
        res = train_agent(spec, None, None, source, Path(tmp), progress=False, tensorboard=False)
        log = Path(tmp) / "evaluations.jsonl"
        evals = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        model = load_agent(res.model_path)
    return model, evals, res.timesteps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", choices=["reacher", "seek_avoid", "seek_avoid_v1"], default="reacher")
    ap.add_argument("--preset", choices=sorted(PRESETS), help="whose PPO settings (default: the env's)")
    ap.add_argument("--steps", type=int, default=300_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--size", type=int, help="frame size (default: 32 for the state, which does not depend on it; "
                    "the preset's env.size for pixels)")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=0, help="also print the score every N steps")
    ap.add_argument("--observe", choices=["state", "pixels"], default="state",
                    help="pixels: the preset's end-to-end pixel method, as stage 2 trains it")
    ap.add_argument("--method", default="pixels", help="with --observe pixels: which of the preset's methods")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: fastest for the MLP; on a shared CPU also for the conv policy)")
    ap.add_argument("--deterministic", choices=["preset", "yes", "no"], default="preset",
                    help="greedy or sampled evaluation actions (default: the preset's transfer.deterministic)")
    ap.add_argument("-o", "--set", "--override", dest="override", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override applied to the preset, as darla's --set (e.g. agent.hyperparams.n_epochs=10)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    preset = CONFIGS / PRESETS[args.preset or args.env]
    cfg = load_config(preset, args.override).to_dict()  # validated, with the overrides applied
    pixel_size = int(cfg["env"].get("size", 64))
    if args.observe == "pixels":
        if cfg["env"]["name"] != args.env:
            raise SystemExit(f"--observe pixels needs a preset of env {args.env!r}; {preset.name} runs {cfg['env']['name']!r}")
    args.size = args.size or (pixel_size if args.observe == "pixels" else 32)
    agent = cfg["agent"]
    hp = dict(agent.get("hyperparams", {}))
    policy_kwargs = dict(agent.get("policy_kwargs", {}))
    n_envs, max_steps = int(agent.get("n_envs", 8)), int(cfg["env"].get("max_steps", 100))
    det = {"yes": True, "no": False}.get(args.deterministic, bool(cfg.get("transfer", {}).get("deterministic", True)))
    print(f"{args.env}: PPO {hp}, net {policy_kwargs.get('net_arch')}, {n_envs} envs, {'greedy' if det else 'sampled'} evaluation")
    source = get_domain(args.env, "source")
    eval_seeds = episode_seeds(0, args.episodes, 1_000_000)  # stage 3's episodes for the source
    space = make_env(args.env, source, size=args.size).action_space
    common = dict(size=args.size, max_steps=max_steps)
    # Stage 3's references on stage 3's episodes: the seeded RandomPolicy and the env's oracle.
    random_eps = evaluate_transfer(RandomPolicy(space), None, args.env, {"source": source}, n_episodes=args.episodes, **common)
    random_ret = float(np.mean([ep.ret for ep in random_eps]))
    oracle_ret = float(np.mean([r for r, _ in run_oracle_episodes(args.env, source, eval_seeds, **common)]))
    print(f"random {random_ret:.2f}, oracle {oracle_ret:.2f} per episode on {args.episodes} source episodes")

    def score(model) -> tuple[float, float]:
        def act(venv, obs):  # the policy sees each env's true state, not the frames in obs
            return model.predict(np.stack([true_state(e, args.env) for e in venv.envs]), deterministic=det)[0]

        ret = float(np.mean([r for r, _ in rollouts(args.env, source, eval_seeds, args.size, max_steps, act)]))
        return ret, (ret - random_ret) / (oracle_ret - random_ret)

    if args.observe == "pixels":
        if args.size != pixel_size:
            raise SystemExit(f"--observe pixels runs at the preset's env.size ({pixel_size} px); drop --size or pass {pixel_size}")
        for seed in args.seeds:
            t0 = time.perf_counter()
            model, evals, trained = train_pixels(preset, args.method, seed, args.steps, args.eval_every, args.override)
            for row in evals:
                print(f"  seed {seed}: {row['timesteps']} steps: stage-2 source evaluation {row['source']:.2f}", flush=True)
            ret = float(np.mean([r for r, _ in run_episodes(model, None, args.env, source, eval_seeds, deterministic=det, **common)]))
            norm = (ret - random_ret) / (oracle_ret - random_ret)
            print(f"PPO on pixels ({args.method}), seed {seed}: {trained} steps in {time.perf_counter() - t0:.0f} s; "
                  f"return {ret:.2f}, normalised {norm:.2f}", flush=True)
        return

    for seed in args.seeds:
        venv = DummyVecEnv(
            [lambda: TrueState(make_env(args.env, source, size=args.size, max_steps=max_steps), args.env)] * n_envs
        )
        venv.seed(seed)
        model = PPO("MlpPolicy", venv, seed=seed, policy_kwargs=policy_kwargs, verbose=0, **hp)
        model.set_logger(quiet_logger())
        chunk = args.eval_every or args.steps
        t0, done = time.perf_counter(), 0
        while done < args.steps:
            model.learn(min(chunk, args.steps - done), reset_num_timesteps=False)
            done = model.num_timesteps
            ret, norm = score(model)
            print(f"  seed {seed}: {done} steps, {time.perf_counter() - t0:.0f} s: return {ret:.2f}, normalised {norm:.2f}", flush=True)
        print(f"PPO on the true state, seed {seed}: {args.steps} steps; return {ret:.2f}, normalised {norm:.2f}")


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "state_ceiling.py"))
