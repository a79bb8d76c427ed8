"""FactorVAE metric: hand-computed votes, sanity bounds, edge cases (dlib's tests plus ours)."""

from __future__ import annotations

import numpy as np
import pytest
from metric_toys import ToyData, identity

from vision.metrics.factor_vae import FAST, FULL, compute_factor_vae, factor_vae


class ConstantFactorToy(ToyData):
    factor_names = ("a", "b", "c")
    factor_sizes = (1, 4, 5)



ROT = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]


def run(represent, seed=0, data=None):
    return factor_vae(data or ToyData(), represent, np.random.default_rng(seed), **FAST)


def test_settings_are_the_public_keywords():
    import inspect

    params = set(inspect.signature(factor_vae).parameters) - {"data", "represent", "rng"}
    assert set(FULL) == set(FAST) == params
    assert FULL["num_variance_estimate"] == 10_000 and FULL["prune_threshold"] == 0.05


def test_hand_computed_votes_and_pruning():
    # Global variances (ddof=1): latents 0, 1 → 2.0 (active); latent 2 → 5e-5 (std 0.007 < 0.05).
    codes = np.array([[0.0, 0.0, 0.0], [2.0, 2.0, 0.01]])
    fix0 = [[0.0, 0.0, 5.0], [0.0, 1.0, 5.0]]  # latent 0 constant (latent 2 too, but pruned)
    fix1 = [[0.0, 3.0, 5.0], [1.0, 3.0, 5.0]]  # latent 1 constant
    train = np.array([fix0, fix0, fix1])
    train_labels = np.array([0, 0, 1])  # → latent 0 votes factor 0, latent 1 votes factor 1
    evals = np.array([fix0, fix0, fix1])
    eval_labels = np.array([0, 1, 1])  # the middle vote goes to latent 0 but is factor 1: wrong
    out = compute_factor_vae(
        codes, train, train_labels, evals, eval_labels, num_factors=2, prune_threshold=0.05
    )
    assert out["train_accuracy"] == 1.0
    assert (
        out["eval_accuracy"] == pytest.approx(2 / 3) and out["factor_vae"] == out["eval_accuracy"]
    )
    assert out["num_active_dims"] == 2  # dlib would report 3 (the mask length)


def test_no_active_dim_scores_zero():
    codes = np.zeros((10, 4))
    batches = np.zeros((5, 3, 4))
    out = compute_factor_vae(
        codes, batches, np.zeros(5, int), batches, np.zeros(5, int), num_factors=2
    )
    assert out == {
        **out,
        "factor_vae": 0.0,
        "train_accuracy": 0.0,
        "eval_accuracy": 0.0,
        "num_active_dims": 0,
    }
    # Tiny but nonzero variance is pruned too (std 0.001 < 0.05); a zero-variance latent is never
    # active even with threshold 0 (dlib: 0/0).
    small = run(lambda x: 0.001 * identity(x))
    assert small["factor_vae"] == 0.0 and small["num_active_dims"] == 0
    out0 = compute_factor_vae(
        codes,
        batches,
        np.zeros(5, int),
        batches,
        np.zeros(5, int),
        num_factors=2,
        prune_threshold=0.0,
    )
    assert out0["num_active_dims"] == 0 and np.isfinite(out0["factor_vae"])


def test_identity_high_zeros_low():
    good = run(identity)
    assert good["factor_vae"] >= 0.9 and good["train_accuracy"] >= 0.9
    assert run(lambda x: np.zeros((len(x), 3)))["factor_vae"] <= 0.2


def test_dead_latents_are_counted_not_the_mask_length():
    out = run(lambda x: np.concatenate([identity(x), np.zeros((len(x), 2))], axis=1))
    assert out["num_active_dims"] == 3 and out["factor_vae"] >= 0.9


def test_permutation_of_latents_leaves_score_unchanged():
    base = run(lambda x: identity(x) @ ROT)
    perm = run(lambda x: (identity(x) @ ROT)[:, [2, 0, 1]])
    assert (
        perm["factor_vae"] == base["factor_vae"]
        and perm["train_accuracy"] == base["train_accuracy"]
    )


def test_same_seed_same_score():
    rep = lambda x: identity(x) @ ROT  # noqa: E731
    assert run(rep, seed=3) == run(rep, seed=3)


def test_single_latent_and_constant_factor_are_defined():
    one = run(lambda x: identity(x).sum(axis=1, keepdims=True))
    assert 0.0 <= one["factor_vae"] <= 1.0 and one["num_active_dims"] == 1
    const = run(identity, data=ConstantFactorToy())
    assert np.isfinite(const["factor_vae"]) and 0.0 <= const["factor_vae"] <= 1.0
    assert const["num_active_dims"] == 2  # the constant factor's latent has no variance


def test_class_missing_from_eval_votes_is_defined():
    codes = np.array([[0.0, 0.0], [2.0, 2.0]])
    fix0 = [[0.0, 0.0], [0.0, 1.0]]
    batches = np.array([fix0, fix0])
    out = compute_factor_vae(
        codes, batches, np.array([0, 2]), batches[:1], np.array([0]), num_factors=3
    )
    assert out["eval_accuracy"] == 1.0  # factor 1 never voted for, factor 2 absent from eval


def test_rejects_batch_of_one():
    with pytest.raises(ValueError, match="≥ 2"):
        factor_vae(ToyData(), identity, np.random.default_rng(0), **{**FAST, "batch_size": 1})
