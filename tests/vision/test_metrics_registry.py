"""The metric registry and ``score`` on a toy GroundTruthData whose images are the factors."""

from __future__ import annotations

import numpy as np
import pytest
from metric_toys import ToyData, identity, zeros

from envs.factors import GroundTruthData
from vision.metrics import METRICS, SETTINGS, score


def test_toy_is_ground_truth_data():
    assert isinstance(ToyData(), GroundTruthData)


#: SAP is the gap between the two best single-latent *linear* classifiers: on 3–5-class factors a
#: 1-D linear SVM cannot separate the middle classes, so identity codes score well below 1.
IDENTITY_MIN = {"sap": 0.2}


@pytest.mark.parametrize("name", sorted(METRICS))
def test_identity_high_zeros_low(name):
    good = score(ToyData(), identity, np.random.default_rng(0), [name], "fast")[name][name]
    bad = score(ToyData(), zeros, np.random.default_rng(0), [name], "fast")[name][name]
    assert good >= IDENTITY_MIN.get(name, 0.9) and bad <= 0.4, (good, bad)  # zeros: β-VAE metric is chance (1/3) at best
    assert bad < good


@pytest.mark.parametrize("name", sorted(METRICS))
def test_score_reports_its_settings(name):
    res = score(ToyData(), identity, np.random.default_rng(2), [name], "fast")[name]
    assert res["settings"] == "fast" and all(res[k] == v for k, v in SETTINGS[name]["fast"].items())
    assert np.isfinite(res[name])


def test_score_is_seeded_and_metrics_independent():
    a = score(ToyData(), identity, np.random.default_rng(1), "all", "fast")
    b = score(ToyData(), identity, np.random.default_rng(1), "all", "fast")
    assert a == b and set(a) == set(METRICS)
    only = score(ToyData(), identity, np.random.default_rng(1), ["mig"], "fast")
    assert only["mig"] == a["mig"]  # adding β-VAE does not change MIG's random stream


def test_score_rejects_unknown():
    with pytest.raises(ValueError, match="unknown metric"):
        score(ToyData(), identity, np.random.default_rng(0), ["dci2"], "fast")
    with pytest.raises(ValueError, match="settings must be"):
        score(ToyData(), identity, np.random.default_rng(0), ["mig"], "paper")


def test_iid_metrics_share_one_encoding():
    """MIG, DCI, SAP and Modularity together encode the iid sample once (train + test), not per metric."""
    calls = []

    def counting(x):
        calls.append(len(x))
        return identity(x)

    score(ToyData(), counting, np.random.default_rng(0), ["mig", "dci", "sap", "modularity"], "fast")
    sizes = [SETTINGS[n]["fast"] for n in ("mig", "dci", "sap", "modularity")]
    assert sum(calls) == max(s["num_train"] for s in sizes) + max(s.get("num_test", 0) for s in sizes)
