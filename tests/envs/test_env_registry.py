"""The env registry: gymnasium ids, short names, domain resolution, errors naming choices."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs import registry
from envs.factors import Domain
from envs.registry import ENVS, EnvInfo, get_domain, get_env_info, list_envs, make_env


def test_every_env_is_registered_with_gymnasium():
    assert list_envs() == sorted(ENVS)
    for name, info in ENVS.items():
        assert isinstance(info, EnvInfo)
        assert info.gym_id in gym.registry
        assert info.action_kind in ("discrete", "continuous")
        assert set(info.domains) >= {"all", "source", "vision"}
        data = info.ground_truth(32, "vision")
        assert data.factor_names[: len(info.scene_space)] == info.scene_space.names, name


def test_registration_is_idempotent():
    registry._register_all()
    registry._register_all()
    assert "darla/SeekAvoid-v0" in gym.registry


@pytest.mark.parametrize("name", sorted(ENVS))
def test_make_env_by_short_name(name):
    env = make_env(name, "source", size=32, max_steps=7)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 32, 3)
    assert get_env_info(name).domains["source"].contains(info["scene"])
    for _ in range(7):
        *_, truncated, info = env.step(env.action_space.sample())
    assert truncated
    env.close()


def test_gym_make_accepts_preset_names():
    env = gym.make("darla/SeekAvoid-v0", domain="vision", size=32)
    _, info = env.reset(seed=0)
    assert ENVS["seek_avoid"].domains["vision"].contains(info["scene"])


def test_get_domain_preset_mapping_and_domain():
    info = get_env_info("seek_avoid")
    assert get_domain("seek_avoid", "target_all_new") is info.domains["target_all_new"]
    d = get_domain("seek_avoid", {"floor_colour": [0, 1], "layout": [2]})
    assert isinstance(d, Domain) and len(d) == 2 * 4 * 4 * 1
    assert set(d.combos[:, 0].tolist()) == {0, 1} and set(d.combos[:, 3].tolist()) == {2}
    assert get_domain("seek_avoid", d) is d
    env = make_env("seek_avoid", {"object_colour": [3]}, size=32)
    _, inf = env.reset(seed=1)
    assert inf["scene"][2] == 3


def test_errors_name_the_valid_choices():
    with pytest.raises(KeyError, match="seek_avoid"):
        get_env_info("doom")
    with pytest.raises(KeyError, match="target_all_new"):
        get_domain("seek_avoid", "targt")
    with pytest.raises(KeyError, match="floor_colour"):
        get_domain("seek_avoid", {"flor_colour": [0]})
    with pytest.raises(ValueError, match="0..2"):
        get_domain("seek_avoid", {"layout": [3]})
    with pytest.raises(ValueError, match="non-empty"):
        get_domain("seek_avoid", {"layout": []})
    with pytest.raises(TypeError, match="preset name"):
        get_domain("seek_avoid", 3)  # type: ignore[arg-type]
    other = Domain("x", ENVS["seek_avoid"].scene_space, np.zeros((1, 4), dtype=np.int64))
    assert get_domain("seek_avoid", other) is other


def test_domain_aliases_resolve_everywhere_and_survive_pickling():
    """An alias looks up its preset through the registry and the env, and after a pickle round
    trip (agent workers and Ray tasks receive domains pickled); listings show each preset once."""
    import pickle

    import gymnasium as gym
    import pytest

    from envs.protocol import Presets
    from envs.registry import get_domain, get_env_info, make_env

    info = get_env_info("seek_avoid_v1")
    assert "target_floor_object" not in list(info.domains) and "target_floor_wall" in list(info.domains)
    assert get_domain("seek_avoid_v1", "target_floor_object") is info.domains["target_floor_wall"]
    assert info.domains.get("target_floor_object") is info.domains["target_floor_wall"]
    assert info.domains.get("nope") is None and "nope" not in info.domains
    back = pickle.loads(pickle.dumps(info.domains))
    assert isinstance(back, Presets) and dict(back.aliases) == dict(info.domains.aliases)
    assert back["target_floor_object"].name == "target_floor_wall"
    env = make_env("seek_avoid_v1", "target_floor_object", size=32)
    assert isinstance(env, gym.Env) and env.unwrapped.domain.name == "target_floor_wall"
    with pytest.raises(ValueError, match="shadowing"):
        Presets({"a": info.domains["all"]}, {"a": "a"})
