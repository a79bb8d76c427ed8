"""Unsupervised model selection: rank trained vision models by UDR (Duan et al. 2020), no labels.

Every model encodes the same images; UDR compares their active latents pairwise (models that
disentangle agree with each other up to permutation and sign, entangled ones do not) and scores
each model by the median over its partners. Used by ``darla vision select`` and by the pipeline's
``vision.select: udr``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vision.base import VisionModel
from vision.metrics.udr import udr_from_codes


def udr_rank(models: Sequence[VisionModel], images: np.ndarray, similarity: str = "spearman") -> dict[str, Any]:
    """UDR of each model on ``images`` (n, C, H, W) in [0, 1]: ``scores`` (list, in input order),
    ``order`` (indices best first), ``best`` (index), plus the pairwise details of UDR."""
    if len(models) < 2:
        raise ValueError(f"UDR ranks ≥ 2 models (same hyperparameters, different seeds); got {len(models)}")
    shapes = {tuple(m.obs_shape) for m in models}
    if len(shapes) != 1:
        raise ValueError(f"models take different image shapes {sorted(shapes)}; UDR needs one set of images")
    codes = [m.represent(images) for m in models]
    kls = [m.kl_per_dim(images) for m in models]
    res = udr_from_codes(codes, kls, similarity=similarity)
    scores = [float(s) for s in res["udr"]]
    order = [int(i) for i in np.argsort(-np.asarray(scores), kind="stable")]
    return {**{k: _plain(v) for k, v in res.items()}, "scores": scores, "order": order, "best": order[0]}


def _plain(v: Any) -> Any:
    """JSON-safe: arrays to lists, NaN (the pairwise matrix's diagonal) to None."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, float) and v != v:
        return None
    return v
