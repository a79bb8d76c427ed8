"""UDR — Unsupervised Disentanglement Ranking (Duan et al. 2020, "Unsupervised Model Selection
for Variational Disentangled Representation Learning", ICLR; disentanglement_lib's
``evaluation/udr/metrics/udr.py``).

UDR ranks models *without labels*: a disentangled representation is one that other seeds of the
same hyperparameters find again, up to permutation and sign of the latents; entangled ones differ
by arbitrary rotations from seed to seed. Per model m the inputs are its mean codes on the same
images, (n, d_m), and its per-latent KL to the prior, (d_m,).

1. Standardise each model's codes (zero mean, unit std; a constant latent is divided by 1).
2. Latents with KL ≤ ``kl_threshold`` (0.01) are inactive and dropped (dlib zeroes them, then
   filters them out of the similarity matrix; dropping is the same thing).
3. For each ordered pair (i, j), i ≠ j, a similarity matrix R (d_i active × d_j active):
   ``"spearman"``: R[a, b] = |Spearman ρ(z_i[:, a], z_j[:, b])| (a constant latent correlates 0);
   ``"lasso"``: R = |coef|ᵀ of ``Lasso(alpha=0.1, fit_intercept=True, max_iter=1000, tol=1e-4,
   selection="cyclic")`` fitted to predict z_j from z_i (dlib's call with sklearn's defaults made
   explicit; "cyclic" uses no randomness).
4. Pair score, in the **paper's normalisation** (Duan et al. eq. 3)::

       UDR_ij = ( Σ_b max_a R[a,b]² / Σ_a R[a,b]  +  Σ_a max_b R[a,b]² / Σ_b R[a,b] ) / (d_i + d_j)

   A latent whose row or column sums to 0 contributes 0. dlib instead averages the two means,
   ``(mean_b(...) + mean_a(...)) / 2``; the two agree when d_i = d_j. A pair where either model
   has no active latent scores 0 (a collapsed model shares nothing).
5. Model score = median over partners j ≠ i of the pair score ``UDR_ji`` (dlib takes the column
   of its pairwise matrix; for Spearman UDR_ij = UDR_ji, for Lasso they differ).

Chance correlations count against a model: on n = 1,000 iid images, independent latents have
|ρ| ≈ 0.025 each, so even identical models with independent Gaussian latents score ≈0.89
(d = 5) or ≈0.83 (d = 10), not 1; scores are comparable only at equal n and similar d.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import Lasso

from vision.metrics.utils import standardize

KL_THRESHOLD = 0.01
LASSO_ALPHA = 0.1
SIMILARITIES: tuple[str, ...] = ("spearman", "lasso")
FULL: dict[str, Any] = {"num_images": 1_000, "similarity": "spearman", "kl_threshold": KL_THRESHOLD}
FAST: dict[str, Any] = {"num_images": 300, "similarity": "spearman", "kl_threshold": KL_THRESHOLD}
"""``num_images`` is for the caller that encodes images; the paper (and dlib) use 1,000."""


def _spearman_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(d_a, d_b) |Spearman ρ| between the columns of ``a`` (n, d_a) and ``b`` (n, d_b).

    Pearson correlation of average ranks (as ``scipy.stats.spearmanr``), in one matrix product
    instead of dlib's d_a·d_b calls. A constant column has no defined ρ; it scores 0.
    """
    ra = rankdata(a, axis=0)
    rb = rankdata(b, axis=0)
    ra -= ra.mean(axis=0)
    rb -= rb.mean(axis=0)
    na, nb = np.linalg.norm(ra, axis=0), np.linalg.norm(rb, axis=0)
    denom = np.outer(na, nb)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(denom > 0, (ra.T @ rb) / denom, 0.0)
    return np.clip(np.abs(rho), 0.0, 1.0)


