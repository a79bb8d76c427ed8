"""SCAN's symbol vocabulary: one word per (factor, value), descriptions as k-hot vectors.

Higgins et al. (2018) describe a concept by a k-hot vector ``y`` over all attribute values
(e.g. 16 object colours + 16 wall colours + 16 floor colours + 3 identities = 51 bits). A
description may name any subset of attributes: a factor it does not mention has all its bits
zero, and SCAN learns to leave the matching latents broad (see :mod:`vision.scan.model`).

Each word has a canonical form ``"<factor>=<value label>"`` (``"floor_colour=navy"``) and an
alias for people, built by one rule:

    alias = "<value label> <factor noun>", where the factor noun is the factor name with a
    trailing ``_colour``/``_color`` removed and underscores replaced by spaces.

So ``floor_colour=navy`` → ``"navy floor"``, ``object_colour=dark green`` → ``"dark green object"``,
``layout=blocks`` → ``"blocks layout"``. Both forms are accepted by :meth:`Vocabulary.encode`;
:meth:`Vocabulary.decode` returns canonical words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from envs.factors import Factor, FactorSpace

_COLOUR_SUFFIXES = ("_colour", "_color")


def factor_noun(factor_name: str) -> str:
    """``floor_colour`` → ``floor``; ``agent_x`` → ``agent x`` (the alias rule's noun)."""
    name = factor_name
    for suffix in _COLOUR_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("_", " ")


class Vocabulary:
    """Words for the values of some factors of a :class:`FactorSpace`, in factor then value order.

    ``factors`` restricts the vocabulary to a subset of factor names (in the space's order);
    ``None`` takes every factor. Bit ``i`` of a symbol vector is word ``self.words[i]``.
    """

    def __init__(self, space: FactorSpace | Sequence[Factor], factors: Iterable[str] | None = None) -> None:
        all_factors = tuple(space.factors) if isinstance(space, FactorSpace) else tuple(space)
        names = [f.name for f in all_factors]
        if factors is None:
            chosen = all_factors
        else:
            wanted = list(factors)
            unknown = [n for n in wanted if n not in names]
            if unknown:
                raise KeyError(f"unknown factor(s) {unknown}; factors are {names}")
            chosen = tuple(f for f in all_factors if f.name in wanted)
        if not chosen:
            raise ValueError("a vocabulary needs at least one factor")
        self.factors: tuple[Factor, ...] = chosen
        self.words: tuple[str, ...] = tuple(f"{f.name}={v}" for f in chosen for v in f.values)
        self.aliases: tuple[str, ...] = tuple(f"{v} {factor_noun(f.name)}" for f in chosen for v in f.values)
        #: (start, stop) bit range of each factor, by factor name.
        self.slices: dict[str, slice] = {}
        start = 0
        for f in chosen:
            self.slices[f.name] = slice(start, start + f.size)
            start += f.size
        self._index: dict[str, int] = {}
        for i, (w, a) in enumerate(zip(self.words, self.aliases)):
            for key in (w, a):
                if key in self._index and self._index[key] != i:
                    raise ValueError(f"word {key!r} is ambiguous in this vocabulary")
                self._index[key] = i

    def __len__(self) -> int:
        return len(self.words)

    @property
    def factor_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.factors)

    def index(self, word: str) -> int:
        """Bit index of a canonical word or alias; ValueError listing the vocabulary otherwise."""
        try:
            return self._index[word.strip()]
        except KeyError:
            raise ValueError(
                f"unknown word {word!r}; the vocabulary is {list(self.words)} "
                f"(aliases: {list(self.aliases)})"
            ) from None

    def encode(self, words: Iterable[str]) -> np.ndarray:
        """k-hot float32 vector (V,) for a description (any subset of attributes).

        Naming two values of one factor is allowed (the AND of two conflicting concepts can
        produce such a vector); the caller decides whether that is meaningful.
        """
        y = np.zeros(len(self), dtype=np.float32)
        for w in words:
            y[self.index(w)] = 1.0
        return y

    def encode_factors(self, values: dict[str, int]) -> np.ndarray:
        """k-hot vector from ``{factor name: value index}`` (factors absent → all-zero bits)."""
        y = np.zeros(len(self), dtype=np.float32)
        for name, v in values.items():
            if name not in self.slices:
                raise KeyError(f"factor {name!r} is not in this vocabulary {list(self.factor_names)}")
            sl = self.slices[name]
            if not 0 <= int(v) < sl.stop - sl.start:
                raise ValueError(f"value {v} out of range for factor {name!r} ({sl.stop - sl.start} values)")
            y[sl.start + int(v)] = 1.0
        return y

    def decode(self, probs: np.ndarray | Sequence[float], threshold: float = 0.5) -> list[str]:
        """Canonical words whose probability (or bit) exceeds ``threshold``, in vocabulary order."""
        p = np.asarray(probs, dtype=np.float64).reshape(-1)
        if p.shape[0] != len(self):
            raise ValueError(f"expected {len(self)} probabilities, got {p.shape[0]}")
        return [w for w, pi in zip(self.words, p) if pi > threshold]

    def describe(self, probs: np.ndarray | Sequence[float], threshold: float = 0.5) -> list[str]:
        """Like :meth:`decode` but returns the readable aliases."""
        return [self.aliases[self.index(w)] for w in self.decode(probs, threshold)]

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words over {list(self.factor_names)})"
