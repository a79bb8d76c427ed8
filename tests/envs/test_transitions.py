"""One-step transitions: the same dynamics as the envs' step, every action, never outside the domain."""

from __future__ import annotations

import numpy as np
import pytest

from envs.factors import Domain
from envs.reacher import ReacherEnv
from envs.seek_avoid import SCENE_SPACE, SeekAvoidEnv
from envs.seek_avoid_v1 import SeekAvoidV1Env, SeekAvoidV1GroundTruth
from envs.transitions import (
    TRANSITION_SOURCES,
    ReacherTransitions,
    SeekAvoidTransitions,
    SeekAvoidV1Transitions,
    TransitionSource,
    check_in_domain,
    next_frames,
    next_frames_for_every_action,
    sample_states,
    transition_source,
)


@pytest.mark.parametrize("name", sorted(TRANSITION_SOURCES))
def test_sources_implement_the_protocol_and_stay_in_the_vision_domain(name):
    src = transition_source(name, 32, "vision")
    assert isinstance(src, TransitionSource)
    states = sample_states(src, 200, np.random.default_rng(0))
    d = len(src.domain.space)
    assert all(src.domain.contains(s) for s in states[:, :d].astype(np.int64))
    # the vision domain holds out (A high, B high): none of 200 draws may be such a scene
    assert not ((states[:, 0] >= 2) & (states[:, 2 if name == "seek_avoid" else 1] >= 2)).any()
    frames = src.render_states(states[:3])
    assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8


def test_seek_avoid_step_states_is_the_env_step():
    src = SeekAvoidTransitions(32, "all")
    rng = np.random.default_rng(1)
    states = sample_states(src, 300, rng)
    env = SeekAvoidEnv("all", size=32)
    respawns = 0
    for i, s in enumerate(states.astype(np.int64)):
        a = i % 4
        env.reset(seed=i, options={"scene": s[:4], "state": s[4:]})
        frame, reward, *_, info = env.step(a)
        got = src.step_states(s[None].astype(np.float64), np.array([a]), np.random.default_rng(i))[0].astype(np.int64)
        np.testing.assert_array_equal(got[:6], np.r_[s[:4], info["state"][:2]])  # scene kept, agent moved as the env
        if reward == 0:
            np.testing.assert_array_equal(got[4:], info["state"])
            np.testing.assert_array_equal(src.render_states(got[None])[0], frame)
        else:  # the object stepped on respawns at random: a free cell, not the agent's or the other's
            respawns += 1
            cells = [tuple(got[4 + 2 * o : 6 + 2 * o]) for o in range(3)]
            assert len(set(cells)) == 3
    assert respawns > 0  # the respawn branch was exercised


def test_every_action_renders_each_moves_frame():
    src = SeekAvoidTransitions(32, "vision", fixed={"layout": 0, "agent_x": 2, "agent_y": 3})
    rng = np.random.default_rng(0)
    s = sample_states(src, 2, rng)
    every = next_frames_for_every_action(src, s, rng)
    assert every.shape == (2, 4, 32, 32, 3)
    for a in range(4):
        np.testing.assert_array_equal(every[:, a], next_frames(src, s, np.full(2, a), rng))
    assert len({every[0, a].tobytes() for a in range(4)}) == 4  # the four moves give four frames


def test_seek_avoid_v1_step_states_is_the_env_step():
    """Rewards, cells and frames of v1's own step, respawns included: the env's generator after
    ``reset(seed=i)`` with scene and state given is ``default_rng(i)``, so the respawned cell must match."""
    src = SeekAvoidV1Transitions(32, "all")
    states = sample_states(src, 300, np.random.default_rng(1))
    env = SeekAvoidV1Env("all", size=32)
    respawns = 0
    for i, s in enumerate(states.astype(np.int64)):
        a = i % 4
        first, _ = env.reset(seed=i, options={"scene": s[:3], "state": s[3:]})
        np.testing.assert_array_equal(src.render_states(s[None])[0], first)
        frame, reward, *_, info = env.step(a)
        got = src.step_states(s[None].astype(np.float64), np.array([a]), np.random.default_rng(i))[0].astype(np.int64)
        np.testing.assert_array_equal(got, np.r_[s[:3], info["state"]])  # scene kept, every cell as the env
        np.testing.assert_array_equal(src.render_states(got[None])[0], frame)
        agent, good, bad = tuple(got[3:5]), tuple(s[5:7]), tuple(s[7:9])
        assert reward == (1.0 if agent == good else -1.0 if agent == bad else 0.0)  # the reward the step implies
        respawns += reward != 0
    assert respawns > 10  # the respawn branch, for both objects, was exercised
    # a batch steps row by row like single states when nothing respawns
    quiet = np.ones(len(states), bool)
    acts = np.arange(len(states)) % 4
    batch = src.step_states(states, acts, np.random.default_rng(0))
    for i in range(len(states)):
        one = src.step_states(states[i : i + 1], acts[i : i + 1], np.random.default_rng(0))[0]
        quiet[i] = (one[5:] == states[i, 5:]).all()
        if quiet[i]:
            np.testing.assert_array_equal(batch[i], one)
    assert quiet.sum() > 200


