"""Toy ground-truth data for metric tests: images *are* the factor values (disentanglement_lib's
sanity setting), so ``identity`` is a perfectly disentangled representation and ``zeros`` carries
no information."""

from __future__ import annotations

import numpy as np

from envs.factors import sample_uniform_factors

SIZES = (3, 4, 5)


class ToyData:
    """(1, 1, F) "pixels" = factor class / factor size."""

    factor_names: tuple[str, ...] = ("a", "b", "c")
    factor_sizes: tuple[int, ...] = SIZES
    observation_shape: tuple[int, int, int] = (1, 1, 3)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return sample_uniform_factors(self.factor_sizes, n, rng)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = factors / np.asarray(self.factor_sizes, dtype=np.float32)
        return x.astype(np.float32).reshape(-1, 1, 1, len(self.factor_sizes))


def identity(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def zeros(x: np.ndarray) -> np.ndarray:
    return np.zeros((len(x), 3))
