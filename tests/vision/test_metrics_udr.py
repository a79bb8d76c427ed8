"""UDR (Duan et al. 2020): ranking, identical models, inactive latents, pair score, edge cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import ortho_group, spearmanr

from vision.metrics.udr import (
    FAST,
    FULL,
    _lasso_matrix,
    _pair_score,
    _spearman_matrix,
    compute_udr,
    udr_from_codes,
)

K = 5  # ground-truth factors, and latents per synthetic model


def factor_grid(levels: int = 4, k: int = K) -> np.ndarray:
    """Full factorial design: every pair of columns has exactly zero (rank) correlation."""
    return np.array(list(itertools.product(range(levels), repeat=k)), dtype=np.float64)


def model_sets(
    rng: np.random.Generator, n: int = 1000, models: int = 5, noise: float = 0.1
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two hyperparameter groups over the same factors: per seed, a noisy signed permutation of
    the factors (disentangled) or a noisy random rotation of them (entangled)."""
    f = rng.uniform(-1.0, 1.0, size=(n, K))
    disentangled, entangled = [], []
    for _ in range(models):
        perm, sign = rng.permutation(K), rng.choice([-1.0, 1.0], size=K)
        disentangled.append(f[:, perm] * sign + noise * rng.normal(size=(n, K)))
        rotation = ortho_group.rvs(K, random_state=rng)
        entangled.append(f @ rotation + noise * rng.normal(size=(n, K)))
    return disentangled, entangled


def active(models: int, d: int = K) -> list[np.ndarray]:
    return [np.ones(d)] * models


@pytest.mark.parametrize("similarity", ["spearman", "lasso"])
def test_disentangled_seeds_rank_above_entangled_ones(similarity):
    dis, ent = model_sets(np.random.default_rng(0))
    s_dis = compute_udr(dis, active(5), similarity)["udr"]
    s_ent = compute_udr(ent, active(5), similarity)["udr"]
    assert min(s_dis) > max(s_ent) + 0.3, (s_dis, s_ent)
    assert min(s_dis) > 0.75 and max(s_ent) < 0.5


def test_identical_models_score_one():
    z = factor_grid()  # independent by design, so R is exactly the identity
    out = compute_udr([z, z, z], active(3))
    np.testing.assert_allclose(out["udr"], 1.0, atol=1e-9)
    # A signed permutation is the same representation.
    out = compute_udr([z, -z[:, ::-1], z[:, [2, 0, 1, 4, 3]]], active(3))
    np.testing.assert_allclose(out["udr"], 1.0, atol=1e-9)


def test_inactive_latents_are_ignored():
    rng = np.random.default_rng(1)
    dis, _ = model_sets(rng, n=300, models=3)
    base = compute_udr(dis, active(3))
    # Model 1 gains a latent of pure noise; with KL 0.01 (≤ threshold) it is dropped.
    noisy = [dis[0], np.concatenate([dis[1], rng.normal(size=(300, 1))], axis=1), dis[2]]
    kls = [np.ones(K), np.append(np.ones(K), 0.01), np.ones(K)]
    dead = compute_udr(noisy, kls)
    np.testing.assert_allclose(dead["udr"], base["udr"], atol=1e-12)
    np.testing.assert_allclose(dead["udr_pairwise"], base["udr_pairwise"], atol=1e-12)
    assert dead["num_active"] == [K, K, K] and dead["active_latents"][1] == list(range(K))
    # The same latent with a KL above the threshold counts, and lowers model 1's score.
    alive = compute_udr(noisy, [np.ones(K), np.ones(K + 1), np.ones(K)])
    assert alive["num_active"] == [K, K + 1, K]
    assert alive["udr"][1] < base["udr"][1] - 0.05


