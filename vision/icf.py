"""Independently Controllable Factors (Thomas, Bengio et al. 2017): latents an agent can move one at a time.

An autoencoder f → K latents → decoder g, and K policies π_k(a | s) as heads on f's trunk.
Policy k should change latent k and nothing else; its *selectivity* under action a from state s is

    sel_k(s, a) = E_{s' ~ P(·|s,a)} [ |f_k(s') − f_k(s)| / (Σ_j |f_j(s') − f_j(s)| + ε) ]

(a step that moves nothing has selectivity 0), and the model minimises

    recon(s, g(f(s)))  −  λ · mean_k E_s E_{a ~ π_k(·|s)} [ sel_k(s, a) ].

**Which published variant.** The 2017 one (Bengio, Thomas et al., "Independently Controllable
Features", arXiv 1703.07718, and its long version "Independently Controllable Factors",
arXiv 1708.01289): one policy per latent, a deterministic autoencoder. Not the 2018
generalisation (arXiv 1802.09484), whose policies take a factor embedding φ and whose objective
adds a mutual-information term: it needs a generator of φ and an entropy estimate, and the 2017
form is what the DARLA comparison needs (one frozen encoder whose axes are controllable factors).
The papers maximise E[log sel]; we maximise E[sel] by default (``log_selectivity=False``, the
form of the issue and of several re-implementations): sel ∈ [0, 1] keeps the term bounded next to
the reconstruction, whereas log sel → −∞ for a latent no action can move (a floor colour), whose
1/sel gradient then swamps everything else. ``log_selectivity=True`` gives the paper's form,
with sel clamped below at ``ε`` so a non-moving latent costs log ε, not −∞.

**The expectation over actions.** Discrete actions (seek-avoid): exact. The env renders s' for
*every* action from the same state (:func:`envs.transitions.next_frames_for_every_action`), so
Σ_a π_k(a|s)·sel_k(s, a) is a sum, differentiable in π_k; no REINFORCE. Continuous actions
(reacher): the renderer is not differentiable in a, so the reparameterisation trick cannot reach
π; we use **REINFORCE** with a Gaussian π_k(a|s) = N(μ_k(s), σ_k(s)²): ``action_samples`` (≥ 2)
actions per state and latent, the leave-one-out mean of the other samples' selectivity as the
baseline; the encoder still gets the exact pathwise gradient of sel through f(s) and f(s').

**Data.** Like DC-IGN, the model draws its own batches (:meth:`ICF.attach_data` takes the env's
:class:`~envs.transitions.TransitionSource` over the *vision* domain; every state is checked to
lie in it), so ``train_step`` ignores the content of the training loop's batch. The batch of a
step is a function of the attach seed and the step (and of the loop's per-step torch seed for the
continuous actions), so a resumed run takes the same steps.

The representation stage 2 freezes is f(s) (``encode`` returns it as ``mu``, with a zero
``logvar`` placeholder: there is no posterior, so "KL per latent" is ½·E[f²], as for the DAE).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor, nn

from envs.factors import to_chw_float
from envs.transitions import (
    TransitionSource,
    next_frames,
    next_frames_for_every_action,
    sample_states,
)
from vision.base import LIKELIHOODS, LossOutput, VisionModel, reconstruction_loss
from vision.nets import ConvDecoder, ConvEncoder, resolve_channels


def selectivity(h: Tensor, h_next: Tensor, eps: float) -> Tensor:
    """sel[..., j] = |Δh_j| / (Σ_i |Δh_i| + ε) for codes ``h`` (..., K) and ``h_next`` (..., K)."""
    delta = (h_next - h).abs()
    return delta / (delta.sum(dim=-1, keepdim=True) + eps)


def expected_selectivity(pi: Tensor, sel: Tensor) -> Tensor:
    """E_{a ~ π_k}[sel_k] for policies ``pi`` (n, K, A) and selectivities ``sel`` (n, A, K) → (n, K)."""
    return (pi * sel.transpose(1, 2)).sum(dim=-1)


def action_kwargs(space: spaces.Space) -> dict[str, int]:
    """The constructor arguments that fit an action space: ``n_actions`` or ``action_dim``."""
    if isinstance(space, spaces.Discrete):
        return {"n_actions": int(space.n)}
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return {"action_dim": int(space.shape[0])}
    raise TypeError(f"ICF supports Discrete and 1-D Box action spaces, got {space}")


class TransitionBatch(NamedTuple):
    states: np.ndarray
    """(n, D) env states, all in the vision domain."""
    frames: np.ndarray
    """(n, C, H, W) float32 in [0, 1]: s."""
    next_frames: np.ndarray | None
    """(n, A, C, H, W) float32: s' under every action (discrete); None for continuous actions."""


