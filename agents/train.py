"""Stage 2, learn to act: an SB3 policy in the source domain, on frozen latents or on pixels.

One function, :func:`train_agent`, reads top to bottom: build the source-domain vector env,
wrap it in :class:`~agents.encode.VecEncode` (frozen latents) or hand the policy raw frames
(``observe="pixels"``: the end-to-end baselines and DARLA_FT, see :mod:`agents.features`),
build or resume the algorithm, learn with periodic resume checkpoints and source-only
evaluations, save ``model.zip`` with the encoder checkpoint's sha256 recorded in it.

Checkpoint selection (``select="best_source"``) looks at source-domain evaluations only; target
domains may be *logged* during training (``log_targets``) but never choose anything.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from agents.algos import ACTION_KINDS, get_algo
from agents.encode import VecEncode
from agents.features import VisionFeatures, load_pretrained
from envs.factors import Domain
from envs.registry import get_env_info, make_env
from vision.base import VisionModel

CHECKPOINT = "checkpoint.zip"
MODEL = "model.zip"
BEST = "best_source.zip"
BUFFER = "checkpoint_buffer.pkl"
LAST = "last.zip"


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
    observe: Literal["latents", "pixels"] = "latents"
    """latents: the frozen encoder outside the policy; pixels: a conv encoder inside it, trained by RL."""
    pixel_model: str = "vae"
    """observe=pixels: the vision registry model whose encoder the policy uses."""
    pixel_model_kwargs: dict[str, Any] = field(default_factory=dict)
    """observe=pixels: its constructor kwargs (architecture; ``latent_dim`` = features)."""
    finetune: bool = False
    """observe=pixels: start from the trained encoder's weights (DARLA_FT) instead of random ones."""
    augment: str = "none"
    """observe=pixels: ``colour_jitter`` augments update batches (RAD); ``none`` does not."""
    eval_every: int = 0
    """Timesteps between source-domain evaluations (0: none)."""
    eval_episodes: int = 10
    eval_seed_base: int = 2_000_000
    """Source evaluations use episode seeds ``eval_seed_base + k``: the same episodes every time."""
    select: Literal["last", "best_source"] = "last"
    """Which policy becomes ``model.zip``: the last, or the best by source-domain evaluation."""
    log_targets: bool = False
    """Also evaluate (and log under ``transfer/<domain>/``) each target domain at every evaluation."""


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
    """Saves a resumable checkpoint every ``every`` timesteps, atomically.

    Off-policy algorithms (SAC, DQN) also save their replay buffer beside it: without it a
    resumed run would restart past ``learning_starts`` with an empty buffer. The buffer is
    written first, so a kill between the two leaves a buffer at least as new as the model.
    """

    def __init__(self, path: Path, every: int) -> None:
        super().__init__()
        self.path, self.every, self._last = path, every, 0

    def _on_training_start(self) -> None:
        self._last = self.model.num_timesteps

    def _on_step(self) -> bool:
        if self.model.num_timesteps - self._last >= self.every:
            self._last = self.model.num_timesteps
            if isinstance(self.model, OffPolicyAlgorithm):
                tmp = self.path.with_name("buffer.tmp.pkl")
                self.model.save_replay_buffer(tmp)
                os.replace(tmp, self.path.with_name(BUFFER))
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


