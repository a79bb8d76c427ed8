"""β-VAE metric (Higgins et al. 2017, "β-VAE: Learning Basic Visual Concepts with a Constrained
Variational Framework", sec. 3; disentanglement_lib protocol).

One point: choose a factor k uniformly; draw two batches of ``batch_size`` factor vectors; copy
column k of the first into the second; encode both; feature = mean over the batch of
|z1 − z2|; label = k. A linear classifier predicts k from the feature; the score is its
accuracy on ``num_eval`` fresh points.

Classifier: ``LogisticRegression(solver="lbfgs", C=1.0, max_iter=1000, random_state=...)``.
dlib calls ``LogisticRegression(random_state=...)`` with library defaults, which changed in
sklearn 0.22 (liblinear one-vs-rest → lbfgs multinomial, max_iter 100); we pin lbfgs (the modern
default, multinomial) and raise max_iter to 1000 so it converges (dlib's 100 often warns).

Deviation from dlib: the points are generated in vectorised chunks (one ``represent`` call per
chunk of points instead of two per point) — same distribution, different random stream.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from envs.factors import GroundTruthData
from vision.metrics.utils import MAX_ENCODE_BATCH, RepresentFn, encode_factors

FULL: dict[str, Any] = {"num_train": 10_000, "num_eval": 5_000, "batch_size": 64}
FAST: dict[str, Any] = {"num_train": 300, "num_eval": 200, "batch_size": 16}

CLASSIFIER_KWARGS: dict[str, Any] = {"solver": "lbfgs", "C": 1.0, "max_iter": 1000, "tol": 1e-4}


def beta_vae_points(
    data: GroundTruthData,
    represent: RepresentFn,
    num_points: int,
    rng: np.random.Generator,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(features (num_points, d), labels (num_points,)) for the β-VAE metric."""
    num_factors = len(data.factor_sizes)
    chunk = max(1, MAX_ENCODE_BATCH // (2 * batch_size))
    features, labels = [], []
    for start in range(0, num_points, chunk):
        p = min(chunk, num_points - start)
        k = rng.integers(num_factors, size=p)
        f1 = np.asarray(data.sample_factors(p * batch_size, rng)).reshape(p, batch_size, -1)
        f2 = np.asarray(data.sample_factors(p * batch_size, rng)).reshape(p, batch_size, -1)
        rows = np.arange(p)
        f2[rows, :, k] = f1[rows, :, k]
        both = np.concatenate([f1.reshape(p * batch_size, -1), f2.reshape(p * batch_size, -1)])
        z = encode_factors(data, represent, both, rng)
        z1, z2 = z[: p * batch_size], z[p * batch_size :]
        features.append(np.abs(z1 - z2).reshape(p, batch_size, -1).mean(axis=1))
        labels.append(k)
    return np.concatenate(features), np.concatenate(labels)


def compute_beta_vae(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    eval_features: np.ndarray,
    eval_labels: np.ndarray,
    *,
    random_state: int = 0,
) -> dict[str, Any]:
    """Fit the linear classifier on β-VAE features; train and eval accuracy.

    If the training labels hold a single class the classifier predicts it (LogisticRegression
    refuses one class).
    """
    classes = np.unique(train_labels)
    if len(classes) < 2:
        train_acc = float(np.mean(train_labels == classes[0]))
        eval_acc = float(np.mean(eval_labels == classes[0]))
    else:
        clf = LogisticRegression(**CLASSIFIER_KWARGS, random_state=random_state)
        clf.fit(train_features, train_labels)
        train_acc = float(np.mean(clf.predict(train_features) == train_labels))
        eval_acc = float(np.mean(clf.predict(eval_features) == eval_labels))
    return {
        "beta_vae": eval_acc,
        "train_accuracy": train_acc,
        "eval_accuracy": eval_acc,
        "classifier": "LogisticRegression",
        "classifier_kwargs": dict(CLASSIFIER_KWARGS),
    }


def beta_vae(
    data: GroundTruthData,
    represent: RepresentFn,
    rng: np.random.Generator,
    *,
    num_train: int = FULL["num_train"],
    num_eval: int = FULL["num_eval"],
    batch_size: int = FULL["batch_size"],
) -> dict[str, Any]:
    """β-VAE metric of ``represent`` on ``data``: eval accuracy under key ``beta_vae``."""
    xtr, ytr = beta_vae_points(data, represent, num_train, rng, batch_size)
    xev, yev = beta_vae_points(data, represent, num_eval, rng, batch_size)
    seed = int(rng.integers(2**31 - 1))
    out = compute_beta_vae(xtr, ytr, xev, yev, random_state=seed)
    return {**out, "num_train": num_train, "num_eval": num_eval, "batch_size": batch_size}
