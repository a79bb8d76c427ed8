"""DC-IGN (Kulkarni et al. 2015): a VAE trained on batches in which only one factor varies.

Each latent group stands for one factor. For a batch in which factor k varies, group k passes
through; every other latent is clamped to its batch mean in the forward pass (so the decoder can
explain the batch's variation only with group k), and in the backward pass receives, instead of
the decoder's gradient, its difference from the batch mean (paper sec. 3.1: "we replace [the
gradients of the inactive units] with their difference from the mean"), which pushes the
inactive latents to be invariant within the batch.

The model draws its own batches from a ground-truth renderer (:meth:`DCIGN.attach_data`), so
``train_step`` ignores the content of the loop's batch. Batch types are uniform over factors by
default; ``factor_weights`` gives other ratios (the paper's extrinsic : intrinsic ≈ 1:1:1:10).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from envs.factors import GroundTruthData
from vision.base import LossOutput, gaussian_kl_per_dim, reconstruction_loss, reparameterize
from vision.vae import VAE


class GroupClamp(torch.autograd.Function):
    """Forward: ``active`` latents pass, the others become their batch mean.

    Backward: ``active`` latents get the upstream gradient; the others get exactly z − mean(z)
    (sign and scale as the paper: a descent step moves each z towards the batch mean). This is
    the gradient of ½·Σ_n ‖z_n − z̄‖² summed over the batch, i.e. N times the per-sample weight
    of our batch-mean reconstruction loss, and the decoder's gradient for those units is dropped.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, active: Tensor) -> Tensor:
        ctx.save_for_backward(z, active)
        return torch.where(active, z, z.mean(dim=0, keepdim=True).expand_as(z))

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None]:
        z, active = ctx.saved_tensors
        invariance = (z - z.mean(dim=0, keepdim=True)).to(grad_out.dtype)
        return torch.where(active, grad_out, invariance), None


class FactorBatch(NamedTuple):
    factor: int
    """Index of the factor that varies in this batch."""
    factors: np.ndarray
    """(n, F) int64 factor classes; only column ``factor`` differs between rows."""
    images: np.ndarray
    """(n, C, H, W) float32 in [0, 1]."""


