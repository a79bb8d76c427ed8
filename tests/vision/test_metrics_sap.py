"""SAP: hand-computed accuracies and gaps, the continuous R² mode, sanity bounds, edge cases."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from metric_toys import SIZES, ToyData

from envs.factors import sample_uniform_factors
from vision.metrics.sap import FAST, FULL, compute_sap, sap


def split(n_train=600, n_test=300, seed=0):
    """Factors and identity codes (centred factor classes + tiny noise) for train and test."""
    rng = np.random.default_rng(seed)
    f = sample_uniform_factors(SIZES, n_train + n_test, rng)
    z = f - (np.asarray(SIZES) - 1) / 2 + 0.01 * rng.normal(size=f.shape)
    return z[:n_train], f[:n_train], z[n_train:], f[n_train:]


ROT = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]


def test_settings_are_the_public_keywords():
    params = set(inspect.signature(sap).parameters) - {"data", "represent", "rng"}
    assert set(FULL) == set(FAST) == params and FULL["continuous"] is False


def test_hand_computed_accuracies_and_gap():
    # One binary factor, symmetric train codes ±10 → threshold at 0 for both latents.
    y_train = np.array([0, 0, 1, 1])
    x_train = np.array([[-10.0, -10.0], [-10.0, -10.0], [10.0, 10.0], [10.0, 10.0]])
    y_test = np.array([0, 0, 1, 1])
    x_test = np.array([[-10.0, -10.0], [-10.0, 10.0], [10.0, 10.0], [10.0, 10.0]])  # latent 1: 3/4
    out = compute_sap(x_train, y_train[:, None], x_test, y_test[:, None])
    assert np.allclose(out["score_matrix"], [[1.0], [0.75]])
    assert out["sap"] == pytest.approx(0.25)
    # Two factors: the gap is averaged over factors (factor 1 is read by latent 1 only → 1 − 0.5).
    y2 = np.column_stack([y_train, [0, 1, 0, 1]])
    x2 = np.column_stack([x_train[:, 0], [-10.0, 10.0, -10.0, 10.0]])
    out2 = compute_sap(x2, y2, x2, y2)
    assert np.allclose(out2["score_matrix"], [[1.0, 0.5], [0.5, 1.0]])
    assert out2["sap"] == pytest.approx(0.5)


def test_continuous_mode_is_r_squared():
    z = np.array([[0.0, 1.0, 5.0], [1.0, 0.0, 5.0], [2.0, 1.0, 5.0], [3.0, 0.0, 5.0]])
    y = np.column_stack([2 * z[:, 0] + 1, [1.0, 2.0, 1.0, 2.0]])
    out = compute_sap(z, y, z, y, continuous=True)
    m = np.asarray(out["score_matrix"])
    r01 = np.corrcoef(z[:, 1], y[:, 0])[0, 1] ** 2
    assert m[0, 0] == pytest.approx(1.0) and m[1, 0] == pytest.approx(r01)
    assert m[2].tolist() == [0.0, 0.0]  # a constant latent scores 0
    assert out["sap"] == pytest.approx(((1 - r01) + (1 - m[0, 1])) / 2)
    const = compute_sap(z, np.column_stack([y[:, 0], np.ones(4)]), z, y, continuous=True)
    assert const["skipped_factors"] == [1] and np.isfinite(const["sap"])


def test_identity_beats_entangled_and_zeros_low():
    ztr, ftr, zte, fte = split()
    good = compute_sap(ztr, ftr, zte, fte)["sap"]
    rot = compute_sap(ztr @ ROT, ftr, zte @ ROT, fte)["sap"]
    zero = compute_sap(np.zeros_like(ztr), ftr, np.zeros_like(zte), fte)["sap"]
    assert good > rot + 0.1, (good, rot)
    assert zero <= 0.2 and zero == pytest.approx(0.0)  # identical latents: no gap


def test_permutation_of_latents_leaves_score_unchanged():
    ztr, ftr, zte, fte = split()
    perm = [2, 0, 1]
    a = compute_sap(ztr @ ROT, ftr, zte @ ROT, fte)
    b = compute_sap((ztr @ ROT)[:, perm], ftr, (zte @ ROT)[:, perm], fte)
    assert b["sap"] == pytest.approx(a["sap"], abs=1e-12)
    assert np.allclose(b["score_matrix"], np.asarray(a["score_matrix"])[perm])


def test_public_function_on_toy_data_and_same_seed():
    identity = lambda x: x.reshape(len(x), -1) * 10  # noqa: E731  (C=0.01 needs a visible scale)
    a = sap(ToyData(), identity, np.random.default_rng(5), **FAST)
    assert a == sap(ToyData(), identity, np.random.default_rng(5), **FAST)
    mixed = sap(ToyData(), lambda x: identity(x) @ ROT, np.random.default_rng(5), **FAST)
    assert a["sap"] > mixed["sap"] + 0.1


def test_constant_factor_single_latent_missing_class():
    ztr, ftr, zte, fte = split(300, 150)
    ftr = ftr.copy()
    ftr[:, 1] = 0  # constant on train: skipped, not a crash
    out = compute_sap(ztr, ftr, zte, fte)
    assert out["skipped_factors"] == [1] and np.isfinite(out["sap"])
    one = compute_sap(ztr[:, :1], ftr, zte[:, :1], fte)  # single latent: gap = top − 0
    assert np.allclose(one["sap_per_factor"], np.asarray(one["score_matrix"])[0])
    fte = fte.copy()
    fte[:, 2] = np.minimum(fte[:, 2], 2)  # classes 3, 4 of factor 2 missing from the test split
    assert np.isfinite(compute_sap(ztr, ftr, zte, fte)["sap"])
    assert compute_sap(ztr, np.zeros_like(ftr), zte, fte)["sap"] == 0.0
