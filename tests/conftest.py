"""Shared fixtures. Tests run on CPU with tiny budgets (SB3 style: learn(64), net_arch [16])."""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

#: A complete, tiny config (32 px, a few hundred steps) used by the end-to-end tests.
TINY = {
    "name": "tiny",
    "seed": 0,
    "device": "cpu",
    "env": {
        "name": "seek_avoid",
        "size": 32,
        "max_steps": 20,
        "domains": {
            "vision": "vision",
            "source": "source",
            "targets": {"target_floor_object": "target_floor_object"},
        },
    },
    "vision": {
        "model": "beta_vae",
        "latent_dim": 4,
        "beta": 4.0,
        "n_frames": 256,
        "steps": 30,
        "batch_size": 32,
        "lr": 1.0e-3,
        "checkpoint_every": 10,
        "channels": [8, 8, 16, 16],
        "hidden": 32,
    },
    "agent": {
        "algo": "ppo",
        "total_timesteps": 256,
        "n_envs": 2,
        "seeds": [0],
        "checkpoint_every": 64,
        "policy_kwargs": {"net_arch": [16]},
        "hyperparams": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
    },
    "transfer": {"n_episodes": 3},
}


@pytest.fixture(scope="session", autouse=True)
def checkpoint_key(tmp_path_factory):
    """Agent checkpoints are signed with a per-user key (agents.signing): tests use their own,
    never the user's, and child processes (the CLI tests) inherit it through the environment."""
    from agents.signing import KEY_ENV

    old = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = str(tmp_path_factory.mktemp("key") / "checkpoint.key")
    yield Path(os.environ[KEY_ENV])
    if old is None:
        del os.environ[KEY_ENV]
    else:
        os.environ[KEY_ENV] = old


@pytest.fixture
def tiny_raw() -> dict:
    return copy.deepcopy(TINY)


@pytest.fixture
def tiny_cfg(tiny_raw, tmp_path: Path):
    from darla.config import config_from_dict

    tiny_raw["runs_dir"] = str(tmp_path / "runs")
    return config_from_dict(tiny_raw, "tiny.yaml")


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module: benchmarks/ is a folder of scripts, not a package."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
