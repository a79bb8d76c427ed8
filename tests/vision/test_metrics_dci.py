"""DCI: hand-computed D and C, sanity bounds on synthetic codes, the dlib estimator, edge cases."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from metric_toys import SIZES, ToyData, identity
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier

from envs.factors import sample_uniform_factors
from vision.metrics.dci import (
    FAST,
    FULL,
    GBT_KWARGS,
    HIST_GBT_KWARGS,
    _completeness,
    _disentanglement,
    _hist_mdi,
    compute_dci,
    dci,
)


def split(n_train=300, n_test=150, sizes=SIZES, seed=0):
    """Factors and identity codes (factor / size + tiny noise) for train and test."""
    rng = np.random.default_rng(seed)
    f = sample_uniform_factors(sizes, n_train + n_test, rng)
    z = f / np.asarray(sizes) + 0.01 * rng.normal(size=f.shape)
    return z[:n_train], f[:n_train], z[n_train:], f[n_train:]


ROT = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]


def test_settings_are_the_public_keywords():
    params = set(inspect.signature(dci).parameters) - {"data", "represent", "rng"}
    assert set(FULL) == set(FAST) == params
    assert (FULL["num_train"], FULL["num_test"]) == (10_000, 5_000)


def test_hand_computed_two_by_two():
    assert _disentanglement(np.eye(2))[0] == pytest.approx(1.0)
    assert _completeness(np.eye(2))[0] == pytest.approx(1.0)
    assert _disentanglement(np.full((2, 2), 0.5))[0] == pytest.approx(0.0, abs=1e-9)
    assert _completeness(np.full((2, 2), 0.5))[0] == pytest.approx(0.0, abs=1e-9)
    r = np.array([[1.0, 0.5], [0.0, 0.5]])
    h = -(2 / 3 * np.log2(2 / 3) + 1 / 3 * np.log2(1 / 3))  # row 0 = (2/3, 1/3), base K = 2
    # D: code weights ρ = (1.5, 0.5) / 2; row 1 = (0, 1) is fully disentangled.
    assert _disentanglement(r)[0] == pytest.approx(0.75 * (1 - h) + 0.25 * 1.0, abs=1e-8)
    # C: column 0 = (1, 0) complete, column 1 = (.5, .5) not; factor weights (1, 1) / 2.
    assert _completeness(r)[0] == pytest.approx(0.5, abs=1e-8)


def test_all_zero_importances_are_uniform_and_one_factor_is_defined():
    assert _disentanglement(np.zeros((3, 2)))[0] == pytest.approx(0.0, abs=1e-9)
    assert _completeness(np.zeros((3, 2)))[0] == pytest.approx(0.0, abs=1e-9)
    d, per_code = _disentanglement(np.array([[0.7], [0.3]]))  # K = 1: base-1 entropy taken as 0
    assert d == 1.0 and np.isfinite(per_code).all()
    assert _completeness(np.array([[0.2, 0.8]]))[0] == 1.0  # a single code: C = 1


def test_identity_high_rotation_lower_zeros_low():
    ztr, ftr, zte, fte = split()
    good = compute_dci(ztr, ftr, zte, fte)
    rot = compute_dci(ztr @ ROT, ftr, zte @ ROT, fte)
    zero = compute_dci(np.zeros_like(ztr), ftr, np.zeros_like(zte), fte)
    assert (
        good["dci"] >= 0.9 and good["completeness"] >= 0.9 and good["informativeness_test"] >= 0.9
    )
    assert rot["dci"] < good["dci"] - 0.2, (rot["dci"], good["dci"])
    assert zero["dci"] <= 0.2 and zero["completeness"] <= 0.2
    assert np.allclose(zero["importance_matrix"], 0.0)


def test_informativeness_per_factor_says_which_factors_the_code_carries():
    # Codes that carry factor 0 only: its classifier is right, the others' are near chance, and
    # the averages are the means of the per-factor accuracies.
    ztr, ftr, zte, fte = split()
    keep0 = np.zeros((3, 3))
    keep0[0, 0] = 1.0
    out = compute_dci(ztr @ keep0, ftr, zte @ keep0, fte)
    acc = out["informativeness_test_per_factor"]
    assert len(acc) == len(out["informativeness_train_per_factor"]) == 3
    assert acc[0] >= 0.95
    chance = 1.0 / np.asarray(SIZES[1:])
    assert all(a <= c + 0.2 for a, c in zip(acc[1:], chance)), (acc, chance)
    assert out["informativeness_test"] == pytest.approx(np.mean(acc))
    assert out["informativeness_train"] == pytest.approx(np.mean(out["informativeness_train_per_factor"]))


def test_permutation_of_latents_leaves_score_unchanged():
    # Up to tie-breaking: when two latents' best splits cut a small node identically, the tree
    # takes the lower index (dlib's GBC: a random feature order), which moves ~1e-3 of importance.
    ztr, ftr, zte, fte = split()
    perm = [2, 0, 1]
    a = compute_dci(ztr @ ROT, ftr, zte @ ROT, fte)
    b = compute_dci((ztr @ ROT)[:, perm], ftr, (zte @ ROT)[:, perm], fte)
    for key in ("dci", "completeness", "informativeness_train", "informativeness_test"):
        assert b[key] == pytest.approx(a[key], abs=0.01)
    assert np.allclose(
        np.asarray(b["importance_matrix"]), np.asarray(a["importance_matrix"])[perm], atol=0.02
    )


@pytest.mark.parametrize("binary", [True, False])
def test_replayed_mdi_is_gbc_importance_on_identical_trees(binary):
    # With one boosting iteration both libraries grow the same tree (constant hessian at the
    # prior; < 255 distinct values, so the same thresholds): our replayed MDI must then equal
    # GradientBoostingClassifier.feature_importances_, and the replayed scores its predictions.
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=(300, 3)), 1)
    y = (
        (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
        if binary
        else np.digitize(x[:, 0] + 0.7 * x[:, 2], [-1, 0, 1])
    )
    hist = HistGradientBoostingClassifier(**{**HIST_GBT_KWARGS, "max_iter": 1}).fit(x, y)
    gbc = GradientBoostingClassifier(**{**GBT_KWARGS, "n_estimators": 1}, random_state=0).fit(x, y)
    importances, pred = _hist_mdi(hist, x, y)
    assert np.allclose(importances, gbc.feature_importances_, atol=1e-9)
    assert np.array_equal(pred, hist.predict(x))
    full = HistGradientBoostingClassifier(**HIST_GBT_KWARGS).fit(x, y)
    assert np.array_equal(_hist_mdi(full, x, y)[1], full.predict(x))  # 100 iterations replayed


def test_dlib_estimator_agrees_with_the_fast_one():
    ztr, ftr, zte, fte = split(200, 100, sizes=(3, 3), seed=2)
    c = np.sqrt(0.5)
    mixes = (np.eye(2), np.array([[c, -c], [c, c]]), np.array([[1.0, 0.5], [0.0, 1.0]]))
    for mix in mixes:  # D ≈ 1, ≈ 0 and ≈ 0.6 under both estimators
        fast = compute_dci(ztr @ mix, ftr, zte @ mix, fte, estimator="hist_gbt")
        exact = compute_dci(ztr @ mix, ftr, zte @ mix, fte, estimator="gbt")
        assert fast["dci"] == pytest.approx(exact["dci"], abs=0.05)
        assert fast["completeness"] == pytest.approx(exact["completeness"], abs=0.05)
    with pytest.raises(ValueError, match="choose from"):
        compute_dci(ztr, ftr, zte, fte, estimator="lasso")


def test_public_function_on_toy_data_and_same_seed():
    assert dci(ToyData(), identity, np.random.default_rng(4), **FAST)["dci"] >= 0.9
    small = {**FAST, "num_train": 300, "num_test": 150}
    a = dci(ToyData(), identity, np.random.default_rng(4), **small)
    assert a == dci(ToyData(), identity, np.random.default_rng(4), **small)
    assert a["dci"] == a["disentanglement"] and a["num_train"] == 300
    assert (
        dci(ToyData(), lambda x: np.zeros((len(x), 3)), np.random.default_rng(4), **small)["dci"]
        <= 0.2
    )


def test_constant_factor_single_latent_missing_class():
    ztr, ftr, zte, fte = split()
    ftr, fte = ftr.copy(), fte.copy()
    ftr[:, 0] = 0  # constant on train: skipped, not a crash
    out = compute_dci(ztr, ftr, zte, fte)
    assert out["skipped_factors"] == [0] and np.shape(out["importance_matrix"]) == (3, 2)
    assert all(np.isfinite(out[k]) for k in ("dci", "completeness", "informativeness_test"))
    one = compute_dci(ztr[:, :1], ftr, zte[:, :1], fte)  # a single latent
    assert one["completeness"] == 1.0 and np.isfinite(one["dci"])
    fte[:, 2] = np.minimum(fte[:, 2], 3)  # class 4 of factor 2 missing from the test split
    assert np.isfinite(compute_dci(ztr, ftr, zte, fte)["informativeness_test"])
    allconst = compute_dci(ztr, np.zeros_like(ftr), zte, fte)
    assert allconst["dci"] == 0.0 and allconst["skipped_factors"] == [0, 1, 2]
