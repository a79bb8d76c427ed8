"""Does a gate on the gradient hide reacher's target from darla's β-VAE-DAE? MLP probe per variant.

darla's β-VAE-DAE (β·KL + a squared error in the DAE's first conv map) encodes reacher's small
target slowly, in one run of four by 30k steps, and a pixel β-VAE whose loss is a squared error
of the sigmoid of its decoder's output does not by 30k; the same β-VAE with a Bernoulli
likelihood does (docs/experiments/reacher-methods-probe.md). Two things could gate the gradient that reaches a target the decoder
has not drawn yet: the sigmoid, flat where the decoder is confidently wrong, and conv1's ReLU, zero
for a filter that the drawn background does not excite. Each variant removes one or both and
trains as stage 1 trains the config's vision model (its frames, batch, lr, seed), then prints the
MLP probe of every factor at each of ``--at`` steps (resumable checkpoints under ``--out``):

- ``sig_relu``: the β-VAE-DAE's own loss (sigmoid output, conv1 after its ReLU), the reference;
- ``lin_relu``: the decoder's raw output into the DAE (no sigmoid), conv1 after its ReLU;
- ``lin_pre``: raw output, conv1 before its ReLU: the squared error of a linear filter of x̂ − x;
- ``sig_st``: the β-VAE-DAE's own loss, its value unchanged, with the sigmoid's gate removed from the
  backward pass only (straight through: the gradient reaches the logit as it reaches x̂). The
  decoder still draws through the sigmoid, which saturates, so a target can be painted over any
  background. A Bernoulli likelihood is to a pixel squared error of the sigmoid what this is to
  darla's loss: its gradient with respect to the logit is the residual the squared error hands
  to x̂, without the factor σ'(z). Unlike the Bernoulli's, that gradient does not fade once a
  pixel is saturated the right way (the DAE's features never match exactly), so a logit beyond
  ±``vision.base.ST_BOUND`` (6) gets no push further out (pure straight-through reached NaN within 1,000 steps);
- ``st_pre``: ``sig_st`` with the loss in conv1 before its ReLU (``lin_pre``'s layer): the saturating
  sigmoid drawn, no gate from the sigmoid or from the ReLU;
- ``sig_pre``: the sigmoid and its gate kept, the loss in conv1 before its ReLU: the sigmoid's gate
  alone (with ``sig_relu``, ``sig_st`` and ``st_pre``, each gate on and off);
- ``pix_lin``: a plain β-VAE, squared error of the decoder's raw output (no sigmoid, no DAE);
- ``bern``: a plain β-VAE with its Bernoulli likelihood, built and seeded as ``pix_lin`` is (the
  control: one change of loss on the same frames and initial weights);
- ``bern_mid``: the Bernoulli likelihood of the frame squeezed into [0.25, 0.75] (the encoder still
  sees the frame). There the sigmoid is nearly linear and its slope nearly the same at every pixel,
  so the likelihood weighs the residual much as a squared error does: if the Bernoulli's advantage
  comes from its curvature varying with the pixel's value (steep near 0 and 1), this loses it;
- ``pix_sig``: the squared error of the sigmoid of the decoder's output (``likelihood: gaussian``),
  built and seeded as ``bern`` is. Its gradient with respect to the logit is ``2(σ(z) − x)σ'(z)``,
  twice the Bernoulli's ``σ(z) − x``, times the sigmoid's gate;
- ``pix_st``: that squared error straight through the sigmoid, as ``sig_st``: the gradient
  ``2(σ(z) − x)``, twice the Bernoulli's, but for the outward pushes past ±6.

The DAE variants need a β-VAE-DAE config with ``dae_layer: conv1``; the DAE is pretrained once
(``vision.dae``) and shared by them.

    python benchmarks/loss_gate_probe.py CONFIG --variant lin_pre --at 10000 30000 --threads 1 \\
        -o vision.dae_layer=conv1 -o vision.beta=0.001
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import Tensor

from darla.config import load_config
from darla.stages.vision import train_settings, vision_frames, vision_ground_truth
from envs.registry import get_domain
from vision.base import (
    LossOutput,
    gaussian_kl_per_dim,
    reconstruction_loss,
    reparameterize,
    straight_through_sigmoid,
)
from vision.dae import BetaVAEDAE
from vision.metrics.probe import probe_for_seed
from vision.registry import get_model_class, make_model, model_kwargs
from vision.train import train_vision
from vision.vae import BetaVAE

#: Each β-VAE-DAE variant: what the decoder hands the DAE (its sigmoid, that sigmoid straight through,
#: or its raw output) and where in conv1 the loss is taken (after its ReLU, or before it).
DAE_VARIANTS = {
    "sig_relu": ("sigmoid", "conv1"),
    "lin_relu": ("raw", "conv1"),
    "lin_pre": ("raw", "conv1_pre"),
    "sig_st": ("straight_through", "conv1"),
    "st_pre": ("straight_through", "conv1_pre"),
    "sig_pre": ("sigmoid", "conv1_pre"),
}


def _kl_terms(recon: Tensor, mu: Tensor, logvar: Tensor, beta: float) -> LossOutput:
    kl = gaussian_kl_per_dim(mu, logvar)
    return LossOutput(recon + beta * kl.sum(), {"recon": recon, "kl": kl.sum(), "kl_per_dim": kl.detach()})


class GatedBetaVAEDAE(BetaVAEDAE):
    """The β-VAE-DAE with its loss in conv1, the sigmoid and conv1's ReLU each kept, removed or (the
    sigmoid) passed straight through. A variant that draws through the sigmoid is darla's own
    β-VAE-DAE at that ``dae_layer`` and ``straight_through`` (recorded in its checkpoint, so it loads
    as that model); only the raw-output variants need a loss of their own."""

    def __init__(self, *args, variant: str = "sig_relu", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if variant not in DAE_VARIANTS:
            raise ValueError(f"a β-VAE-DAE variant is one of {tuple(DAE_VARIANTS)}, got {variant!r}")
        if self.dae_layer != "conv1":
            raise ValueError(f"the variants move the loss in conv1; this model's dae_layer is {self.dae_layer!r}")
        self.variant = variant
        output, self.dae_layer = DAE_VARIANTS[variant]
        self.straight_through = output == "straight_through"
        self.hparams.update(dae_layer=self.dae_layer, straight_through=self.straight_through)

    def loss(self, x: Tensor, step: int) -> LossOutput:
        if DAE_VARIANTS[self.variant][0] != "raw":
            return super().loss(x, step)
        mu, logvar = self.encode(x)
        x_hat = self.decode(reparameterize(mu, logvar))
        with torch.no_grad():
            target = self.dae.features(x, self.dae_layer)
        feats = self.dae.features(x_hat, self.dae_layer)
        recon = (feats.float() - target.float()).pow(2).flatten(1).sum(1).mean()
        return _kl_terms(recon, mu, logvar, self.beta)


class LinearGaussianBetaVAE(BetaVAE):
    """A β-VAE whose reconstruction term is the squared error of the decoder's raw output."""

    def loss(self, x: Tensor, step: int) -> LossOutput:
        mu, logvar = self.encode(x)
        recon = (self.decode(reparameterize(mu, logvar)) - x).pow(2).flatten(1).sum(1).mean()
        return _kl_terms(recon, mu, logvar, self.beta)


