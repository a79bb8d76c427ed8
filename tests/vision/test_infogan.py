"""InfoGAN: shapes, each player's step, optimiser groups, the MI bound rises on a toy, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vision.checkpoint import save_checkpoint
from vision.infogan import InfoGAN, gaussian_nll
from vision.registry import load_checkpoint

SMALL = {"channels": [8, 8, 16, 16], "hidden": 32}


def model(latent: int = 3, seed: int = 0, **kw) -> InfoGAN:
    torch.manual_seed(seed)
    return InfoGAN((3, 32, 32), latent, noise_dim=kw.pop("noise_dim", 5), **{**SMALL, **kw})


def batch(n: int = 16, side: int = 32, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, channels, side, side, generator=g) > 0.7).float()


def squares(n: int, seed: int, side: int = 16, size: int = 4) -> torch.Tensor:
    """Toy data: one bright size×size square on a fixed row; its x position is the only factor."""
    xs = torch.randint(0, side - size + 1, (n,), generator=torch.Generator().manual_seed(seed))
    img = torch.zeros(n, 1, side, side)
    top = (side - size) // 2
    for i, x0 in enumerate(xs.tolist()):
        img[i, 0, top : top + size, x0 : x0 + size] = 1.0
    return img


def params(module: torch.nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


def test_shapes_terms_and_loss_updates_nothing():
    m = model()
    x = batch()
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (16, 3)
    assert m.decode(mu).shape == x.shape
    c = torch.rand(4, 3) * 2 - 1
    torch.testing.assert_close(m.decode(c), m.generate(torch.zeros(4, 5), c))  # decode: noise at zero
    before = {k: v.clone() for k, v in m.state_dict().items()}
    out = m.loss(x, 0)
    assert {"d_loss", "g_loss", "info_nll", "mi_lower_bound", "d_real", "d_fake"} <= set(out.terms)
    assert torch.isfinite(out.total) and all(torch.isfinite(v) for v in out.terms.values())
    t = out.terms
    torch.testing.assert_close(t["mi_lower_bound"], 3 * math.log(2.0) - t["info_nll"])
    torch.testing.assert_close(out.total, t["d_loss"] + t["g_loss"] + m.info_weight * t["info_nll"])
    assert 0 < float(t["d_real"]) < 1 and 0 < float(t["d_fake"]) < 1
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_gaussian_nll_by_hand():
    c, mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.0, -0.5]]), torch.tensor([[0.0, math.log(4.0)]])
    hand = 0.5 * (math.log(2 * math.pi) + 0.25) + 0.5 * (math.log(2 * math.pi) + math.log(4.0) + 0.25 / 4)
    assert float(gaussian_nll(c, mu, logvar)) == pytest.approx(hand)


def test_optimiser_groups():
    m = model(d_lr=3e-4, g_lr=2e-3)
    opt_d, opt_g = m.configure_optimizers(1e-4)  # lr is ignored: d_lr / g_lr are the model's
    d_ids = {id(p) for g in opt_d.param_groups for p in g["params"]}
    g_ids = {id(p) for g in opt_g.param_groups for p in g["params"]}
    assert d_ids == params(m.discriminator) | params(m.q_head)  # D trunk + D head + Q head
    assert g_ids == params(m.generator)
    assert d_ids | g_ids == params(m) and not d_ids & g_ids
    assert opt_d.param_groups[0]["lr"] == 3e-4 and opt_g.param_groups[0]["lr"] == 2e-3
    assert opt_d.param_groups[0]["betas"] == opt_g.param_groups[0]["betas"] == (0.5, 0.999)


def test_discriminator_step_lowers_its_loss_with_g_fixed():
    m = model()
    opt_d, _ = m.configure_optimizers(0.0)
    x = batch()
    torch.manual_seed(1)
    noise, c = m.sample_latents(16, torch.device("cpu"))
    with torch.no_grad():
        fake = torch.sigmoid(m.generate(noise, c))
    g_before = {k: v.clone() for k, v in m.generator.state_dict().items()}

    def d_objective() -> float:
        with torch.no_grad():
            t = m._d_terms(x, fake, c)
            return float(t["d_loss"] + m.info_weight * t["d_info_nll"])

    before = d_objective()
    for _ in range(3):
        m.discriminator_step(x, fake, c, opt_d)
    assert d_objective() < before
    for k, v in m.generator.state_dict().items():
        assert torch.equal(v, g_before[k]), k


def test_train_step_updates_both_players_and_returns_detached_terms():
    m = model()
    opts = m.configure_optimizers(0.0)
    d0 = [p.clone() for p in m.discriminator.parameters()]
    g0 = [p.clone() for p in m.generator.parameters()]
    torch.manual_seed(0)
    terms = m.train_step(batch(), 0, opts)  # would raise if a backward met a stepped-in-place graph
    assert {"loss", "d_loss", "g_loss", "info_nll", "mi_lower_bound", "d_info_nll"} <= set(terms)
    assert all(not v.requires_grad and torch.isfinite(v) for v in terms.values())
    assert all(not torch.equal(a, b) for a, b in zip(d0, m.discriminator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g0, m.generator.parameters()))
    assert all(p.grad is None for p in m.discriminator.parameters())  # the G step leaves D no gradient


def test_non_finite_loss_raises_before_any_update():
    m = model()
    opts = m.configure_optimizers(0.0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = batch()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite"):
        m.train_step(x, 3, opts)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("info_weight", [1.0, 0.0])
def test_mutual_information_bound_rises_on_toy_squares(info_weight):
    """On 16×16 squares whose x position is the factor, 150 steps lift L_I = H(c) − NLL well
    above its start and above 0.5 nats; without the info term (λ = 0) it stays below that."""
    torch.manual_seed(0)
    m = InfoGAN((1, 16, 16), 1, noise_dim=4, info_weight=info_weight, channels=[8, 16], hidden=32)
    opts = m.configure_optimizers(0.0)
    x_eval = squares(64, seed=999)

    def bound() -> float:
        torch.manual_seed(7)  # the same noise and codes at every evaluation
        with torch.no_grad():
            return float(m.loss(x_eval, 0).terms["mi_lower_bound"])

    start = bound()
    for step in range(150):
        torch.manual_seed(step)
        m.train_step(squares(32, seed=step), step, opts)
    end = bound()
    if info_weight > 0:
        assert end > start + 1.0 and end > 0.5, (start, end)
    else:
        assert end < 0.5, (start, end)


def test_checkpoint_round_trip_and_deterministic_represent(tmp_path):
    m = model(info_weight=2.0)
    m.train_step(batch(), 0, m.configure_optimizers(0.0))
    x = batch(10).numpy()
    a = m.represent(x)
    assert a.shape == (10, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, m.represent(x))
    back = load_checkpoint(save_checkpoint(tmp_path / "m.pt", m), expect={"model": "infogan", "latent_dim": 3})
    assert isinstance(back, InfoGAN) and back.info_weight == 2.0 and back.noise_dim == 5
    np.testing.assert_array_equal(a, back.represent(x))
    again = InfoGAN(m.obs_shape, **m.hparams)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in m.state_dict().items()}


def test_bad_arguments():
    for kw, match in [
        ({"noise_dim": -1}, "noise_dim"),
        ({"info_weight": -0.5}, "info_weight"),
        ({"d_lr": 0.0}, "d_lr"),
        ({"latent": 0}, "latent_dim"),
    ]:
        latent = kw.pop("latent", 3)
        with pytest.raises(ValueError, match=match):
            InfoGAN((3, 32, 32), latent, **kw)
