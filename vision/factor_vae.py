"""FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising").

The VAE objective plus γ·TC, where the total correlation KL(q(z) ‖ ∏_j q(z_j)) is estimated with
the density-ratio trick: a discriminator D tells codes of the batch ("real", class 0) from codes
whose latent columns were shuffled independently across the batch ("permuted", class 1, a sample
of ∏_j q(z_j)), and TC ≈ E[logit_real(z) − logit_permuted(z)]. The encoder, decoder and likelihood
are the VAE's; D is a submodule (so it is saved in checkpoints) with its own Adam.

Two pitfalls of other implementations are avoided here (see shared/notes/models.md):
- permuting along the wrong axis: :func:`permute_dims` shuffles dim 0 (the batch), with a
  separate permutation per latent column, so joint structure is destroyed but each marginal kept;
- stepping the VAE optimiser and then back-propagating D's loss through a graph whose encoder
  weights were changed in place (an error on modern torch): D's loss is built on ``z.detach()``,
  so its graph holds D's weights only, which the VAE optimiser never touches.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision.base import LossOutput, gaussian_kl_per_dim, reconstruction_loss, reparameterize
from vision.nets import mlp
from vision.vae import VAE


def permute_dims(z: Tensor) -> Tensor:
    """Shuffle each latent column independently across the batch (Kim & Mnih 2018, Alg. 1).

    Every column of the result is a permutation of the same column of ``z`` (its marginal is
    kept), but rows are not kept together, so the result samples ∏_j q(z_j). Uses torch's RNG.
    """
    idx = torch.rand(z.shape, device=z.device).argsort(dim=0)
    return z.gather(0, idx)


def _step(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class FactorVAE(VAE):
    """recon + KL + γ·TC with a discriminator TC estimate; two optimisers.

    ``gamma`` defaults to 35.0, the value Kim & Mnih (2018) report for dSprites and inside the
    range the notes give (γ ∈ {10 … 100}). The other common value, 6.4, comes from a
    re-implementation rather than the paper; pass it explicitly to reproduce that code.
    """

    name = "factor_vae"

    def __init__(
        self,
        obs_shape: Sequence[int],
        latent_dim: int = 10,
        gamma: float = 35.0,
        disc_width: int = 1000,
        disc_depth: int = 6,
        disc_lr: float = 1e-4,
        likelihood: str = "bernoulli",
        channels: Sequence[int] | None = None,
        hidden: int = 256,
    ) -> None:
        super().__init__(obs_shape, latent_dim, likelihood, channels, hidden)
        if gamma < 0:
            raise ValueError(f"gamma must be ≥ 0, got {gamma}")
        if disc_width < 1 or disc_depth < 1:
            raise ValueError(f"disc_width and disc_depth must be ≥ 1, got {disc_width} and {disc_depth}")
        if not disc_lr > 0:
            raise ValueError(f"disc_lr must be > 0, got {disc_lr}")
        self.gamma, self.disc_lr = float(gamma), float(disc_lr)
        self.hparams.update(gamma=self.gamma, disc_width=int(disc_width), disc_depth=int(disc_depth), disc_lr=self.disc_lr)
        # Paper appendix: 6 hidden layers of 1000 units, LeakyReLU(0.2), 2 logits (real, permuted).
        self.discriminator = mlp(
            self.latent_dim, 2, [int(disc_width)] * int(disc_depth), act=partial(nn.LeakyReLU, 0.2)
        )

    # -- objective --------------------------------------------------------------------------
    def tc_estimate(self, z: Tensor) -> Tensor:
        """TC ≈ mean over the batch of logit_real − logit_permuted = log D(z) / (1 − D(z))."""
        logits = self.discriminator(z).float()
        return (logits[:, 0] - logits[:, 1]).mean()

    def _objective(self, x: Tensor) -> tuple[LossOutput, Tensor]:
        """The VAE's loss and the sampled codes z (the discriminator trains on the same z)."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        recon = reconstruction_loss(self.decode(z), x, self.likelihood)
        kl_dims = gaussian_kl_per_dim(mu, logvar)
        tc = self.tc_estimate(z)
        terms = {"recon": recon, "kl": kl_dims.sum(), "kl_per_dim": kl_dims.detach(), "tc": tc}
        return LossOutput(recon + kl_dims.sum() + self.gamma * tc, terms), z

    def loss(self, x: Tensor, step: int) -> LossOutput:
        return self._objective(x)[0]

    def discriminator_loss(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(cross-entropy, accuracy) of D on real z (label 0) vs permuted z (label 1).

        Built on ``z.detach()``: no gradient reaches the encoder, and the graph holds D only.
        """
        z = z.detach()
        logits = self.discriminator(torch.cat([z, permute_dims(z)])).float()
        n = len(z)
        labels = torch.cat([torch.zeros(n, dtype=torch.long, device=z.device), torch.ones(n, dtype=torch.long, device=z.device)])
        acc = (logits.argmax(dim=1) == labels).float().mean()
        return F.cross_entropy(logits, labels), acc.detach()

    def discriminator_step(self, z: Tensor, optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
        """One discriminator update on codes ``z``; returns its detached loss and accuracy."""
        loss, acc = self.discriminator_loss(z)
        _step(optimizer, loss)
        return {"disc_loss": loss.detach(), "disc_acc": acc}

    # -- training ---------------------------------------------------------------------------
    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def vae_parameters(self) -> list[nn.Parameter]:
        own = {id(p) for p in self.discriminator.parameters()}
        return [p for p in self.parameters() if id(p) not in own]

    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """[VAE Adam (lr, β 0.9/0.999), discriminator Adam (disc_lr, β 0.5/0.9)] — disjoint."""
        return [
            torch.optim.Adam(self.vae_parameters(), lr=lr, betas=(0.9, 0.999)),
            torch.optim.Adam(self.discriminator_parameters(), lr=self.disc_lr, betas=(0.5, 0.9)),
        ]

    def train_step(
        self,
        x: Tensor,
        step: int,
        optimizers: Sequence[torch.optim.Optimizer],
        scaler: Any = None,
        check_finite: bool = True,
    ) -> dict[str, Tensor]:
        """VAE step with D's TC estimate, then one D step on the same (detached) codes.

        Both losses are built before any update so a non-finite one raises before weights
        change. D's loss graph covers D only (z is detached), and the VAE step changes no D
        weight, so its backward after the VAE step is valid; ``zero_grad`` drops the gradient
        the TC term left on D.
        """
        vae_opt, disc_opt = optimizers
        out, z = self._objective(x)
        disc_loss, disc_acc = self.discriminator_loss(z)
        if check_finite and not bool(torch.isfinite(out.total) & torch.isfinite(disc_loss)):
            raise FloatingPointError(
                f"non-finite loss (vae {out.total.item()}, discriminator {disc_loss.item()}) at step {step}"
            )
        _step(vae_opt, out.total)
        _step(disc_opt, disc_loss)
        terms = {k: v.detach() for k, v in out.terms.items()}
        return {"loss": out.total.detach(), **terms, "disc_loss": disc_loss.detach(), "disc_acc": disc_acc}
