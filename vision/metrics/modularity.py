"""Modularity and explicitness (Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings
with the F-Statistic Loss", sec. 4; disentanglement_lib protocol).

Modularity: m = (d × K) mutual information (nats) between each code, discretised into 20
equal-width bins over its train range (``utils.histogram_discretize``), and each factor
(sklearn ``mutual_info_score``). Per code i: 1 − (Σ_j m_ij² − max_j m_ij²) / (max_j m_ij² · (K − 1)),
and 0 if max_j m_ij = 0; the score is the mean over codes. Computed on the train points.

Explicitness: standardise codes with the train mean/std; per factor a LogisticRegression on all
codes; one-vs-rest ROC-AUC of ``predict_proba`` per class, macro-averaged over classes; mean over
factors, on the train and the test points. Classifier stated in full (``CLASSIFIER_KWARGS``):
``solver="lbfgs", C=1.0, l1_ratio=0.0 (L2), fit_intercept=True, max_iter=1000, tol=1e-4`` —
multinomial. dlib calls ``LogisticRegression()`` with library defaults, which changed in sklearn
0.22 (liblinear one-vs-rest, max_iter 100 → lbfgs multinomial); we pin lbfgs as
``beta_vae.py`` does and raise max_iter so it converges.

Deviations from dlib:
- Missing classes (dlib crashes): dlib binarises the labels with a ``MultiLabelBinarizer`` fitted
  on the labels being scored, so a class absent from the test split misaligns the columns with
  ``predict_proba``'s and ``roc_auc_score`` raises. We binarise against the classifier's own
  classes (one column per ``clf.classes_``, aligned with ``predict_proba``) and average the
  one-vs-rest AUC over the classes for which it is defined, i.e. that occur among the scored
  labels and do not make up all of them. Test points of a class never seen in training count as
  negatives for every class. A factor for which no class has a defined AUC (its scored labels
  are all one class) is left out of that split's mean; if no factor is left the explicitness is
  0.5 (chance AUC). The factors left out are listed under ``explicitness_skipped_train`` /
  ``_test``.
- A factor constant on the train points is skipped everywhere (no classifier can be fitted, and
  it carries no information); listed in ``skipped_factors``. Modularity's K counts the remaining
  factors. With K = 1 the per-code term is 0/0; we take it as 0 (a code can only be about the one
  factor), so each code with nonzero MI scores 1. If no factor remains every score is 0.0 except
  explicitness (0.5).
- Standardisation divides a constant code by 1 instead of 0 (``utils.standardize``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from envs.factors import GroundTruthData
from vision.metrics.utils import (
    RepresentFn,
    generate_batch_factor_code,
    histogram_discretize,
    mutual_info_matrix,
    standardize,
)

FULL: dict[str, Any] = {"num_train": 10_000, "num_test": 5_000, "num_bins": 20}
FAST: dict[str, Any] = {"num_train": 1_000, "num_test": 500, "num_bins": 20}

CLASSIFIER_KWARGS: dict[str, Any] = {
    "solver": "lbfgs",
    "C": 1.0,
    "l1_ratio": 0.0,
    "fit_intercept": True,
    "max_iter": 1000,
    "tol": 1e-4,
    "class_weight": None,
}
CHANCE_AUC = 0.5
#: BLAS/OpenMP threads for the LogisticRegression fits. 1: on the shared 2-core machine the
#: default (2 threads under load) made the same five fits ≈8× slower (13.0 s vs 1.7 s, 10k×10
#: codes, factor sizes 3, 6, 40, 32, 32); results do not depend on it.
NUM_THREADS = 1


def _modularity_from_mi(mi: np.ndarray) -> tuple[float, np.ndarray]:
    """(modularity, per-code modularity) of a (d, K) mutual information matrix (dlib ``modularity``)."""
    sq = np.square(np.asarray(mi, dtype=np.float64))
    max_sq = sq.max(axis=1)
    num_factors = sq.shape[1]
    denom = max_sq * (num_factors - 1)
    numer = sq.sum(axis=1) - max_sq
    ok = denom > 0
    delta = np.where(ok, numer / np.where(ok, denom, 1.0), 0.0)
    per_code = np.where(max_sq > 0, 1.0 - delta, 0.0)
    return float(per_code.mean()), per_code


def _ovr_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float | None:
    """Macro one-vs-rest ROC-AUC over the classes where it is defined; None if none is."""
    onehot = (np.asarray(y)[:, None] == classes[None, :]).astype(np.int64)  # (n, classes)
    aucs = [
        roc_auc_score(onehot[:, c], proba[:, c])
        for c in range(len(classes))
        if 0 < onehot[:, c].sum() < len(y)
    ]
    return float(np.mean(aucs)) if aucs else None


def _explicitness(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    random_state: int,
) -> tuple[float | None, float | None]:
    """(train AUC, test AUC) of one factor's LogisticRegression on standardised codes."""
    clf = LogisticRegression(**CLASSIFIER_KWARGS, random_state=random_state)
    clf.fit(x_train, y_train)
    return (
        _ovr_auc(y_train, clf.predict_proba(x_train), clf.classes_),
        _ovr_auc(y_test, clf.predict_proba(x_test), clf.classes_),
    )