class ICF(VisionModel):
    """Autoencoder + one policy head per latent, trained for reconstruction and selectivity.

    ``lam`` weighs the selectivity term against the reconstruction (summed over pixels, so its
    scale grows with the image); 100 is what learned the seek-avoid agent's row and column at 32 px
    (``tests/vision/test_icf.py``; 30 and 300 did worse there).
    """

    name = "icf"
    default_lr = 5e-4
    #: What :meth:`attach_data` takes: an env's :class:`~envs.transitions.TransitionSource`.
    learns_from: ClassVar[str] = "transitions"

    def __init__(
        self,
        obs_shape: Sequence[int],
        latent_dim: int = 10,
        n_actions: int | None = None,
        action_dim: int | None = None,
        lam: float = 100.0,
        eps: float = 1e-6,
        log_selectivity: bool = False,
        action_samples: int = 2,
        likelihood: str = "bernoulli",
        channels: Sequence[int] | None = None,
        hidden: int = 256,
    ) -> None:
        super().__init__(obs_shape, latent_dim)
        if (n_actions is None) == (action_dim is None):
            if n_actions is None:
                n_actions = 4  # seek-avoid's four moves; the pipeline passes the env's own space
            else:
                raise ValueError("give n_actions (discrete) or action_dim (continuous), not both")
        if n_actions is not None and n_actions < 2:
            raise ValueError(f"n_actions must be ≥ 2, got {n_actions}")
        if action_dim is not None and action_dim < 1:
            raise ValueError(f"action_dim must be ≥ 1, got {action_dim}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if lam < 0 or eps <= 0 or action_samples < 2:
            raise ValueError(f"need lam ≥ 0, eps > 0, action_samples ≥ 2; got {lam}, {eps}, {action_samples}")
        channels = resolve_channels(self.obs_shape, channels)
        self.discrete = n_actions is not None
        self.n_actions, self.action_dim = n_actions, action_dim
        self.lam, self.eps, self.log_selectivity = float(lam), float(eps), bool(log_selectivity)
        self.action_samples, self.likelihood = int(action_samples), likelihood
        self.hparams.update(
            n_actions=n_actions, action_dim=action_dim, lam=self.lam, eps=self.eps,
            log_selectivity=self.log_selectivity, action_samples=self.action_samples,
            likelihood=likelihood, channels=list(channels), hidden=int(hidden),
        )
        k = self.latent_dim
        self.encoder = ConvEncoder(self.obs_shape, k, channels, hidden)
        self.decoder = ConvDecoder(k, self.obs_shape, channels, hidden)
        per_head = n_actions if self.discrete else 2 * int(action_dim)  # logits, or (mean, log σ)
        self.policy = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, k * per_head))
        self._source: TransitionSource | None = None
        self._seed = 0

    # -- the autoencoder ----------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return h, torch.zeros_like(h)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def codes_and_policy(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(f(x) (n, K), the policy heads' raw outputs (n, K, ·)) from one pass of the trunk."""
        feats = self.encoder.features(x)
        return self.encoder.head(feats), self.policy(feats).view(len(x), self.latent_dim, -1)

    def policy_probs(self, x: Tensor) -> Tensor:
        """π_k(a | x) for a discrete action space: (n, K, A)."""
        if not self.discrete:
            raise TypeError("policy_probs is for discrete actions; this ICF has continuous ones")
        return F.softmax(self.codes_and_policy(x)[1], dim=-1)

    def _objective(self, sel: Tensor) -> Tensor:
        return torch.log(sel.clamp_min(self.eps)) if self.log_selectivity else sel

    # -- data -----------------------------------------------------------------------------------
    def attach_data(self, data: TransitionSource, rng: np.random.Generator) -> None:
        """Give the model its env transitions (a source over the vision domain); draws the batch
        seed from ``rng`` (once). For a resumed run to draw the same batches, pass an ``rng``
        seeded from the run's seed."""
        if not hasattr(data, "step_states"):
            raise TypeError(
                f"ICF learns from transitions: attach an envs.transitions.TransitionSource, not {type(data).__name__}"
            )
        mine = {"n_actions": self.n_actions} if self.discrete else {"action_dim": self.action_dim}
        theirs = action_kwargs(data.action_space)
        if mine != theirs:
            raise ValueError(f"this ICF was built for actions {mine}, but the env's action space is {data.action_space} ({theirs})")
        if tuple(data.observation_shape) != self.obs_shape:
            raise ValueError(f"the env renders {tuple(data.observation_shape)} frames but the model takes {self.obs_shape}")
        if isinstance(data.action_space, spaces.Box):
            self._low = torch.as_tensor(data.action_space.low, dtype=torch.float32)
            self._high = torch.as_tensor(data.action_space.high, dtype=torch.float32)
        self._seed = int(rng.integers(2**63 - 1))
        self._source = data

    def _require_data(self) -> TransitionSource:
        if self._source is None:
            raise RuntimeError(
                "ICF draws its own transitions: call attach_data(source, rng) with the env's "
                "envs.transitions.TransitionSource over the vision domain before training"
            )
        return self._source

    def batch_for_step(self, step: int, n: int) -> TransitionBatch:
        """The states of ``step`` (a function of the seed and step alone), their frames, and for
        discrete actions the next frame under every action."""
        source = self._require_data()
        rng = np.random.default_rng([self._seed, step])
        states = sample_states(source, n, rng)
        frames = to_chw_float(source.render_states(states))
        nxt = None
        if self.discrete:
            every = next_frames_for_every_action(source, states, rng)  # (n, A, H, W, C)
            nxt = to_chw_float(every.reshape(-1, *every.shape[2:])).reshape(n, self.n_actions, *frames.shape[1:])
        return TransitionBatch(states, frames, nxt)

    # -- the objective --------------------------------------------------------------------------
    def transition_loss(self, batch: TransitionBatch, device: torch.device | str, step: int = 0) -> LossOutput:
        """recon − λ·mean_k E_s E_{a~π_k}[sel_k] on one :class:`TransitionBatch`."""
        s = torch.as_tensor(batch.frames, device=device)
        n, k = len(s), self.latent_dim
        if self.discrete:
            a = self.n_actions
            assert batch.next_frames is not None
            s_next = torch.as_tensor(batch.next_frames, device=device).flatten(0, 1)
            h, heads = self.codes_and_policy(s)
            h_next = self.encoder(s_next).view(n, a, k)
            sel = selectivity(h[:, None], h_next, self.eps)  # (n, A, K)
            pi = F.softmax(heads, dim=-1)  # (n, K, A)
            per_latent = expected_selectivity(pi, sel)  # exact E_{a~π_k}[sel_k]
            gain = expected_selectivity(pi, self._objective(sel))
        else:
            h, heads = self.codes_and_policy(s)
            sel, logp = self._sampled_selectivity(batch.states, h, heads, device, step)  # (n, K, M)
            per_latent = sel.mean(-1)
            m = self.action_samples
            obj = self._objective(sel)
            baseline = (obj.sum(-1, keepdim=True) - obj) / (m - 1)  # leave-one-out over the M samples
            gain = (obj + (obj - baseline).detach() * logp).mean(-1)  # pathwise in f, REINFORCE in π
        recon = reconstruction_loss(self.decode(h), s, self.likelihood)
        mean_sel = per_latent.mean()
        total = recon - self.lam * gain.mean()
        terms = {
            "recon": recon,
            "selectivity": mean_sel,
            "selectivity_per_factor": per_latent.mean(0).detach(),
        }
        return LossOutput(total, terms)

    def _sampled_selectivity(
        self, states: np.ndarray, h: Tensor, heads: Tensor, device: torch.device | str, step: int
    ) -> tuple[Tensor, Tensor]:
        """Continuous actions: M actions per (state, latent) from π_k, rendered; (sel_k, log π_k(a|s)), each (n, K, M)."""
        source = self._require_data()
        n, k, m, d = len(h), self.latent_dim, self.action_samples, self.action_dim
        mean, log_std = heads[..., :d], heads[..., d:].clamp(-5.0, 2.0)
        dist = torch.distributions.Normal(mean[:, :, None], log_std.exp()[:, :, None])  # (n, K, 1, d)
        actions = dist.expand((n, k, m, d)).sample()
        logp = dist.log_prob(actions).sum(-1)  # (n, K, M)
        low, high = self._low.to(actions.device), self._high.to(actions.device)
        flat = torch.maximum(torch.minimum(actions, high), low).reshape(-1, d).cpu().numpy()
        rng = np.random.default_rng([self._seed, step, 1])
        reps = np.repeat(states, k * m, axis=0)
        frames = to_chw_float(next_frames(source, reps, flat, rng))
        h_next = self.encoder(torch.as_tensor(frames, device=device)).view(n, k, m, k)
        sel_all = selectivity(h[:, None, None], h_next, self.eps)  # (n, K, M, K)
        idx = torch.arange(k, device=h.device)
        sel = sel_all[:, idx, :, idx].permute(1, 0, 2)  # sel of latent k under policy k's actions: (n, K, M)
        return sel, logp

    def loss(self, x: Tensor, step: int) -> LossOutput:
        """The objective on this step's own transitions (``x`` gives only the batch size and device)."""
        return self.transition_loss(self.batch_for_step(step, len(x)), x.device, step)

    def train_step(
        self,
        x: Tensor,
        step: int,
        optimizers: Sequence[torch.optim.Optimizer],
        scaler: Any = None,
        check_finite: bool = True,
    ) -> dict[str, Tensor]:
        (opt,) = optimizers
        opt.zero_grad(set_to_none=True)
        return self.optimise(self.loss(x, step), opt, step, check_finite)

    # -- diagnostics ------------------------------------------------------------------------------
    @torch.no_grad()
    def selectivity_report(self, n_states: int, rng: np.random.Generator, batch_size: int = 64) -> dict[str, Any]:
        """What each policy moves, on ``n_states`` fresh states of the attached source (eval mode).

        - ``matrix[k][j]``: mean |Δf_j| under π_k (exact expectation over discrete actions; one
          sampled action per state for continuous ones);
        - ``selectivity[k]``: mean sel_k under π_k (the trained objective's per-latent term);
        - discrete only: ``per_action_abs[a][j]`` and ``per_action_signed[a][j]``, the mean |Δf_j|
          and mean Δf_j under action a (what each latent moves with), and ``policy[k][a]``, the
          mean π_k(a | s).
        """
        source = self._require_data()
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        k = self.latent_dim
        matrix, sel_sum = torch.zeros(k, k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
        a = self.n_actions or 0
        abs_sum, signed_sum = torch.zeros(a, k, dtype=torch.float64), torch.zeros(a, k, dtype=torch.float64)
        pi_sum = torch.zeros(k, a, dtype=torch.float64)
        gen = torch.Generator(device="cpu").manual_seed(int(rng.integers(2**62)))
        done = 0
        try:
            while done < n_states:
                n = min(batch_size, n_states - done)
                states = sample_states(source, n, rng)
                s = torch.as_tensor(to_chw_float(source.render_states(states)), device=device)
                h, heads = self.codes_and_policy(s)
                if self.discrete:
                    every = next_frames_for_every_action(source, states, rng)
                    h_next = self.encoder(torch.as_tensor(to_chw_float(every.reshape(-1, *every.shape[2:])), device=device)).view(n, a, k)
                    delta = h_next - h[:, None]  # (n, A, K)
                    pi = F.softmax(heads, dim=-1)  # (n, K, A)
                    matrix += torch.einsum("nka,naj->kj", pi, delta.abs()).double().cpu()
                    sel_sum += expected_selectivity(pi, selectivity(h[:, None], h_next, self.eps)).sum(0).double().cpu()
                    abs_sum += delta.abs().sum(0).double().cpu()
                    signed_sum += delta.sum(0).double().cpu()
                    pi_sum += pi.sum(0).double().cpu()
                else:
                    d = self.action_dim
                    mean, log_std = heads[..., :d].cpu(), heads[..., d:].clamp(-5.0, 2.0).exp().cpu()
                    act = mean + log_std * torch.randn(mean.shape, generator=gen)
                    act = torch.maximum(torch.minimum(act, self._high), self._low).reshape(-1, d).numpy()
                    frames = next_frames(source, np.repeat(states, k, axis=0), act, rng)
                    h_next = self.encoder(torch.as_tensor(to_chw_float(frames), device=device)).view(n, k, k)
                    delta = (h_next - h[:, None]).abs()  # (n, K policies, K latents)
                    matrix += delta.sum(0).double().cpu()
                    sel = selectivity(h[:, None], h_next, self.eps)
                    sel_sum += torch.diagonal(sel, dim1=1, dim2=2).sum(0).double().cpu()
                done += n
        finally:
            self.train(was)
        out: dict[str, Any] = {
            "n_states": int(n_states),
            "matrix": (matrix / n_states).tolist(),
            "selectivity": (sel_sum / n_states).tolist(),
            "actions": "discrete" if self.discrete else "continuous",
        }
        if self.discrete:
            out["per_action_abs"] = (abs_sum / n_states).tolist()
            out["per_action_signed"] = (signed_sum / n_states).tolist()
            out["policy"] = (pi_sum / n_states).tolist()
        return out


def code_ranges(codes: np.ndarray, q: float = 2.0) -> list[tuple[float, float]]:
    """Per latent, the [q, 100 − q] percentile range of ``codes`` (n, K): where an autoencoder's
    latents actually live, for traversals (a deterministic code has no prior to measure it in)."""
    lo, hi = np.percentile(codes, [q, 100.0 - q], axis=0)
    return [(float(a), float(b)) if b > a else (float(a) - 1.0, float(a) + 1.0) for a, b in zip(lo, hi)]


__all__ = ["ICF", "TransitionBatch", "action_kwargs", "code_ranges", "expected_selectivity", "selectivity"]
