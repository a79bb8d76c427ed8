"""FactorVAE: per-column permutation, discriminator learns TC, two disjoint optimisers, update order."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from vision.checkpoint import save_checkpoint
from vision.factor_vae import FactorVAE, permute_dims
from vision.registry import load_checkpoint
from vision.train import TrainSettings, train_vision

SMALL = {"channels": [8, 8, 16, 16], "hidden": 32}
TINY_D = {"disc_width": 32, "disc_depth": 2}


def batch(n: int = 16, side: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, side, side, generator=g) > 0.7).float()


def model(latent: int = 4, seed: int = 0, **kw) -> FactorVAE:
    torch.manual_seed(seed)
    return FactorVAE((3, 32, 32), latent, **{**SMALL, **TINY_D, **kw})


def weights(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_shapes_and_loss_terms():
    m = model(gamma=10.0)
    x = batch()
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (16, 4)
    assert m.decode(mu).shape == x.shape
    torch.manual_seed(5)
    out = m.loss(x, 0)
    assert set(out.terms) == {"recon", "kl", "kl_per_dim", "tc"}
    assert out.terms["kl_per_dim"].shape == (4,) and torch.isfinite(out.total)
    torch.testing.assert_close(out.total, out.terms["recon"] + out.terms["kl"] + 10.0 * out.terms["tc"])


def test_default_discriminator_is_6x1000_leaky_relu():
    m = FactorVAE((3, 32, 32), 10, **SMALL)
    assert m.gamma == 35.0 and m.hparams["disc_width"] == 1000 and m.hparams["disc_depth"] == 6
    linears = [mod for mod in m.discriminator if isinstance(mod, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(10, 1000)] + [(1000, 1000)] * 5 + [(1000, 2)]
    acts = [mod for mod in m.discriminator if isinstance(mod, nn.LeakyReLU)]
    assert len(acts) == 6 and all(a.negative_slope == 0.2 for a in acts)
    _, d_opt = m.configure_optimizers(1e-4)
    assert d_opt.defaults["lr"] == 1e-4 and d_opt.defaults["betas"] == (0.5, 0.9)


def test_permute_dims_shuffles_each_column_across_the_batch():
    n, d = 64, 5
    z = torch.arange(n, dtype=torch.float32)[:, None] + 1000.0 * torch.arange(d)[None, :]  # z[i, j] = i + 1000 j
    torch.manual_seed(0)
    p = permute_dims(z)
    assert p.shape == z.shape
    for j in range(d):  # each column is a permutation of the same column (multiset kept)
        assert torch.equal(p[:, j].sort().values, z[:, j])
    src = p - 1000.0 * torch.arange(d)[None, :]  # the source row of every entry
    assert not torch.equal(src[:, 0], torch.arange(n, dtype=torch.float32))  # column 0 was shuffled
    assert all(not torch.equal(src[:, 0], src[:, j]) for j in range(1, d))  # a different permutation per column
    rows_kept = (src == src[:, :1]).all(dim=1).float().mean()
    assert rows_kept < 0.1  # rows are not moved together
    torch.manual_seed(0)
    assert torch.equal(permute_dims(z), p)  # torch's RNG only


def correlated(n: int, g: torch.Generator) -> torch.Tensor:
    u = torch.randn(n, generator=g)
    return torch.stack([u, u + 0.1 * torch.randn(n, generator=g), torch.randn(n, generator=g), torch.randn(n, generator=g)], 1)


def independent(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(n, 4, generator=g)


@pytest.mark.parametrize("codes", ["correlated", "independent"])
def test_discriminator_detects_dependence_only(codes):
    """300 tiny D steps: joint vs permuted is separable only when the latents are dependent."""
    sample = {"correlated": correlated, "independent": independent}[codes]
    m = model(disc_width=64, disc_lr=1e-3)
    _, d_opt = m.configure_optimizers(1e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        m.discriminator_step(sample(128, g), d_opt)
    with torch.no_grad():  # fresh held-out codes
        z = sample(4096, g)
        _, acc = m.discriminator_loss(z)
        tc = m.tc_estimate(z)
    if codes == "correlated":  # true TC of these codes: −½ log(1 − 1/1.01) ≈ 2.3 nats
        assert acc >= 0.8 and tc > 1.0
    else:
        assert abs(float(acc) - 0.5) < 0.05 and abs(float(tc)) < 0.2


def test_optimisers_are_disjoint_and_a_vae_step_leaves_the_discriminator_alone():
    m = model()
    vae_opt, d_opt = m.configure_optimizers(1e-3)
    vae_ids = {id(p) for grp in vae_opt.param_groups for p in grp["params"]}
    d_ids = {id(p) for grp in d_opt.param_groups for p in grp["params"]}
    assert not vae_ids & d_ids
    assert vae_ids | d_ids == {id(p) for p in m.parameters()}
    assert d_ids == {id(p) for p in m.discriminator.parameters()}
    d_before, enc_before = weights(m.discriminator), weights(m.encoder)
    vae_opt.zero_grad()
    m.loss(batch(), 0).total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.discriminator.parameters())
    vae_opt.step()  # D received gradient through the TC term, yet must not move
    assert all(torch.equal(v, d_before[k]) for k, v in m.discriminator.state_dict().items())
    assert any(not torch.equal(v, enc_before[k]) for k, v in m.encoder.state_dict().items())


def test_train_step_updates_both_in_order_for_several_steps():
    m = model()
    opts = m.configure_optimizers(1e-3)
    x = batch()
    d_before, enc_before = weights(m.discriminator), weights(m.encoder)
    for step in range(4):  # the VAE-step-then-backward-through-stale-graph bug would raise here
        terms = m.train_step(x, step, opts)
    assert {"loss", "recon", "kl", "kl_per_dim", "tc", "disc_loss", "disc_acc"} <= set(terms)
    assert all(not v.requires_grad for v in terms.values())
    assert 0.0 <= float(terms["disc_acc"]) <= 1.0 and torch.isfinite(terms["disc_loss"])
    assert any(not torch.equal(v, d_before[k]) for k, v in m.discriminator.state_dict().items())
    assert any(not torch.equal(v, enc_before[k]) for k, v in m.encoder.state_dict().items())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the training loop's AMP path
        terms = m.train_step(x, 4, opts)
    assert torch.isfinite(terms["loss"]) and terms["tc"].dtype == torch.float32


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    m = model()
    opts = m.configure_optimizers(1e-3)
    x = batch()

    def eval_loss() -> float:
        torch.manual_seed(123)  # same noise before and after
        with torch.no_grad():
            return float(m.loss(x, 0).total)

    before = eval_loss()
    for step in range(5):
        m.train_step(x, step, opts)
    assert eval_loss() < before


def test_train_step_refuses_non_finite_loss_before_updating():
    m = model()
    opts = m.configure_optimizers(1e-3)
    before = weights(m)
    x = batch()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        m.train_step(x, 0, opts)
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())


def test_checkpoint_round_trip(tmp_path):
    m = model(gamma=6.4)
    m.train_step(batch(), 0, m.configure_optimizers(1e-3))  # non-initial D weights
    p = save_checkpoint(tmp_path / "m.pt", m)
    back = load_checkpoint(p, expect={"model": "factor_vae", "latent_dim": 4, "gamma": 6.4})
    assert isinstance(back, FactorVAE) and back.hparams == m.hparams
    for k, v in m.state_dict().items():  # includes discriminator.*
        assert torch.equal(v, back.state_dict()[k])
    assert any(k.startswith("discriminator.") for k in back.state_dict())
    x = batch(5).numpy()
    np.testing.assert_array_equal(m.represent(x), back.represent(x))


def test_training_loop_drives_two_optimisers_and_resumes(tmp_path):
    rng = np.random.default_rng(0)
    frames = (rng.random((48, 32, 32, 3)) > 0.6).astype(np.uint8) * 255
    s = TrainSettings(steps=4, batch_size=16, lr=1e-3, checkpoint_every=2, log_every=2, device="cpu", progress=False)
    res = train_vision(model(), frames, s, tmp_path)
    assert {"tc", "disc_loss", "disc_acc", "recon", "kl"} <= set(res.history)
    more = train_vision(model(), frames, replace(s, steps=6), tmp_path)  # resumes at step 4
    assert more.resumed_from == 4 and len(more.history["step"]) == 3


def test_represent_is_deterministic_in_eval_mode():
    m = model()
    x = batch(10).numpy()
    a, b = m.represent(x, batch_size=3), m.represent(x)
    assert a.shape == (10, 4) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert m.training


def test_bad_arguments():
    with pytest.raises(ValueError, match="gamma must be"):
        FactorVAE((3, 32, 32), gamma=-1.0)
    with pytest.raises(ValueError, match="disc_width and disc_depth"):
        FactorVAE((3, 32, 32), disc_depth=0)
    with pytest.raises(ValueError, match="disc_lr must be"):
        FactorVAE((3, 32, 32), disc_lr=0.0)
