"""SCAN (Higgins et al., ICLR 2018): symbols grounded in a frozen, disentangled visual latent space.

A symbol encoder q(z_y|y) maps a k-hot description ``y`` to a Gaussian over the vision model's
latents; a symbol decoder p(y|z_y) maps latents back to Bernoulli word probabilities. The
objective (to minimise) for pairs (y, x) is

    −E_{q(z_y|y)}[log p(y|z_y)] + β·KL(q(z_y|y) ‖ N(0, I)) + λ·KL(q(z_x|x) ‖ q(z_y|y))

with the *forward* KL from the visual posterior to the symbol posterior. Forward KL is
mass-covering: for a description that leaves a factor unspecified, q(z_y|y) must cover the
visual posteriors of every image it names, so the latents of that factor stay broad (≈ prior)
and sym2img samples vary them. The reverse KL (``kl_direction="reverse"``, the paper's SCAN_R
ablation) is mode-seeking and collapses those latents. Defaults β = 1, λ = 10 as in the paper.

The vision model is never trained here: its posterior is computed under ``torch.no_grad`` in
eval mode, and it is not part of :meth:`SCAN.parameters`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision.base import LossOutput, VisionModel, reparameterize
from vision.nets import mlp

KL_DIRECTIONS = ("forward", "reverse")


def gaussian_kl(mu_p: Tensor, logvar_p: Tensor, mu_q: Tensor, logvar_q: Tensor) -> Tensor:
    """KL(N(mu_p, σ_p²) ‖ N(mu_q, σ_q²)) elementwise (per latent dim), no reduction.

    = ½ [log σ_q² − log σ_p² + (σ_p² + (mu_p − mu_q)²) / σ_q² − 1].
    """
    return 0.5 * (logvar_q - logvar_p + (logvar_p.exp() + (mu_p - mu_q).pow(2)) / logvar_q.exp() - 1.0)


class Posterior(NamedTuple):
    mu: Tensor
    logvar: Tensor


@torch.no_grad()
def vision_posterior(vision_model: VisionModel, images: Tensor) -> Posterior:
    """q(z_x|x) of a frozen vision model: eval mode, no grad, restored train/eval mode after."""
    was_training = vision_model.training
    vision_model.eval()
    try:
        mu, logvar = vision_model.encode(images)
    finally:
        vision_model.train(was_training)
    return Posterior(mu.detach().float(), logvar.detach().float())


class SCAN(nn.Module):
    """Symbol encoder q(z_y|y) and decoder p(y|z_y) over a vision model's ``latent_dim`` latents.

    Constructor arguments are plain JSON-able values, kept in ``self.hparams`` (as for
    :class:`vision.base.VisionModel`) so a checkpoint can rebuild the model.
    """

    name = "scan"
    default_lr = 1e-4

    def __init__(
        self,
        vocab_size: int,
        latent_dim: int,
        hidden: Sequence[int] = (100, 100),
        beta: float = 1.0,
        lam: float = 10.0,
        kl_direction: str = "forward",
    ) -> None:
        super().__init__()
        if kl_direction not in KL_DIRECTIONS:
            raise ValueError(f"unknown kl_direction {kl_direction!r}; choose from {KL_DIRECTIONS}")
        if vocab_size < 1 or latent_dim < 1:
            raise ValueError(f"vocab_size and latent_dim must be ≥ 1, got {vocab_size}, {latent_dim}")
        if beta < 0 or lam < 0:
            raise ValueError(f"beta and lam must be ≥ 0, got {beta}, {lam}")
        self.vocab_size = int(vocab_size)
        self.latent_dim = int(latent_dim)
        self.beta = float(beta)
        self.lam = float(lam)
        self.kl_direction = kl_direction
        hidden = [int(h) for h in hidden]
        self.hparams: dict[str, Any] = {
            "vocab_size": self.vocab_size,
            "latent_dim": self.latent_dim,
            "hidden": hidden,
            "beta": self.beta,
            "lam": self.lam,
            "kl_direction": self.kl_direction,
        }
        self.encoder = mlp(self.vocab_size, 2 * self.latent_dim, hidden)
        self.decoder = mlp(self.latent_dim, self.vocab_size, list(reversed(hidden)))

    # -- the model ---------------------------------------------------------------------------
    def encode(self, y: Tensor) -> Posterior:
        """(N, V) k-hot → q(z_y|y) as (mu, logvar), each (N, latent_dim)."""
        mu, logvar = self.encoder(y).chunk(2, dim=-1)
        return Posterior(mu, logvar)

    def decode(self, z: Tensor) -> Tensor:
        """(N, latent_dim) → Bernoulli logits over the vocabulary (N, V)."""
        return self.decoder(z)

    def loss(self, y: Tensor, mu_x: Tensor, logvar_x: Tensor) -> LossOutput:
        """The SCAN objective for symbols ``y`` and (already computed, detached) q(z_x|x).

        Every term is summed over latents / words and averaged over the batch. Terms for
        logging: ``scan/recon``, ``scan/kl_prior``, ``scan/kl_vision`` (the direction chosen).
        """
        q = self.encode(y)
        z = reparameterize(q.mu, q.logvar)
        n = y.shape[0]
        recon = F.binary_cross_entropy_with_logits(self.decode(z), y, reduction="sum") / n
        zeros = torch.zeros_like(q.mu)
        kl_prior = gaussian_kl(q.mu, q.logvar, zeros, zeros).sum() / n
        mu_x, logvar_x = mu_x.detach(), logvar_x.detach()
        if self.kl_direction == "forward":
            kl_vision = gaussian_kl(mu_x, logvar_x, q.mu, q.logvar).sum() / n
        else:
            kl_vision = gaussian_kl(q.mu, q.logvar, mu_x, logvar_x).sum() / n
        total = recon + self.beta * kl_prior + self.lam * kl_vision
        return LossOutput(
            total, {"scan/recon": recon, "scan/kl_prior": kl_prior, "scan/kl_vision": kl_vision}
        )

    def loss_on_images(self, y: Tensor, images: Tensor, vision_model: VisionModel) -> LossOutput:
        """:meth:`loss` with q(z_x|x) from a frozen ``vision_model`` (no gradient reaches it)."""
        post = vision_posterior(vision_model, images)
        return self.loss(y, post.mu, post.logvar)

    def configure_optimizer(self, lr: float | None = None) -> torch.optim.Optimizer:
        """Adam over SCAN's own parameters only — never the vision model's."""
        return torch.optim.Adam(self.parameters(), lr=self.default_lr if lr is None else lr)

    def train_step(
        self,
        y: Tensor,
        images: Tensor,
        vision_model: VisionModel,
        optimizer: torch.optim.Optimizer,
        check_finite: bool = True,
    ) -> dict[str, Tensor]:
        """One optimisation step on (y, images); returns detached loss terms for logging."""
        optimizer.zero_grad(set_to_none=True)
        out = self.loss_on_images(y, images, vision_model)
        if check_finite and not torch.isfinite(out.total):
            raise FloatingPointError(f"non-finite SCAN loss {out.total.item()}")
        out.total.backward()
        optimizer.step()
        return {"scan/loss": out.total.detach(), **{k: v.detach() for k, v in out.terms.items()}}

    # -- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def sym2img(
        self,
        y: Tensor,
        vision_model: VisionModel,
        n: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Imagine: ``n`` samples z ~ q(z_y|y) per description, decoded by the vision decoder.

        ``y`` is (V,) or (B, V); returns images in [0, 1] of shape (B, n, C, H, W)
        (B = 1 for a single description). ``generator`` makes the samples reproducible.
        """
        if y.dim() == 1:
            y = y.unsqueeze(0)
        q = self.encode(y.float())
        b, d = q.mu.shape
        # Drawn on the CPU (where a seeded torch.Generator lives), then moved: same samples on any device.
        eps = torch.randn((b, n, d), generator=generator, dtype=q.mu.dtype).to(q.mu.device)
        z = q.mu.unsqueeze(1) + eps * torch.exp(0.5 * q.logvar).unsqueeze(1)
        was_training = vision_model.training
        vision_model.eval()
        try:
            x = vision_model.render(z.reshape(b * n, d))
        finally:
            vision_model.train(was_training)
        return x.reshape(b, n, *x.shape[1:])

    @torch.no_grad()
    def img2sym(self, images: Tensor, vision_model: VisionModel) -> Tensor:
        """Describe: vision posterior mean → SCAN decoder → word probabilities (N, V)."""
        post = vision_posterior(vision_model, images)
        return torch.sigmoid(self.decode(post.mu))
