"""Reacher: spaces, determinism, physics, reward, rendering, ground-truth data (what every env promises: test_conformance.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs.factors import GroundTruthData
from envs.reacher import (
    ARM_COLOURS,
    BACKGROUND_COLOURS,
    DOMAINS,
    JOINT2_LIMIT,
    MAX_DELTA,
    R_MAX,
    R_MIN,
    REACH_BONUS,
    REACH_TOLERANCE,
    SCENE_SPACE,
    STATE_BINS,
    TARGET_COLOURS,
    VIEW,
    ReacherEnv,
    ReacherGroundTruth,
    forward_kinematics,
    inverse_kinematics,
    render_scene,
    scripted_action,
    state_from_bins,
    target_position,
)

BG = list(BACKGROUND_COLOURS.values())
TARGET = list(TARGET_COLOURS.values())
ARM = list(ARM_COLOURS.values())


def pixel(size: int, x: float, y: float) -> tuple[int, int]:
    """(row, col) of the pixel containing world point (x, y)."""
    scale = size / (2 * VIEW)
    return int((VIEW - y) * scale), int((x + VIEW) * scale)


def test_spaces_and_obs():
    env = ReacherEnv(size=48)
    obs, info = env.reset(seed=0)
    assert obs.shape == (48, 48, 3) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    assert env.action_space.shape == (2,) and env.action_space.dtype == np.float32
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    assert info["scene"].shape == (3,) and info["scene"].dtype == np.int64
    assert info["state"].shape == (4,) and info["state"].dtype == np.float64
    assert info["distance"] >= 2 * REACH_TOLERANCE and not info["is_success"]


def rollout(env: ReacherEnv, seed: int, actions: np.ndarray):
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, False, info["scene"], info["state"])]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        out.append((obs, r, term, info["scene"], info["state"]))
        if term or trunc:
            obs, info = env.reset()
            out.append((obs, 0.0, False, info["scene"], info["state"]))
    return out


def test_seeded_resets_and_steps_reproduce():
    actions = np.random.default_rng(1).uniform(-1, 1, size=(120, 2)).astype(np.float32)
    a = rollout(ReacherEnv(size=32, max_steps=40), 7, actions)
    b = rollout(ReacherEnv(size=32, max_steps=40), 7, actions)
    assert len(a) == len(b)
    for (oa, ra, ta, sa, qa), (ob, rb, tb, sb, qb) in zip(a, b):
        np.testing.assert_array_equal(oa, ob)
        assert ra == rb and ta == tb
        np.testing.assert_array_equal(sa, sb)
        np.testing.assert_array_equal(qa, qb)
    assert len({tuple(x[3]) for x in a}) > 1  # several episodes, several scenes
    c = rollout(ReacherEnv(size=32, max_steps=40), 8, actions)
    assert not np.array_equal(a[0][0], c[0][0])


def test_reset_samples_from_domain():
    env = ReacherEnv(domain="source", size=32)
    for seed in range(30):
        _, info = env.reset(seed=seed)
        assert DOMAINS["source"].contains(info["scene"])
        j1, j2, angle, radius = info["state"]
        assert -math.pi <= j1 < math.pi and abs(j2) <= JOINT2_LIMIT
        assert -math.pi <= angle < math.pi and R_MIN <= radius <= R_MAX


# -- physics and reward -----------------------------------------------------------------------
def place(env: ReacherEnv, state, scene=(0, 0, 0), seed=0):
    return env.reset(seed=seed, options={"scene": scene, "state": state})


def test_kinematics_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        r, ang = rng.uniform(R_MIN, R_MAX), rng.uniform(-math.pi, math.pi)
        x, y = target_position(ang, r)
        for q1, q2 in inverse_kinematics(x, y):
            _, tip = forward_kinematics(q1, q2)
            assert tip == pytest.approx((x, y), abs=1e-9)
            assert abs(q2) <= JOINT2_LIMIT  # both elbow solutions are legal in the target range


def test_velocity_control_wraps_and_clips():
    env = ReacherEnv(size=32, max_steps=500)
    place(env, (math.pi - 0.05, JOINT2_LIMIT - 0.05, 0.0, R_MIN))
    _, _, _, _, info = env.step(np.array([1.0, 1.0], dtype=np.float32))
    j1, j2 = info["state"][:2]
    assert j1 == pytest.approx(-math.pi + 0.1)  # wrapped
    assert j2 == JOINT2_LIMIT  # clipped at the elbow limit
    _, _, _, _, info = env.step(np.array([5.0, -0.5], dtype=np.float32))  # clipped to 1
    assert info["state"][0] == pytest.approx(-math.pi + 0.1 + MAX_DELTA)
    assert info["state"][1] == pytest.approx(JOINT2_LIMIT - 0.5 * MAX_DELTA)
    assert info["state"][2:].tolist() == [0.0, R_MIN]  # the target never moves


def test_reward_is_minus_distance_then_bonus_and_termination():
    env = ReacherEnv(size=32)
    # arm straight along +x (tip at (1, 0)), target at (0.85, 0): 0.15 away, out of reach
    place(env, (0.0, 0.0, 0.0, R_MAX - 0.05))
    _, r, term, _, info = env.step(np.zeros(2, dtype=np.float32))
    assert r == pytest.approx(-0.15) and not term and info["distance"] == pytest.approx(0.15)
    # bend the elbow a little: tip comes closer to (0.9, 0) than the tolerance
    q1, q2 = inverse_kinematics(R_MAX, 0.0)[0]
    place(env, (q1, q2 - 0.3 * MAX_DELTA, 0.0, R_MAX))
    _, r, term, trunc, info = env.step(np.array([0.0, 0.3], dtype=np.float32))
    assert info["distance"] < REACH_TOLERANCE and info["is_success"]
    assert r == pytest.approx(REACH_BONUS - info["distance"]) and term and not trunc
    env = ReacherEnv(size=32, terminate_on_reach=False)
    place(env, (q1, q2, 0.0, R_MAX))
    _, r, term, _, _ = env.step(np.zeros(2, dtype=np.float32))
    assert r == pytest.approx(REACH_BONUS) and not term


def test_truncation_at_max_steps():
    env = ReacherEnv(size=32, max_steps=5)
    place(env, (0.0, 0.0, math.pi, R_MAX))  # target behind the base: not reachable in 5 steps
    flags = [env.step(np.zeros(2, dtype=np.float32))[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]


def test_scripted_controller_reaches_and_reward_scale_is_sane():
    """The task is solvable and reaching pays: scripted ≫ random in return."""
    env = ReacherEnv(size=32, max_steps=100)
    rng = np.random.default_rng(0)
    scripted, random = [], []
    for seed in range(20):
        _, info = env.reset(seed=seed)
        ret, done = 0.0, False
        while not done:
            np.testing.assert_array_equal(env.oracle_action(), scripted_action(info["state"]))
            _, r, term, trunc, info = env.step(env.oracle_action())
            ret += r
            done = term or trunc
        assert term and info["is_success"], f"seed {seed}: scripted controller did not reach"
        scripted.append(ret)
        _, info = env.reset(seed=seed)
        ret, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
            ret += r
            done = term or trunc
        random.append(ret)
    assert -20 < np.mean(scripted) < 0 and np.mean(random) < -40
    assert np.mean(scripted) - np.mean(random) > 30


def test_invalid_arguments_name_the_choices():
    with pytest.raises(KeyError, match="presets are"):
        ReacherEnv(domain="nope")
    with pytest.raises(ValueError, match="rgb_array"):
        ReacherEnv(render_mode="human")
    with pytest.raises(ValueError, match="size"):
        ReacherEnv(size=16)
    env = ReacherEnv(size=32)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2))
    with pytest.raises(RuntimeError, match="reset"):
        env.oracle_action()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="2 finite"):
        env.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="2 finite"):
        env.step(np.zeros(3))
    with pytest.raises(KeyError, match="valid"):
        env.reset(options={"colour": 1})
    with pytest.raises(ValueError, match="joint2"):
        env.reset(options={"state": (0.0, 3.0, 0.0, 0.5)})
    with pytest.raises(ValueError, match="scene"):
        env.reset(options={"scene": (0, 0, 4)})


# -- rendering --------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 64, 84])
@pytest.mark.parametrize("scene", [(0, 0, 0), (1, 2, 3), (3, 3, 2), (2, 1, 1)])
def test_renderer_draws_requested_factors(size, scene):
    bg, tgt, arm = scene
    state = (math.pi / 2, 0.0, -math.pi / 2, 0.7)  # arm straight up, target straight down
    frame = render_scene(scene, state, size)
    assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
    for corner in (frame[0, 0], frame[0, -1], frame[-1, 0], frame[-1, -1]):
        assert tuple(corner) == BG[bg]
    assert tuple(frame[pixel(size, 0.0, -0.7)]) == TARGET[tgt]  # target centre
    for y in (0.0, 0.25, 0.5, 0.75, 0.97):  # base, link 1, elbow, link 2, fingertip
        r, c = pixel(size, 0.0, y)
        near = frame[r - 1 : r + 2, c - 1 : c + 2].reshape(-1, 3)  # anti-aliased edges blend
        assert (near == ARM[arm]).all(-1).any(), y
    assert tuple(frame[pixel(size, 0.5, 0.5)]) == BG[bg]  # away from everything


def test_frames_change_smoothly_with_the_angles():
    """Sub-pixel drawing: a small joint move changes a few pixels, never nothing."""
    a = render_scene((0, 0, 0), (0.3, 0.5, 2.0, 0.6), 64)
    b = render_scene((0, 0, 0), (0.3 + 0.02, 0.5, 2.0, 0.6), 64)
    changed = (a != b).any(-1).sum()
    assert 0 < changed < 100


def test_palettes_are_distinct():
    colours = np.array(BG + TARGET + ARM, dtype=float)
    d = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert d[~np.eye(len(colours), dtype=bool)].min() > 40


# -- domains ------------------------------------------------------------------------------------
def test_domain_protocol():
    high = lambda dom, f: dom.combos[:, SCENE_SPACE.index(f)] >= 2  # noqa: E731
    vision = DOMAINS["vision"]
    assert set(DOMAINS) == {"all", "source", "vision", "target_background_target", "target_all_new"}
    # the name every env used before is still accepted, for the same preset
    assert DOMAINS["target_floor_object"] is DOMAINS["target_background_target"] and "target_floor_object" in DOMAINS
    assert vision.values_seen() == {f.name: tuple(range(f.size)) for f in SCENE_SPACE.factors}
    for target in ("target_background_target", "target_all_new"):
        t = DOMAINS[target]
        assert not t.overlaps(vision) and not t.overlaps(DOMAINS["source"])
        assert (high(t, "background_colour") & high(t, "target_colour")).all()
    assert not high(DOMAINS["target_background_target"], "arm_colour").any()
    assert high(DOMAINS["target_all_new"], "arm_colour").all()


# -- ground-truth data --------------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 64])
def test_ground_truth_data(size):
    data = ReacherGroundTruth(size=size)
    assert isinstance(data, GroundTruthData)
    assert data.factor_names[:3] == SCENE_SPACE.names == data.scene_factor_names()
    assert data.factor_sizes == (4, 4, 4) + STATE_BINS
    assert data.observation_shape == (3, size, size)
    rng = np.random.default_rng(0)
    f = data.sample_factors(50, rng)
    assert f.shape == (50, 7) and f.dtype == np.int64
    assert ((f >= 0) & (f < np.array(data.factor_sizes))).all()
    x = data.sample_observations_from_factors(f, rng)
    assert x.shape == (50, 3, size, size) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    with pytest.raises(ValueError, match="out of range"):
        data.render_factors(np.array([[0, 0, 0, 16, 0, 0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        data.render_factors(np.zeros((1, 4), dtype=np.int64))


def test_state_bins_cover_the_ranges():
    lo = state_from_bins(np.zeros((1, 4), dtype=np.int64))[0]
    hi = state_from_bins(np.array([[b - 1 for b in STATE_BINS]]))[0]
    assert lo[0] > -math.pi and hi[0] < math.pi
    assert lo[1] > -JOINT2_LIMIT and hi[1] < JOINT2_LIMIT
    assert R_MIN < lo[3] < hi[3] < R_MAX


@pytest.mark.parametrize("size", [32, 64])
def test_ground_truth_renders_equal_env_frames(size):
    env = ReacherEnv(size=size)
    data = ReacherGroundTruth(size=size)
    f = data.sample_factors(20, np.random.default_rng(1))
    frames = []
    for row in f:
        obs, _ = env.reset(seed=0, options={"scene": row[:3], "state": state_from_bins(row[None, 3:])[0]})
        frames.append(obs)
    expected = np.stack(frames).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    np.testing.assert_array_equal(data.sample_observations_from_factors(f, np.random.default_rng(0)), expected)
