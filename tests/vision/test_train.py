"""The vision training loop, checkpoints and pictures."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from vision.checkpoint import CheckpointError, save_checkpoint
from vision.io import file_sha256
from vision.registry import load_checkpoint
from vision.train import (
    CHECKPOINT,
    NonFiniteLossError,
    TrainSettings,
    batch_indices,
    cudnn_deterministic,
    resolve_device,
    train_vision,
)
from vision.traverse import reconstruction_grid, save_png, traversal_grid
from vision.vae import BetaVAE

SMALL = {"channels": [8, 8, 16, 16], "hidden": 32}
SETTINGS = TrainSettings(steps=12, batch_size=16, lr=1e-3, checkpoint_every=5, log_every=4, device="cpu", seed=3, progress=False)


def frames(n: int = 64, side: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((n, side, side, 3)) > 0.6).astype(np.uint8) * 255


def model(latent: int = 4, seed: int = 0, **kw) -> BetaVAE:
    torch.manual_seed(seed)
    return BetaVAE((3, 32, 32), latent, **SMALL, **kw)


def weights(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_checkpoint_round_trip(tmp_path):
    m = model(beta=6.0)
    p = save_checkpoint(tmp_path / "m.pt", m)
    back = load_checkpoint(p, expect={"model": "beta_vae", "obs_shape": (3, 32, 32), "latent_dim": 4})
    assert isinstance(back, BetaVAE) and back.beta == 6.0 and not back.training
    for k, v in m.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])
    x = frames(5).transpose(0, 3, 1, 2).astype(np.float32) / 255
    np.testing.assert_array_equal(m.represent(x), back.represent(x))


def test_checkpoint_mismatch_and_corruption_are_named(tmp_path):
    p = save_checkpoint(tmp_path / "m.pt", model())
    with pytest.raises(CheckpointError, match=r"latent_dim: checkpoint has 4, expected 10"):
        load_checkpoint(p, expect={"latent_dim": 10})
    with pytest.raises(CheckpointError, match=r"obs_shape: checkpoint has \(3, 32, 32\), expected \(3, 64, 64\)"):
        load_checkpoint(p, expect={"obs_shape": (3, 64, 64)})
    with pytest.raises(CheckpointError, match=r"model: checkpoint has 'beta_vae', expected 'vae'"):
        load_checkpoint(p, expect={"model": "vae"})
    (tmp_path / "cut.pt").write_bytes(p.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cut.pt is not a readable vision checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a darla vision checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no vision checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_loads_weights_only(tmp_path, monkeypatch):
    seen = {}
    real = torch.load

    def spy(*a, **k):
        seen.update(k)
        return real(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    load_checkpoint(save_checkpoint(tmp_path / "m.pt", model()))
    assert seen.get("weights_only") is True


def test_batch_indices_cover_each_epoch_once():
    f = batch_indices(10, 3, seed=0)
    epoch0 = np.concatenate([f(s) for s in range(3)])
    assert len(set(epoch0.tolist())) == 9  # 3 full batches, the partial one dropped
    assert not np.array_equal(np.concatenate([f(s) for s in range(3, 6)]), epoch0)
    np.testing.assert_array_equal(batch_indices(10, 3, seed=0)(4), f(4))  # a function of the step


def test_train_writes_model_checkpoint_history_and_tensorboard(tmp_path):
    res = train_vision(model(), frames(), SETTINGS, tmp_path / "v", tb_dir=tmp_path / "tb")
    assert res.model_path.exists() and (tmp_path / "v" / CHECKPOINT).exists()
    assert res.steps == 12 and res.resumed_from == 0 and res.images_per_s > 0
    assert res.history["step"] == [4, 8, 12]
    assert len(res.history["loss"]) == 3 and all(np.isfinite(res.history["loss"]))
    assert {"recon", "kl"} <= set(res.history)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    loaded = load_checkpoint(res.model_path)
    assert isinstance(loaded, BetaVAE)


def test_same_seed_same_weights_and_resume_is_exact(tmp_path, monkeypatch):
    a, b = model(), model()
    train_vision(a, frames(), SETTINGS, tmp_path / "a")
    train_vision(b, frames(), SETTINGS, tmp_path / "b")
    assert file_sha256(tmp_path / "a/model.pt") == file_sha256(tmp_path / "b/model.pt")

    ref = train_vision(model(), frames(), SETTINGS, tmp_path / "ref")

    # die at step 11, after the step-10 checkpoint, then resume in a fresh model object
    real = BetaVAE.train_step

    def dying(self, x, step, *args, **kw):
        if step == 11:
            raise KeyboardInterrupt
        return real(self, x, step, *args, **kw)

    monkeypatch.setattr(BetaVAE, "train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        train_vision(model(), frames(), SETTINGS, tmp_path / "c")
    monkeypatch.setattr(BetaVAE, "train_step", real)
    d = model(seed=99)  # different init: everything must come from the checkpoint
    res = train_vision(d, frames(), SETTINGS, tmp_path / "c")
    assert res.resumed_from == 10
    wa, wd = weights(a), weights(d)
    for k in wa:
        torch.testing.assert_close(wa[k], wd[k], rtol=0, atol=0)
    assert res.history == ref.history  # the log point at 12 averages steps 9–12 in both


def test_resume_refuses_checkpoint_of_another_model(tmp_path):
    train_vision(model(), frames(), replace(SETTINGS, steps=5), tmp_path / "v")
    with pytest.raises(CheckpointError, match="was written for another model"):
        train_vision(model(latent=6), frames(), SETTINGS, tmp_path / "v")


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    m = model()
    real = BetaVAE.loss

    def poisoned(self, x, step):
        out = real(self, x, step)
        return out._replace(total=out.total * float("nan")) if step == 7 else out

    monkeypatch.setattr(BetaVAE, "loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"step 7.*last good checkpoint .*checkpoint_last.pt, step 5"):
        train_vision(m, frames(), SETTINGS, tmp_path / "v")
    ckpt = torch.load(tmp_path / "v" / CHECKPOINT, weights_only=True)
    assert ckpt["train"]["step"] == 5
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert not (tmp_path / "v/model.pt").exists()


def test_bad_frames_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"frames are \(3, 24, 24\)"):
        train_vision(model(), frames(side=24), SETTINGS, tmp_path)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_vision(model(), frames(8), SETTINGS, tmp_path)
    with pytest.raises(ValueError, match="uint8"):
        train_vision(model(), frames().astype(np.float32), SETTINGS, tmp_path)


def test_cudnn_deterministic_sets_and_restores_the_flags():
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    try:
        cudnn.deterministic, cudnn.benchmark = False, True
        with cudnn_deterministic(True):
            assert (cudnn.deterministic, cudnn.benchmark) == (True, False)
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
        with pytest.raises(KeyboardInterrupt), cudnn_deterministic(True):
            raise KeyboardInterrupt  # restored on the way out of an interrupted run too
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
        with cudnn_deterministic(False):  # the CPU path leaves them alone
            assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_pictures(tmp_path):
    m = model(latent=3)
    x = frames(4).transpose(0, 3, 1, 2).astype(np.float32) / 255
    r = reconstruction_grid(m, x)
    assert r.dtype == np.uint8 and r.shape == (2 * 33 + 1, 4 * 33 + 1, 3)
    np.testing.assert_array_equal(r[1:33, 1:33], frames(4)[0])  # the input, untouched
    t = traversal_grid(m, x[0], order=[2, 0, 1], n_steps=5)
    assert t.shape == (3 * 33 + 1, 6 * 33 + 1, 3)
    # the row of a latent differs along the row (decoder sees the traversed value)
    row = t[1:33]
    assert not np.array_equal(row[:, 34:66], row[:, 166:198])
    p = save_png(tmp_path / "t.png", t)
    import cv2

    assert cv2.imread(str(p)).shape[0] >= 256


def test_memory_format_is_channels_last_on_the_cpu_only():
    # channels_last measured faster on the CPU and 1.5× slower on an H100 for these nets.
    from vision.train import memory_format

    assert memory_format(torch.device("cpu")) == torch.channels_last
    assert memory_format(torch.device("cuda")) == torch.contiguous_format
    assert TrainSettings().amp is False
