"""SCAN's recombination operators AND, IN COMMON and IGNORE (Higgins et al., 2018, §3).

One small network, shared across latent dimensions and conditioned on a one-hot operator,
maps the two symbol posteriors of concepts y1, y2 to the posterior of the new concept. Per
latent dimension d its input is (mu1_d, σ1_d, mu2_d, σ2_d, onehot(op)) and its output is
(mu_d, logvar_d): the same weights for every d, like a 1×1 convolution over the latent axis,
so an operator learnt on some factors applies to all of them.

It is trained so that the recombined posterior matches q(z_y|y_result), the frozen SCAN
encoder's posterior for the symbol of the resulting concept, with the forward KL
KL(q(z|y_result) ‖ recombined) as in the paper. Set semantics on k-hot vectors
(:func:`apply_operator`): AND = union of attributes, IN COMMON = intersection,
IGNORE = difference y1 \\ y2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vision.nets import mlp
from vision.scan.model import SCAN, Posterior, gaussian_kl

OPERATORS: dict[str, int] = {"and": 0, "in_common": 1, "ignore": 2}
"""Operator name → one-hot index."""


def operator_index(op: str | int) -> int:
    if isinstance(op, int):
        if not 0 <= op < len(OPERATORS):
            raise ValueError(f"operator index {op} out of range 0..{len(OPERATORS) - 1}")
        return op
    key = op.strip().lower().replace(" ", "_")
    if key not in OPERATORS:
        raise ValueError(f"unknown operator {op!r}; choose from {list(OPERATORS)}")
    return OPERATORS[key]


def apply_operator(y1: Tensor, y2: Tensor, op: str | int) -> Tensor:
    """Set semantics on k-hot vectors (any shape, values in {0, 1}).

    AND → union (max), IN COMMON → intersection (product), IGNORE → y1 \\ y2 (y1·(1−y2)).
    """
    i = operator_index(op)
    if i == OPERATORS["and"]:
        return torch.maximum(y1, y2)
    if i == OPERATORS["in_common"]:
        return y1 * y2
    return y1 * (1.0 - y2)


def apply_operators(y1: Tensor, y2: Tensor, ops: Tensor) -> Tensor:
    """Batched :func:`apply_operator`: ``ops`` is an (N,) long tensor of operator indices."""
    results = torch.stack([apply_operator(y1, y2, i) for i in range(len(OPERATORS))], dim=0)
    return results[ops, torch.arange(len(ops), device=ops.device)]


class Recombinator(nn.Module):
    """The shared per-dimension operator network; ``hparams`` holds its JSON-able arguments."""

    def __init__(self, hidden: Sequence[int] = (32, 32)) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden]
        self.hparams: dict[str, Any] = {"hidden": hidden}
        self.net = mlp(4 + len(OPERATORS), 2, hidden)

    def forward(self, mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor, ops: Tensor) -> Posterior:
        """Posteriors (N, D) each and operator indices (N,) → recombined (mu, logvar) (N, D)."""
        n, d = mu1.shape
        onehot = nn.functional.one_hot(ops.long(), len(OPERATORS)).to(mu1.dtype)
        feats = torch.stack(
            [mu1, torch.exp(0.5 * logvar1), mu2, torch.exp(0.5 * logvar2)], dim=-1
        )  # (N, D, 4)
        feats = torch.cat([feats, onehot.unsqueeze(1).expand(n, d, len(OPERATORS))], dim=-1)
        mu, logvar = self.net(feats).unbind(dim=-1)  # the same MLP on every latent dim
        return Posterior(mu, logvar)

    def loss(self, scan: SCAN, y1: Tensor, y2: Tensor, ops: Tensor) -> Tensor:
        """KL(q(z|y_result) ‖ recombined), summed over latents, mean over the batch.

        The SCAN encoder is frozen here (no gradient reaches it).
        """
        with torch.no_grad():
            p1, p2 = scan.encode(y1), scan.encode(y2)
            target = scan.encode(apply_operators(y1, y2, ops))
        out = self(p1.mu, p1.logvar, p2.mu, p2.logvar, ops)
        return gaussian_kl(target.mu, target.logvar, out.mu, out.logvar).sum() / y1.shape[0]

    @torch.no_grad()
    def combine(self, scan: SCAN, y1: Tensor, y2: Tensor, op: str | int) -> Posterior:
        """The recombined posterior for descriptions y1, y2 ((V,) or (N, V)) under ``op``."""
        if y1.dim() == 1:
            y1, y2 = y1.unsqueeze(0), y2.unsqueeze(0)
        ops = torch.full((y1.shape[0],), operator_index(op), dtype=torch.long, device=y1.device)
        p1, p2 = scan.encode(y1.float()), scan.encode(y2.float())
        return self(p1.mu, p1.logvar, p2.mu, p2.logvar, ops)
