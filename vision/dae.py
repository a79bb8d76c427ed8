"""DARLA's denoising autoencoder and the β-VAE-DAE that learns in its feature space.

Higgins et al. (2017, sec. 3.1 and appendix A.3.1): a β-VAE trained with pixel log-likelihood
gives blurry reconstructions that ignore small details, so DARLA replaces the pixel loss by a
squared error in the feature space of a *denoising autoencoder* J trained beforehand and then
frozen: ``‖J(x̂) − J(x)‖² + β·KL``. J is "a stack of DAE layers up to a certain layer depth (a
hyperparameter)" (SCAN, Higgins et al. 2018), and sources disagree on the layer: the bottleneck, or
the DAE's pre-sigmoid output. ``dae_layer`` chooses among those and the DAE encoder's conv layers
(``conv1`` is the first; ``conv1_pre`` is its map before the ReLU), default bottleneck
(shared/notes/models.md). A conv layer keeps J's features in place on the image, so an object that
is a few percent of the frame is a few percent of the loss; in the 100-unit bottleneck it may be
almost nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from vision.base import (
    LossOutput,
    VisionModel,
    gaussian_kl_per_dim,
    reconstruction_loss,
    reparameterize,
    straight_through_sigmoid,
)
from vision.nets import ConvDecoder, ConvEncoder, resolve_channels
from vision.vae import VAE

CORRUPTIONS = ("mask", "gaussian", "dropout")
DAE_LAYERS = ("bottleneck", "output", "conv1", "conv2", "conv3", "conv4", "conv5", "conv6",
              "conv1_pre", "conv2_pre", "conv3_pre", "conv4_pre", "conv5_pre", "conv6_pre")


class DAE(VisionModel):
    """Deterministic conv autoencoder trained to reconstruct the clean frame from a corrupted one.

    Corruptions (all drawn from torch's RNG, which the training loop seeds per step):
    ``mask`` — ``n_masks`` random rectangles (sides 10–50% of the image) set to zero, the
    occlusion masks of DARLA re-implementations; ``gaussian`` — additive N(0, noise_std²),
    clipped to [0, 1]; ``dropout`` — each pixel (all channels) zeroed with ``drop_prob``.

    ``encode`` returns the bottleneck as ``mu`` and a zero ``logvar`` placeholder: a DAE has no
    posterior, so its "KL per latent" in reports is just ½·E[z²], a measure of use, not a KL.
    """

    name = "dae"
    default_lr = 1e-3

    def __init__(
        self,
        obs_shape: Sequence[int],
        latent_dim: int = 100,
        corruption: str = "mask",
        n_masks: int = 2,
        noise_std: float = 0.3,
        drop_prob: float = 0.3,
        likelihood: str = "bernoulli",
        channels: Sequence[int] | None = None,
        hidden: int = 256,
    ) -> None:
        super().__init__(obs_shape, latent_dim)
        if corruption not in CORRUPTIONS:
            raise ValueError(f"corruption must be one of {CORRUPTIONS}, got {corruption!r}")
        if n_masks < 1 or noise_std < 0 or not 0 <= drop_prob < 1:
            raise ValueError(f"need n_masks ≥ 1, noise_std ≥ 0, 0 ≤ drop_prob < 1; got {n_masks}, {noise_std}, {drop_prob}")
        channels = resolve_channels(self.obs_shape, channels)
        self.corruption, self.likelihood = corruption, likelihood
        self.n_masks, self.noise_std, self.drop_prob = int(n_masks), float(noise_std), float(drop_prob)
        self.hparams.update(
            corruption=corruption, n_masks=self.n_masks, noise_std=self.noise_std, drop_prob=self.drop_prob,
            likelihood=likelihood, channels=list(channels), hidden=int(hidden),
        )
        self.encoder = ConvEncoder(self.obs_shape, self.latent_dim, channels, hidden)
        self.decoder = ConvDecoder(self.latent_dim, self.obs_shape, channels, hidden)

    def corrupt(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        if self.corruption == "gaussian":
            return (x + self.noise_std * torch.randn_like(x)).clamp(0.0, 1.0)
        if self.corruption == "dropout":
            keep = torch.rand(n, 1, h, w, device=x.device) >= self.drop_prob
            return x * keep
        keep = torch.ones(n, 1, h, w, device=x.device, dtype=torch.bool)
        ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        for _ in range(self.n_masks):
            size = (0.1 + 0.4 * torch.rand(n, 2, device=x.device)) * x.new_tensor([h, w])
            corner = torch.rand(n, 2, device=x.device) * (x.new_tensor([h, w]) - size)
            inside_y = (ys[None] >= corner[:, :1]) & (ys[None] < corner[:, :1] + size[:, :1])  # (n, h)
            inside_x = (xs[None] >= corner[:, 1:]) & (xs[None] < corner[:, 1:] + size[:, 1:])  # (n, w)
            keep &= ~(inside_y[:, None, :, None] & inside_x[:, None, None, :])
        return x * keep

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.encoder(x)
        return z, torch.zeros_like(z)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    @property
    def n_conv(self) -> int:
        return len(self.hparams["channels"])

    def conv_depth(self, layer: str) -> int:
        """k of a ``convk`` or ``convk_pre`` layer name, refused unless this DAE's encoder has that conv layer."""
        depth = int(layer[4:].removesuffix("_pre"))
        if not 1 <= depth <= self.n_conv:
            raise ValueError(f"dae_layer {layer!r}: the DAE has {self.n_conv} conv layers (conv1..conv{self.n_conv})")
        return depth

    def features(self, x: Tensor, layer: str) -> Tensor:
        """J(x) for β-VAE-DAE: the bottleneck code, the reconstruction's pre-sigmoid logits, or
        the encoder's k-th conv layer after its ReLU (``convk``) or before it (``convk_pre``), as a
        (N, C, H, W) map."""
        if layer.startswith("conv"):
            n = 2 * self.conv_depth(layer) - layer.endswith("_pre")
            return self.encoder.conv[:n](x)  # (Conv2d, ReLU) pairs
        z = self.encoder(x)
        return z if layer == "bottleneck" else self.decoder(z)

    def loss(self, x: Tensor, step: int) -> LossOutput:
        z = self.encoder(self.corrupt(x))
        recon = reconstruction_loss(self.decoder(z), x, self.likelihood)
        return LossOutput(recon, {"recon": recon})


class BetaVAEDAE(VAE):
    """β-VAE-DAE (DARLA): ``‖J(x̂) − J(x)‖² + β·KL`` with J a frozen, pretrained :class:`DAE`.

    ``dae`` is the trained DAE (the pipeline trains one first when the config names none). The
    model reads no files: :func:`vision.registry.make_model` turns a config's ``dae_checkpoint``
    into ``dae``. The DAE's architecture is copied into ``hparams["dae_kwargs"]`` and its weights
    into this model's state_dict, so a β-VAE-DAE checkpoint is self-contained: it is rebuilt from
    ``dae_kwargs`` (weights arriving with ``load_state_dict``) without the DAE. The DAE never
    trains: its parameters are frozen, left out of the optimiser, and the module is kept in eval
    mode whatever ``train()`` is called with.
    SCAN (Higgins et al. 2018) reports β = 53 with 32 latents; the default here is 1.

    ``straight_through`` departs from DARLA's gradient, not its loss: the decoder's sigmoid passes
    the gradient of x̂ to its logit without the factor σ' (:func:`vision.base.straight_through_sigmoid`).
    With ``dae_layer: conv1_pre`` (no sigmoid gate and no ReLU gate on the way back) it read
    reacher's 3-px target in most runs measured, where DARLA's own gradient rarely does; whether a
    run does is sensitive to summation order (docs/experiments/reacher-methods-probe.md).
    """

    name = "beta_vae_dae"
    requires: ClassVar[str] = "dae"
    not_settings = ("dae", "dae_kwargs")

    def __init__(
        self,
        obs_shape: Sequence[int],
        latent_dim: int = 10,
        beta: float = 1.0,
        dae_checkpoint: str | None = None,
        dae_kwargs: dict | None = None,
        dae_layer: str = "bottleneck",
        channels: Sequence[int] | None = None,
        hidden: int = 256,
        *,
        straight_through: bool = False,
        dae: DAE | None = None,
    ) -> None:
        super().__init__(obs_shape, latent_dim, "bernoulli", channels, hidden)
        del self.hparams["likelihood"]  # the reconstruction term lives in the DAE's feature space
        if beta < 0:
            raise ValueError(f"beta must be ≥ 0, got {beta}")
        if dae_layer not in DAE_LAYERS:
            raise ValueError(f"dae_layer must be one of {DAE_LAYERS}, got {dae_layer!r}")
        if dae_checkpoint is not None:  # a config-level name, resolved where files are read
            raise ValueError(
                "BetaVAEDAE reads no files: pass dae=<trained DAE>, or build it with "
                "vision.registry.make_model, which loads dae_checkpoint"
            )
        if dae is not None:
            if not isinstance(dae, DAE) or dae.obs_shape != self.obs_shape:
                raise ValueError(f"β-VAE-DAE needs a trained DAE for images {self.obs_shape}, got {dae!r:.80}")
            # Its own copy, not the caller's module (which freezing would change): built after the
            # VAE's layers, as the dae_kwargs path builds it, so a seeded build draws the same numbers.
            trained = dae
            dae = DAE(self.obs_shape, **trained.hparams)
            dae.load_state_dict(trained.state_dict())
        elif dae_kwargs is not None:
            dae = DAE(self.obs_shape, **dae_kwargs)  # weights arrive with load_state_dict
        else:
            raise ValueError("β-VAE-DAE needs a trained DAE: pass dae=<trained DAE> (the pipeline trains one first)")
        assert isinstance(dae, DAE)
        if dae_layer.startswith("conv"):
            dae.conv_depth(dae_layer)  # refused here, not at the first training step
        self.dae = dae.eval()
        self.dae.requires_grad_(False)
        self.beta, self.dae_layer, self.straight_through = float(beta), dae_layer, bool(straight_through)
        self.hparams.update(beta=self.beta, dae_checkpoint=None, dae_kwargs=dict(dae.hparams), dae_layer=dae_layer,
                            straight_through=self.straight_through)

    def train(self, mode: bool = True) -> BetaVAEDAE:
        super().train(mode)
        self.dae.eval()  # frozen: no dropout/batch-norm mode switches, ever
        return self

    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.999))]

    @torch.no_grad()
    def render(self, z: Tensor) -> Tensor:
        """The frozen DAE's reconstruction of the decoded image, as DARLA shows them.

        The loss only sees the decoder's output through the DAE's features, so the raw pixels
        ``sigmoid(decode(z))`` are unconstrained (noise-like); what the model encodes is what
        survives the DAE. Reconstructions, traversals and SCAN's images all come through here.
        """
        return self.dae.reconstruct(torch.sigmoid(self.decode(z)))

    def loss(self, x: Tensor, step: int) -> LossOutput:
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        raw = self.decode(z)
        x_hat = straight_through_sigmoid(raw) if self.straight_through else torch.sigmoid(raw)
        with torch.no_grad():
            target = self.dae.features(x, self.dae_layer)
        feats = self.dae.features(x_hat, self.dae_layer)
        recon = (feats.float() - target.float()).pow(2).flatten(1).sum(1).mean()
        kl_dims = gaussian_kl_per_dim(mu, logvar)
        terms = {"recon": recon, "kl": kl_dims.sum(), "kl_per_dim": kl_dims.detach()}
        return LossOutput(recon + self.beta * kl_dims.sum(), terms)
