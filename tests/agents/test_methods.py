"""Baselines (pixels, RAD colour jitter, DARLA_FT), source-only selection, oracle and statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import agents.train as train_mod
from agents.features import ColourJitter, VisionFeatures
from agents.rollout import make_vec_env, run_episodes
from agents.stats import normalise, probability_of_improvement, summarize_returns
from agents.train import AgentSpec, _build, load_agent, train_agent
from agents.transfer import RandomPolicy, run_oracle_episodes
from envs.registry import get_domain, make_env
from vision.vae import BetaVAE

SIZE = 32
ARCH = {"channels": [8, 8, 16, 16], "hidden": 32}
PPO_HP = {"n_steps": 32, "batch_size": 32, "n_epochs": 1}


def trained_like_encoder() -> BetaVAE:
    torch.manual_seed(7)
    enc = BetaVAE((3, SIZE, SIZE), 4, **ARCH)
    with torch.no_grad():  # weights no fresh init would give (small: large codes saturate the policy's tanh)
        for p in enc.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return enc


def pixel_spec(**kw) -> AgentSpec:
    base = dict(
        env_name="seek_avoid", domain="source", size=SIZE, max_steps=20, total_timesteps=128, n_envs=2, seed=0,
        hyperparams=PPO_HP, policy_kwargs={"net_arch": [16]}, observe="pixels", pixel_model="beta_vae",
        pixel_model_kwargs={"latent_dim": 4, **ARCH},
    )
    return AgentSpec(**{**base, **kw})


# -- colour jitter -----------------------------------------------------------------------------
def test_colour_jitter_is_seeded_bounded_and_changes_colours():
    x = torch.rand(6, 3, 8, 8)
    a, b = ColourJitter(seed=3)(x), ColourJitter(seed=3)(x)
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, x)
    assert not torch.equal(a, ColourJitter(seed=4)(x))


def test_colour_jitter_with_zero_ranges_is_identity():
    x = torch.rand(4, 3, 8, 8)
    out = ColourJitter(brightness=0, contrast=0, saturation=0, hue=0)(x)
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


def test_colour_jitter_hue_rotation_keeps_grey_grey():
    grey = torch.full((5, 3, 4, 4), 0.4)
    out = ColourJitter(brightness=0, contrast=0, saturation=0, hue=0.5, seed=1)(grey)
    torch.testing.assert_close(out, grey, atol=1e-6, rtol=0)  # rotation about the grey axis


# -- pixel policies ----------------------------------------------------------------------------
def test_finetune_starts_from_the_trained_encoder_despite_ortho_init():
    enc = trained_like_encoder()
    venv = make_vec_env("seek_avoid", get_domain("seek_avoid", "source"), 2, 0, SIZE, 20)
    model = _build(pixel_spec(finetune=True), venv, enc, "cpu", None)
    extractors = [m for m in model.policy.modules() if isinstance(m, VisionFeatures)]
    assert extractors
    for fx in extractors:
        for k, v in fx.vision.encoder.state_dict().items():
            assert torch.equal(v, enc.encoder.state_dict()[k]), k
    # From scratch (pixels), the same architecture is *not* the trained encoder.
    scratch = _build(pixel_spec(), venv, None, "cpu", None)
    fx = next(m for m in scratch.policy.modules() if isinstance(m, VisionFeatures))
    assert not torch.equal(fx.vision.encoder.state_dict()["conv.0.weight"], enc.encoder.state_dict()["conv.0.weight"])


@pytest.mark.parametrize("kw", [{"finetune": True}, {}, {"augment": "colour_jitter"}], ids=["darla_ft", "pixels", "pixels_aug"])
def test_pixel_methods_train_and_transfer(tmp_path, kw):
    enc = trained_like_encoder()
    res = train_agent(pixel_spec(**kw), enc if kw.get("finetune") else None, "h", get_domain("seek_avoid", "source"),
                      tmp_path, progress=False, tensorboard=False)
    model = load_agent(res.model_path, expect_encoder_sha256="h")
    fx = next(m for m in model.policy.modules() if isinstance(m, VisionFeatures))
    assert (fx.augment is not None) == (kw.get("augment") == "colour_jitter")
    if kw.get("finetune"):  # RL changed the encoder it started from
        assert not torch.equal(fx.vision.encoder.state_dict()["conv.0.weight"], enc.encoder.state_dict()["conv.0.weight"])
    out = run_episodes(model, None, "seek_avoid", get_domain("seek_avoid", "target_floor_object"), [5, 6], size=SIZE, max_steps=10)
    assert len(out) == 2 and all(n == 10 for _, n in out)


def test_augmentation_only_in_update_batches():
    enc = trained_like_encoder()
    venv = make_vec_env("seek_avoid", get_domain("seek_avoid", "source"), 1, 0, SIZE, 20)
    model = _build(pixel_spec(augment="colour_jitter"), venv, enc, "cpu", None)
    obs = venv.reset()
    model.policy.set_training_mode(False)  # acting
    a1 = model.policy.obs_to_tensor(obs)[0]
    f1, f2 = model.policy.extract_features(a1), model.policy.extract_features(a1)
    assert torch.equal(f1, f2)
    model.policy.set_training_mode(True)  # updating
    assert not torch.equal(model.policy.extract_features(a1), f1)


# -- selection on source only ------------------------------------------------------------------
def test_best_source_selection_never_looks_at_targets(tmp_path, monkeypatch):
    """Targets are scored highest at a checkpoint the source ranks low: selection must ignore them."""
    calls = {"n": 0}
    source_scores = [0.0, 5.0, 1.0, 2.0, 3.0, 0.5, 0.1, 0.2]
    target_scores = [9.0, -1.0, 8.0, 7.0, 6.0, 9.5, 9.9, 9.8]

    def fake_run_episodes(model, encoder, env_name, domain, seeds, **kw):
        k = calls["n"] // 2
        calls["n"] += 1
        score = source_scores[k] if domain.name == "source" else target_scores[k]
        return [(score, 20)] * len(seeds)

    monkeypatch.setattr(train_mod, "run_episodes", fake_run_episodes)  # what its evaluations call
    enc = trained_like_encoder()
    spec = AgentSpec("seek_avoid", "source", size=SIZE, max_steps=20, total_timesteps=256, n_envs=2, seed=0,
                     hyperparams=PPO_HP, policy_kwargs={"net_arch": [16]}, eval_every=64, eval_episodes=2,
                     select="best_source", log_targets=True)
    targets = {"target_floor_object": get_domain("seek_avoid", "target_floor_object")}
    train_agent(spec, enc, "h", get_domain("seek_avoid", "source"), tmp_path, progress=False, tensorboard=False, targets=targets)
    rows = [json.loads(x) for x in (tmp_path / "evaluations.jsonl").read_text().splitlines()]
    assert len(rows) >= 4 and all("target_floor_object" in r for r in rows)
    meta = json.loads((tmp_path / "meta.json").read_text())
    best = max(rows, key=lambda r: r["source"])
    assert meta["selected"] == {"by": "best_source", "timesteps": best["timesteps"], "source_mean": best["source"]}
    assert best["timesteps"] != max(rows, key=lambda r: r["target_floor_object"])["timesteps"]
    assert (tmp_path / "last.zip").exists()  # the last policy is kept beside the selected one
    assert not (tmp_path / "best_source.zip").exists()


def test_last_selection_still_logs_source_evaluations(tmp_path):
    spec = AgentSpec("seek_avoid", "source", size=SIZE, max_steps=10, total_timesteps=128, n_envs=2, seed=0,
                     hyperparams=PPO_HP, policy_kwargs={"net_arch": [16]}, eval_every=64, eval_episodes=2)
    train_agent(spec, trained_like_encoder(), "h", get_domain("seek_avoid", "source"), tmp_path, progress=False, tensorboard=False)
    rows = [json.loads(x) for x in (tmp_path / "evaluations.jsonl").read_text().splitlines()]
    assert [r["timesteps"] for r in rows] == [64, 128] and all(set(r) == {"timesteps", "source"} for r in rows)
    assert json.loads((tmp_path / "meta.json").read_text())["selected"]["by"] == "last"


def test_evaluating_during_training_never_changes_the_training_run(tmp_path):
    """The evaluations (source, and targets with log_targets) sample their own episodes and actions
    on a forked RNG: the trained policy is the one a run without evaluations ends with."""
    env, source = "seek_avoid_v1", get_domain("seek_avoid_v1", "source")
    targets = {"target_all_new": get_domain("seek_avoid_v1", "target_all_new")}
    weights = []
    for k, (every, log_targets) in enumerate([(0, False), (128, False), (128, True)]):
        spec = AgentSpec(env, "source", size=SIZE, max_steps=20, total_timesteps=512, n_envs=2, seed=0,
                         hyperparams=PPO_HP, policy_kwargs={"net_arch": [16]}, eval_every=every, eval_episodes=2,
                         log_targets=log_targets)
        out = tmp_path / str(k)
        train_agent(spec, trained_like_encoder(), "h", source, out, progress=False, tensorboard=False,
                    targets=targets if log_targets else None)
        weights.append(load_agent(out / "model.zip").policy.state_dict())
    assert (tmp_path / "2" / "evaluations.jsonl").read_text().count("target_all_new") == 4
    for other in weights[1:]:
        assert weights[0].keys() == other.keys()
        assert all(torch.equal(weights[0][name], other[name]) for name in weights[0])


# -- references and statistics -----------------------------------------------------------------
def test_oracle_beats_random_and_is_deterministic():
    dom = get_domain("seek_avoid", "source")
    seeds = list(range(50, 60))
    o1 = run_oracle_episodes("seek_avoid", dom, seeds, size=SIZE, max_steps=50)
    assert o1 == run_oracle_episodes("seek_avoid", dom, seeds, size=SIZE, max_steps=50)
    assert all(r > 0 for r, _ in o1)  # it never steps on the bad object when a path exists
    rnd = RandomPolicy(make_env("seek_avoid", dom, size=SIZE).action_space)
    rnd.set_random_seed(0)
    r = run_episodes(rnd, None, "seek_avoid", dom, seeds, size=SIZE, max_steps=50)
    assert np.mean([x for x, _ in o1]) > np.mean([x for x, _ in r]) + 3


def test_normalise_and_probability_of_improvement_hand_computed():
    np.testing.assert_allclose(normalise([0.0, 5.0, 10.0], 0.0, 10.0), [0.0, 0.5, 1.0])
    with pytest.raises(ValueError):
        normalise([1.0], 2.0, 2.0)
    # P(X > Y) = (# pairs X > Y + ½ # ties) / (n·m): 11.5 / 16
    p = probability_of_improvement([1, 2, 3, 4], [0, 1, 2, 3], seed=0)
    assert p["p"] == pytest.approx(11.5 / 16)
    assert p["ci"][0] <= p["p"] <= p["ci"][1]
    assert probability_of_improvement([1, 2, 3, 4], [0, 1, 2, 3], seed=0) == p  # known seed → same CI
    assert probability_of_improvement([5, 6], [1, 2])["p"] == 1.0


def test_bootstrap_ci_known_seed_reproducible_and_brackets_iqm():
    per_seed = {s: [v] for s, v in enumerate([1.0, 2.0, 3.0, 4.0, 10.0])}
    a, b = summarize_returns(per_seed, seed=0), summarize_returns(per_seed, seed=0)
    assert a == b
    assert a["iqm"] == pytest.approx(3.0)  # middle 50% of 5 values with scipy's trim_mean(0.25): [2, 3, 4]
    assert a["iqm_ci"][0] <= a["iqm"] <= a["iqm_ci"][1]


def test_bootstrap_leaves_the_global_numpy_rng_alone():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    summarize_returns({s: [float(s)] for s in range(4)}, seed=5)
    probability_of_improvement([1, 2, 3], [2, 3, 4], seed=5)
    assert np.random.rand() == expected
