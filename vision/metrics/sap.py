"""SAP — Separated Attribute Predictability (Kumar et al. 2018, "Variational Inference of
Disentangled Latent Concepts from Unlabeled Observations", sec. 3; disentanglement_lib protocol).

Score matrix S (d latents × K factors):
- discrete factors (default): ``S[i, j]`` = test accuracy of a linear SVM predicting factor j from
  latent i alone, ``LinearSVC(C=0.01, class_weight="balanced")`` fitted on the train points;
- ``continuous=True``: ``S[i, j] = cov(z_i, v_j)² / (var z_i · var v_j)`` (R² of a 1-D linear fit,
  ddof=1) on the train points only (as dlib), 0 if var z_i ≤ 1e-12.
SAP = mean over factors of the gap between the two largest entries of the column.

Classifier stated in full (``SVC_KWARGS``): ``penalty="l2", loss="squared_hinge", C=0.01,
class_weight="balanced", multi_class="ovr", fit_intercept=True, intercept_scaling=1, tol=1e-4,
max_iter=1000, dual=False``. dlib ran sklearn < 1.5, whose default was ``dual=True``; sklearn
1.5+ defaults to ``dual="auto"``, which picks the primal for n_samples > n_features, as here. Both
solve the same convex problem (liblinear, intercept penalised as a feature), so they reach the
same classifier up to tolerance: measured on the benchmark's 10,000/5,000 codes (factor sizes
4, 4, 4, 3, 6; 10 latents × 5 factors) the 50 accuracies differ by ≤ 2e-4 and SAP is 0.03156
(primal) vs 0.03152 (dual); the primal was faster (0.37 s vs 0.63 s), neither warned. Codes are
not standardised (as dlib), so the scale of a latent matters through C.

Deviations from dlib (edge cases, where dlib crashes or returns NaN):
- a factor constant on the train points is skipped (LinearSVC needs two classes; dlib raises) and
  listed under ``skipped_factors``; in continuous mode a factor with var ≤ 1e-12 likewise (dlib
  divides by 0); if every factor is skipped SAP is 0.0;
- with a single latent the second-best score is taken as 0 (dlib raises an IndexError), so SAP is
  then the mean accuracy (resp. R²) — as ``utils.top_two_gap`` does for MIG.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.svm import LinearSVC

from envs.factors import GroundTruthData
from vision.metrics.utils import RepresentFn, generate_batch_factor_code, top_two_gap

FULL: dict[str, Any] = {"num_train": 10_000, "num_test": 5_000, "continuous": False}
FAST: dict[str, Any] = {"num_train": 1_000, "num_test": 500, "continuous": False}

SVC_KWARGS: dict[str, Any] = {
    "penalty": "l2",
    "loss": "squared_hinge",
    "C": 0.01,
    "class_weight": "balanced",
    "multi_class": "ovr",
    "fit_intercept": True,
    "intercept_scaling": 1,
    "tol": 1e-4,
    "max_iter": 1000,
    "dual": False,
}
VARIANCE_FLOOR = 1e-12


def _discrete_score_matrix(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    random_state: int,
) -> np.ndarray:
    """(d, K) test accuracies of one LinearSVC per (latent, factor) on that latent alone."""
    d, k = train_codes.shape[1], train_factors.shape[1]
    scores = np.zeros((d, k))
    for i in range(d):
        for j in range(k):
            clf = LinearSVC(**SVC_KWARGS, random_state=random_state)
            clf.fit(train_codes[:, i : i + 1], train_factors[:, j])
            scores[i, j] = np.mean(clf.predict(test_codes[:, i : i + 1]) == test_factors[:, j])
    return scores


def _continuous_score_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(d, K) R² = cov² / (var_z · var_y) per (latent, factor), ddof=1; 0 where var_z ≤ 1e-12."""
    z = codes - codes.mean(axis=0)
    y = factors - factors.mean(axis=0)
    n1 = max(len(codes) - 1, 1)
    cov = z.T @ y / n1  # (d, K)
    var_z = (z**2).sum(axis=0) / n1
    var_y = (y**2).sum(axis=0) / n1
    denom = np.outer(var_z, var_y)
    ok = (var_z[:, None] > VARIANCE_FLOOR) & (var_y[None, :] > VARIANCE_FLOOR)
    return np.where(ok, cov**2 / np.where(ok, denom, 1.0), 0.0)


def compute_sap(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    *,
    continuous: bool = False,
    random_state: int = 0,
) -> dict[str, Any]:
    """SAP on arrays: codes (n, d) float, factors (n, K) int (continuous mode: any numbers)."""
    x_train = np.asarray(train_codes, dtype=np.float64)
    if continuous:
        y = np.asarray(train_factors, dtype=np.float64)
        varies = (
            y.var(axis=0, ddof=1) > VARIANCE_FLOOR if len(y) > 1 else np.zeros(y.shape[1], bool)
        )
        kept = np.flatnonzero(varies)
        matrix = _continuous_score_matrix(x_train, y[:, kept])
    else:
        varies = np.array([len(np.unique(c)) > 1 for c in train_factors.T], dtype=bool)
        kept = np.flatnonzero(varies)
        matrix = _discrete_score_matrix(
            x_train,
            train_factors[:, kept],
            np.asarray(test_codes, dtype=np.float64),
            test_factors[:, kept],
            random_state,
        )
    gap = top_two_gap(matrix) if len(kept) else np.zeros(0)
    return {
        "sap": float(gap.mean()) if len(kept) else 0.0,
        "sap_per_factor": gap.tolist(),
        "score_matrix": matrix.tolist(),
        "scored_factors": kept.tolist(),
        "skipped_factors": np.flatnonzero(~varies).tolist(),
        "continuous": continuous,
        "classifier": None if continuous else "LinearSVC",
        "classifier_kwargs": None if continuous else dict(SVC_KWARGS),
    }


def sap(
    data: GroundTruthData,
    represent: RepresentFn,
    rng: np.random.Generator,
    *,
    num_train: int = FULL["num_train"],
    num_test: int = FULL["num_test"],
    continuous: bool = FULL["continuous"],
) -> dict[str, Any]:
    """SAP of ``represent`` on ``data`` under key ``sap``."""
    train = generate_batch_factor_code(data, represent, num_train, rng)
    test = generate_batch_factor_code(data, represent, num_test, rng)
    seed = int(rng.integers(2**31 - 1))
    out = compute_sap(
        train.codes,
        train.factors,
        test.codes,
        test.factors,
        continuous=continuous,
        random_state=seed,
    )
    return {**out, "num_train": num_train, "num_test": num_test}
