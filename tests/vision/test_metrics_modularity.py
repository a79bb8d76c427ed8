"""Modularity and explicitness: hand-computed modularity, AUC with missing classes, sanity bounds."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from metric_toys import SIZES, ToyData, identity

from envs.factors import sample_uniform_factors
from vision.metrics.modularity import (
    FAST,
    FULL,
    _modularity_from_mi,
    _ovr_auc,
    compute_modularity,
    modularity,
)


def split(n_train=800, n_test=400, seed=0):
    """Factors and identity codes (factor / size + tiny noise) for train and test."""
    rng = np.random.default_rng(seed)
    f = sample_uniform_factors(SIZES, n_train + n_test, rng)
    z = f / np.asarray(SIZES) + 0.01 * rng.normal(size=f.shape)
    return z[:n_train], f[:n_train], z[n_train:], f[n_train:]


ROT = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]


def test_settings_are_the_public_keywords():
    params = set(inspect.signature(modularity).parameters) - {"data", "represent", "rng"}
    assert set(FULL) == set(FAST) == params and FULL["num_bins"] == 20


def test_hand_computed_modularity():
    # Code 0 reads factor 0 only → 1; code 1 splits its MI evenly → 1 − (.25)/(.25·1) = 0.
    score, per_code = _modularity_from_mi(np.array([[1.0, 0.0], [0.5, 0.5]]))
    assert per_code.tolist() == [1.0, 0.0] and score == 0.5
    # K = 3: m² = (4, 1, 0) → 1 − 1 / (4 · 2) = 0.875; a code with no MI scores 0.
    score, per_code = _modularity_from_mi(np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    assert per_code.tolist() == [0.875, 0.0] and score == pytest.approx(0.4375)
    assert _modularity_from_mi(np.array([[0.3], [0.0]]))[1].tolist() == [1.0, 0.0]  # K = 1


def test_ovr_auc_by_hand_and_with_missing_classes():
    classes = np.array([0, 1, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7]])
    y = np.array([0, 1, 1, 2])
    # Class 0: positive .8 vs negatives .3 .5 .1 → 1. Class 1: positives .6 .4 vs .1 .2 → 1.
    # Class 2: .7 vs .1 .1 .1 → 1.
    assert _ovr_auc(y, proba, classes) == 1.0
    # Move row 2 to class 0 and lower its class-0 probability below row 1's:
    proba2 = proba.copy()
    proba2[2] = [0.25, 0.65, 0.1]
    y2 = np.array([0, 1, 0, 2])
    auc0 = 3 / 4  # positives .8 .25 vs negatives .3 .1: 3 of 4 pairs ordered
    auc1 = 2 / 3  # positive .6 vs negatives .1 .65 .2: 2 of 3 pairs
    assert _ovr_auc(y2, proba2, classes) == pytest.approx((auc0 + auc1 + 1.0) / 3)
    # Class 2 missing from the labels being scored: averaged over the classes that occur.
    # Class 0: positives .8 .1 vs negatives .3 .5 → 2 of 4; class 1: .6 .4 vs .1 .2 → 1.
    assert _ovr_auc(np.array([0, 1, 1, 0]), proba, classes) == pytest.approx((0.5 + 1.0) / 2)
    assert _ovr_auc(np.array([1, 1, 1, 1]), proba, classes) is None  # one class: undefined
    # A test class never seen in training (5) counts as a negative for every class.
    assert _ovr_auc(np.array([0, 1, 5, 2]), proba, classes) == pytest.approx(1.0)
    # Two classes: both columns scored, and they agree (.8 .4 vs .1 .7 → 3 of 4).
    binary = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert _ovr_auc(np.array([0, 1, 1, 0]), binary, np.array([0, 1])) == pytest.approx(0.75)


def test_identity_high_zeros_low_rotation_lower():
    ztr, ftr, zte, fte = split()
    good = compute_modularity(ztr, ftr, zte, fte)
    zero = compute_modularity(np.zeros_like(ztr), ftr, np.zeros_like(zte), fte)
    rot = compute_modularity(ztr @ ROT, ftr, zte @ ROT, fte)
    assert good["modularity"] >= 0.9 and good["explicitness_test"] >= 0.9
    assert zero["modularity"] <= 0.2 and zero["explicitness_test"] == pytest.approx(0.5)
    assert rot["modularity"] < good["modularity"] - 0.1


def test_permutation_of_latents_leaves_score_unchanged():
    ztr, ftr, zte, fte = split()
    perm = [2, 0, 1]
    a = compute_modularity(ztr @ ROT, ftr, zte @ ROT, fte)
    b = compute_modularity((ztr @ ROT)[:, perm], ftr, (zte @ ROT)[:, perm], fte)
    assert b["modularity"] == pytest.approx(a["modularity"], abs=1e-12)
    for key in ("explicitness_train", "explicitness_test"):
        assert b[key] == pytest.approx(a[key], abs=1e-6)  # lbfgs on permuted columns


def test_public_function_on_toy_data_and_same_seed():
    a = modularity(ToyData(), identity, np.random.default_rng(6), **FAST)
    assert a == modularity(ToyData(), identity, np.random.default_rng(6), **FAST)
    assert a["modularity"] >= 0.9 and a["explicitness_test"] >= 0.9


def test_missing_test_class_constant_factor_single_latent():
    ztr, ftr, zte, fte = split()
    fte = fte.copy()
    fte[:, 2] = np.minimum(
        fte[:, 2], 3
    )  # class 4 of factor 2 missing from the test split (dlib crashes)
    out = compute_modularity(ztr, ftr, zte, fte)
    assert out["explicitness_test"] >= 0.9 and out["explicitness_skipped_test"] == []
    fte[:, 1] = 0  # factor 1's test labels are one class: its test AUC is undefined → left out
    out = compute_modularity(ztr, ftr, zte, fte)
    assert out["explicitness_skipped_test"] == [1] and np.isfinite(out["explicitness_test"])
    ftr = ftr.copy()
    ftr[:, 0] = 0  # constant on train: skipped, not a crash
    out = compute_modularity(ztr, ftr, zte, fte)
    assert out["skipped_factors"] == [0] and np.shape(out["mutual_information"]) == (3, 2)
    one = compute_modularity(ztr[:, :1], ftr, zte[:, :1], fte)  # a single latent
    assert all(
        np.isfinite(one[k]) for k in ("modularity", "explicitness_train", "explicitness_test")
    )
    none = compute_modularity(ztr, np.zeros_like(ftr), zte, fte)
    assert none["modularity"] == 0.0 and none["explicitness_test"] == 0.5