class _Evaluate(BaseCallback):
    """Every ``every`` timesteps: evaluate on the source domain (selection) and, if asked, targets (logs only).

    Uses :func:`agents.transfer.run_episodes` with fixed episode seeds, so every evaluation sees
    the same episodes, and forks torch's RNG so evaluating never changes the training run.
    """

    def __init__(
        self, spec: AgentSpec, encoder: VisionModel | None, device: str | torch.device,
        domains: dict[str, Domain], out_dir: Path,
    ) -> None:
        super().__init__()
        self.spec, self.encoder, self.device, self.domains, self.out_dir = spec, encoder, device, domains, out_dir
        self._last = 0
        self.log_path = out_dir / "evaluations.jsonl"

    def _on_training_start(self) -> None:
        self._last = self.model.num_timesteps - self.model.num_timesteps % self.spec.eval_every

    def _on_step(self) -> bool:
        if self.model.num_timesteps - self._last >= self.spec.eval_every:
            self._last = self.model.num_timesteps
            self.evaluate()
        return True

    def evaluate(self) -> dict[str, float]:
        from agents.transfer import run_episodes

        s = self.spec
        seeds = list(range(s.eval_seed_base, s.eval_seed_base + s.eval_episodes))
        names = list(self.domains) if s.log_targets else ["source"]
        row: dict[str, Any] = {"timesteps": int(self.model.num_timesteps)}
        with torch.random.fork_rng(devices=[]):
            for name in names:
                res = run_episodes(
                    self.model, self.encoder, s.env_name, self.domains[name], seeds,
                    size=s.size, max_steps=s.max_steps, deterministic=False, device=self.device,
                )
                mean = float(np.mean([r for r, _ in res]))
                row[name] = mean
                self.logger.record("eval/mean_reward" if name == "source" else f"transfer/{name}/mean_reward", mean)
        best = _best_eval(self.log_path)
        with open(self.log_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if s.select == "best_source" and (best is None or row["source"] > best["source"]):
            save_atomic(self.model, self.out_dir / BEST)
        return row


def _read_evals(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _best_eval(path: Path) -> dict[str, Any] | None:
    """The first evaluation with the highest source return (ties keep the earlier policy)."""
    return max(_read_evals(path), key=lambda r: r["source"], default=None)


def _build(
    spec: AgentSpec, env: VecEnv, encoder: VisionModel | None, device: str | torch.device, tb_dir: str | None
) -> BaseAlgorithm:
    algo_cls = get_algo(spec.algo)
    policy_kwargs = dict(spec.policy_kwargs)
    if spec.observe == "latents":
        return algo_cls(
            "MlpPolicy", env, seed=spec.seed, device="cpu", verbose=0, tensorboard_log=tb_dir,
            policy_kwargs=policy_kwargs or None, **spec.hyperparams,
        )
    policy_kwargs.update(
        features_extractor_class=VisionFeatures,
        features_extractor_kwargs={
            "model": spec.pixel_model, "model_kwargs": dict(spec.pixel_model_kwargs),
            "augment": spec.augment, "augment_seed": spec.seed,
        },
    )
    model = algo_cls(
        "CnnPolicy", env, seed=spec.seed, device=device, verbose=0, tensorboard_log=tb_dir,
        policy_kwargs=policy_kwargs, **spec.hyperparams,
    )
    if spec.finetune:
        if encoder is None:
            raise ValueError("finetune needs the trained vision model to start from")
        load_pretrained(model, encoder.state_dict())
    return model


def train_agent(
    spec: AgentSpec,
    encoder: VisionModel | None,
    encoder_sha256: str | None,
    source: Domain,
    out_dir: Path,
    *,
    device: str | torch.device = "cpu",
    resume: bool = True,
    progress: bool = True,
    tensorboard: bool = True,
    targets: dict[str, Domain] | None = None,
) -> AgentResult:
    """Train ``spec.algo`` in ``source``; write ``out_dir/model.zip`` (and ``meta.json``).

    ``observe="latents"``: on ``encoder``'s frozen posterior means; the policy (an MLP over a few
    latents, faster there) runs on the CPU and the encoder on ``device``. ``observe="pixels"``:
    on raw frames, the conv encoder inside the policy on ``device``; ``encoder`` is only the
    starting point of DARLA_FT (``finetune``) and may be None otherwise. Resumes from
    ``out_dir/checkpoint.zip`` when present and ``resume`` is true.
    """
    kind = get_env_info(spec.env_name).action_kind
    if kind not in ACTION_KINDS[spec.algo]:
        raise ValueError(f"{spec.algo.upper()} does not support {kind} actions (env {spec.env_name!r})")
    if spec.observe == "latents" and encoder is None:
        raise ValueError("observe='latents' needs a frozen encoder")
    if spec.log_targets and not targets:
        raise ValueError("log_targets needs the target domains")
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / CHECKPOINT
    resuming = resume and ckpt.exists()
    if not resuming:
        for stale in (out_dir / "evaluations.jsonl", out_dir / BEST):
            stale.unlink(missing_ok=True)
    venv = make_vec_env(
        spec.env_name, source, spec.n_envs, spec.seed, spec.size, spec.max_steps,
        monitor_dir=out_dir / "monitor", monitor_append=resuming,
    )
    latents = spec.observe == "latents"
    env = VecEncode(venv, encoder, device=device) if latents else venv
    tb_dir = str(out_dir / "tb") if tensorboard else None
    if resuming:
        model = get_algo(spec.algo).load(ckpt, env=env, device="cpu" if latents else device, tensorboard_log=tb_dir)
        if isinstance(model, OffPolicyAlgorithm) and (out_dir / BUFFER).exists():
            model.load_replay_buffer(out_dir / BUFFER)  # our own pickle, written by _Checkpoint
    else:
        model = _build(spec, env, encoder, device, tb_dir)
    # Recorded inside every saved zip (SB3 saves instance attributes) and in meta.json, so transfer
    # can refuse to evaluate a policy against a vision model it was not trained on.
    model.darla_encoder_sha256 = encoder_sha256
    remaining = spec.total_timesteps - model.num_timesteps
    callbacks: list[BaseCallback] = [_Checkpoint(ckpt, spec.checkpoint_every)]
    evaluator = None
    if spec.eval_every > 0:
        domains = {"source": source, **(targets or {})}
        evaluator = _Evaluate(spec, encoder if latents else None, device, domains, out_dir)
        callbacks.append(evaluator)
    if progress:
        callbacks.append(_Progress(spec.total_timesteps, f"agent {spec.algo} seed {spec.seed}"))
    t0 = time.perf_counter()
    start_steps = model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=not resuming, tb_log_name="agent")
    wall = time.perf_counter() - t0
    if evaluator is not None:
        last_eval = _last_eval(evaluator.log_path)
        if last_eval is None or last_eval["timesteps"] != model.num_timesteps:
            evaluator.init_callback(model)
            evaluator.evaluate()  # the final policy is always a candidate
    model_path = out_dir / MODEL
    selected: dict[str, Any] = {"by": "last", "timesteps": int(model.num_timesteps)}
    if evaluator is not None:
        best = _best_eval(evaluator.log_path)
        selected["source_mean"] = _last_eval(evaluator.log_path)["source"]
        if spec.select == "best_source":
            selected = {"by": "best_source", "timesteps": best["timesteps"], "source_mean": best["source"]}
    if selected["timesteps"] != model.num_timesteps and not (out_dir / BEST).exists():
        selected = {"by": "last", "timesteps": int(model.num_timesteps), "note": "best policy file lost in an interruption"}
    if selected["timesteps"] != model.num_timesteps:  # an earlier policy was better on the source
        save_atomic(model, out_dir / LAST)
        os.replace(out_dir / BEST, model_path)
    else:
        save_atomic(model, model_path)
    (out_dir / BEST).unlink(missing_ok=True)
    meta = {
        "spec": asdict(spec), "encoder_sha256": encoder_sha256, "timesteps": int(model.num_timesteps),
        "selected": selected,
    }
    write_json_atomic(out_dir / "meta.json", meta)
    for done in (ckpt, out_dir / BUFFER):
        done.unlink(missing_ok=True)
    env.close()
    steps = model.num_timesteps - start_steps
    return AgentResult(model_path, int(model.num_timesteps), wall, steps / wall if wall > 0 else float("nan"))


def _last_eval(path: Path) -> dict[str, Any] | None:
    rows = _read_evals(path)
    return rows[-1] if rows else None


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
    observe = meta.get("spec", {}).get("observe", "latents")
    device = "cpu" if observe == "latents" or not torch.cuda.is_available() else "cuda"
    model = get_algo(algo).load(path, device=device)
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
