"""β-TCVAE: minibatch log q(z) estimators on arrays, TC ≈ 0 vs > 0, the KL decomposition, the model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from vision.beta_tcvae import (
    BetaTCVAE,
    _mss_log_weights,
    gaussian_log_density,
    log_qz_estimates,
    total_correlation,
)
from vision.checkpoint import save_checkpoint
from vision.registry import load_checkpoint

SMALL = {"channels": [8, 8, 16, 16], "hidden": 32}


def batch(n: int = 16, side: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, side, side, generator=g) > 0.7).float()


def model(latent: int = 4, seed: int = 0, **kw) -> BetaTCVAE:
    torch.manual_seed(seed)
    return BetaTCVAE((3, 32, 32), latent, **{"dataset_size": 64, **SMALL, **kw})


def test_gaussian_log_density_matches_torch():
    g = torch.Generator().manual_seed(0)
    z, mu, lv = (torch.randn(7, 3, generator=g, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(gaussian_log_density(z, mu, lv), Normal(mu, torch.exp(0.5 * lv)).log_prob(z))


def test_mss_weights_follow_the_paper_and_rows_sum_to_one():
    m, n = 6, 100
    w = _mss_log_weights(m, n, torch.device("cpu"), torch.float64).exp()
    torch.testing.assert_close(w.sum(1), torch.ones(m, dtype=torch.float64))
    torch.testing.assert_close(w.diagonal(), torch.full((m,), 1 / n, dtype=torch.float64))
    for i in range(m):  # exactly one stratum weight per row, off the diagonal; the rest 1/(M − 1)
        strat = torch.isclose(w[i], torch.tensor((n - m + 1) / (n * (m - 1)), dtype=torch.float64))
        assert strat.sum() == 1 and not strat[i]
        rest = [j for j in range(m) if j != i and not strat[j]]
        torch.testing.assert_close(w[i, rest], torch.full((m - 2,), 1 / (m - 1), dtype=torch.float64))


def _brute_force(z, mu, lv, n, estimator):
    """Both estimators written out with loops (Chen et al. 2018, appendix C)."""
    m, d = z.shape
    dens = np.exp(gaussian_log_density(z[:, None, :], mu[None], lv[None]).numpy())  # q(z_i,d | x_k,d)
    if estimator == "mws":
        wts = np.full((m, m), 1 / (n * m))
    else:
        wts = np.full((m, m), 1 / (m - 1))
        for i in range(m):
            wts[i, i], wts[i, (i + 1) % m] = 1 / n, (n - m + 1) / (n * (m - 1))
    log_qz = [math.log(sum(wts[i, k] * dens[i, k].prod() for k in range(m))) for i in range(m)]
    log_prod = [sum(math.log(sum(wts[i, k] * dens[i, k, j] for k in range(m))) for j in range(d)) for i in range(m)]
    return torch.tensor(log_qz, dtype=torch.float64), torch.tensor(log_prod, dtype=torch.float64)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_log_qz_estimates_match_the_formulas(estimator):
    g = torch.Generator().manual_seed(3)
    z, mu = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)
    lv = 0.3 * torch.randn(5, 2, generator=g, dtype=torch.float64)
    got = log_qz_estimates(z, mu, lv, 50, estimator)
    want = _brute_force(z, mu, lv, 50, estimator)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])


def _codes(kind: str, m: int = 1000, sd: float = 0.3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """(z, mu, logvar, true TC of z's Gaussian distribution) for 3 latents, posterior sd ``sd``."""
    g = torch.Generator().manual_seed(0)
    u, v, w = (torch.randn(m, generator=g) for _ in range(3))
    if kind == "independent":
        mu, tc = torch.stack([u, v, w], 1), 0.0
    else:  # columns 0 and 1 share u: corr² = 1 / ((1 + sd²)(1 + 0.1² + sd²))
        mu = torch.stack([u, u + 0.1 * v, w], 1)
        tc = -0.5 * math.log(1 - 1 / ((1 + sd**2) * (1 + 0.01 + sd**2)))
    logvar = torch.full_like(mu, 2 * math.log(sd))
    return mu + sd * torch.randn(mu.shape, generator=g), mu, logvar, tc


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_tc_near_zero_for_independent_codes_and_positive_for_correlated(estimator):
    """1000 codes, posterior sd 0.3, dataset_size = batch size; tolerance 0.2 nats around the true TC.

    MWS's weights sum to 1/N, not 1, so at N = M its TC carries the constant (D − 1)·log M
    exactly (the log(N·M) of Chen et al.); it is removed before the comparison. MSS needs none.
    """
    offset = 2 * math.log(1000) if estimator == "mws" else 0.0
    est = {}
    for kind in ("independent", "correlated"):
        z, mu, logvar, true_tc = _codes(kind)
        est[kind] = float(total_correlation(z, mu, logvar, 1000, estimator)) - offset
        assert abs(est[kind] - true_tc) < 0.2, (kind, est[kind], true_tc)
    assert abs(est["independent"]) < 0.2 and est["correlated"] > 0.6


def test_tc_is_not_clamped():
    g = torch.Generator().manual_seed(0)  # a small batch of independent codes where the estimate dips below 0
    mu = torch.randn(64, 4, generator=g)
    z = mu + torch.randn(64, 4, generator=g)
    assert total_correlation(z, mu, torch.zeros(64, 4), 64, "mss") < 0


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_decomposition_sums_to_the_sampled_kl(estimator):
    """α = β = γ = 1: MI + TC + dw_KL = mean_i [log q(z_i|x_i) − log p(z_i)] on the same z."""
    m = model(alpha=1.0, beta=1.0, gamma=1.0, estimator=estimator)
    x = batch()
    torch.manual_seed(7)
    out = m.loss(x, 0)
    torch.manual_seed(7)  # the same reparameterisation noise
    mu, logvar = m.encode(x)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    sampled_kl = (Normal(mu, torch.exp(0.5 * logvar)).log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(1).mean()
    t = out.terms
    torch.testing.assert_close(t["mi"] + t["tc"] + t["dw_kl"], sampled_kl, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(out.total, t["recon"] + sampled_kl, atol=1e-3, rtol=1e-5)


def test_loss_terms_and_weights():
    m = model(alpha=0.5, beta=3.0, gamma=2.0)
    x = batch()
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (16, 4) and m.decode(mu).shape == x.shape
    out = m.loss(x, 0)
    t = out.terms
    assert set(t) == {"recon", "kl", "kl_per_dim", "mi", "tc", "dw_kl"}
    assert t["kl_per_dim"].shape == (4,) and torch.isfinite(out.total)
    torch.testing.assert_close(out.total, t["recon"] + 0.5 * t["mi"] + 3.0 * t["tc"] + 2.0 * t["dw_kl"])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # densities stay float32 under AMP
        t = m.loss(x, 0).terms
    assert all(t[k].dtype == torch.float32 for k in ("mi", "tc", "dw_kl"))


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    m = model()
    opts = m.configure_optimizers(1e-3)
    x = batch()

    def eval_loss() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return float(m.loss(x, 0).total)

    before = eval_loss()
    for step in range(5):
        m.train_step(x, step, opts)
    assert eval_loss() < before


def test_checkpoint_round_trip(tmp_path):
    m = model(estimator="mws", dataset_size=500)
    p = save_checkpoint(tmp_path / "m.pt", m)
    back = load_checkpoint(p, expect={"model": "beta_tcvae", "dataset_size": 500, "estimator": "mws"})
    assert isinstance(back, BetaTCVAE) and back.hparams == m.hparams and back.beta == 6.0
    x = batch(5).numpy()
    np.testing.assert_array_equal(m.represent(x), back.represent(x))


def test_represent_is_deterministic_in_eval_mode():
    m = model()
    x = batch(10).numpy()
    a, b = m.represent(x, batch_size=3), m.represent(x)
    assert a.shape == (10, 4) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"estimator must be one of \('mws', 'mss'\)"):
        model(estimator="bogus")
    with pytest.raises(ValueError, match="estimator must be one of"):
        log_qz_estimates(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4, 2), 10, "bogus")
    with pytest.raises(TypeError, match="dataset_size"):
        BetaTCVAE((3, 32, 32), 4)  # required: no silent default
    with pytest.raises(ValueError, match="dataset_size must be"):
        model(dataset_size=0)
    with pytest.raises(ValueError, match="beta must be"):
        model(beta=-1.0)
    with pytest.raises(ValueError, match=r"dataset_size \(8\) must be ≥ the batch size \(16\)"):
        model(dataset_size=8).loss(batch(), 0)