def _lasso_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(d_a, d_b) |coefficients| of a Lasso predicting ``b`` from ``a`` (dlib, arguments pinned)."""
    model = Lasso(
        alpha=LASSO_ALPHA, fit_intercept=True, max_iter=1000, tol=1e-4, selection="cyclic"
    )
    model.fit(a, b)
    return np.abs(np.asarray(model.coef_).reshape(b.shape[1], a.shape[1])).T


_SIMILARITY = {"spearman": _spearman_matrix, "lasso": _lasso_matrix}


def _pair_score(r: np.ndarray) -> float:
    """Paper-normalised relative strength of a (d_a, d_b) similarity matrix; 0 if either is 0."""
    r = np.asarray(r, dtype=np.float64)
    d_a, d_b = r.shape
    if d_a == 0 or d_b == 0:
        return 0.0

    def terms(axis: int) -> np.ndarray:
        total = r.sum(axis=axis)
        peak = r.max(axis=axis)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, peak**2 / total, 0.0)

    return float((terms(0).sum() + terms(1).sum()) / (d_a + d_b))


def _check_inputs(
    codes: Sequence[np.ndarray], kls: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if len(codes) < 2:
        raise ValueError(
            f"UDR needs >= 2 models (got {len(codes)}): it scores a model by how well other "
            f"seeds of the same hyperparameters reproduce its latents"
        )
    if len(kls) != len(codes):
        raise ValueError(f"got codes for {len(codes)} models but KLs for {len(kls)}")
    codes = [np.asarray(c, dtype=np.float64) for c in codes]
    kls = [np.asarray(k, dtype=np.float64).reshape(-1) for k in kls]
    n = codes[0].shape[0] if codes[0].ndim == 2 else -1
    for m, (c, k) in enumerate(zip(codes, kls)):
        if c.ndim != 2 or c.shape[0] != n:
            raise ValueError(
                f"model {m}: codes must be (n, d) on the same n images as model 0 "
                f"(n = {n}), got shape {c.shape}"
            )
        if k.shape != (c.shape[1],):
            raise ValueError(f"model {m}: {c.shape[1]} latents but {k.size} KL values")
        if not (np.isfinite(c).all() and np.isfinite(k).all()):
            raise ValueError(f"model {m}: codes and KLs must be finite")
    if n < 2:
        raise ValueError(f"UDR needs codes on at least 2 images, got {n}")
    return codes, kls


def compute_udr(
    codes: Sequence[np.ndarray],
    kls: Sequence[np.ndarray],
    similarity: str = "spearman",
    *,
    kl_threshold: float = KL_THRESHOLD,
) -> dict[str, Any]:
    """UDR on arrays: ``codes[m]`` (n, d_m) mean codes on shared images, ``kls[m]`` (d_m,).

    Returns ``udr`` (per-model scores, in input order), ``udr_pairwise`` (m × m pair scores,
    row i = model i's latents as R's rows, NaN on the diagonal), ``num_active`` and
    ``active_latents`` per model, and the settings used.
    """
    if similarity not in _SIMILARITY:
        raise ValueError(f"unknown similarity {similarity!r}; choose from {list(SIMILARITIES)}")
    codes, kls = _check_inputs(codes, kls)
    active = [np.flatnonzero(k > kl_threshold) for k in kls]
    z = [standardize(c)[0][:, idx] for c, idx in zip(codes, active)]

    num_models = len(z)
    pairwise = np.full((num_models, num_models), np.nan)
    for i in range(num_models):
        for j in range(num_models):
            if i == j:
                continue
            if z[i].shape[1] == 0 or z[j].shape[1] == 0:
                pairwise[i, j] = 0.0
            else:
                pairwise[i, j] = _pair_score(_SIMILARITY[similarity](z[i], z[j]))
    scores = [float(np.median(np.delete(pairwise[:, i], i))) for i in range(num_models)]
    return {
        "udr": scores,
        "udr_pairwise": pairwise.tolist(),
        "num_active": [int(len(a)) for a in active],
        "active_latents": [a.tolist() for a in active],
        "similarity": similarity,
        "kl_threshold": float(kl_threshold),
        "num_images": int(codes[0].shape[0]),
        "normalisation": "paper: (sum over cols + sum over rows of max^2/sum) / (d_i + d_j)",
    }


def udr_from_codes(
    codes: Sequence[np.ndarray],
    kls: Sequence[np.ndarray],
    *,
    similarity: str = FULL["similarity"],
    kl_threshold: float = FULL["kl_threshold"],
) -> dict[str, Any]:
    """UDR model scores from each model's mean codes on the same images and per-latent KLs.

    ``codes[m]``: (n, d_m) mean codes of model m on one shared set of n images (the paper uses
    1,000); ``kls[m]``: (d_m,) average KL to the prior of each latent over those images.
    Models should share hyperparameters and differ in seed. Deterministic (no randomness is
    used). See the module docstring for the algorithm; ``udr`` holds the per-model scores.
    """
    return {
        **compute_udr(codes, kls, similarity, kl_threshold=kl_threshold),
        "num_models": len(codes),
    }
