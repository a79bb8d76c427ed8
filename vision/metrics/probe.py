"""Probe: per factor, how well a small MLP reads it from the codes (what a policy can use).

DCI's per-factor informativeness uses boosted trees with axis-aligned splits, fitted on the
metric's small sample. That is right for DCI (its importances must say *which* latent holds a
factor), but it understates what a policy can read when a factor is spread over several latents:
on seek-avoid a β = 0.01 VAE's agent position scored 0.85, 0.71 per coordinate under DCI's
probe and 0.99, 0.99 under this one (docs/experiments/seek-avoid-cpu.md). A linear probe is
not enough either: a code can hold the agent's *cell* linearly (0.99, 36-way) while "row 3" is a
union of six cells, which no hyperplane need separate (0.61 for that coordinate). Stage 2's
policies are MLPs, so the probe is one: a hidden layer of 256 ReLU units, early stopping on 10 %
of the training sample. It is not a disentanglement metric and is not in
:data:`vision.metrics.METRICS`; it draws its own sample, so it never changes a registry metric.
"""

from __future__ import annotations

import numpy as np
from sklearn.neural_network import MLPClassifier

from envs.factors import GroundTruthData
from vision.metrics.utils import RepresentFn, generate_batch_factor_code

N_TRAIN, N_TEST = 4000, 2000
HIDDEN = 256
#: (n_train, n_test) per metric settings: ``full`` is what README's tables use.
SIZES: dict[str, tuple[int, int]] = {"fast": (2000, 1000), "full": (N_TRAIN, N_TEST)}


def compute_probe(
    train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray, test_factors: np.ndarray,
    random_state: int = 0,
) -> np.ndarray:
    """(F,) test accuracy per factor of an MLP classifier on codes standardised by the train sample.

    A factor with one class in the training sample is predicted as that class.
    """
    mean, std = train_codes.mean(0), train_codes.std(0)
    std = np.where(std > 1e-8, std, 1.0)  # a dead latent stays zero instead of dividing by zero
    xtr, xte = (train_codes - mean) / std, (test_codes - mean) / std
    acc = np.empty(train_factors.shape[1])
    for j in range(train_factors.shape[1]):
        ytr, yte = train_factors[:, j], test_factors[:, j]
        if len(np.unique(ytr)) == 1:
            acc[j] = float(np.mean(yte == ytr[0]))
            continue
        clf = MLPClassifier((HIDDEN,), max_iter=500, early_stopping=True, random_state=random_state)
        clf.fit(xtr, ytr)
        acc[j] = clf.score(xte, yte)
    return acc


def probe_for_seed(data: GroundTruthData, represent: RepresentFn, seed: int, settings: str = "full") -> dict[str, float]:
    """:func:`mlp_probe` as stage 1, ``darla vision score`` and the perception curve run it: its own
    sample from the generator ``(seed, 1)`` (never the metrics' ``seed`` stream), sized by ``settings``."""
    return mlp_probe(data, represent, np.random.default_rng((seed, 1)), *SIZES[settings])


def mlp_probe(
    data: GroundTruthData, represent: RepresentFn, rng: np.random.Generator, n_train: int = N_TRAIN, n_test: int = N_TEST
) -> dict[str, float]:
    """Factor name → test accuracy of an MLP probe from ``represent``'s codes of iid renders."""
    train = generate_batch_factor_code(data, represent, n_train, rng)
    test = generate_batch_factor_code(data, represent, n_test, rng)
    acc = compute_probe(train.codes, train.factors, test.codes, test.factors, int(rng.integers(2**31 - 1)))
    return dict(zip(data.factor_names, acc.tolist()))
