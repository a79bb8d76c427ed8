"""β-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs").

The KL term of the ELBO, averaged over the data, splits into three parts (Chen et al., eq. 2):

    E_x KL(q(z|x) ‖ p(z)) = I_q(x; z)                      index-code mutual information (MI)
                          + KL(q(z) ‖ ∏_j q(z_j))          total correlation (TC)
                          + Σ_j KL(q(z_j) ‖ p(z_j))         dimension-wise KL (dw_kl)

and the objective is recon + α·MI + β·TC + γ·dw_kl. The aggregate posterior q(z) =
(1/N) Σ_n q(z|x_n) is estimated on the minibatch (:func:`log_qz_estimates`), which is why the
model needs the dataset size N. Each term is logged as estimated: the estimates are biased
(the TC one can go negative), and clamping them would hide that.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

from vision.vae import VAE

ESTIMATORS = ("mws", "mss")


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise log N(z; mu, exp(logvar)) (broadcasts)."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def _mss_log_weights(m: int, n: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Log importance weights of minibatch-stratified sampling (Chen et al. 2018, appendix C.2).

    Row i weights the batch's posteriors for z_i: its own q(z_i|x_i) by 1/N, one other sample
    (here i+1 mod M) by (N − M + 1)/(N(M − 1)), the remaining M − 2 by 1/(M − 1); each row sums to
    1. (The authors' code writes the diagonal with stride M, i.e. down a column — a known bug,
    rtqichen/beta-tcvae PR #1 — so this follows the paper.)
    """
    w = torch.full((m, m), 1.0 / (m - 1), device=device, dtype=dtype)
    i = torch.arange(m, device=device)
    w[i, i] = 1.0 / n
    w[i, (i + 1) % m] = (n - m + 1) / (n * (m - 1))
    return w.log()


def log_qz_estimates(
    z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: int, estimator: str = "mss"
) -> tuple[Tensor, Tensor]:
    """Per-sample (log q(z_i), log ∏_j q(z_ij)), each (M,), estimated on a batch of M codes.

    ``mws`` (minibatch-weighted sampling): log q(z_i) ≈ logsumexp_k log q(z_i|x_k) − log(N·M),
    likewise per dimension for the marginals. Its weights sum to 1/N rather than 1, so its
    log-densities run low and its TC carries a positive offset: exactly (D − 1)·log M when N = M,
    up to (D − 1)·log N when the posteriors overlap (MI and dw_kl shift too; their sum with TC
    does not). ``mss`` (minibatch-stratified sampling) weights form a proper mixture
    (:func:`_mss_log_weights`), so its terms need no such correction.
    Computed in float32 (float64 stays float64) whatever autocast gave; the marginals use a
    logsumexp per dimension.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    m = z.shape[0]
    if dataset_size < m:
        raise ValueError(f"dataset_size ({dataset_size}) must be ≥ the batch size ({m})")
    if estimator == "mss" and m < 2:
        raise ValueError("the mss estimator needs a batch of at least 2 codes")
    dtype = torch.promote_types(z.dtype, torch.float32)
    z, mu, logvar = z.to(dtype), mu.to(dtype), logvar.to(dtype)
    # log q(z_i,d | x_k,d): (M, M, D), row i = the code, column k = the posterior.
    mat = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    if estimator == "mws":
        const = math.log(dataset_size * m)
        log_qz = torch.logsumexp(mat.sum(2), dim=1) - const
        log_prod = (torch.logsumexp(mat, dim=1) - const).sum(1)
    else:
        logw = _mss_log_weights(m, dataset_size, z.device, dtype)
        log_qz = torch.logsumexp(logw + mat.sum(2), dim=1)
        log_prod = torch.logsumexp(logw[:, :, None] + mat, dim=1).sum(1)
    return log_qz, log_prod


def total_correlation(z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: int, estimator: str = "mss") -> Tensor:
    """The minibatch TC estimate mean_i [log q(z_i) − log ∏_j q(z_ij)] (not clamped)."""
    log_qz, log_prod = log_qz_estimates(z, mu, logvar, dataset_size, estimator)
    return (log_qz - log_prod).mean()


class BetaTCVAE(VAE):
    """recon + α·MI + β·TC + γ·dw_kl (Chen et al. 2018); ``dataset_size`` is N, required.

    Defaults: α = γ = 1 and β = 6 as in the paper's dSprites runs. ``estimator`` defaults to
    ``mss``, the estimator the authors' code calls "improved": its weights form a proper mixture,
    so the logged MI/TC/dw_kl sit on their true scale (MWS shifts them by constants).
    """

    name = "beta_tcvae"

    def __init__(
        self,
        obs_shape: Sequence[int],
        latent_dim: int = 10,
        *,
        dataset_size: int,
        beta: float = 6.0,
        alpha: float = 1.0,
        gamma: float = 1.0,
        estimator: str = "mss",
        likelihood: str = "bernoulli",
        channels: Sequence[int] | None = None,
        hidden: int = 256,
    ) -> None:
        super().__init__(obs_shape, latent_dim, likelihood, channels, hidden)
        if isinstance(dataset_size, bool) or not isinstance(dataset_size, numbers.Integral) or dataset_size < 1:
            raise ValueError(f"dataset_size must be an int ≥ 1 (the number of training images), got {dataset_size!r}")
        for key, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            if value < 0:
                raise ValueError(f"{key} must be ≥ 0, got {value}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        self.dataset_size, self.estimator = int(dataset_size), estimator
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.hparams.update(
            dataset_size=self.dataset_size, beta=self.beta, alpha=self.alpha, gamma=self.gamma, estimator=estimator
        )

    def regularizer(
        self, kl_per_dim: Tensor, step: int, z: Tensor, mu: Tensor, logvar: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        z32, mu32, lv32 = z.float(), mu.float(), logvar.float()
        log_qz_x = gaussian_log_density(z32, mu32, lv32).sum(1)
        log_pz = gaussian_log_density(z32, torch.zeros_like(z32), torch.zeros_like(z32)).sum(1)
        log_qz, log_prod = log_qz_estimates(z32, mu32, lv32, self.dataset_size, self.estimator)
        mi = (log_qz_x - log_qz).mean()
        tc = (log_qz - log_prod).mean()
        dw_kl = (log_prod - log_pz).mean()
        reg = self.alpha * mi + self.beta * tc + self.gamma * dw_kl
        return reg, {"mi": mi, "tc": tc, "dw_kl": dw_kl}
