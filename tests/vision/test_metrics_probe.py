"""The MLP probe: per-factor accuracy of a small MLP classifier from codes (vision.metrics.probe)."""

from __future__ import annotations

import numpy as np
from metric_toys import SIZES, ToyData, identity, zeros

from vision.metrics.probe import compute_probe, mlp_probe


def test_identity_is_read_and_zeros_are_chance():
    good = mlp_probe(ToyData(), identity, np.random.default_rng(0), n_train=2000, n_test=1000)
    assert list(good) == ["a", "b", "c"] and min(good.values()) >= 0.95, good
    none = mlp_probe(ToyData(), zeros, np.random.default_rng(0), n_train=2000, n_test=1000)
    # no information: the majority class of the training sample, about 1 / size
    assert all(acc <= 1 / size + 0.05 for acc, size in zip(none.values(), SIZES)), none


def test_a_factor_spread_over_rotated_latents_is_still_read():
    """One-hot cells mixed by a rotation: no single latent holds the factor, the probe still reads it."""
    rng = np.random.default_rng(0)
    y = rng.integers(6, size=3000)
    rot, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    codes = np.eye(6)[y] @ rot + 0.05 * rng.standard_normal((3000, 6))
    acc = compute_probe(codes[:2000], y[:2000, None], codes[2000:], y[2000:, None])
    assert acc.shape == (1,) and acc[0] >= 0.98, acc


def test_a_factor_no_hyperplane_separates_is_read():
    """XOR of two binary latents: a union of opposite corners, which a linear probe cannot read."""
    rng = np.random.default_rng(2)
    ab = rng.integers(2, size=(3000, 2))
    codes = ab + 0.1 * rng.standard_normal((3000, 2))
    y = (ab[:, 0] ^ ab[:, 1])[:, None]
    assert compute_probe(codes[:2000], y[:2000], codes[2000:], y[2000:])[0] >= 0.95


def test_a_factor_constant_in_training_is_its_one_class():
    rng = np.random.default_rng(1)
    codes = rng.standard_normal((100, 4))
    train_f = np.zeros((60, 1), dtype=np.int64)
    test_f = np.array([[0]] * 30 + [[1]] * 10)
    assert compute_probe(codes[:60], train_f, codes[60:], test_f)[0] == 0.75


def test_same_seed_same_accuracies():
    a = mlp_probe(ToyData(), identity, np.random.default_rng(3), n_train=500, n_test=200)
    b = mlp_probe(ToyData(), identity, np.random.default_rng(3), n_train=500, n_test=200)
    assert a == b
