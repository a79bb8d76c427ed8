"""DARLA's domain protocol, shared by every env in this package.

Higgins et al. (2017, sec. 4) hold out *combinations* of factor values, not values: the vision
stage sees every value of every factor, the policy trains on a low-value corner of the space,
and transfer is measured on combinations neither stage has seen. With three colour factors
A, B, C and "high" meaning value index >= ``HIGH``:

- ``all``                  everything
- ``source``               A low,  B low,  C low        (where the policy trains)
- ``vision``               not (A high and B high)      (every value seen, never the pair)
- ``target_floor_object``  A high, B high, C low        (held-out pair, familiar C)
- ``target_all_new``       A high, B high, C high       (held-out pair, high C as well)

Any other factor (a layout, say) is free in every domain.
"""

from __future__ import annotations

from collections.abc import Mapping

from envs.factors import Domain, FactorSpace

HIGH = 2
"""Value indices >= HIGH are "high" (held out in combination); each protocol factor has 4 values."""

def darla_domains(space: FactorSpace, a: str, b: str, c: str) -> dict[str, Domain]:
    """The five protocol domains over ``space`` for factors ``a``, ``b``, ``c`` (names).

    The target names keep seek-avoid's wording (``target_floor_object``) for every env so a
    config can name the same presets whichever env it runs; each env's docstring says which
    factors A and B are.
    """
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
    return {
        "all": Domain("all", space, everything),
        "source": product("source", low),
        "vision": Domain("vision", space, vision_rows),
        "target_floor_object": product("target_floor_object", {a: high[a], b: high[b], c: low[c]}),
        "target_all_new": product("target_all_new", high),
    }


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