def test_pair_score_by_hand():
    r = np.array([[0.9, 0.1], [0.2, 0.6]])
    # columns: .81/1.1, .36/.7; rows: .81/1.0, .36/.8; equal counts → (sum of 4) / (2 + 2)
    expected = (0.81 / 1.1 + 0.36 / 0.7 + 0.81 / 1.0 + 0.36 / 0.8) / 4
    assert _pair_score(r) == pytest.approx(expected, abs=1e-12)
    assert _pair_score(r) == pytest.approx(0.6276623, abs=1e-6)
    assert _pair_score(r.T) == pytest.approx(expected, abs=1e-12)
    assert _pair_score(np.eye(3)) == 1.0


def test_pair_score_uses_the_papers_normalisation():
    r = np.array([[0.8, 0.2, 0.4], [0.1, 0.9, 0.3]])  # d_a = 2, d_b = 3
    cols = [0.64 / 0.9, 0.81 / 1.1, 0.16 / 0.7]
    rows = [0.64 / 1.4, 0.81 / 1.3]
    paper = (sum(cols) + sum(rows)) / 5
    dlib = (np.mean(cols) + np.mean(rows)) / 2
    assert _pair_score(r) == pytest.approx(paper, abs=1e-12)
    assert abs(paper - dlib) > 1e-3
    # A latent that matches nothing (all-zero column) contributes 0 but still counts in d_b.
    assert _pair_score(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])) == pytest.approx(4 / 5)


def test_model_with_no_active_latent_scores_zero():
    z = factor_grid()
    out = compute_udr([z, z, z], [np.ones(K), np.full(K, 0.005), np.ones(K)])
    assert out["num_active"] == [K, 0, K] and out["active_latents"][1] == []
    assert out["udr"][1] == 0.0
    pw = np.array(out["udr_pairwise"])
    assert (pw[1, [0, 2]] == 0).all() and (pw[[0, 2], 1] == 0).all()
    assert pw[0, 2] == pytest.approx(1.0) and np.isnan(np.diag(pw)).all()
    assert out["udr"][0] == pytest.approx(0.5)  # median of (0, 1)
    both_dead = compute_udr([z, z], [np.zeros(K), np.zeros(K)])
    assert both_dead["udr"] == [0.0, 0.0]


def test_single_model_and_bad_inputs_are_refused():
    z = factor_grid()
    with pytest.raises(ValueError, match="UDR needs >= 2 models"):
        compute_udr([z], [np.ones(K)])
    with pytest.raises(ValueError, match="UDR needs >= 2 models"):
        udr_from_codes([], [])
    with pytest.raises(ValueError, match="same n images"):
        compute_udr([z, z[:10]], active(2))
    with pytest.raises(ValueError, match="KL values"):
        compute_udr([z, z], [np.ones(K), np.ones(K - 1)])
    with pytest.raises(ValueError, match="unknown similarity 'pearson'"):
        compute_udr([z, z], active(2), "pearson")


def test_similarity_matrices():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 3)), rng.normal(size=(200, 4))
    b[:, 1] = np.exp(a[:, 0])  # monotone: |ρ| = 1
    b[:, 3] = 7.0  # constant: ρ undefined → 0
    r = _spearman_matrix(a, b)
    ref = np.abs(spearmanr(a, b[:, :3])[0][:3, 3:])
    np.testing.assert_allclose(r[:, :3], ref, atol=1e-12)
    assert r[0, 1] == pytest.approx(1.0) and (r[:, 3] == 0).all()
    lasso = _lasso_matrix(a, b)
    assert lasso.shape == (3, 4) and lasso[0].argmax() == 1


def test_public_function_reports_settings_and_is_deterministic():
    dis, _ = model_sets(np.random.default_rng(3), n=200, models=3)
    out = udr_from_codes(dis, active(3), similarity="lasso")
    assert out["similarity"] == "lasso" and out["kl_threshold"] == FULL["kl_threshold"] == 0.01
    assert out["num_models"] == 3 and out["num_images"] == 200 and "paper" in out["normalisation"]
    again = udr_from_codes(dis, active(3), similarity="lasso")
    assert again["udr"] == out["udr"]
    np.testing.assert_array_equal(again["udr_pairwise"], out["udr_pairwise"])  # NaN == NaN here
    assert FAST["num_images"] < FULL["num_images"] == 1000