def test_seek_avoid_v1_states_are_the_env_s_and_its_frames():
    src = SeekAvoidV1Transitions(32, "vision")
    assert src.action_space.n == 4 and src.observation_shape == (3, 32, 32) and src.action_names == ("up", "down", "left", "right")
    s = sample_states(src, 400, np.random.default_rng(3))
    assert s.dtype == np.float64 and s.shape == (400, 9)
    combos = {tuple(c) for c in src.domain.combos.tolist()}
    assert {tuple(r) for r in s[:, :3].astype(np.int64).tolist()} <= combos  # scenes only from domain.combos
    cells = s[:, 3:].astype(np.int64).reshape(-1, 3, 2)
    assert ((cells >= 0) & (cells < 4)).all() and all(len({tuple(c) for c in row}) == 3 for row in cells)
    assert len({tuple(r) for r in cells[:, 0]}) == 16  # every cell is reachable as a start
    np.testing.assert_array_equal(src.render_states(s[:8]), SeekAvoidV1GroundTruth(32).render_factors(s[:8].astype(np.int64)))
    # walked with random moves, states never leave the vision domain
    rng = np.random.default_rng(4)
    for _ in range(20):
        s = check_in_domain(src, src.step_states(s, rng.integers(4, size=len(s)), rng))
    every = next_frames_for_every_action(src, s[:3], rng)
    assert every.shape == (3, 4, 32, 32, 3)


def test_seek_avoid_v1_fixed_columns_pin_the_state():
    fixed = {"floor_colour": 1, "object_set": 2, "good_x": 0, "good_y": 0, "bad_x": 3, "bad_y": 3}
    src = SeekAvoidV1Transitions(32, "vision", fixed)
    s = sample_states(src, 50, np.random.default_rng(0))
    for name, v in fixed.items():
        assert (s[:, src.names.index(name)] == v).all()
    assert len({tuple(r) for r in s[:, 3:5]}) > 8 and not ((s[:, 3:5] == 0).all(1) | (s[:, 3:5] == 3).all(1)).any()
    s = sample_states(SeekAvoidV1Transitions(32, "vision", {"agent_x": 2, "agent_y": 1}), 30, np.random.default_rng(0))
    assert (s[:, 3:5] == (2, 1)).all()
    with pytest.raises(KeyError, match="agent_z"):
        SeekAvoidV1Transitions(32, "vision", {"agent_z": 0})
    with pytest.raises(ValueError, match="distinct"):
        SeekAvoidV1Transitions(32, "vision", {"agent_x": 1, "agent_y": 1, "good_x": 1, "good_y": 1})
    with pytest.raises(ValueError, match="or neither"):
        SeekAvoidV1Transitions(32, "vision", {"bad_x": 1})
    with pytest.raises(ValueError, match="not a cell"):
        SeekAvoidV1Transitions(32, "vision", {"bad_x": 4, "bad_y": 0})
    with pytest.raises(ValueError, match="no combination"):  # a high floor with a high wall is held out
        sample_states(SeekAvoidV1Transitions(32, "vision", {"floor_colour": 3, "wall_colour": 3}), 1, np.random.default_rng(0))


def test_reacher_step_states_is_the_env_step():
    src = ReacherTransitions(32, "all")
    rng = np.random.default_rng(2)
    states = sample_states(src, 40, rng)
    actions = rng.uniform(-1.5, 1.5, size=(40, 2))  # out of range too: both clip
    got = src.step_states(states, actions, rng)
    env = ReacherEnv("all", size=32, terminate_on_reach=False)
    for s, a, g in zip(states, actions, got):
        env.reset(seed=0, options={"scene": s[:3].astype(np.int64), "state": s[3:]})
        frame, *_, info = env.step(a.astype(np.float32))
        np.testing.assert_allclose(g[3:], info["state"], atol=1e-6)
        np.testing.assert_array_equal(src.render_states(g[None])[0], frame)


def test_fixed_columns_pin_the_state():
    fixed = {"floor_colour": 1, "layout": 0, "good_x": 0, "good_y": 0, "bad_x": 5, "bad_y": 5}
    s = sample_states(SeekAvoidTransitions(32, "vision", fixed), 50, np.random.default_rng(0))
    for name, v in fixed.items():
        assert (s[:, SeekAvoidTransitions(32).names.index(name)] == v).all()
    assert len({tuple(r) for r in s[:, 4:6]}) > 10  # the agent still moves around
    with pytest.raises(KeyError, match="agent_z"):
        SeekAvoidTransitions(32, "vision", {"agent_z": 0})
    with pytest.raises(ValueError, match="distinct free"):
        sample_states(SeekAvoidTransitions(32, "vision", {"layout": 1, "good_x": 1, "good_y": 1}), 1, np.random.default_rng(0))


class _Leaky:
    """A broken source: claims the vision domain but draws a held-out scene."""

    def __init__(self) -> None:
        self.inner = SeekAvoidTransitions(32, "vision")
        self.domain, self.action_space, self.observation_shape = self.inner.domain, self.inner.action_space, (3, 32, 32)

    def sample_states(self, n, rng):
        s = self.inner.sample_states(n, rng)
        s[:, 0], s[:, 2] = 3, 3  # high floor with a high object colour: a target combination
        return s

    def step_states(self, states, actions, rng):
        return self.inner.step_states(states, actions, rng)

    def render_states(self, states):
        return self.inner.render_states(states)


def test_a_target_scene_is_refused():
    leaky = _Leaky()
    with pytest.raises(ValueError, match="outside domain 'vision'"):
        sample_states(leaky, 4, np.random.default_rng(0))
    good = SeekAvoidTransitions(32, "vision").sample_states(2, np.random.default_rng(0))
    bad = good.copy()
    bad[:, [0, 2]] = 3
    with pytest.raises(ValueError, match="outside domain"):
        next_frames(leaky, bad, np.zeros(2, np.int64), np.random.default_rng(0))
    check_in_domain(leaky, good)  # a vision scene passes


def test_unknown_env_and_domain_mismatch():
    with pytest.raises(KeyError, match="renders no one-step transitions"):
        transition_source("cartpole", 32, "vision")
    with pytest.raises(ValueError, match="scene factors|factors"):
        SeekAvoidTransitions(32, Domain("x", SCENE_SPACE.__class__(SCENE_SPACE.factors[:2]), np.zeros((1, 2))))
