"""InfoGAN (Chen et al. 2016): a GAN whose generator input carries codes ``c`` that an auxiliary
network Q must recover from the image, so that ``c`` controls factors of the images.

Objective (paper eq. 5): min_{G,Q} max_D  V(D, G) − λ·L_I(G, Q), where
L_I = E_{c∼p(c), x∼G(z,c)}[log Q(c|x)] + H(c) ≤ I(c; G(z, c)) is a variational lower bound on
the mutual information. Choices made here (documented because sources differ):

- **Codes**: ``latent_dim`` continuous codes with the paper's uniform(−1, 1) prior, so
  H(c) = latent_dim·log 2; Q(c|x) is a factorised Gaussian (mean and log-variance). No
  categorical codes. Noise z ∼ N(0, I) of ``noise_dim`` (paper's MNIST setting: 62).
- **Networks**: G is :class:`~vision.nets.ConvDecoder` on [z, c] (pixel logits; D sees
  sigmoid(logits)). D's trunk is :class:`~vision.nets.ConvEncoder`'s conv + FC layers, its own
  ``head`` is D's real/fake logit, and Q is a small MLP on the same trunk features (paper: Q shares
  all of D's layers but one FC layer and its output).
- **Who gets the info gradient**: as in the authors' code (openai/InfoGAN, ``infogan_trainer.py``:
  ``discriminator_loss -= λ·mi_est`` and ``generator_loss -= λ·mi_est``), both players maximise
  L_I: D's step minimises d_loss + λ·info_nll on detached fakes, which trains Q (trunk and head),
  and G's step minimises g_loss + λ·info_nll. Optimisers: ``[D trunk + D head + Q head]`` with
  ``d_lr`` (paper 2e-4) and ``[G]`` with ``g_lr`` (paper 1e-3), both Adam β = (0.5, 0.999). (The
  other common split, Q's head in G's optimiser and the trunk trained by D's loss alone, did as
  well on our toy test; we follow the authors.) The ``lr`` given to
  :meth:`InfoGAN.configure_optimizers` is ignored: the two rates are hparams.
- **Adversarial loss**: non-saturating BCE (Goodfellow et al. 2014, as the paper's code).
- **Init**: He-normal weights (:func:`he_init`), because our nets have no batch norm.

As an encoder for stage 2 and the metrics, ``encode(x)`` is Q's (mean, log-variance) of the
codes; ``decode(c)`` is G with the noise set to zero (its mean), for traversals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision.base import LossOutput, VisionModel
from vision.nets import ConvDecoder, ConvEncoder, mlp, resolve_channels


def gaussian_nll(c: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """−log N(c; mu, exp(logvar)) summed over codes, mean over the batch (nats, with the 2π term)."""
    c, mu, logvar = c.float(), mu.float(), logvar.float()
    nll = 0.5 * (math.log(2 * math.pi) + logvar + (c - mu).pow(2) * torch.exp(-logvar))
    return nll.sum(dim=1).mean()


def he_init(module: nn.Module) -> None:
    """He (Kaiming) normal weights, zero biases, for every conv/linear layer.

    The paper's nets use batch norm; ours (shared with the VAEs) do not, and with torch's default
    init the activations shrink layer by layer, so G's output barely depends on c and Q barely
    sees it: the info term then learns very slowly. He init keeps the signal's scale.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), target))


