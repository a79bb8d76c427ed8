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

import inspect
import io
import json
import os
import pickle
import random
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from agents.algos import ACTION_KINDS, get_algo, quiet_logger
from agents.encode import VecEncode
from agents.features import VisionFeatures, load_pretrained
from agents.resume import apply_resume_state, read_resume_state, save_resumable, truncate_logs
from agents.rollout import make_vec_env, run_episodes
from envs.factors import Domain
from envs.registry import get_env_info, make_env
from vision.base import VisionModel
from vision.checkpoint import CheckpointError
from vision.interrupt import GracefulInterrupt
from vision.io import replace_via_file, write_json_atomic

CHECKPOINT = "checkpoint.zip"
MODEL = "model.zip"
BEST = "best_source.zip"
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


class _Checkpoint(BaseCallback):
    """Saves an exactly resumable checkpoint every ``every`` timesteps, and on Ctrl-C / SIGTERM.

    Checkpoints are taken at a rollout boundary (``on_rollout_start``: the previous update is
    done, the next rollout not begun), where the whole training state is small and well defined;
    :func:`agents.resume.save_resumable` writes it. A signal (see :class:`~vision.interrupt.GracefulInterrupt`)
    is honoured at the next boundary: checkpoint, then ``KeyboardInterrupt``.
    """

    def __init__(self, path: Path, every: int, interrupt: GracefulInterrupt | None = None) -> None:
        super().__init__()
        self.path, self.every, self.interrupt, self._last = path, every, interrupt, 0

    def _on_training_start(self) -> None:
        self._last = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        stop = self.interrupt is not None and self.interrupt.requested
        if self.model.num_timesteps - self._last >= self.every or (stop and self.model.num_timesteps > self._last):
            self._last = self.model.num_timesteps
            save_resumable(self.model, self.path)
        if stop:
            self.interrupt.stop()

    def _on_step(self) -> bool:
        return True


class _Progress(BaseCallback):
    """Progress over timesteps with the recent mean episode return (a bar on a terminal, else lines)."""

    def __init__(self, total: int, desc: str) -> None:
        super().__init__()
        self.total, self.desc, self.bar = total, desc, None

    def _on_training_start(self) -> None:
        from vision.progress import progress_bar

        self.bar = progress_bar(self.total, self.model.num_timesteps, self.desc, "step")

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
    replace_via_file(path, model.save)


class _Evaluate(BaseCallback):
    """Every ``every`` timesteps: evaluate on the source domain (selection) and, if asked, targets (logs only).

    Uses :func:`agents.rollout.run_episodes` with fixed episode seeds, so every evaluation sees
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
        # Where the last evaluation was, as an uninterrupted run would have it (a resumed run's
        # log holds the evaluations up to its checkpoint): the next one then falls on the same step.
        last = _last_eval(self.log_path)
        self._last = last["timesteps"] if last is not None else 0

    def _on_step(self) -> bool:
        if self.model.num_timesteps - self._last >= self.spec.eval_every:
            self._last = self.model.num_timesteps
            self.evaluate()
        return True

    def evaluate(self) -> dict[str, float]:
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
    hyperparams = dict(spec.hyperparams)
    if isinstance(hyperparams.get("train_freq"), list):  # YAML has no tuples; SB3 wants (n, "step" | "episode")
        hyperparams["train_freq"] = tuple(hyperparams["train_freq"])
    if spec.observe == "latents":
        return algo_cls(
            "MlpPolicy", env, seed=spec.seed, device="cpu", verbose=0, tensorboard_log=tb_dir,
            policy_kwargs=policy_kwargs or None, **hyperparams,
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
        policy_kwargs=policy_kwargs, **hyperparams,
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
    state = read_resume_state(ckpt) if resuming else None  # refuses a corrupted checkpoint
    if not resuming:
        for stale in (out_dir / "evaluations.jsonl", out_dir / BEST):
            stale.unlink(missing_ok=True)
    elif state is not None:
        truncate_logs(out_dir, state)
    venv = make_vec_env(
        spec.env_name, source, spec.n_envs, spec.seed, spec.size, spec.max_steps,
        monitor_dir=out_dir / "monitor", monitor_append=resuming,
    )
    latents = spec.observe == "latents"
    env = VecEncode(venv, encoder, device=device) if latents else venv
    tb_dir = str(out_dir / "tb") if tensorboard else None
    if resuming:  # signed by this user's darla (read_resume_state verified it): SB3 may unpickle it
        try:
            model = get_algo(spec.algo).load(ckpt, env=env, device="cpu" if latents else device, tensorboard_log=tb_dir)
        except (ValueError, RuntimeError, KeyError) as e:
            raise CheckpointError(f"{ckpt} cannot be loaded ({e}); delete it to restart this policy's training from step 0") from None
        apply_resume_state(model, state, ckpt)
    else:
        model = _build(spec, env, encoder, device, tb_dir)
    if tb_dir is None:
        model.set_logger(quiet_logger())  # SB3 does not save a logger: set on fresh and resumed models
    # Recorded inside every saved zip (SB3 saves instance attributes) and in meta.json, so transfer
    # can refuse to evaluate a policy against a vision model it was not trained on.
    model.darla_encoder_sha256 = encoder_sha256
    remaining = spec.total_timesteps - model.num_timesteps
    interrupt = GracefulInterrupt(f"agent {spec.algo} seed {spec.seed}", "at the end of the current rollout")
    callbacks: list[BaseCallback] = [_Checkpoint(ckpt, spec.checkpoint_every, interrupt)]
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
        with interrupt:
            model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=not resuming, tb_log_name="agent")
        if interrupt.requested:  # the signal came during the last rollout: keep the finished state, then stop
            save_resumable(model, ckpt)
            interrupt.stop()
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
        "selected": selected, "latent_dim": encoder.latent_dim if latents else None,  # load_agent rebuilds from these
    }
    write_json_atomic(out_dir / "meta.json", meta)
    ckpt.unlink(missing_ok=True)
    env.close()
    steps = model.num_timesteps - start_steps
    return AgentResult(model_path, int(model.num_timesteps), wall, steps / wall if wall > 0 else float("nan"))


def _last_eval(path: Path) -> dict[str, Any] | None:
    rows = _read_evals(path)
    return rows[-1] if rows else None


def env_spaces(env_name: str, size: int, max_steps: int) -> tuple[gym.Space, gym.Space]:
    """(image observation space, action space) of an env: the same in every domain."""
    info = get_env_info(env_name)
    env = make_env(env_name, next(iter(info.domains.values())), size=size, max_steps=max_steps)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


class _Spaces(gym.Env):
    """An env that is only its spaces: enough for SB3 to build an algorithm, never stepped."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        raise RuntimeError("a policy shell is not stepped")


