"""Factors of variation, domains, and the ground-truth data protocol.

An environment's *scene* is a point in a :class:`FactorSpace` (colours, layout, ...). A
:class:`Domain` is a named set of allowed scene-factor combinations; the pipeline's config names
the *vision*, *source* and *target* domains. :class:`GroundTruthData` is the interface every
disentanglement metric takes (as in disentanglement_lib): sample factor vectors, render them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Factor:
    """One discrete factor of variation: a name and the labels of its values (index = class)."""

    name: str
    values: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class FactorSpace:
    """An ordered tuple of discrete factors."""

    factors: tuple[Factor, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.factors)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(f.size for f in self.factors)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown factor {name!r}; factors are {list(self.names)}") from None

    def __len__(self) -> int:
        return len(self.factors)

    def all_combinations(self) -> np.ndarray:
        """Every point of the space, shape (prod(sizes), len(self)), in index order."""
        grids = np.meshgrid(*[np.arange(s) for s in self.sizes], indexing="ij")
        return np.stack([g.reshape(-1) for g in grids], axis=1).astype(np.int64)

    def describe(self, point: Sequence[int]) -> dict[str, str]:
        return {f.name: f.values[int(v)] for f, v in zip(self.factors, point)}


@dataclass(frozen=True)
class Domain:
    """A named set of allowed combinations of a :class:`FactorSpace`'s values.

    ``combos`` is an (M, F) int array, one row per allowed combination, F = len(space).
    """

    name: str
    space: FactorSpace
    combos: np.ndarray = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        combos = np.asarray(self.combos, dtype=np.int64)
        if combos.ndim != 2 or combos.shape[1] != len(self.space):
            raise ValueError(
                f"domain {self.name!r}: combos must have shape (M, {len(self.space)}), "
                f"got {combos.shape}"
            )
        if len(combos) == 0:
            raise ValueError(f"domain {self.name!r} allows no combination of factor values")
        sizes = np.asarray(self.space.sizes)
        if (combos < 0).any() or (combos >= sizes).any():
            raise ValueError(f"domain {self.name!r}: a factor value is out of range {self.space.sizes}")
        combos = np.unique(combos, axis=0)
        combos.setflags(write=False)
        object.__setattr__(self, "combos", combos)

    # -- construction --------------------------------------------------------------------
    @classmethod
    def product(
        cls, space: FactorSpace, name: str, allowed: Mapping[str, Iterable[int]] | None = None
    ) -> Domain:
        """All combinations where factor ``k`` takes values in ``allowed[k]`` (all values if absent)."""
        allowed = dict(allowed or {})
        for k in allowed:
            space.index(k)  # raises a KeyError naming the factors
        axes = [
            sorted({int(v) for v in allowed[f.name]}) if f.name in allowed else range(f.size)
            for f in space.factors
        ]
        combos = np.array(list(itertools.product(*axes)), dtype=np.int64).reshape(-1, len(space))
        return cls(name, space, combos)

    @classmethod
    def where(cls, space: FactorSpace, name: str, predicate: Callable[..., bool]) -> Domain:
        """All combinations for which ``predicate(**{factor_name: value_index})`` is true."""
        everything = space.all_combinations()
        keep = [bool(predicate(**dict(zip(space.names, row.tolist())))) for row in everything]
        return cls(name, space, everything[np.asarray(keep, dtype=bool)])

    # -- queries ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.combos)

    def contains(self, combo: Sequence[int]) -> bool:
        return bool((self.combos == np.asarray(combo, dtype=np.int64)).all(axis=1).any())

    def overlaps(self, other: Domain) -> bool:
        a = {tuple(r) for r in self.combos.tolist()}
        return any(tuple(r) in a for r in other.combos.tolist())

    def values_seen(self) -> dict[str, tuple[int, ...]]:
        """Per factor, the values that appear in at least one allowed combination."""
        return {n: tuple(np.unique(self.combos[:, i]).tolist()) for i, n in enumerate(self.space.names)}

    def sample(self, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
        """One combination (shape (F,)) or ``n`` of them (shape (n, F)), uniformly over the set."""
        if n is None:
            return self.combos[rng.integers(len(self.combos))].copy()
        return self.combos[rng.integers(len(self.combos), size=n)].copy()


@runtime_checkable
class GroundTruthData(Protocol):
    """A dataset whose images are fully described by discrete factors (disentanglement_lib)."""

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    observation_shape: tuple[int, int, int]  # (C, H, W)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, F) int64 factor classes, uniform and independent per factor."""
        ...

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """(n, C, H, W) float32 images in [0, 1] for the given (n, F) factor classes."""
        ...


def sample_images(data: GroundTruthData, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` observations of uniformly drawn factors: the factors first, then the images, from ``rng``."""
    return data.sample_observations_from_factors(data.sample_factors(n, rng), rng)


def check_env_args(metadata: Mapping[str, object], render_mode: str | None, max_steps: int) -> None:
    """The constructor checks every darla grid env makes: a known render mode, a positive horizon."""
    if render_mode is not None and render_mode not in metadata["render_modes"]:
        raise ValueError(f"unknown render_mode {render_mode!r}; valid: {metadata['render_modes']} or None")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")


def reset_scene(
    options: Mapping[str, object] | None, space: FactorSpace, domain: Domain, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, object]]:
    """The scene of a reset: ``options["scene"]`` (checked against ``space``; it need not be in
    the domain) or a draw from ``domain``; and the options, whose only keys may be scene and state.
    """
    options = dict(options or {})
    unknown = set(options) - {"scene", "state"}
    if unknown:
        raise KeyError(f"unknown reset options {sorted(unknown)}; valid: ['scene', 'state']")
    if "scene" not in options:
        return domain.sample(rng), options
    scene = np.asarray(options["scene"], dtype=np.int64).reshape(-1)
    if len(scene) != len(space) or (scene < 0).any() or (scene >= space.sizes).any():
        raise ValueError(f"scene must be {len(space)} classes < {space.sizes}")
    return scene, options


def sample_uniform_factors(sizes: Sequence[int], n: int, rng: np.random.Generator) -> np.ndarray:
    """Helper for GroundTruthData implementations: independent uniform classes per factor."""
    return np.stack([rng.integers(s, size=n) for s in sizes], axis=1).astype(np.int64)


def to_chw_float(frames_hwc_uint8: np.ndarray) -> np.ndarray:
    """(n, H, W, C) uint8 → (n, C, H, W) float32 in [0, 1]."""
    return np.ascontiguousarray(frames_hwc_uint8.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def factor_array(factors: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """``factors`` as int64, after checking their shape is (n, len(names))."""
    factors = np.asarray(factors, dtype=np.int64)
    if factors.ndim != 2 or factors.shape[1] != len(names):
        raise ValueError(f"factors must have shape (n, {len(names)}) for {list(names)}, got {factors.shape}")
    return factors
