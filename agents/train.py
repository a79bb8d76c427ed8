"""Stage 2, learn to act: an SB3 policy on the frozen vision model's latents, in the source domain.

One function, :func:`train_agent`, reads top to bottom: build the source-domain vector env,
wrap it in :class:`~agents.encode.VecEncode`, build or resume the algorithm, learn with periodic
resume checkpoints, save ``model.zip`` with the encoder checkpoint's sha256 recorded in it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from agents.algos import ACTION_KINDS, get_algo
from agents.encode import VecEncode
from envs.factors import Domain
from envs.registry import get_env_info, make_env
from vision.base import VisionModel

CHECKPOINT = "checkpoint.zip"
MODEL = "model.zip"


@dataclass(frozen=True)
class AgentSpec:
    """Everything that defines one policy-training run (JSON-able, recorded in meta.json)."""

    env_name: str
    domain: str
    size: int = 64
    max_steps: int = 100
    algo: str = "ppo"
    total_timesteps: int = 20_000
    n_envs: int = 8
    seed: int = 0
    hyperparams: dict[str, Any] = field(default_factory=dict)
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 10_000
    """Timesteps between resume checkpoints (``checkpoint.zip``)."""


class AgentResult(NamedTuple):
    model_path: Path
    timesteps: int
    wall_time_s: float
    steps_per_s: float


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


class _Checkpoint(BaseCallback):
    """Saves a resumable checkpoint every ``every`` timesteps, atomically."""

    def __init__(self, path: Path, every: int) -> None:
        super().__init__()
        self.path, self.every, self._last = path, every, 0

    def _on_training_start(self) -> None:
        self._last = self.model.num_timesteps

    def _on_step(self) -> bool:
        if self.model.num_timesteps - self._last >= self.every:
            self._last = self.model.num_timesteps
            save_atomic(self.model, self.path)
        return True


class _Progress(BaseCallback):
    """A tqdm bar over timesteps with the recent mean episode return."""

    def __init__(self, total: int, desc: str) -> None:
        super().__init__()
        self.total, self.desc, self.bar = total, desc, None

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, initial=self.model.num_timesteps, desc=self.desc, unit="step", leave=False)

    def _on_step(self) -> bool:
        self.bar.update(self.model.num_timesteps - self.bar.n)
        buf = self.model.ep_info_buffer
        if buf and self.n_calls % 50 == 0:
            self.bar.set_postfix(ret=f"{np.mean([e['r'] for e in buf]):.2f}")
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def save_atomic(model: BaseAlgorithm, path: Path) -> None:
    """SB3 saves a zip; write it beside the target and rename, so a kill never leaves half a file."""
    tmp = path.with_name(path.stem + ".tmp.zip")
    model.save(tmp)
    os.replace(tmp, path)


def train_agent(
    spec: AgentSpec,
    encoder: VisionModel,
    encoder_sha256: str,
    source: Domain,
    out_dir: Path,
    *,
    device: str | torch.device = "cpu",
    resume: bool = True,
    progress: bool = True,
    tensorboard: bool = True,
) -> AgentResult:
    """Train ``spec.algo`` on ``encoder``'s frozen latents in ``source``; write ``out_dir/model.zip``.

    Resumes from ``out_dir/checkpoint.zip`` when present and ``resume`` is true. The policy runs on
    the CPU (an MLP over a few latents is faster there); the encoder runs on ``device``.
    """
    kind = get_env_info(spec.env_name).action_kind
    if kind not in ACTION_KINDS[spec.algo]:
        raise ValueError(f"{spec.algo.upper()} does not support {kind} actions (env {spec.env_name!r})")
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / CHECKPOINT
    resuming = resume and ckpt.exists()
    venv = make_vec_env(
        spec.env_name, source, spec.n_envs, spec.seed, spec.size, spec.max_steps,
        monitor_dir=out_dir / "monitor", monitor_append=resuming,
    )
    env = VecEncode(venv, encoder, device=device)
    algo_cls = get_algo(spec.algo)
    tb_dir = str(out_dir / "tb") if tensorboard else None
    if resuming:
        model = algo_cls.load(ckpt, env=env, device="cpu", tensorboard_log=tb_dir)
    else:
        model = algo_cls(
            "MlpPolicy", env, seed=spec.seed, device="cpu", verbose=0, tensorboard_log=tb_dir,
            policy_kwargs=dict(spec.policy_kwargs) or None, **spec.hyperparams,
        )
    remaining = spec.total_timesteps - model.num_timesteps
    callbacks: list[BaseCallback] = [_Checkpoint(ckpt, spec.checkpoint_every)]
    if progress:
        callbacks.append(_Progress(spec.total_timesteps, f"agent {spec.algo} seed {spec.seed}"))
    t0 = time.perf_counter()
    start_steps = model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=not resuming, tb_log_name="agent")
    wall = time.perf_counter() - t0
    # Recorded inside model.zip (SB3 saves instance attributes) and beside it, so transfer can
    # refuse to evaluate a policy against a vision model it was not trained on.
    model.darla_encoder_sha256 = encoder_sha256
    model_path = out_dir / MODEL
    save_atomic(model, model_path)
    meta = {"spec": asdict(spec), "encoder_sha256": encoder_sha256, "timesteps": int(model.num_timesteps)}
    write_json_atomic(out_dir / "meta.json", meta)
    if ckpt.exists():
        ckpt.unlink()
    env.close()
    steps = model.num_timesteps - start_steps
    return AgentResult(model_path, int(model.num_timesteps), wall, steps / wall if wall > 0 else float("nan"))


def load_agent(path: Path, expect_encoder_sha256: str | None = None) -> BaseAlgorithm:
    """Load a ``model.zip`` written by :func:`train_agent`.

    SB3 zips contain pickled objects: only load files you produced yourself.
    """
    meta_path = path.parent / "meta.json"
    if not path.exists():
        raise FileNotFoundError(f"no trained policy at {path}")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    algo = meta.get("spec", {}).get("algo")
    if algo is None:
        raise ValueError(f"{meta_path} is missing or has no spec.algo; cannot tell which algorithm saved {path}")
    model = get_algo(algo).load(path, device="cpu")
    recorded = getattr(model, "darla_encoder_sha256", meta.get("encoder_sha256"))
    if expect_encoder_sha256 is not None and recorded != expect_encoder_sha256:
        raise ValueError(
            f"{path} was trained on the vision checkpoint with sha256 {str(recorded)[:12]}…, "
            f"not on the one given ({expect_encoder_sha256[:12]}…); retrain the agent (--force)"
        )
    return model


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)