def policy_shell(
    spec: AgentSpec, latent_dim: int | None, device: str | torch.device = "cpu", n_envs: int = 1,
    spaces: tuple[gym.Space, gym.Space] | None = None,
) -> BaseAlgorithm:
    """The algorithm ``spec`` trains, built from the spec alone (fresh weights), on the env's real spaces.

    What :func:`load_agent` loads weights into, and what the config check builds to test
    ``policy_kwargs`` and hyperparameters against SB3 itself. Off-policy replay buffers get one
    slot and the shell ``n_envs`` envs (not ``spec.n_envs``): the policy's shape depends on neither.
    """
    image, action = spaces or env_spaces(spec.env_name, spec.size, spec.max_steps)
    if spec.observe == "latents":
        if latent_dim is None:
            raise ValueError("a policy on latents needs the encoder's latent_dim")
        obs = gym.spaces.Box(-np.inf, np.inf, shape=(latent_dim,), dtype=np.float32)
    else:
        obs = image
    hyper = dict(spec.hyperparams)
    if issubclass(get_algo(spec.algo), OffPolicyAlgorithm):
        hyper["buffer_size"] = 1
    venv = DummyVecEnv([lambda: _Spaces(obs, action)] * n_envs)
    with warnings.catch_warnings():  # SB3's advice on batch sizes is printed when training, not here
        warnings.simplefilter("ignore")
        return _build(replace(spec, hyperparams=hyper, finetune=False), venv, None, device, None)


def check_agent_build(
    env_name: str, size: int, max_steps: int, algo: str, observe: str, latent_dim: int,
    pixel_kwargs: dict[str, Any], hyperparams: dict[str, Any], policy_kwargs: dict[str, Any], n_envs: int,
) -> tuple[str, str | None, str] | None:
    """Build ``algo`` and its policy as :func:`train_agent` will, on the env's real spaces; None if
    SB3 accepts them, else ``(part, argument or None, one-line message)`` for the first failure.

    ``part`` is ``"hyperparams"`` (the algorithm, with a default policy) or ``"policy_kwargs"``;
    the argument is the one whose removal makes the build succeed. The global RNGs are left as
    they were (SB3 seeds them when it builds).
    """
    spaces = env_spaces(env_name, size, max_steps)
    spec = AgentSpec(env_name, "source", size=size, max_steps=max_steps, algo=algo, n_envs=n_envs, observe=observe,  # type: ignore[arg-type]
                     pixel_model="vae", pixel_model_kwargs=pixel_kwargs)

    takes_ortho = "ortho_init" in inspect.signature(get_algo(algo).policy_aliases["MlpPolicy"].__init__).parameters

    def attempt(hyper: dict[str, Any], policy: dict[str, Any]) -> str | None:
        if takes_ortho:  # orthogonal init is QR per layer (seconds for a pixel policy); it changes no shape
            policy = {**policy, "ortho_init": False}
        try:  # two envs: SB3's n_steps × n_envs > 1 holds as it will in training
            policy_shell(replace(spec, hyperparams=hyper, policy_kwargs=policy), latent_dim, "cpu", min(n_envs, 2), spaces)
        except Exception as e:  # noqa: BLE001 (whatever SB3 or torch raise on a bad argument)
            return f"{type(e).__name__}: " + " ".join(str(e).split())[:300]
        return None

    def without(d: dict[str, Any], k: str) -> dict[str, Any]:
        return {kk: v for kk, v in d.items() if kk != k}

    py, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        problem = attempt(hyperparams, {})
        if problem is not None:
            return "hyperparams", next((k for k in hyperparams if attempt(without(hyperparams, k), {}) is None), None), problem
        problem = attempt(hyperparams, policy_kwargs)
        if problem is not None:
            return "policy_kwargs", next((k for k in policy_kwargs if attempt(hyperparams, without(policy_kwargs, k)) is None), None), problem
        return None
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