class DCIGN(VAE):
    """DC-IGN: a (β-)VAE whose latent groups are trained on one-factor-varies batches."""

    name = "dcign"

    def __init__(
        self,
        obs_shape: Sequence[int],
        latent_dim: int = 10,
        beta: float = 1.0,
        factor_weights: list[float] | None = None,
        likelihood: str = "bernoulli",
        channels: Sequence[int] | None = None,
        hidden: int = 256,
    ) -> None:
        super().__init__(obs_shape, latent_dim, likelihood, channels, hidden)
        if beta < 0:
            raise ValueError(f"beta must be ≥ 0, got {beta}")
        if factor_weights is not None:
            factor_weights = [float(w) for w in factor_weights]
            if any(w < 0 for w in factor_weights) or sum(factor_weights) <= 0:
                raise ValueError(f"factor_weights must be ≥ 0 with a positive sum, got {factor_weights}")
        self.beta, self.factor_weights = float(beta), factor_weights
        self.hparams.update(beta=self.beta, factor_weights=factor_weights)
        self._data: GroundTruthData | None = None

    def regularizer(self, kl_per_dim, step, z, mu, logvar):
        return self.beta * kl_per_dim.sum(), {}

    # -- data ---------------------------------------------------------------------------------
    def attach_data(self, data: GroundTruthData, rng: np.random.Generator) -> None:
        """Give the model its renderer; draws the batch seed from ``rng`` (once).

        For a resumed run to draw the same batches, pass an ``rng`` seeded from the run's seed.
        """
        n_factors = len(data.factor_sizes)
        if self.latent_dim < n_factors:
            raise ValueError(
                f"latent_dim {self.latent_dim} is smaller than the data's {n_factors} factors "
                f"{list(data.factor_names)}: DC-IGN needs at least one latent per factor"
            )
        if self.factor_weights is not None and len(self.factor_weights) != n_factors:
            raise ValueError(
                f"factor_weights has {len(self.factor_weights)} entries but the data has "
                f"{n_factors} factors {list(data.factor_names)}"
            )
        w = np.ones(n_factors) if self.factor_weights is None else np.asarray(self.factor_weights)
        self._probs = w / w.sum()
        #: Contiguous latent groups, one per factor (sizes differ by at most one).
        self.groups = [(int(g[0]), int(g[-1]) + 1) for g in np.array_split(np.arange(self.latent_dim), n_factors)]
        self._seed = int(rng.integers(2**63 - 1))
        self._data = data

    def _require_data(self) -> GroundTruthData:
        if self._data is None:
            raise RuntimeError(
                "DCIGN draws its own one-factor-varies batches: call attach_data(data, rng) "
                "with the env's ground-truth renderer before training"
            )
        return self._data

    def _values_in_domain(self, data: GroundTruthData, base: np.ndarray, k: int) -> np.ndarray:
        """Values of factor k that keep ``base``'s scene inside the data's domain (held-out
        combinations are transfer targets and must never be seen)."""
        domain = getattr(data, "domain", None)
        if domain is None or k >= len(domain.space):
            return np.arange(data.factor_sizes[k])
        d = len(domain.space)
        others = [i for i in range(d) if i != k]
        match = (domain.combos[:, others] == base[others]).all(axis=1)
        values = np.unique(domain.combos[match, k])
        if not np.isin(base[k], values):
            raise ValueError(f"the data sampled scene {base[:d].tolist()} outside its domain {domain.name!r}")
        return values

    def batch_for_step(self, step: int, n: int) -> FactorBatch:
        """The batch of ``step`` (a function of the seed and step alone): factor k varies, the rest are fixed."""
        data = self._require_data()
        rng = np.random.default_rng([self._seed, step])
        k = int(rng.choice(len(self._probs), p=self._probs))
        base = np.asarray(data.sample_factors(1, rng)[0], dtype=np.int64)
        factors = np.repeat(base[None], n, axis=0)
        factors[:, k] = rng.choice(self._values_in_domain(data, base, k), size=n)
        return FactorBatch(k, factors, data.sample_observations_from_factors(factors, rng))

    # -- the model ----------------------------------------------------------------------------
    def active_mask(self, factor: int, device: torch.device | str = "cpu") -> Tensor:
        """(latent_dim,) bool: True on the latent group of ``factor``."""
        self._require_data()
        lo, hi = self.groups[factor]
        mask = torch.zeros(self.latent_dim, dtype=torch.bool, device=device)
        mask[lo:hi] = True
        return mask

    def grouped_loss(self, x: Tensor, factor: int) -> LossOutput:
        """recon + β·KL with every latent outside ``factor``'s group clamped (:class:`GroupClamp`)."""
        mu, logvar = self.encode(x)
        z = GroupClamp.apply(reparameterize(mu, logvar), self.active_mask(factor, x.device))
        recon = reconstruction_loss(self.decode(z), x, self.likelihood)
        kl_dims = gaussian_kl_per_dim(mu, logvar)
        terms = {
            "recon": recon,
            "kl": kl_dims.sum(),
            "kl_per_dim": kl_dims.detach(),
            "active_factor": recon.new_tensor(float(factor)),  # which batch type, for logging
        }
        return LossOutput(recon + self.beta * kl_dims.sum(), terms)

    def train_step(
        self,
        x: Tensor,
        step: int,
        optimizers: Sequence[torch.optim.Optimizer],
        scaler: Any = None,
        check_finite: bool = True,
    ) -> dict[str, Tensor]:
        """One step on this step's own batch (``x`` only gives the batch size and device)."""
        (opt,) = optimizers
        batch = self.batch_for_step(step, len(x))
        xb = torch.as_tensor(batch.images, device=x.device)
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            xb = xb.contiguous(memory_format=torch.channels_last)  # as the loop's batch (vision.train.memory_format)
        opt.zero_grad(set_to_none=True)
        return self.optimise(self.grouped_loss(xb, batch.factor), opt, step, check_finite)
