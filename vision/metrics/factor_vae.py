"""FactorVAE metric (Kim & Mnih 2018, "Disentangling by Factorising", sec. 4; disentanglement_lib
protocol).

1. Global variance: encode ``num_variance_estimate`` iid points, per-latent variance (ddof=1). A
   latent is *active* if its std ≥ ``prune_threshold`` (0.05, dlib's study config; dlib's code
   default is 0.0). No active latent → every score is 0.
2. One vote: choose a factor k uniformly; draw ``batch_size`` factor vectors; set column k of all
   of them to the value of the first; encode; local variance (ddof=1) per latent; the vote is
   (argmin over active latents of local_var / global_var, k).
3. Classifier: majority vote — each latent predicts the factor it received most training votes
   for (ties → the lowest factor index, ``np.argmax``). Accuracy = fraction of votes whose
   latent's prediction equals their factor; the score is the accuracy on ``num_eval`` fresh votes.

Deviations from dlib:
- dlib reports ``num_active_dims`` as ``len(mask)`` — the latent size, whatever was pruned. We
  report the number of active latents.
- A latent whose global variance is 0 is never active, even with ``prune_threshold=0`` (dlib
  would divide 0 by 0 and let ``argmin`` pick the NaN).
- Votes are generated in vectorised chunks (one ``represent`` call per chunk of up to
  ``MAX_ENCODE_BATCH`` images instead of one per vote) — the same distribution, a different
  random stream. Votes are indexed by the latent's own index rather than its position among the
  active latents; that relabels the columns of the vote matrix and leaves every accuracy unchanged.
- ``batch_size`` < 2 (or ``num_variance_estimate`` < 2) is rejected: a ddof=1 variance needs two
  samples (dlib would produce NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.factors import GroundTruthData
from vision.metrics.utils import (
    MAX_ENCODE_BATCH,
    RepresentFn,
    encode_factors,
    generate_batch_factor_code,
)

FULL: dict[str, Any] = {
    "num_train": 10_000,
    "num_eval": 5_000,
    "num_variance_estimate": 10_000,
    "batch_size": 64,
    "prune_threshold": 0.05,
}
FAST: dict[str, Any] = {
    "num_train": 500,
    "num_eval": 300,
    "num_variance_estimate": 1_000,
    "batch_size": 32,
    "prune_threshold": 0.05,
}


def factor_vae_batches(
    data: GroundTruthData,
    represent: RepresentFn,
    num_votes: int,
    rng: np.random.Generator,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(codes (num_votes, batch_size, d), fixed factor (num_votes,)) — the batches behind the votes."""
    num_factors = len(data.factor_sizes)
    chunk = max(1, MAX_ENCODE_BATCH // batch_size)
    codes, labels = [], []
    for start in range(0, num_votes, chunk):
        p = min(chunk, num_votes - start)
        k = rng.integers(num_factors, size=p)
        f = np.asarray(data.sample_factors(p * batch_size, rng)).reshape(p, batch_size, -1)
        rows = np.arange(p)
        f[rows, :, k] = f[rows, 0, k][:, None]
        z = encode_factors(data, represent, f.reshape(p * batch_size, -1), rng)
        codes.append(z.reshape(p, batch_size, -1))
        labels.append(k)
    return np.concatenate(codes), np.concatenate(labels)


def _active_dims(global_variances: np.ndarray, prune_threshold: float) -> np.ndarray:
    """(d,) bool: std ≥ threshold and variance > 0 (see the module docstring)."""
    return (np.sqrt(global_variances) >= prune_threshold) & (global_variances > 0)


def _votes(
    batch_codes: np.ndarray,
    labels: np.ndarray,
    global_variances: np.ndarray,
    active: np.ndarray,
    num_factors: int,
) -> np.ndarray:
    """(num_factors, d) int vote counts: ``votes[k, i]`` = batches fixing factor k won by latent i."""
    local = np.var(batch_codes, axis=1, ddof=1)  # (p, d)
    idx = np.flatnonzero(active)
    winner = idx[np.argmin(local[:, idx] / global_variances[idx], axis=1)]
    votes = np.zeros((num_factors, len(global_variances)), dtype=np.int64)
    np.add.at(votes, (labels, winner), 1)
    return votes


def _vote_accuracy(votes: np.ndarray, classifier: np.ndarray) -> float:
    total = votes.sum()
    return float(votes[classifier, np.arange(votes.shape[1])].sum() / total) if total else 0.0


def compute_factor_vae(
    codes: np.ndarray,
    train_batches: np.ndarray,
    train_labels: np.ndarray,
    eval_batches: np.ndarray,
    eval_labels: np.ndarray,
    *,
    num_factors: int,
    prune_threshold: float = 0.05,
) -> dict[str, Any]:
    """FactorVAE metric on arrays.

    ``codes`` (n, d): iid codes for the global variance. ``train_batches`` / ``eval_batches``
    (p, batch_size, d): the codes of each vote's batch; ``*_labels`` (p,): the factor fixed in it.
    """
    codes = np.asarray(codes, dtype=np.float64)
    if len(codes) < 2 or train_batches.shape[1] < 2:
        raise ValueError("FactorVAE needs ≥ 2 codes for the global variance and batch_size ≥ 2")
    global_variances = np.var(codes, axis=0, ddof=1)
    active = _active_dims(global_variances, prune_threshold)
    out: dict[str, Any] = {
        "num_active_dims": int(active.sum()),
        "prune_threshold": prune_threshold,
        "classifier": "majority vote",
    }
    if not active.any():
        return {"factor_vae": 0.0, "train_accuracy": 0.0, "eval_accuracy": 0.0, **out}
    train_votes = _votes(train_batches, train_labels, global_variances, active, num_factors)
    classifier = np.argmax(train_votes, axis=0)  # (d,) the factor each latent predicts
    eval_votes = _votes(eval_batches, eval_labels, global_variances, active, num_factors)
    eval_acc = _vote_accuracy(eval_votes, classifier)
    return {
        "factor_vae": eval_acc,
        "train_accuracy": _vote_accuracy(train_votes, classifier),
        "eval_accuracy": eval_acc,
        **out,
    }


def factor_vae(
    data: GroundTruthData,
    represent: RepresentFn,
    rng: np.random.Generator,
    *,
    num_train: int = FULL["num_train"],
    num_eval: int = FULL["num_eval"],
    num_variance_estimate: int = FULL["num_variance_estimate"],
    batch_size: int = FULL["batch_size"],
    prune_threshold: float = FULL["prune_threshold"],
) -> dict[str, Any]:
    """FactorVAE metric of ``represent`` on ``data``: eval accuracy under key ``factor_vae``."""
    if batch_size < 2 or num_variance_estimate < 2:
        raise ValueError(
            f"batch_size and num_variance_estimate must be ≥ 2 (ddof=1 variances), "
            f"got {batch_size} and {num_variance_estimate}"
        )
    codes = generate_batch_factor_code(data, represent, num_variance_estimate, rng).codes
    xtr, ytr = factor_vae_batches(data, represent, num_train, rng, batch_size)
    xev, yev = factor_vae_batches(data, represent, num_eval, rng, batch_size)
    out = compute_factor_vae(
        codes,
        xtr,
        ytr,
        xev,
        yev,
        num_factors=len(data.factor_sizes),
        prune_threshold=prune_threshold,
    )
    return {
        **out,
        "num_train": num_train,
        "num_eval": num_eval,
        "num_variance_estimate": num_variance_estimate,
        "batch_size": batch_size,
    }