class SqueezedBernoulliBetaVAE(BetaVAE):
    """A β-VAE whose reconstruction term is the Bernoulli likelihood of ``0.25 + 0.5·x``."""

    def loss(self, x: Tensor, step: int) -> LossOutput:
        mu, logvar = self.encode(x)
        logits = self.decode(reparameterize(mu, logvar))
        recon = reconstruction_loss(logits, 0.25 + 0.5 * x, "bernoulli")
        return _kl_terms(recon, mu, logvar, self.beta)


class SigmoidGaussianBetaVAE(BetaVAE):
    """A β-VAE whose reconstruction term is the squared error of the sigmoid of the decoder's output,
    through the sigmoid (``pix_sig``) or straight through it (``pix_st``)."""

    straight_through = False

    def loss(self, x: Tensor, step: int) -> LossOutput:
        mu, logvar = self.encode(x)
        raw = self.decode(reparameterize(mu, logvar))
        x_hat = straight_through_sigmoid(raw) if self.straight_through else torch.sigmoid(raw)
        recon = (x_hat - x).pow(2).flatten(1).sum(1).mean()
        return _kl_terms(recon, mu, logvar, self.beta)


class StraightThroughGaussianBetaVAE(SigmoidGaussianBetaVAE):
    straight_through = True


PIXEL_MODELS = {"pix_lin": LinearGaussianBetaVAE, "bern": BetaVAE, "bern_mid": SqueezedBernoulliBetaVAE,
                "pix_sig": SigmoidGaussianBetaVAE, "pix_st": StraightThroughGaussianBetaVAE}
