"""Shared helpers for the disentanglement metrics (disentanglement_lib's ``metrics/utils.py``).

Layout convention: **rows are samples**. ``codes`` is (n, d) and ``factors`` is (n, F) int;
disentanglement_lib ("dlib") transposes both to (d, n) / (F, n) — the maths is identical.

Everything takes an explicit :class:`numpy.random.Generator`; nothing reads global state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from sklearn.metrics import mutual_info_score

from envs.factors import GroundTruthData

RepresentFn = Callable[[np.ndarray], np.ndarray]
"""images (n, C, H, W) float32 → mean codes (n, d)."""

#: How many images one ``represent`` call receives at most when helpers batch work together.
MAX_ENCODE_BATCH = 8192


class FactorCodes(NamedTuple):
    """An iid sample: ``codes`` (n, d) float64 and the ``factors`` (n, F) int64 that made them."""

    codes: np.ndarray
    factors: np.ndarray


def encode(represent: RepresentFn, images: np.ndarray, batch_size: int = MAX_ENCODE_BATCH) -> np.ndarray:
    """``represent`` applied in chunks of at most ``batch_size`` images → (n, d) float64."""
    out = [
        np.asarray(represent(images[i : i + batch_size]), dtype=np.float64)
        for i in range(0, len(images), batch_size)
    ]
    codes = np.concatenate(out, axis=0) if out else np.zeros((0, 0))
    if codes.ndim != 2 or len(codes) != len(images):
        raise ValueError(
            f"represent must map {len(images)} images to a 2-D (n, d) array, got shape {codes.shape}"
        )
    return codes


def encode_factors(
    data: GroundTruthData,
    represent: RepresentFn,
    factors: np.ndarray,
    rng: np.random.Generator,
    batch_size: int = MAX_ENCODE_BATCH,
) -> np.ndarray:
    """Render ``factors`` (n, F) and encode them, ``batch_size`` at a time → (n, d) float64."""
    chunks = []
    for i in range(0, len(factors), batch_size):
        images = data.sample_observations_from_factors(factors[i : i + batch_size], rng)
        chunks.append(encode(represent, images, batch_size))
    return np.concatenate(chunks, axis=0)


def generate_batch_factor_code(
    data: GroundTruthData,
    represent: RepresentFn,
    n: int,
    rng: np.random.Generator,
    batch_size: int = 64,
) -> FactorCodes:
    """``n`` iid points: factors uniform per factor, their images, their codes (dlib helper).

    dlib samples and encodes ``batch_size`` points at a time; we draw all factors in one call
    (the same distribution, and fewer Python round trips) and encode in chunks of
    ``max(batch_size, MAX_ENCODE_BATCH)``.
    """
    factors = np.asarray(data.sample_factors(n, rng), dtype=np.int64)
    codes = encode_factors(data, represent, factors, rng, max(batch_size, MAX_ENCODE_BATCH))
    return FactorCodes(codes, factors)


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Per latent, ``num_bins`` equal-width bins over its sample range (dlib ``_histogram_discretize``).

    Uses ``np.histogram`` edges without the last one and ``np.digitize``, exactly as dlib, so bin
    labels run 1..num_bins. A constant latent falls into a single bin.
    """
    codes = np.asarray(codes, dtype=np.float64)
    out = np.zeros(codes.shape, dtype=np.int64)
    for i in range(codes.shape[1]):
        edges = np.histogram(codes[:, i], num_bins)[1][:-1]
        out[:, i] = np.digitize(codes[:, i], edges)
    return out


def mutual_info_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(d, F) matrix ``m[i, j] = I(z_i; v_j)`` in nats (sklearn ``mutual_info_score``, as dlib)."""
    d, num_factors = discrete_codes.shape[1], factors.shape[1]
    m = np.zeros((d, num_factors))
    for i in range(d):
        for j in range(num_factors):
            m[i, j] = mutual_info_score(factors[:, j], discrete_codes[:, i])
    return m


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """(F,) entropy in nats of each discrete column, as ``H(v) = I(v; v)`` (dlib)."""
    return np.array([mutual_info_score(factors[:, j], factors[:, j]) for j in range(factors.shape[1])])


def standardize(
    train: np.ndarray, test: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Subtract the train mean, divide by the train std (dlib ``normalize_data``).

    Deviation from dlib: a constant latent (std 0) is divided by 1 instead of producing NaN.
    """
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (None if test is None else (test - mean) / std)


def top_two_gap(matrix: np.ndarray) -> np.ndarray:
    """Per column, largest minus second-largest entry; with one row, the largest minus 0."""
    srt = np.sort(matrix, axis=0)[::-1]
    second = srt[1] if len(srt) > 1 else np.zeros(srt.shape[1])
    return srt[0] - second
