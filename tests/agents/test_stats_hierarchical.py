"""The two-level bootstrap (groups, then members) behind encoder-aware CIs."""

from __future__ import annotations

import numpy as np
import pytest

from agents.stats import (
    bootstrap_ci,
    hierarchical_iqm_ci,
    hierarchical_probability_of_improvement,
    iqm,
)


def test_between_group_spread_sets_the_ci():
    # two encoders whose policies all score 0 and 1: a draw of encoders is (0,0), (1,1) or mixed
    # with probabilities ¼, ¼, ½, so the 2.5 and 97.5 percentiles are the extremes
    groups = [[0.0] * 20, [1.0] * 20]
    assert hierarchical_iqm_ci(groups) == (0.0, 1.0)
    # the policy-level bootstrap of the same 40 scores is narrower: it calls them independent (its
    # IQM is 0 only if 30 of 40 draws are, p ≈ 0.001)
    flat = bootstrap_ci(np.concatenate(groups))["iqm"]
    assert 0.0 < flat[0] and flat[1] < 1.0


def test_one_group_is_the_bootstrap_over_its_members():
    members = [0.1, 0.5, 0.2, 0.9, 0.4]
    lo, hi = hierarchical_iqm_ci([members], seed=3)
    rng = np.random.default_rng(3)
    # the same draws as the function makes: the group index (always 0), then the members
    ref = []
    for _ in range(2000):
        rng.integers(0, 1, size=1)
        ref.append(iqm(np.asarray(members)[rng.integers(0, 5, size=5)]))
    assert (lo, hi) == pytest.approx((np.quantile(ref, 0.025), np.quantile(ref, 0.975)))


def test_identical_groups_and_constant_members_give_a_point():
    assert hierarchical_iqm_ci([[0.3, 0.3], [0.3, 0.3], [0.3, 0.3]]) == pytest.approx((0.3, 0.3))


def test_probability_of_improvement():
    dominant = hierarchical_probability_of_improvement([[1.0, 1.0], [2.0, 2.0]], [[0.0, 0.0], [0.5, 0.5]])
    assert dominant == {"p": 1.0, "ci": [1.0, 1.0]}
    # one encoder above Y, one below: P is ½ and the encoder draw spans [0, 1]
    split = hierarchical_probability_of_improvement([[1.0] * 3, [0.0] * 3], [[0.5] * 3, [0.5] * 3])
    assert split["p"] == 0.5 and split["ci"] == [0.0, 1.0]
    ties = hierarchical_probability_of_improvement([[0.5, 0.5]], [[0.5, 0.5]])
    assert ties == {"p": 0.5, "ci": [0.5, 0.5]}


def test_seeded_and_refuses_empty_groups():
    g = [[0.1, 0.7, 0.3], [0.6, 0.2, 0.9]]
    assert hierarchical_iqm_ci(g, seed=5) == hierarchical_iqm_ci(g, seed=5)
    assert hierarchical_iqm_ci(g, seed=5) != hierarchical_iqm_ci(g, seed=6)
    with pytest.raises(ValueError, match="no empty group"):
        hierarchical_iqm_ci([[0.1], []])
    with pytest.raises(ValueError, match="at least one group"):
        hierarchical_probability_of_improvement([], [[0.1]])
