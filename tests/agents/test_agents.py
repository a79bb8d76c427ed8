"""VecEncode, agent training on frozen latents, zero-shot transfer evaluation."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from agents.encode import VecEncode
from agents.resume import REPLAY
from agents.rollout import make_vec_env
from agents.stats import iqm, summarize_returns, transfer_ratio
from agents.train import AgentSpec, load_agent, train_agent
from agents.transfer import episode_seeds, evaluate_transfer
from envs.factors import to_chw_float
from envs.registry import get_domain
from vision.vae import BetaVAE

SIZE = 32


def tiny_encoder(latent: int = 4) -> BetaVAE:
    torch.manual_seed(0)
    return BetaVAE((3, SIZE, SIZE), latent, channels=[8, 8, 16, 16], hidden=32)


def test_vec_encode_shapes_and_terminal_observation():
    enc = tiny_encoder()
    venv = make_vec_env("seek_avoid", get_domain("seek_avoid", "source"), 3, seed=0, size=SIZE, max_steps=5)
    raw = make_vec_env("seek_avoid", get_domain("seek_avoid", "source"), 3, seed=0, size=SIZE, max_steps=5)
    env = VecEncode(venv, enc)
    assert env.observation_space.shape == (4,)
    obs = env.reset()
    raw.reset()
    assert obs.shape == (3, 4) and obs.dtype == np.float32
    seen_terminal = False
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = rng.integers(env.action_space.n, size=3)
        obs, rew, done, infos = env.step(actions)
        frames, _, _, raw_infos = raw.step(actions)
        assert obs.shape == (3, 4)
        np.testing.assert_allclose(obs, enc.represent(to_chw_float(frames)), atol=1e-5)
        for i, info in enumerate(infos):
            if done[i]:
                term = info["terminal_observation"]
                assert term.shape == (4,) and term.dtype == np.float32  # encoded, not a raw frame
                want = enc.represent(to_chw_float(raw_infos[i]["terminal_observation"][None]))[0]
                np.testing.assert_allclose(term, want, atol=1e-5)
                seen_terminal = True
    assert seen_terminal


def test_vec_encode_matches_represent():
    enc = tiny_encoder()
    venv = make_vec_env("seek_avoid", get_domain("seek_avoid", "source"), 2, seed=3, size=SIZE)
    frames = venv.reset()
    env = VecEncode(make_vec_env("seek_avoid", get_domain("seek_avoid", "source"), 2, seed=3, size=SIZE), enc)
    z = env.reset()
    ref = enc.represent(frames.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-6)


def test_vec_encode_rejects_size_mismatch():
    venv = make_vec_env("seek_avoid", get_domain("seek_avoid", "source"), 1, seed=0, size=64)
    with pytest.raises(ValueError, match=r"encoder expects images of shape \(3, 32, 32\)"):
        VecEncode(venv, tiny_encoder())


def test_vec_encode_cuda_graphs_need_cuda():
    venv = make_vec_env("seek_avoid", get_domain("seek_avoid", "source"), 1, seed=0, size=SIZE)
    with pytest.raises(ValueError, match="cuda_graphs=True needs a CUDA device"):
        VecEncode(venv, tiny_encoder(), "cpu", cuda_graphs=True)
    assert VecEncode(venv, tiny_encoder(), "cpu").cuda_graphs is False  # the default follows the device


def _rollout(env, steps: int = 12) -> list[np.ndarray]:
    """Observations, then encoded terminal observations, of a fixed random action sequence."""
    out = [env.reset()]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        obs, _, done, infos = env.step(rng.integers(env.action_space.n, size=env.num_envs))
        out.append(obs)
        out += [info["terminal_observation"] for i, info in enumerate(infos) if done[i]]
    return out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_vec_encode_cuda_graph_equals_eager():
    def env(graphs):
        venv = make_vec_env("seek_avoid", get_domain("seek_avoid", "source"), 3, seed=0, size=SIZE, max_steps=5)
        return VecEncode(venv, tiny_encoder(), "cuda", cuda_graphs=graphs)

    graphed, eager = env(None), env(False)
    assert graphed.cuda_graphs and not eager.cuda_graphs
    a, b = _rollout(graphed), _rollout(eager)
    assert len(a) > 13  # terminal observations were encoded in the larger, terminal-carrying batches
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert len(graphed._graphs) >= 2 and all(g is not None for g in graphed._graphs.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_vec_encode_cuda_graph_capture_failure_falls_back_to_eager():
    class SyncingEncoder(BetaVAE):  # .item() synchronises, which a capture forbids
        def encode(self, x):
            mu, logvar = super().encode(x)
            return mu * (1.0 + 0.0 * float(mu.sum().item())), logvar

    torch.manual_seed(0)
    enc = SyncingEncoder((3, SIZE, SIZE), 4, channels=[8, 8, 16, 16], hidden=32)
    venv = make_vec_env("seek_avoid", get_domain("seek_avoid", "source"), 2, seed=0, size=SIZE)
    env = VecEncode(venv, enc, "cuda")
    with pytest.warns(UserWarning, match="CUDA graph capture failed"):
        z = env.reset()
    frames = make_vec_env("seek_avoid", get_domain("seek_avoid", "source"), 2, seed=0, size=SIZE).reset()
    np.testing.assert_allclose(z, enc.represent(to_chw_float(frames)), rtol=1e-5, atol=1e-6)
    z2 = env.reset()  # the failed shape is remembered: no second capture, no second warning
    assert z2.shape == (2, 4) and list(env._graphs.values()) == [None]


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn"])
def test_train_agent_keeps_encoder_frozen(tmp_path, algo):
    enc = tiny_encoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    hp = {"ppo": {"n_steps": 32, "batch_size": 32, "n_epochs": 1}, "a2c": {"n_steps": 8},
          "dqn": {"learning_starts": 16, "buffer_size": 500, "train_freq": 4}}[algo]
    spec = AgentSpec("seek_avoid", "source", size=SIZE, max_steps=20, algo=algo, total_timesteps=128,
                     n_envs=2, seed=0, hyperparams=hp, policy_kwargs={"net_arch": [16]})
    res = train_agent(spec, enc, "abc123", get_domain("seek_avoid", "source"), tmp_path, progress=False, tensorboard=False)
    assert res.model_path.exists() and res.timesteps >= 128
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), f"encoder weight {k} changed during RL"
    model = load_agent(res.model_path, expect_encoder_sha256="abc123")
    assert model.darla_encoder_sha256 == "abc123"
    with pytest.raises(ValueError, match="was trained on the vision checkpoint"):
        load_agent(res.model_path, expect_encoder_sha256="other")


def test_same_seed_same_policy(tmp_path):
    spec = AgentSpec("seek_avoid", "source", size=SIZE, max_steps=20, total_timesteps=128, n_envs=2, seed=1,
                     hyperparams={"n_steps": 32, "batch_size": 32, "n_epochs": 1}, policy_kwargs={"net_arch": [16]})
    params = []
    for run in ("a", "b"):
        res = train_agent(spec, tiny_encoder(), "h", get_domain("seek_avoid", "source"), tmp_path / run, progress=False, tensorboard=False)
        params.append(load_agent(res.model_path).policy.state_dict())
    for k in params[0]:
        assert torch.equal(params[0][k], params[1][k])


def test_transfer_seeds_disjoint_and_reproducible(tmp_path):
    enc = tiny_encoder()
    spec = AgentSpec("seek_avoid", "source", size=SIZE, max_steps=10, total_timesteps=64, n_envs=2, seed=0,
                     hyperparams={"n_steps": 32, "batch_size": 32, "n_epochs": 1}, policy_kwargs={"net_arch": [16]})
    res = train_agent(spec, enc, "h", get_domain("seek_avoid", "source"), tmp_path, progress=False, tensorboard=False)
    model = load_agent(res.model_path)
    doms = {"source": get_domain("seek_avoid", "source"), "t": get_domain("seek_avoid", "target_floor_object")}
    eps1 = evaluate_transfer(model, enc, "seek_avoid", doms, n_episodes=3, size=SIZE, max_steps=10)
    eps2 = evaluate_transfer(model, enc, "seek_avoid", doms, n_episodes=3, size=SIZE, max_steps=10)
    assert eps1 == eps2
    assert [e.domain for e in eps1] == ["source"] * 3 + ["t"] * 3
    assert all(e.length == 10 for e in eps1)
    assert not set(episode_seeds(0, 3, 1_000_000)) & set(episode_seeds(1, 3, 1_000_000))


def test_stats_hand_computed():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # middle half: 3,4,5,6
    assert iqm([0, 0, 10, 10]) == pytest.approx(5.0)
    s = summarize_returns({0: [1.0, 3.0], 1: [5.0, 7.0]})
    assert s["mean"] == pytest.approx(4.0) and s["per_seed"] == [2.0, 6.0]
    assert s["std"] == pytest.approx(np.std([2.0, 6.0], ddof=1))
    assert s["iqm_ci"][0] <= s["iqm"] <= s["iqm_ci"][1]
    assert summarize_returns({0: [1.0, 3.0], 1: [5.0, 7.0]}) == s  # known seed → same bootstrap
    assert transfer_ratio(2.0, 4.0) == 0.5 and transfer_ratio(1.0, 0.0) is None


RESUME_SPECS = {
    "ppo": dict(hyperparams={"n_steps": 32, "batch_size": 32, "n_epochs": 1}),
    "dqn": dict(algo="dqn", hyperparams={"learning_starts": 32, "buffer_size": 1000, "train_freq": 4, "target_update_interval": 50}),
    "sac_reacher": dict(env_name="reacher", algo="sac", hyperparams={"learning_starts": 64, "buffer_size": 1000, "batch_size": 32}),
    "ppo_pixels_jitter": dict(observe="pixels", augment="colour_jitter", pixel_model="beta_vae",
                              pixel_model_kwargs={"latent_dim": 4, "channels": [8, 8, 16, 16], "hidden": 32},
                              hyperparams={"n_steps": 32, "batch_size": 32, "n_epochs": 1}),
}


def _policy_params(model) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.policy.state_dict().items()}


def _monitor_rows(out) -> list[list[str]]:
    """(return, length) of every logged episode, per env (wall times dropped)."""
    return [[",".join(r.split(",")[:2]) for r in f.read_text().splitlines()[2:]] for f in sorted((out / "monitor").glob("*.monitor.csv"))]


@pytest.mark.parametrize("algo", sorted(RESUME_SPECS))
def test_interrupted_agent_training_resumes_exactly(algo, tmp_path, monkeypatch):
    """Killed right after a mid-run checkpoint, then resumed: the same policy, episodes and
    evaluations as a run that was never interrupted (envs, observations, RNGs and the replay
    buffer are restored, not restarted)."""
    import agents.train as agent_train

    kw = dict(RESUME_SPECS[algo])
    env_name = kw.pop("env_name", "seek_avoid")
    spec = AgentSpec(env_name, "source", size=SIZE, max_steps=20, total_timesteps=256, n_envs=2, seed=0,
                     policy_kwargs={"net_arch": [16]}, checkpoint_every=64, eval_every=97, eval_episodes=2, **kw)
    source = get_domain(env_name, "source")
    whole = train_agent(spec, tiny_encoder(), "h", source, tmp_path / "whole", progress=False, tensorboard=False)

    real_save = agent_train.save_resumable
    saved = []

    def dying_save(model, path):
        real_save(model, path)
        saved.append(model.num_timesteps)
        if model.num_timesteps >= 128:
            raise KeyboardInterrupt  # killed right after a checkpoint

    monkeypatch.setattr(agent_train, "save_resumable", dying_save)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train_agent(spec, tiny_encoder(), "h", source, cut, progress=False, tensorboard=False)
    assert (cut / agent_train.CHECKPOINT).exists() and not (cut / agent_train.MODEL).exists()
    assert 128 <= saved[-1] < 256
    monkeypatch.setattr(agent_train, "save_resumable", real_save)
    loaded = []
    real_apply = agent_train.apply_resume_state
    monkeypatch.setattr(agent_train, "apply_resume_state", lambda m, *a: loaded.append(m.num_timesteps) or real_apply(m, *a))
    res = train_agent(spec, tiny_encoder(), "h", source, cut, progress=False, tensorboard=False)
    assert loaded == [saved[-1]]  # continued from the checkpoint, not from zero
    assert res.timesteps == whole.timesteps and not (cut / agent_train.CHECKPOINT).exists()

    a, b = load_agent(whole.model_path), load_agent(res.model_path)
    pa, pb = _policy_params(a), _policy_params(b)
    assert pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)
    assert _monitor_rows(tmp_path / "whole") == _monitor_rows(cut)  # episodes before and after, once each
    assert (tmp_path / "whole/evaluations.jsonl").read_text() == (cut / "evaluations.jsonl").read_text()
    if algo == "dqn":
        assert a.exploration_rate == b.exploration_rate and a._n_calls == b._n_calls


def _die_after_checkpoint(spec, out, monkeypatch, at_steps: int = 0) -> None:
    """Train ``spec`` into ``out`` until it writes a checkpoint at ``at_steps`` steps or later (by
    default its first), then stop as Ctrl-C would."""
    import agents.train as agent_train

    real_save = agent_train.save_resumable

    def dying_save(model, path):
        real_save(model, path)
        if model.num_timesteps >= at_steps:
            raise KeyboardInterrupt

    monkeypatch.setattr(agent_train, "save_resumable", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train_agent(spec, tiny_encoder(), "h", get_domain(spec.env_name, "source"), out, progress=False, tensorboard=False)
    monkeypatch.setattr(agent_train, "save_resumable", real_save)


def test_off_policy_resume_restores_the_replay_buffer(tmp_path, monkeypatch):
    """A resumed DQN continues with the transitions it had collected, not an empty buffer."""
    from stable_baselines3 import DQN

    import agents.train as agent_train

    spec = AgentSpec("seek_avoid", "source", size=SIZE, max_steps=20, algo="dqn", total_timesteps=256, n_envs=2, seed=0,
                     hyperparams={"learning_starts": 32, "buffer_size": 1000, "train_freq": 4}, policy_kwargs={"net_arch": [16]},
                     checkpoint_every=64)
    _die_after_checkpoint(spec, tmp_path, monkeypatch, at_steps=128)
    with zipfile.ZipFile(tmp_path / agent_train.CHECKPOINT) as zf:
        assert REPLAY in zf.namelist()  # the buffer is committed with the model, in one rename
    loaded = []
    real_apply = agent_train.apply_resume_state

    def spy(model, *a):
        real_apply(model, *a)
        assert isinstance(model, DQN)
        loaded.append(model.replay_buffer.size())

    monkeypatch.setattr(agent_train, "apply_resume_state", spy)
    res = train_agent(spec, tiny_encoder(), "h", get_domain("seek_avoid", "source"), tmp_path, progress=False, tensorboard=False)
    # Rows hold one step of both envs; SB3 stores a step after its callbacks run, hence the − 1.
    assert loaded and loaded[0] >= 128 // 2 - 1
    assert res.timesteps >= 256 and not (tmp_path / agent_train.CHECKPOINT).exists()


def test_corrupted_agent_checkpoint_is_refused_with_a_clear_message(tmp_path, monkeypatch):
    """A flipped byte or a truncated checkpoint.zip is detected (zip CRC-32s), never resumed from."""
    import agents.train as agent_train
    from vision.checkpoint import CheckpointError

    spec = AgentSpec("seek_avoid", "source", size=SIZE, max_steps=20, total_timesteps=256, n_envs=2, seed=0,
                     hyperparams={"n_steps": 32, "batch_size": 32, "n_epochs": 1}, policy_kwargs={"net_arch": [16]},
                     checkpoint_every=64)
    _die_after_checkpoint(spec, tmp_path, monkeypatch)
    ckpt = tmp_path / agent_train.CHECKPOINT
    good = ckpt.read_bytes()
    with zipfile.ZipFile(ckpt) as zf:  # a byte inside the policy's weights
        info = zf.getinfo("policy.pth")
    flipped = bytearray(good)
    pos = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    flipped[pos] ^= 0xFF
    for bad in (bytes(flipped), good[: len(good) // 2]):
        ckpt.write_bytes(bad)
        with pytest.raises(CheckpointError, match=r"checkpoint\.zip is corrupted.*delete it"):
            train_agent(spec, tiny_encoder(), "h", get_domain("seek_avoid", "source"), tmp_path, progress=False, tensorboard=False)
        assert ckpt.read_bytes() == bad and not (tmp_path / agent_train.MODEL).exists()  # nothing used, nothing lost


def test_agent_without_tensorboard_writes_nothing_outside_its_dir(tmp_path, monkeypatch):
    """SB3 gives a model without a log dir a logger in a new ``tempdir/SB3-<time>`` folder; darla's
    policies, fresh and resumed, keep to their own directory."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    spec = AgentSpec("seek_avoid", "source", size=SIZE, max_steps=20, total_timesteps=128, n_envs=2, seed=0,
                     hyperparams={"n_steps": 32, "batch_size": 32, "n_epochs": 1}, policy_kwargs={"net_arch": [16]},
                     checkpoint_every=64)
    _die_after_checkpoint(spec, tmp_path / "run", monkeypatch)
    res = train_agent(spec, tiny_encoder(), "h", get_domain("seek_avoid", "source"), tmp_path / "run", progress=False, tensorboard=False)
    assert res.timesteps >= 128
    assert not list(scratch.glob("SB3-*"))  # (torch may keep its own compile cache there)