VARIANTS = (*DAE_VARIANTS, *PIXEL_MODELS)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a β-VAE-DAE config (its vision block: frames, DAE, β, batch, lr)")
    ap.add_argument("--variant", choices=VARIANTS, required=True)
    ap.add_argument("--at", type=int, nargs="+", default=[10000, 30000], help="steps at which to probe")
    ap.add_argument("-o", "--set", "--override", dest="override", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="runs/loss_gate_probe", help="checkpoints (resumable) and VARIANT.json")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.override)
    v = cfg.vision
    if v.model != "beta_vae_dae":
        raise SystemExit(f"{args.config}: vision.model is {v.model!r}; the variants are built from a beta_vae_dae config")
    out = Path(args.out) / cfg.name
    dom = get_domain(cfg.env.name, cfg.env.domains.vision)
    t0 = time.time()
    frames = vision_frames(cfg, dom, print)
    data = vision_ground_truth(cfg, dom)
    obs_shape = (frames.shape[3], frames.shape[1], frames.shape[2])
    beta = float(v.params["beta"])
    torch.manual_seed(cfg.seed)
    if args.variant in PIXEL_MODELS:
        model = PIXEL_MODELS[args.variant](obs_shape, latent_dim=v.latent_dim, beta=beta)
    else:
        dae_dir = out / "pretrained_dae"
        dae = get_model_class("dae")(obs_shape, **v.dae.params)
        train_vision(dae, frames, train_settings(cfg, v.dae.steps, v.dae.lr, progress=False), dae_dir, resume=True)
        kwargs = model_kwargs(get_model_class(v.model), dict(v.params), v.n_frames)
        kwargs["dae_checkpoint"] = str(dae_dir / "model.pt")
        torch.manual_seed(cfg.seed)  # the same initial weights as stage 1's model of this config
        base = make_model(v.model, obs_shape, latent_dim=v.latent_dim, **kwargs)
        model = GatedBetaVAEDAE(obs_shape, latent_dim=v.latent_dim, beta=base.beta, dae=base.dae,
                                dae_layer=base.dae_layer, variant=args.variant)
        model.load_state_dict(base.state_dict())
    print(f"{args.variant}: {type(model).__name__}, β {model.beta}; frames and DAE in {time.time() - t0:.0f} s", flush=True)
    points = []
    for steps in sorted(args.at):
        t = time.time()
        res = train_vision(model, frames, train_settings(cfg, steps, v.lr, progress=False), out / args.variant, resume=True)
        if res.resumed_from > steps:
            raise SystemExit(f"{out / args.variant} holds a model trained to step {res.resumed_from}, past --at {steps}")
        probe = probe_for_seed(data, model.represent, cfg.seed)
        points.append({"steps": steps, "train_s": round(time.time() - t, 1), "probe_test_per_factor": probe,
                       "loss": {k: vals[-1] for k, vals in res.history.items() if vals and k != "step"}})
        print(f"{args.variant} {steps:>6} ({time.time() - t:.0f} s)  " + "  ".join(f"{k} {p:.2f}" for k, p in probe.items()),
              flush=True)
        (out / f"{args.variant}.json").write_text(json.dumps({"config": args.config, "overrides": args.override,
                                                               "points": points}, indent=1))
    return {"variant": args.variant, "points": points}


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "loss_gate_probe.py"))
