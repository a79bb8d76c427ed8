"""The :class:`VisionModel` interface every stage-1 model implements.

A model encodes images to a Gaussian posterior (mu, logvar), decodes latents to pixel logits,
and returns its training objective as a :class:`LossOutput` (total + named terms for logging).
Most models differ only in :meth:`VisionModel.loss`; models with several optimisers (FactorVAE,
InfoGAN) override :meth:`configure_optimizers` and :meth:`train_step` as well, so the training
loop in :mod:`vision.train` stays one plain loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

LIKELIHOODS = ("bernoulli", "gaussian")


class LossOutput(NamedTuple):
    total: Tensor
    terms: dict[str, Tensor]


def reconstruction_loss(logits: Tensor, x: Tensor, likelihood: str) -> Tensor:
    """Negative log-likelihood summed over pixels, mean over the batch.

    ``bernoulli``: sigmoid cross-entropy (the disentanglement_lib convention, also for RGB).
    ``gaussian``: squared error of sigmoid(logits), i.e. a fixed-variance Gaussian up to constants.
    """
    n = x.shape[0]
    if likelihood == "bernoulli":
        return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / n
    if likelihood == "gaussian":
        return F.mse_loss(torch.sigmoid(logits), x, reduction="sum") / n
    raise ValueError(f"unknown likelihood {likelihood!r}; choose from {LIKELIHOODS}")


ST_BOUND = 6.0
"""|logit| past which :func:`straight_through_sigmoid` passes no push further out (σ(6) = 0.9975)."""


class _StraightThroughSigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, raw: Tensor) -> Tensor:
        ctx.save_for_backward(raw)
        return torch.sigmoid(raw)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (raw,) = ctx.saved_tensors
        # gradient descent moves raw by −grad: outward when −grad has raw's sign
        outward = (raw.abs() > ST_BOUND) & (grad * raw < 0)
        return grad.masked_fill(outward, 0.0)


def straight_through_sigmoid(raw: Tensor) -> Tensor:
    """σ(raw), whose backward pass hands the gradient of σ(raw) to raw unscaled: the sigmoid's factor
    σ'(raw) is left out, as a Bernoulli likelihood's gradient leaves it out of a squared error's.

    σ' is near 0 wherever the decoder is confidently wrong, as over a small object it has not drawn
    yet, and there it hides the object from a squared error (docs/experiments/reacher-methods-probe.md).
    Unlike the Bernoulli's, this gradient need not fade once a pixel is saturated the right way, and
    unbounded it drove logits to NaN, so a push outward from a logit already past ±:data:`ST_BOUND`
    is dropped.
    """
    return _StraightThroughSigmoid.apply(raw)


def gaussian_kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, σ²) ‖ N(0, 1)) per latent, averaged over the batch → shape (latent_dim,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).mean(dim=0)


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


class VisionModel(nn.Module):
    """Base class. Subclasses set ``name`` and implement :meth:`encode`, :meth:`decode`, :meth:`loss`.

    Constructor arguments other than ``obs_shape`` must be plain JSON-able values: they are saved
    in checkpoints (``self.hparams``) and rebuilt from them. A module argument (β-VAE-DAE's
    trained ``dae``) is recorded as the plain values that rebuild it, its weights in the state dict.
    Models read no files: :mod:`vision.registry` does.
    """

    name: ClassVar[str] = "base"
    #: The default learning rate for this model family (a config may override it).
    default_lr: ClassVar[float] = 1e-4
    #: False where ``configure_optimizers`` takes its rates from constructor arguments instead
    #: (InfoGAN's d_lr/g_lr): a config's ``vision.lr`` is then refused rather than ignored.
    uses_lr: ClassVar[bool] = True
    #: Constructor arguments that are not settings: objects or records that code passes in
    #: (β-VAE-DAE's trained ``dae``, and the ``dae_kwargs`` its checkpoint rebuilds it from). A
    #: config that names one is refused: YAML cannot hold a module.
    not_settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, obs_shape: Sequence[int], latent_dim: int = 10) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"obs_shape must be (C, H, W), got {tuple(obs_shape)}")
        self.obs_shape: tuple[int, int, int] = tuple(int(s) for s in obs_shape)  # type: ignore[assignment]
        self.latent_dim = int(latent_dim)
        self.hparams: dict[str, Any] = {"latent_dim": self.latent_dim}

    # -- the model ---------------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N, C, H, W) in [0, 1] → (mu, logvar), each (N, latent_dim)."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        """(N, latent_dim) → pixel logits (N, C, H, W)."""
        raise NotImplementedError

    def loss(self, x: Tensor, step: int) -> LossOutput:
        raise NotImplementedError

    # -- training hooks (overridden by multi-optimiser models) --------------------------------
    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=lr, betas=(0.9, 0.999))]

    def train_step(
        self,
        x: Tensor,
        step: int,
        optimizers: Sequence[torch.optim.Optimizer],
        scaler: Any = None,
        check_finite: bool = True,
    ) -> dict[str, Tensor]:
        """One optimisation step on batch ``x``; returns the detached loss terms for logging.

        The terms stay tensors on the model's device (scalars and per-latent vectors), so the
        training loop can average them without a host sync every step. With ``check_finite``
        a non-finite loss raises :class:`FloatingPointError` before any parameter update.
        """
        (opt,) = optimizers
        opt.zero_grad(set_to_none=True)
        return self.optimise(self.loss(x, step), opt, step, check_finite)

    @staticmethod
    def optimise(out: LossOutput, opt: torch.optim.Optimizer, step: int, check_finite: bool = True) -> dict[str, Tensor]:
        """Minimise ``out.total`` with one step of ``opt`` (its gradients already zeroed); detached terms.

        For single-optimiser models whose batch or loss differs from :meth:`loss` (DC-IGN).
        """
        if check_finite and not torch.isfinite(out.total):
            raise FloatingPointError(f"non-finite loss {out.total.item()} at step {step}")
        out.total.backward()
        opt.step()
        return {"loss": out.total.detach(), **{k: v.detach() for k, v in out.terms.items()}}

    # -- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, z: Tensor) -> Tensor:
        """The images (N, C, H, W) in [0, 1] that latents ``z`` stand for: every picture of a model
        (reconstructions, traversals, SCAN's sym2img) goes through here. ``sigmoid(decode(z))``
        unless the pixels of :meth:`decode` are not what the loss shapes (β-VAE-DAE)."""
        return torch.sigmoid(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        mu, _ = self.encode(x)
        return self.render(mu)

    @torch.no_grad()
    def represent(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Eval-mode posterior means for (N, C, H, W) float images in [0, 1]; batched, no grad."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = []
        try:
            for i in range(0, len(x), batch_size):
                xb = torch.as_tensor(np.asarray(x[i : i + batch_size], dtype=np.float32), device=device)
                out.append(self.encode(xb)[0].float().cpu().numpy())
        finally:
            self.train(was_training)
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.latent_dim), np.float32)

    @torch.no_grad()
    def kl_per_dim(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Mean KL to the prior per latent over images ``x`` (N, C, H, W) — for sorting/UDR."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        total = torch.zeros(self.latent_dim, dtype=torch.float64)
        try:
            for i in range(0, len(x), batch_size):
                xb = torch.as_tensor(np.asarray(x[i : i + batch_size], dtype=np.float32), device=device)
                mu, logvar = self.encode(xb)
                total += gaussian_kl_per_dim(mu.float(), logvar.float()).double().cpu() * len(xb)
        finally:
            self.train(was_training)
        return (total / max(len(x), 1)).numpy()