def compute_modularity(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    *,
    num_bins: int = 20,
    random_state: int = 0,
) -> dict[str, Any]:
    """Modularity and explicitness on arrays: codes (n, d) float, factors (n, K) int classes."""
    x_train = np.asarray(train_codes, dtype=np.float64)
    x_test = np.asarray(test_codes, dtype=np.float64)
    varies = np.array([len(np.unique(c)) > 1 for c in train_factors.T], dtype=bool)
    kept = np.flatnonzero(varies)
    out: dict[str, Any] = {
        "scored_factors": kept.tolist(),
        "skipped_factors": np.flatnonzero(~varies).tolist(),
        "num_bins": num_bins,
        "classifier": "LogisticRegression",
        "classifier_kwargs": dict(CLASSIFIER_KWARGS),
    }
    if len(kept) == 0:
        return {
            "modularity": 0.0,
            "explicitness_train": CHANCE_AUC,
            "explicitness_test": CHANCE_AUC,
            "explicitness_skipped_train": [],
            "explicitness_skipped_test": [],
            **out,
        }
    mi = mutual_info_matrix(histogram_discretize(x_train, num_bins), train_factors[:, kept])
    modularity, per_code = _modularity_from_mi(mi)

    z_train, z_test = standardize(x_train, x_test)
    auc_train: dict[int, float | None] = {}
    auc_test: dict[int, float | None] = {}
    with threadpool_limits(limits=NUM_THREADS):  # see NUM_THREADS
        for j in kept:
            auc_train[j], auc_test[j] = _explicitness(
                z_train, train_factors[:, j], z_test, test_factors[:, j], random_state
            )

    def mean_defined(aucs: dict[int, float | None]) -> float:
        values = [a for a in aucs.values() if a is not None]
        return float(np.mean(values)) if values else CHANCE_AUC

    return {
        "modularity": modularity,
        "modularity_per_code": per_code.tolist(),
        "mutual_information": mi.tolist(),
        "explicitness_train": mean_defined(auc_train),
        "explicitness_test": mean_defined(auc_test),
        "explicitness_skipped_train": [int(j) for j, a in auc_train.items() if a is None],
        "explicitness_skipped_test": [int(j) for j, a in auc_test.items() if a is None],
        **out,
    }


def modularity(
    data: GroundTruthData,
    represent: RepresentFn,
    rng: np.random.Generator,
    *,
    num_train: int = FULL["num_train"],
    num_test: int = FULL["num_test"],
    num_bins: int = FULL["num_bins"],
) -> dict[str, Any]:
    """Modularity (key ``modularity``) and explicitness of ``represent`` on ``data``."""
    train = generate_batch_factor_code(data, represent, num_train, rng)
    test = generate_batch_factor_code(data, represent, num_test, rng)
    seed = int(rng.integers(2**31 - 1))
    out = compute_modularity(
        train.codes, train.factors, test.codes, test.factors, num_bins=num_bins, random_state=seed
    )
    return {**out, "num_train": num_train, "num_test": num_test}