#: The SB3 zip member holding the policy's ``state_dict`` (tensors only).
POLICY_WEIGHTS = "policy.pth"
_MAX_WEIGHTS_BYTES = 4 << 30


def read_policy_weights(path: Path) -> dict[str, torch.Tensor]:
    """The policy's weights from an SB3 zip, ``weights_only``; SB3's pickled ``data`` is never read.

    Every failure is a :class:`~vision.checkpoint.CheckpointError` naming the file.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(POLICY_WEIGHTS)
            if info.file_size > _MAX_WEIGHTS_BYTES:
                raise CheckpointError(f"{path}: {POLICY_WEIGHTS} unpacks to {info.file_size} bytes; not a darla policy")
            raw = zf.read(info)
    except KeyError:
        raise CheckpointError(f"{path} is not a darla policy (no {POLICY_WEIGHTS} member)") from None
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such policy file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a directory, not a policy zip") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable policy zip ({type(e).__name__}: {e}); it is truncated or corrupted") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} is not a darla policy: a weights-only read refuses its {POLICY_WEIGHTS} (not tensors), and darla loads nothing else"
        ) from None
    except Exception as e:  # noqa: BLE001 (any other failure of torch's reader: damaged bytes)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path}: {POLICY_WEIGHTS} is unreadable ({type(e).__name__}: {first}); it is truncated or corrupted") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path} is not a darla policy: {POLICY_WEIGHTS} is not a mapping of names to tensors")
    return state


def load_agent(
    path: Path, expect_encoder_sha256: str | None = None, *, spec: AgentSpec | None = None, latent_dim: int | None = None,
) -> BaseAlgorithm:
    """A policy written by :func:`train_agent`, loaded as weights only: nothing in the file is unpickled.

    The algorithm is rebuilt from ``spec`` (the run's config; default: the spec recorded in
    ``meta.json``, which is JSON) on the env's spaces, then the zip's ``policy.pth`` is read with
    ``torch.load(weights_only=True)`` into it. SB3's own ``load`` would unpickle the zip's
    ``data`` member, which can run any code, so it is never used on a policy. ``latent_dim``
    (policies on latents; default: meta.json's) sizes the observation.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no trained policy at {path}")
    meta_path = path.parent / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{meta_path} is unreadable ({e}); retrain this policy") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path} is not a darla agent record; retrain this policy")
    if spec is None:
        if not isinstance(meta.get("spec"), dict):
            raise ValueError(f"{meta_path} is missing or has no spec; cannot tell which algorithm saved {path}")
        try:
            spec = AgentSpec(**meta["spec"])
        except TypeError as e:
            raise CheckpointError(f"{meta_path}: its spec is not an agent spec ({e})") from None
    if latent_dim is None:
        latent_dim = meta.get("latent_dim")
    if spec.observe == "latents" and not (type(latent_dim) is int and 0 < latent_dim <= 4096):
        raise CheckpointError(f"{meta_path} does not record the policy's latent_dim; pass the encoder's")
    state = read_policy_weights(path)
    device = "cpu" if spec.observe == "latents" or not torch.cuda.is_available() else "cuda"
    try:
        model = policy_shell(spec, latent_dim, device)
        model.policy.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        flat = " ".join(str(e).split())
        raise CheckpointError(f"{path}: its weights do not fit the policy its config describes ({flat[:400]})") from None
    if hasattr(model, "exploration_schedule"):  # DQN acts ε-greedily with the ε it had reached when saved
        steps = (meta.get("selected") or {}).get("timesteps", meta.get("timesteps", spec.total_timesteps))
        if type(steps) is not int:
            raise CheckpointError(f"{meta_path}: timesteps {steps!r} is not a step count; retrain this policy")
        model.exploration_rate = model.exploration_schedule(1.0 - steps / spec.total_timesteps)
    recorded = meta.get("encoder_sha256")
    if expect_encoder_sha256 is not None and recorded != expect_encoder_sha256:
        raise ValueError(
            f"{path} was trained on the vision checkpoint with sha256 {str(recorded)[:12]}…, "
            f"not on the one given ({expect_encoder_sha256[:12]}…); retrain the agent (--force)"
        )
    model.darla_encoder_sha256 = recorded
    return model
