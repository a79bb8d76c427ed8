"""DARLA's domain protocol, shared by every env in this package.

Higgins et al. (2017, sec. 4) hold out *combinations* of factor values, not values: the vision
stage sees every value of every factor, the policy trains on a low-value corner of the space,
and transfer is measured on combinations neither stage has seen. With three colour factors
A, B, C and "high" meaning value index >= ``HIGH``:

- ``all``                  everything
- ``source``               A low,  B low,  C low        (where the policy trains)
- ``vision``               not (A high and B high)      (every value seen, never the pair)
- ``target_<A>_<B>``       A high, B high, C low        (held-out pair, familiar C)
- ``target_all_new``       A high, B high, C high       (held-out pair, high C as well)

The held-out-pair target is named after the env's own two factors A and B: seek-avoid v0's
``target_floor_object``, v1's ``target_floor_wall``, reacher's ``target_background_target``.
``target_floor_object``, the one name every env used before, stays an accepted alias of it.

Any other factor (a layout, say) is free in every domain.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from envs.factors import Domain, FactorSpace

HIGH = 2
"""Value indices >= HIGH are "high" (held out in combination); each protocol factor has 4 values."""


GENERIC_PAIR_NAME = "target_floor_object"
"""The held-out-pair target's name in every env before each env named it after its factors;
configs that use it keep working (an alias)."""


class Presets(dict):
    """Domain presets by name, where an alias resolves to its preset.

    Iteration, ``len`` and listings show each preset once, under its own name; lookup (``[]``,
    ``get``, ``in``) also accepts the aliases in :attr:`aliases` (alias → name).
    """

    def __init__(self, presets: Mapping[str, Domain], aliases: Mapping[str, str] | None = None) -> None:
        super().__init__(presets)
        aliases = dict(aliases or {})
        for alias, name in aliases.items():
            if name not in presets or alias in presets:
                raise ValueError(f"alias {alias!r} must name a preset ({name!r}) without shadowing one")
        self.aliases = MappingProxyType(aliases)

    def __missing__(self, key: str) -> Domain:
        if key in self.aliases:
            return dict.__getitem__(self, self.aliases[key])
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self.aliases

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __reduce__(self):  # pickle (Ray workers, lru_cache copies) with the aliases
        return (type(self), (dict(self), dict(self.aliases)))


def darla_domains(space: FactorSpace, a: str, b: str, c: str, pair_name: str | None = None) -> Presets:
    """The five protocol domains over ``space`` for factors ``a``, ``b``, ``c`` (names).

    The held-out-pair target is called ``pair_name`` (default ``target_<a>_<b>`` without the
    factors' ``_colour`` suffixes); :data:`GENERIC_PAIR_NAME` is kept as an alias of it.
    """
    if pair_name is None:
        pair_name = "target_" + "_".join(n.removesuffix("_colour") for n in (a, b))
    for name in (a, b, c):
        if space.factors[space.index(name)].size <= HIGH:
            raise ValueError(f"factor {name!r} needs more than {HIGH} values for the protocol")
    sizes = dict(zip(space.names, space.sizes))
    low = {n: range(HIGH) for n in (a, b, c)}
    high = {n: range(HIGH, sizes[n]) for n in (a, b, c)}

    def product(name: str, allowed: Mapping[str, range]) -> Domain:
        return Domain.product(space, name, allowed)

    ia, ib = space.index(a), space.index(b)
    everything = space.all_combinations()
    vision_rows = everything[~((everything[:, ia] >= HIGH) & (everything[:, ib] >= HIGH))]
    presets = {
        "all": Domain("all", space, everything),
        "source": product("source", low),
        "vision": Domain("vision", space, vision_rows),
        pair_name: product(pair_name, {a: high[a], b: high[b], c: low[c]}),
        "target_all_new": product("target_all_new", high),
    }
    return Presets(presets, {} if pair_name == GENERIC_PAIR_NAME else {GENERIC_PAIR_NAME: pair_name})


def resolve_domain(domains: Mapping[str, Domain], domain: str | Domain, env: str) -> Domain:
    """A preset name or a ready :class:`Domain` → Domain; unknown names list the presets.

    A ready Domain must be over the same factor space as the presets, or its combos would be
    read as the wrong factors.
    """
    if isinstance(domain, Domain):
        space = next(iter(domains.values())).space
        if domain.space != space:
            raise ValueError(
                f"domain {domain.name!r} is over factors {list(domain.space.names)}, "
                f"but {env} scenes have factors {list(space.names)}"
            )
        return domain
    try:
        return domains[domain]
    except KeyError:
        raise KeyError(f"unknown {env} domain {domain!r}; presets are {sorted(domains)}") from None
