"""Continuous control on latents: SAC and PPO on reacher, alone and through the whole pipeline."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from agents.train import AgentSpec, load_agent, train_agent
from agents.transfer import evaluate_transfer
from envs.registry import get_domain
from vision.vae import BetaVAE

SIZE = 32
HYPERPARAMS = {
    "sac": {"learning_starts": 64, "buffer_size": 1000, "batch_size": 32, "train_freq": 1, "gradient_steps": 1},
    "ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
}


def tiny_encoder(latent: int = 4) -> BetaVAE:
    torch.manual_seed(0)
    return BetaVAE((3, SIZE, SIZE), latent, channels=[8, 8, 16, 16], hidden=32)


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_train_on_reacher_latents_and_transfer(tmp_path, algo):
    enc = tiny_encoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    spec = AgentSpec("reacher", "source", size=SIZE, max_steps=20, algo=algo, total_timesteps=256, n_envs=2,
                     seed=0, hyperparams=HYPERPARAMS[algo], policy_kwargs={"net_arch": [16]})
    res = train_agent(spec, enc, "h", get_domain("reacher", "source"), tmp_path, progress=False, tensorboard=False)
    assert res.timesteps >= 256
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), f"encoder weight {k} changed during RL"
    model = load_agent(res.model_path)
    actions, _ = model.predict(np.zeros((3, 4), dtype=np.float32), deterministic=True)
    assert actions.shape == (3, 2) and np.abs(actions).max() <= 1.0
    doms = {"source": get_domain("reacher", "source"), "t": get_domain("reacher", "target_all_new")}
    eps = evaluate_transfer(model, enc, "reacher", doms, n_episodes=2, size=SIZE, max_steps=20)
    assert [e.domain for e in eps] == ["source"] * 2 + ["t"] * 2
    assert all(np.isfinite(e.ret) and -40 <= e.ret <= 1 and 1 <= e.length <= 20 for e in eps)


def test_sac_same_seed_same_policy(tmp_path):
    spec = AgentSpec("reacher", "source", size=SIZE, max_steps=20, algo="sac", total_timesteps=128, n_envs=2,
                     seed=1, hyperparams=HYPERPARAMS["sac"], policy_kwargs={"net_arch": [16]})
    params = []
    for run in ("a", "b"):
        res = train_agent(spec, tiny_encoder(), "h", get_domain("reacher", "source"), tmp_path / run, progress=False, tensorboard=False)
        params.append(load_agent(res.model_path).policy.state_dict())
    for k in params[0]:
        assert torch.equal(params[0][k], params[1][k]), k


def test_dqn_is_refused_on_continuous_actions(tmp_path):
    spec = AgentSpec("reacher", "source", size=SIZE, algo="dqn", total_timesteps=64, n_envs=1)
    with pytest.raises(ValueError, match="DQN does not support continuous"):
        train_agent(spec, tiny_encoder(), "h", get_domain("reacher", "source"), tmp_path, progress=False, tensorboard=False)


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_pipeline_on_tiny_reacher(tmp_path, algo):
    """``darla pipeline`` in-process on reacher: vision (a few steps), agent, transfer, report."""
    from conftest import TINY

    from darla.config import config_from_dict
    from darla.pipeline import run_pipeline

    raw = json.loads(json.dumps(TINY))
    raw["env"].update(name="reacher", max_steps=20)
    raw["env"]["domains"]["targets"] = {"target_floor_object": "target_floor_object", "target_all_new": "target_all_new"}
    raw["vision"].update(n_frames=128, steps=10)
    raw["agent"].update(algo=algo, total_timesteps=192, hyperparams=HYPERPARAMS[algo])
    raw["transfer"]["n_episodes"] = 2
    cfg = config_from_dict(raw, "tiny_reacher.yaml")
    run = run_pipeline(cfg, run_dir=tmp_path / algo, progress=False, log=lambda m: None)
    assert cfg.methods and all((run.agent_dir(m, algo, 0) / "model.zip").exists() for m in cfg.methods)
    assert (run.root / "report.html").exists()
    with open(run.root / "transfer/episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["domain"] for r in rows} == {"source", "target_floor_object", "target_all_new"}
    assert all(np.isfinite(float(r["ret"])) for r in rows)
