"""SCAN's sym2img scores (Higgins et al., 2018, §4), as pure functions of classifier predictions.

A factor classifier labels each imagined image with a value per factor, giving an (N, F) int
array ``pred_factors``. *Accuracy*: are the attributes the description specified present?
*Diversity*: do the unspecified attributes vary as much as in the data, i.e. how far is the
distribution of their predicted values from the true (uniform) one? Lower diversity is better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DIVERSITY_EPS = 1e-6
"""Pseudo-count added to every value's count before normalising, so that values never predicted
do not make log p̂ = −inf; with N samples its effect on the KL is O(K·eps/N), negligible."""


def _as_2d(pred_factors: np.ndarray) -> np.ndarray:
    pred = np.asarray(pred_factors)
    if pred.ndim != 2:
        raise ValueError(f"pred_factors must be (N, F), got shape {pred.shape}")
    return pred.astype(np.int64)


def accuracy(pred_factors: np.ndarray, specified: Mapping[int, int]) -> float:
    """Fraction of samples whose predicted values equal every specified ``{factor index: value}``.

    With nothing specified every sample trivially matches (1.0).
    """
    pred = _as_2d(pred_factors)
    if len(pred) == 0:
        raise ValueError("accuracy of zero samples is undefined")
    ok = np.ones(len(pred), dtype=bool)
    for f, v in specified.items():
        if not 0 <= int(f) < pred.shape[1]:
            raise ValueError(f"factor index {f} out of range for {pred.shape[1]} factors")
        ok &= pred[:, int(f)] == int(v)
    return float(ok.mean())


def diversity(
    pred_factors: np.ndarray,
    unspecified_factor_indices: Sequence[int],
    factor_sizes: Sequence[int],
    eps: float = DIVERSITY_EPS,
) -> float:
    """Mean over unspecified factors of KL(p̂ ‖ uniform), p̂ the predicted-value histogram.

    p̂_k = (count_k + eps) / (N + K·eps) for a factor with K values (see :data:`DIVERSITY_EPS`);
    KL(p̂ ‖ U) = Σ_k p̂_k log(K·p̂_k), in nats: 0 when the values are uniform, log K when all
    samples collapse to one value. Returns 0.0 when no factor is unspecified.
    """
    pred = _as_2d(pred_factors)
    if len(pred) == 0:
        raise ValueError("diversity of zero samples is undefined")
    kls = []
    for f in unspecified_factor_indices:
        k = int(factor_sizes[int(f)])
        col = pred[:, int(f)]
        if col.min() < 0 or col.max() >= k:
            raise ValueError(f"factor {f}: predicted values must lie in 0..{k - 1}")
        counts = np.bincount(col, minlength=k).astype(np.float64)
        p = (counts + eps) / (counts.sum() + k * eps)
        kls.append(float(np.sum(p * np.log(k * p))))
    return float(np.mean(kls)) if kls else 0.0
