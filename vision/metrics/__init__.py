"""Disentanglement metrics (disentanglement_lib protocol) by name, and :func:`score` to run several.

Each metric is a public function ``metric(data, represent, rng, **settings) -> dict`` whose main
score sits under the metric's own name, plus a pure ``compute_*`` on arrays. ``FAST`` settings are
for smoke runs and tests; ``FULL`` are the papers' (see each module).

:func:`score` encodes each dataset once: the metrics that score iid points (MIG, DCI, SAP,
Modularity) share one train and one test sample, drawn at the largest size any of them needs, and
each reads a prefix of it; the β-VAE and FactorVAE metrics need their own structured batches.
UDR (:mod:`vision.metrics.udr`) ranks several models without labels and is not in this registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from envs.factors import GroundTruthData
from vision.metrics import beta_vae, dci, factor_vae, mig, modularity, sap
from vision.metrics.utils import FactorCodes, RepresentFn, generate_batch_factor_code

MetricFn = Callable[..., dict[str, Any]]

METRICS: dict[str, MetricFn] = {
    "beta_vae": beta_vae.beta_vae,
    "factor_vae": factor_vae.factor_vae,
    "mig": mig.mig,
    "dci": dci.dci,
    "sap": sap.sap,
    "modularity": modularity.modularity,
}
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    name: {"fast": module.FAST, "full": module.FULL}
    for name, module in {
        "beta_vae": beta_vae, "factor_vae": factor_vae, "mig": mig, "dci": dci, "sap": sap, "modularity": modularity,
    }.items()
}

#: Metrics that score iid (code, factor) points: name → f(train, test, settings, seed) on arrays.
FROM_IID_CODES: dict[str, Callable[[FactorCodes, FactorCodes, dict[str, Any], int], dict[str, Any]]] = {
    "mig": lambda tr, te, s, seed: mig.compute_mig(tr.codes, tr.factors, num_bins=s["num_bins"]),
    "dci": lambda tr, te, s, seed: dci.compute_dci(
        tr.codes, tr.factors, te.codes, te.factors, estimator=s["estimator"], random_state=seed
    ),
    "sap": lambda tr, te, s, seed: sap.compute_sap(
        tr.codes, tr.factors, te.codes, te.factors, continuous=s["continuous"], random_state=seed
    ),
    "modularity": lambda tr, te, s, seed: modularity.compute_modularity(
        tr.codes, tr.factors, te.codes, te.factors, num_bins=s["num_bins"], random_state=seed
    ),
}


def _prefix(fc: FactorCodes, n: int) -> FactorCodes:
    return FactorCodes(fc.codes[:n], fc.factors[:n])


def score(
    data: GroundTruthData,
    represent: RepresentFn,
    rng: np.random.Generator,
    metrics: str | Sequence[str] = "all",
    settings: str = "fast",
) -> dict[str, dict[str, Any]]:
    """Run ``metrics`` (names, or ``"all"``) with ``settings`` (fast | full); name → result dict.

    Deterministic for ``rng``'s seed, and adding or removing a metric never changes another's
    score: the shared iid sample is sized for every iid metric of the registry, and each metric
    draws from its own child generator.
    """
    names = list(METRICS) if metrics == "all" or list(metrics) == ["all"] else list(metrics)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(METRICS)} or all")
    if settings not in ("fast", "full"):
        raise ValueError(f"settings must be 'fast' or 'full', got {settings!r}")
    iid_rng, *children = rng.spawn(len(METRICS) + 1)
    child = dict(zip(METRICS, children))
    out: dict[str, dict[str, Any]] = {}
    iid = [n for n in names if n in FROM_IID_CODES]
    if iid:
        n_train = max(SETTINGS[n][settings]["num_train"] for n in FROM_IID_CODES)
        n_test = max(SETTINGS[n][settings].get("num_test", 0) for n in FROM_IID_CODES)
        train = generate_batch_factor_code(data, represent, n_train, iid_rng)
        test = generate_batch_factor_code(data, represent, n_test, iid_rng)
    for n in names:
        s = SETTINGS[n][settings]
        if n in FROM_IID_CODES:
            seed = int(child[n].integers(2**31 - 1))
            res = FROM_IID_CODES[n](_prefix(train, s["num_train"]), _prefix(test, s.get("num_test", 0)), s, seed)
            out[n] = {**res, **s}
        else:
            out[n] = METRICS[n](data, represent, child[n], **s)
        out[n]["settings"] = settings
    return out
