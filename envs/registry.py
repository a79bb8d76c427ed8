"""Every env of this package by short name, and its gymnasium registration.

Importing this module registers the gymnasium ids (idempotently), so ``gymnasium.make`` works
for anyone who has imported :mod:`envs.registry`. Configs name envs by the short keys of
:data:`ENVS` and domains by preset name or by ``{factor_name: [value indices]}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym

from envs import reacher, seek_avoid, seek_avoid_v1
from envs.factors import Domain, FactorSpace, GroundTruthData


@dataclass(frozen=True)
class EnvInfo:
    """What the pipeline needs to know about an env, besides how to step it."""

    gym_id: str
    """The id registered with gymnasium (``gymnasium.make(gym_id, domain=..., size=...)``)."""
    scene_space: FactorSpace
    """Scene factors (what domains restrict)."""
    domains: Mapping[str, Domain]
    """Preset domains by name (DARLA protocol: all, source, vision, target_*)."""
    ground_truth: Callable[..., GroundTruthData]
    """``ground_truth(size, domain)`` → the env's renderer as metric data."""
    action_kind: Literal["discrete", "continuous"]
    """Which SB3 algorithms apply (DQN needs discrete, SAC continuous)."""
    entry_point: str
    """``module:Class`` for gymnasium.register."""


ENVS: dict[str, EnvInfo] = {
    "seek_avoid": EnvInfo(
        gym_id="darla/SeekAvoid-v0",
        scene_space=seek_avoid.SCENE_SPACE,
        domains=seek_avoid.DOMAINS,
        ground_truth=seek_avoid.SeekAvoidGroundTruth,
        action_kind="discrete",
        entry_point="envs.seek_avoid:SeekAvoidEnv",
    ),
    # v1 draws the task so that vision can see it (large cells, objects told apart by shape
    # and colour); v0 stays as it was so that every table measured on it still reproduces.
    "seek_avoid_v1": EnvInfo(
        gym_id="darla/SeekAvoid-v1",
        scene_space=seek_avoid_v1.SCENE_SPACE,
        domains=seek_avoid_v1.DOMAINS,
        ground_truth=seek_avoid_v1.SeekAvoidV1GroundTruth,
        action_kind="discrete",
        entry_point="envs.seek_avoid_v1:SeekAvoidV1Env",
    ),
    "reacher": EnvInfo(
        gym_id="darla/Reacher-v0",
        scene_space=reacher.SCENE_SPACE,
        domains=reacher.DOMAINS,
        ground_truth=reacher.ReacherGroundTruth,
        action_kind="continuous",
        entry_point="envs.reacher:ReacherEnv",
    ),
}


def _register_all() -> None:
    # Idempotent: re-importing (or importlib.reload) must not warn about overriding an id.
    for info in ENVS.values():
        if info.gym_id not in gym.registry:
            gym.register(id=info.gym_id, entry_point=info.entry_point)


_register_all()


def list_envs() -> list[str]:
    """Short names of every env, sorted."""
    return sorted(ENVS)


def get_env_info(name: str) -> EnvInfo:
    """The :class:`EnvInfo` of a short name; a KeyError names the valid ones."""
    try:
        return ENVS[name]
    except KeyError:
        raise KeyError(f"unknown env {name!r}; valid envs are {list_envs()}") from None


def has_ground_truth(name: str) -> bool:
    """Whether env ``name`` renders labelled factors (metrics, UDR, DC-IGN and SCAN need them).

    External envs added by :func:`envs.recolour.register_recoloured` have none: their
    ``ground_truth`` is a callable marked ``available = False`` that raises an explanation.
    """
    return bool(getattr(get_env_info(name).ground_truth, "available", True))


def get_domain(name: str, domain: str | Domain | Mapping[str, Sequence[int]]) -> Domain:
    """Resolve a domain of env ``name``.

    A string names a preset; a mapping ``{factor_name: [value indices]}`` builds the product
    domain (factors absent from the mapping are free); a :class:`Domain` is checked and passed
    through. Errors name the valid presets or factors.
    """
    info = get_env_info(name)
    if isinstance(domain, Domain):
        if domain.space != info.scene_space:
            raise ValueError(
                f"domain {domain.name!r} is over factors {list(domain.space.names)}, "
                f"not {name}'s scene factors {list(info.scene_space.names)}"
            )
        return domain
    if isinstance(domain, str):
        try:
            return info.domains[domain]
        except KeyError:
            raise KeyError(
                f"unknown domain {domain!r} for env {name!r}; presets are {sorted(info.domains)}"
                f", or pass {{factor_name: [value indices]}} over {list(info.scene_space.names)}"
            ) from None
    if isinstance(domain, Mapping):
        allowed: dict[str, list[int]] = {}
        for factor, values in domain.items():
            if factor not in info.scene_space.names:
                raise KeyError(
                    f"unknown factor {factor!r} for env {name!r}; "
                    f"factors are {list(info.scene_space.names)}"
                )
            size = info.scene_space.factors[info.scene_space.index(factor)].size
            values = [int(v) for v in values]
            if not values or any(not 0 <= v < size for v in values):
                raise ValueError(
                    f"factor {factor!r} of env {name!r} needs a non-empty list of value "
                    f"indices in 0..{size - 1}, got {values}"
                )
            allowed[factor] = values
        label = ",".join(f"{k}={v}" for k, v in sorted(allowed.items())) or "all"
        return Domain.product(info.scene_space, label, allowed)
    raise TypeError(
        f"domain must be a preset name, a mapping of factor → value indices, or a Domain; "
        f"got {type(domain).__name__}"
    )


def make_env(
    name: str,
    domain: str | Domain | Mapping[str, Sequence[int]] = "all",
    size: int = 64,
    **kwargs: Any,
) -> gym.Env:
    """``gymnasium.make`` an env by short name, restricted to ``domain`` (see :func:`get_domain`)."""
    info = get_env_info(name)
    return gym.make(info.gym_id, domain=get_domain(name, domain), size=size, **kwargs)