class InfoGAN(VisionModel):
    """InfoGAN with continuous codes; Q's mean of the codes is the representation."""

    name = "infogan"
    default_lr = 2e-4
    uses_lr = False  # two players, two rates: d_lr and g_lr

    def __init__(
        self,
        obs_shape: Sequence[int],
        latent_dim: int = 10,
        noise_dim: int = 62,
        info_weight: float = 1.0,
        channels: Sequence[int] | None = None,
        hidden: int = 256,
        d_lr: float = 2e-4,
        g_lr: float = 1e-3,
    ) -> None:
        super().__init__(obs_shape, latent_dim)
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim (number of continuous codes) must be ≥ 1, got {latent_dim}")
        if noise_dim < 0:
            raise ValueError(f"noise_dim must be ≥ 0, got {noise_dim}")
        if info_weight < 0:
            raise ValueError(f"info_weight must be ≥ 0, got {info_weight}")
        if d_lr <= 0 or g_lr <= 0:
            raise ValueError(f"d_lr and g_lr must be > 0, got d_lr={d_lr}, g_lr={g_lr}")
        channels = resolve_channels(self.obs_shape, channels)
        self.noise_dim, self.info_weight = int(noise_dim), float(info_weight)
        self.d_lr, self.g_lr = float(d_lr), float(g_lr)
        self.hparams.update(
            noise_dim=self.noise_dim, info_weight=self.info_weight, channels=list(channels),
            hidden=int(hidden), d_lr=self.d_lr, g_lr=self.g_lr,
        )
        self.generator = ConvDecoder(self.noise_dim + self.latent_dim, self.obs_shape, channels, hidden)
        self.discriminator = ConvEncoder(self.obs_shape, 1, channels, hidden)  # .head: D's logit
        self.q_head = mlp(hidden, 2 * self.latent_dim, [hidden])
        he_init(self)
        #: H(c) of the uniform(−1, 1) prior, in nats.
        self.code_entropy = self.latent_dim * math.log(2.0)

    # -- the networks --------------------------------------------------------------------------
    def sample_latents(self, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(noise ∼ N(0, I), codes ∼ U(−1, 1)) from torch's global RNG."""
        noise = torch.randn(n, self.noise_dim, device=device)
        return noise, torch.rand(n, self.latent_dim, device=device) * 2.0 - 1.0

    def generate(self, noise: Tensor, c: Tensor) -> Tensor:
        """G(noise, c) → pixel logits."""
        return self.generator(torch.cat([noise, c.to(noise.dtype)], dim=1))

    def discriminate(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Images → (D's real/fake logit (N,), Q's code mean, Q's code log-variance)."""
        h = self.discriminator.features(x)
        mu, logvar = self.q_head(h).chunk(2, dim=1)
        return self.discriminator.head(h).squeeze(1), mu, logvar

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _, mu, logvar = self.discriminate(x)
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        noise = z.new_zeros(z.shape[0], self.noise_dim)  # the noise's mean: a deterministic image per code
        return self.generate(noise, z)

    # -- the two players' objectives ----------------------------------------------------------
    def _d_terms(self, x: Tensor, fake: Tensor, c: Tensor) -> dict[str, Tensor]:
        """D's BCE (real → 1, fake → 0) and Q's info NLL on the fakes, through one trunk pass."""
        logits, mu, logvar = self.discriminate(torch.cat([x, fake.to(x.dtype)]))
        n = len(x)
        real, fake_logit = logits.split(n)
        return {
            "d_loss": _bce(real, 1.0) + _bce(fake_logit, 0.0),
            "d_info_nll": gaussian_nll(c, mu[n:], logvar[n:]),
            "d_real": torch.sigmoid(real.detach().float()).mean(),  # mean D(x), for logging
            "d_fake": torch.sigmoid(fake_logit.detach().float()).mean(),
        }

    def _g_terms(self, fake: Tensor, c: Tensor) -> dict[str, Tensor]:
        logit, mu, logvar = self.discriminate(fake)
        info_nll = gaussian_nll(c, mu, logvar)
        return {"g_loss": _bce(logit, 1.0), "info_nll": info_nll, "mi_lower_bound": self.code_entropy - info_nll}

    def loss(self, x: Tensor, step: int) -> LossOutput:
        """Both players' terms on one draw of (noise, c); updates nothing.

        ``total`` = d_loss + g_loss + λ·info_nll is for logging only (no optimiser minimises a sum
        of the adversaries' losses); ``mi_lower_bound`` = H(c) − info_nll is L_I in nats.
        """
        noise, c = self.sample_latents(len(x), x.device)
        fake = torch.sigmoid(self.generate(noise, c))
        terms = {**self._d_terms(x, fake, c), **self._g_terms(fake, c)}
        total = terms["d_loss"] + terms["g_loss"] + self.info_weight * terms["info_nll"]
        return LossOutput(total, terms)

    # -- training -----------------------------------------------------------------------------
    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """[D trunk + D head + Q head, G]; ``lr`` is ignored in favour of ``d_lr`` / ``g_lr``."""
        d_params = [*self.discriminator.parameters(), *self.q_head.parameters()]
        return [
            torch.optim.Adam(d_params, lr=self.d_lr, betas=(0.5, 0.999)),
            torch.optim.Adam(self.generator.parameters(), lr=self.g_lr, betas=(0.5, 0.999)),
        ]

    def discriminator_step(
        self,
        x: Tensor,
        fake: Tensor,
        c: Tensor,
        opt_d: torch.optim.Optimizer,
        step: int = 0,
        check_finite: bool = True,
    ) -> dict[str, Tensor]:
        """One D + Q update on d_loss + λ·info NLL: real ``x`` vs ``fake`` (detached: G gets no gradient)."""
        opt_d.zero_grad(set_to_none=True)
        terms = self._d_terms(x, fake.detach(), c)
        objective = terms["d_loss"] + self.info_weight * terms["d_info_nll"]
        if check_finite and not torch.isfinite(objective):
            raise FloatingPointError(f"non-finite discriminator loss {objective.item()} at step {step}")
        objective.backward()
        opt_d.step()
        return {k: v.detach() for k, v in terms.items()}

    def train_step(
        self,
        x: Tensor,
        step: int,
        optimizers: Sequence[torch.optim.Optimizer],
        scaler: Any = None,
        check_finite: bool = True,
    ) -> dict[str, Tensor]:
        """A D + Q step, then a G step (non-saturating loss + λ·info NLL) against the updated D.

        The G step runs a fresh forward pass through D after D's in-place update, so no backward
        goes through a stale graph. A non-finite D loss raises before any update; a non-finite G
        loss raises before G's update (D has then taken its step; the loop discards the model).
        """
        opt_d, opt_g = optimizers
        noise, c = self.sample_latents(len(x), x.device)
        fake = torch.sigmoid(self.generate(noise, c))
        d_terms = self.discriminator_step(x, fake, c, opt_d, step, check_finite)

        opt_g.zero_grad(set_to_none=True)
        g_terms = self._g_terms(fake, c)
        g_total = g_terms["g_loss"] + self.info_weight * g_terms["info_nll"]
        if check_finite and not torch.isfinite(g_total):
            raise FloatingPointError(f"non-finite generator loss {g_total.item()} at step {step}")
        g_total.backward()
        opt_g.step()
        opt_d.zero_grad(set_to_none=True)  # D's gradients from the G step are not D's to use
        g_terms = {k: v.detach() for k, v in g_terms.items()}
        return {"loss": d_terms["d_loss"] + g_total.detach(), **d_terms, **g_terms}
