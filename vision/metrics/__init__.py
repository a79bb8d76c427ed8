"""Disentanglement metrics (disentanglement_lib protocol) by name, and :func:`score` to run several.

Each metric is a public function ``metric(data, represent, rng, **settings) -> dict`` whose main
score sits under the metric's own name, plus a pure ``_compute_*(codes, factors)`` on arrays.
``FAST`` settings are for smoke runs and tests; ``FULL`` are the papers' (see each module).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from envs.factors import GroundTruthData
from vision.metrics import beta_vae, mig
from vision.metrics.utils import RepresentFn

MetricFn = Callable[..., dict[str, Any]]

METRICS: dict[str, MetricFn] = {
    "beta_vae": beta_vae.beta_vae,
    "mig": mig.mig,
}
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "beta_vae": {"fast": beta_vae.FAST, "full": beta_vae.FULL},
    "mig": {"fast": mig.FAST, "full": mig.FULL},
}


def score(
    data: GroundTruthData,
    represent: RepresentFn,
    rng: np.random.Generator,
    metrics: str | Sequence[str] = "all",
    settings: str = "fast",
) -> dict[str, dict[str, Any]]:
    """Run ``metrics`` (names, or ``"all"``) with ``settings`` (fast | full); name → result dict.

    Each metric draws from its own child generator of ``rng``, so adding or removing a metric
    never changes another's score.
    """
    names = list(METRICS) if metrics == "all" or list(metrics) == ["all"] else list(metrics)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(METRICS)} or all")
    if settings not in ("fast", "full"):
        raise ValueError(f"settings must be 'fast' or 'full', got {settings!r}")
    children = dict(zip(METRICS, rng.spawn(len(METRICS))))
    return {n: {**METRICS[n](data, represent, children[n], **SETTINGS[n][settings]), "settings": settings} for n in names}
