"""Exact resume of agent training: what SB3's own zip leaves out, added to the same zip.

SB3's zip restores the networks, optimisers, counters and schedules, but not what the next
rollout depends on: the envs' states (mid-episode, their RNGs), the last observations, the
global RNGs (SB3's ``load`` even re-seeds them) and the replay buffer. Resuming from the zip
alone restarts every env from its first seeded episode, so the resumed run differs from an
uninterrupted one. :func:`save_resumable` adds those to the same zip (extra members SB3 ignores),
so one ``os.replace`` commits all of it, and a resumed run equals an uninterrupted run exactly
(tested: same weights, same episodes). Zip members carry CRC-32s, checked on every read:
a corrupted checkpoint is refused, never silently used.

Used by :mod:`agents.train`: :func:`save_resumable` at rollout boundaries,
:func:`read_resume_state` / :func:`apply_resume_state` / :func:`truncate_logs` on resume.
"""

from __future__ import annotations

import json
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from agents.features import ColourJitter
from agents.signing import key_path, sign_zip, verify_zip
from vision.checkpoint import CheckpointError
from vision.io import replace_via_file, write_bytes_atomic

RESUME_STATE = "darla_resume.pkl"
REPLAY = "darla_replay_buffer.pkl"
MONITOR_FIELDS = (
    "rewards", "needs_reset", "episode_returns", "episode_lengths", "episode_times", "total_steps", "t_start",
    "current_reset_info",
)


def _dummy_vec_env(env: VecEnv) -> DummyVecEnv:
    while not isinstance(env, DummyVecEnv):
        env = env.venv
    return env


def _generators(model: BaseAlgorithm) -> list[torch.Generator]:
    """The augmentation generators inside the policy (RAD's colour jitter draws from its own)."""
    return [m.generator for m in model.policy.modules() if isinstance(m, ColourJitter)]


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resumable(model: BaseAlgorithm, path: Path) -> None:
    """SB3's zip plus the envs, last observations, RNGs and replay buffer; one atomic rename.

    The extra members are pickles, like SB3's own ``data``; the zip is signed with this user's
    key (:mod:`agents.signing`), and :func:`read_resume_state` unpickles nothing unsigned.
    """
    def write(tmp: Path) -> None:
        _write_resumable(model, tmp)
        sign_zip(tmp)

    replace_via_file(path, write)


def _write_resumable(model: BaseAlgorithm, tmp: Path) -> None:
    model.save(tmp)
    venv = _dummy_vec_env(model.get_env())
    state = {
        "num_timesteps": int(model.num_timesteps),
        "rng": _rng_state(),
        "generators": [g.get_state() for g in _generators(model)],
        # SB3's load re-seeds the action space too; DQN's ε-greedy and SAC's warm-up sample it.
        "action_space_rng": model.action_space.np_random.bit_generator.state,
        "last_obs": model._last_obs,
        "last_episode_starts": model._last_episode_starts,
        "last_original_obs": getattr(model, "_last_original_obs", None),
        "envs": [{"env": m.env, **{k: getattr(m, k) for k in MONITOR_FIELDS}} for m in venv.envs],
    }
    with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open(RESUME_STATE, "w", force_zip64=True) as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
        if isinstance(model, OffPolicyAlgorithm):
            with zf.open(REPLAY, "w", force_zip64=True) as f:  # streamed: a pixel buffer can be GBs
                pickle.dump(model.replay_buffer, f, protocol=pickle.HIGHEST_PROTOCOL)


def read_resume_state(path: Path) -> dict[str, Any]:
    """The extra state of a checkpoint written by :func:`save_resumable`, once its signature verifies.

    Raises :class:`~vision.checkpoint.CheckpointError` naming the file if it is corrupted, or if
    this user's darla cannot show it wrote it (:func:`agents.signing.verify_zip`): then nothing in
    it is unpickled, neither here nor by SB3.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            if "data" not in zf.namelist():
                raise zipfile.BadZipFile("no SB3 'data' member")
        signed = verify_zip(path)  # reads every member, so each one's CRC-32 is checked too
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} is corrupted ({type(e).__name__}: {e}); delete it to restart this policy's training "
            "from step 0"
        ) from None
    if not signed:
        raise CheckpointError(
            f"{path} was not written by darla under your key ({key_path()}), so it is never unpickled "
            "(it may run code); delete it to restart this policy's training from step 0"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            return pickle.loads(zf.read(RESUME_STATE))
    except (KeyError, zipfile.BadZipFile, EOFError, pickle.UnpicklingError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} is corrupted ({type(e).__name__}: {e}); delete it to restart this policy's training "
            "from step 0"
        ) from None


def apply_resume_state(model: BaseAlgorithm, state: dict[str, Any], path: Path) -> None:
    """Put the envs, observations, replay buffer and RNGs back as they were at the checkpoint."""
    if state["num_timesteps"] != model.num_timesteps:
        raise CheckpointError(f"{path}: resume state at {state['num_timesteps']} steps, model at {model.num_timesteps}")
    venv = _dummy_vec_env(model.get_env())
    if len(state["envs"]) != len(venv.envs):
        raise CheckpointError(f"{path} holds {len(state['envs'])} envs; this run has {len(venv.envs)} (agent.n_envs changed?)")
    for monitor, saved in zip(venv.envs, state["envs"]):
        monitor.env = saved["env"]
        for k in MONITOR_FIELDS:
            setattr(monitor, k, saved[k])
    model._last_obs = state["last_obs"]
    model._last_episode_starts = state["last_episode_starts"]
    model._last_original_obs = state["last_original_obs"]
    if isinstance(model, OffPolicyAlgorithm):
        with zipfile.ZipFile(path) as zf, zf.open(REPLAY) as f:
            model.replay_buffer = pickle.load(f)  # as SB3's load_replay_buffer, without a copy in memory
        model.replay_buffer.device = model.device
    for g, s in zip(_generators(model), state["generators"]):
        g.set_state(s)
    model.action_space.np_random.bit_generator.state = state["action_space_rng"]
    _set_rng_state(state["rng"])  # last: SB3's load re-seeded the global RNGs


def truncate_logs(out_dir: Path, state: dict[str, Any]) -> None:
    """Drop what was logged after the checkpoint: the resumed run logs it again, identically."""
    for i, saved in enumerate(state["envs"]):
        f = out_dir / "monitor" / f"{i}.monitor.csv"
        if f.exists():  # two header lines ("#{json}", "r,l,t"), then one row per finished episode
            lines = f.read_text().splitlines(keepends=True)
            write_bytes_atomic(f, "".join(lines[: 2 + len(saved["episode_returns"])]).encode())
    evals = out_dir / "evaluations.jsonl"
    if evals.exists():
        rows = []
        for line in evals.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: after the checkpoint by construction
                break
            if row["timesteps"] <= state["num_timesteps"]:
                rows.append(row)
        write_bytes_atomic(evals, "".join(json.dumps(r) + "\n" for r in rows).encode())
