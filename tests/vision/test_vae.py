"""β-VAE: loss terms, KL against Monte Carlo, one step lowers the loss, nets sized from the image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vision.base import gaussian_kl_per_dim, reconstruction_loss
from vision.nets import DEFAULT_CHANNELS, ConvDecoder, ConvEncoder, default_channels
from vision.registry import VISION_MODELS, get_model_class
from vision.vae import VAE, BetaVAE

SMALL = {"channels": [8, 8, 16, 16], "hidden": 32}


def batch(n: int = 16, side: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, side, side, generator=g) > 0.7).float()


def test_kl_matches_monte_carlo():
    """Analytic KL(N(mu, σ²) ‖ N(0, 1)) per dim equals E_q[log q(z) − log p(z)] estimated by sampling."""
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(1, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(1, 3, generator=g, dtype=torch.float64) * 0.5
    analytic = gaussian_kl_per_dim(mu, logvar)
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    log_q = -0.5 * (((z - mu) / std) ** 2 + logvar + math.log(2 * math.pi))
    log_p = -0.5 * (z**2 + math.log(2 * math.pi))
    mc = (log_q - log_p).mean(0)
    torch.testing.assert_close(mc, analytic, atol=0.01, rtol=0.01)


def test_kl_is_zero_at_the_prior_and_batch_mean():
    kl = gaussian_kl_per_dim(torch.zeros(5, 4), torch.zeros(5, 4))
    assert torch.equal(kl, torch.zeros(4))
    mu = torch.tensor([[1.0], [3.0]])
    assert gaussian_kl_per_dim(mu, torch.zeros(2, 1)).item() == pytest.approx((0.5 + 4.5) / 2)


def test_reconstruction_losses_sum_pixels_mean_batch():
    x = torch.tensor([[[[0.0, 1.0]]], [[[1.0, 1.0]]]])  # (2, 1, 1, 2)
    logits = torch.zeros_like(x)
    assert reconstruction_loss(logits, x, "bernoulli").item() == pytest.approx(2 * math.log(2))
    assert reconstruction_loss(logits, x, "gaussian").item() == pytest.approx((0.25 * 4) / 2)
    with pytest.raises(ValueError, match="unknown likelihood"):
        reconstruction_loss(logits, x, "poisson")


def test_beta_vae_loss_terms():
    torch.manual_seed(0)
    m = BetaVAE((3, 32, 32), 6, beta=4.0, **SMALL)
    x = batch()
    torch.manual_seed(5)
    out = m.loss(x, 0)
    assert set(out.terms) == {"recon", "kl", "kl_per_dim"}
    assert out.terms["kl_per_dim"].shape == (6,)
    assert torch.isclose(out.terms["kl"], out.terms["kl_per_dim"].sum())
    torch.testing.assert_close(out.total, out.terms["recon"] + 4.0 * out.terms["kl"])
    # β = 1 is the plain VAE objective on the same noise
    v = VAE((3, 32, 32), 6, **SMALL)
    v.load_state_dict(m.state_dict())
    torch.manual_seed(5)
    vo = v.loss(x, 0)
    torch.testing.assert_close(vo.total, out.terms["recon"] + out.terms["kl"])


@pytest.mark.parametrize("side", [24, 32, 64, 84])
def test_nets_sized_from_image(side):
    enc = ConvEncoder((3, side, side), 10, **SMALL)
    dec = ConvDecoder(5, (3, side, side), **SMALL)
    assert enc(torch.zeros(2, 3, side, side)).shape == (2, 10)
    assert dec(torch.zeros(2, 5)).shape == (2, 3, side, side)


@pytest.mark.parametrize(
    "side, layers, map_side",
    [(84, 4, 5), (64, 4, 4), (48, 3, 6), (32, 3, 4), (24, 2, 6), (16, 2, 4), (8, 1, 4)],
)
def test_default_stack_keeps_the_map_at_least_4x4(side, layers, map_side):
    """Burgess's 4 layers at 64 px and up; fewer on smaller frames, so 32 px ends at 4×4, not 2×2."""
    chans = default_channels((3, side, side))
    assert chans == DEFAULT_CHANNELS[:layers]
    enc = ConvEncoder((3, side, side), 6)
    assert enc.flat_dim == chans[-1] * map_side * map_side
    assert ConvDecoder(3, (3, side, side))(torch.zeros(2, 3)).shape == (2, 3, side, side)


def test_models_record_the_resolved_stack_and_old_checkpoints_still_load(tmp_path):
    from vision.checkpoint import save_checkpoint
    from vision.dae import DAE
    from vision.infogan import InfoGAN
    from vision.registry import load_checkpoint

    for cls in (BetaVAE, DAE, InfoGAN):
        m = cls((3, 32, 32))
        assert m.hparams["channels"] == [32, 32, 64], cls  # what a checkpoint stores and rebuilds
    # A checkpoint written with the old 4-layer default at 32 px keeps its own stack.
    old = BetaVAE((3, 32, 32), 4, channels=[32, 32, 64, 64])
    loaded = load_checkpoint(save_checkpoint(tmp_path / "old.pt", old))
    assert loaded.hparams["channels"] == [32, 32, 64, 64] and loaded.encoder.flat_dim == 64 * 2 * 2
    x = batch(4)
    torch.testing.assert_close(loaded.represent(x), old.eval().represent(x))


def test_one_step_lowers_loss_on_fixed_batch():
    torch.manual_seed(0)
    m = BetaVAE((3, 32, 32), 4, beta=1.0, **SMALL)
    x = batch()
    (opt,) = m.configure_optimizers(1e-3)

    def eval_loss() -> float:
        torch.manual_seed(123)  # same noise before and after
        with torch.no_grad():
            return float(m.loss(x, 0).total)

    before = eval_loss()
    for step in range(5):
        m.train_step(x, step, [opt])
    assert eval_loss() < before


def test_train_step_refuses_non_finite_loss_before_updating():
    torch.manual_seed(0)
    m = BetaVAE((3, 32, 32), 4, **SMALL)
    (opt,) = m.configure_optimizers(1e-3)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = batch()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        m.train_step(x, 0, [opt])
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])


def test_represent_is_deterministic_and_batched():
    torch.manual_seed(0)
    m = BetaVAE((3, 32, 32), 4, **SMALL)
    x = batch(10).numpy()
    a, b = m.represent(x, batch_size=3), m.represent(x)
    assert a.shape == (10, 4) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert m.training  # represent restores the mode it found


def test_registry_and_bad_arguments():
    assert get_model_class("beta_vae") is BetaVAE and "vae" in VISION_MODELS
    with pytest.raises(KeyError, match="choose from"):
        get_model_class("beta_vea")
    with pytest.raises(ValueError, match="beta must be"):
        BetaVAE((3, 32, 32), beta=-1.0)
    with pytest.raises(ValueError, match="likelihood must be"):
        BetaVAE((3, 32, 32), likelihood="laplace")
    with pytest.raises(ValueError, match="too small"):
        BetaVAE((3, 8, 8), channels=DEFAULT_CHANNELS)  # 4 stride-2 layers on 8 px: the default has 1
    for bad in (32, [], [32, 0], "32", [32.0]):  # e.g. `vision.channels: 32` in a config
        with pytest.raises(ValueError, match="channels must be a non-empty list of positive integers"):
            BetaVAE((3, 32, 32), channels=bad)
