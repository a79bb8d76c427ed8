"""Seek-avoid v1: rewards by identity, rendering, domains, ground truth (what every env promises: test_conformance.py)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs.factors import Domain, GroundTruthData
from envs.registry import get_env_info, make_env
from envs.seek_avoid_v1 import (
    AGENT_COLOUR,
    CELLS,
    DOMAINS,
    FLOOR_COLOURS,
    OBJECT_SETS,
    SCENE_SPACE,
    WALL_COLOURS,
    SeekAvoidV1Env,
    SeekAvoidV1GroundTruth,
    cell_bounds,
    render_batch,
    render_scene,
    sample_states,
    shape_masks,
)

FLOOR = list(FLOOR_COLOURS.values())
WALL = list(WALL_COLOURS.values())
SETS = list(OBJECT_SETS.values())


def test_registered_and_made_by_short_name():
    info = get_env_info("seek_avoid_v1")
    assert info.gym_id == "darla/SeekAvoid-v1" and info.action_kind == "discrete"
    env = make_env("seek_avoid_v1", "source", size=32)
    assert isinstance(env.unwrapped, SeekAvoidV1Env)
    assert isinstance(gym.make("darla/SeekAvoid-v1").unwrapped, SeekAvoidV1Env)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8
    assert info["scene"].shape == (3,) and info["state"].shape == (6,)
    assert ((info["state"] >= 0) & (info["state"] < CELLS)).all()


def test_reset_samples_from_domain_and_distinct_cells():
    env = SeekAvoidV1Env(domain="source", size=32)
    for seed in range(40):
        _, info = env.reset(seed=seed)
        assert DOMAINS["source"].contains(info["scene"])
        s = info["state"].tolist()
        assert len({(s[0], s[1]), (s[2], s[3]), (s[4], s[5])}) == 3


# -- rendering -------------------------------------------------------------------------------
def sprite_pixels(size: int, shape: str, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a sprite's pixels in cell (x, y)."""
    b = cell_bounds(size)
    m = shape_masks(int(b[y + 1] - b[y]), int(b[x + 1] - b[x]))[shape]
    rows, cols = np.nonzero(m)
    return rows + b[y], cols + b[x]


@pytest.mark.parametrize("size", [32, 48, 64, 84])
@pytest.mark.parametrize("scene", [(0, 0, 0), (1, 2, 1), (3, 3, 2), (2, 1, 3)])
def test_renderer_draws_requested_factors(size, scene):
    floor, wall, obj = scene
    agent, good, bad = (0, 0), (2, 1), (3, 3)
    frame = render_scene(scene, agent, good, bad, size)
    assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
    b = cell_bounds(size)
    assert b[0] >= 1  # a visible wall frame
    for border in (frame[: b[0]], frame[b[-1] :], frame[:, : b[0]], frame[:, b[-1] :]):
        assert (border == WALL[wall]).all()
    (good_shape, good_rgb), (bad_shape, bad_rgb) = SETS[obj]
    for shape, cell, rgb in (("agent", agent, AGENT_COLOUR), (good_shape, good, good_rgb), (bad_shape, bad, bad_rgb)):
        rows, cols = sprite_pixels(size, shape, *cell)
        assert len(rows) >= 0.3 * (b[1] - b[0]) ** 2  # large: about a third of the cell or more
        assert (frame[rows, cols] == rgb).all(), shape
        # every other pixel of the cell is floor
        cell_px = frame[b[cell[1]] : b[cell[1] + 1], b[cell[0]] : b[cell[0] + 1]]
        assert ((cell_px == rgb).all(-1) | (cell_px == FLOOR[floor]).all(-1)).all()
    for x in range(CELLS):
        for y in range(CELLS):
            if (x, y) not in (agent, good, bad):
                assert (frame[b[y] : b[y + 1], b[x] : b[x + 1]] == FLOOR[floor]).all(), (x, y)


def test_each_identity_has_its_own_colour_and_silhouette():
    """Good and bad differ in shape and colour within every set; sets 2, 3 repaint 0, 1."""
    masks = shape_masks(7, 7)
    for (gs, gc), (bs, bc) in SETS:
        assert gc != bc and gs != bs
        assert (masks[gs] != masks[bs]).sum() >= 10  # silhouettes differ in many pixels, not corners
    colours = [c for pair in SETS for _, c in pair]
    assert len(set(colours)) == len(colours)
    assert [s for s, _ in SETS[0]] == [s for s, _ in SETS[2]] and [s for s, _ in SETS[1]] == [s for s, _ in SETS[3]]
    # the two object sets of the source use four different silhouettes
    assert len({s for pair in SETS[:2] for s, _ in pair}) == 4


def test_colour_rules_of_the_source_do_not_identify_repainted_objects():
    """Where every source good object outranks every source bad one on a colour channel (or on
    brightness), some repainted pair breaks that order, so only shape identifies the objects on
    ``target_all_new``."""
    source, repainted = SETS[:2], SETS[2:]

    def features(c):
        return np.array([*c, sum(c)], dtype=float)  # R, G, B and brightness

    rules = 0
    for k in range(4):
        good = [features(g[1])[k] for g, _ in source]
        bad = [features(b[1])[k] for _, b in source]
        for sign in (1, -1):
            if min(sign * np.array(good)) > max(sign * np.array(bad)):  # the source teaches this rule
                rules += 1
                held = [sign * features(g[1])[k] > sign * features(b[1])[k] for g, b in repainted]
                assert not all(held), f"colour feature {k} tells good from bad in the repainted sets too"
    assert rules >= 1  # the source does teach a colour rule (green = good): the check is not vacuous


def test_palettes_are_distinct():
    objects = [c for pair in SETS for _, c in pair]
    colours = np.array(FLOOR + WALL + objects + [AGENT_COLOUR], dtype=float)
    d = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert d[~np.eye(len(colours), dtype=bool)].min() > 40


def test_render_batch_equals_per_frame_render():
    rng = np.random.default_rng(0)
    scenes = np.stack([rng.integers(s, size=50) for s in SCENE_SPACE.sizes], axis=1)
    states = sample_states(50, rng)
    batch = render_batch(scenes, states, 32)
    for i in range(50):
        s = states[i]
        np.testing.assert_array_equal(batch[i], render_scene(scenes[i], s[0:2], s[2:4], s[4:6], 32))


def test_render_rejects_bad_input():
    with pytest.raises(ValueError, match="size"):
        render_scene((0, 0, 0), (0, 0), (1, 1), (2, 2), size=16)
    with pytest.raises(ValueError, match="outside"):
        render_scene((0, 0, 0), (CELLS, 0), (1, 1), (2, 2), size=32)
    with pytest.raises(ValueError, match="out of range"):
        render_scene((0, 0, 4), (0, 0), (1, 1), (2, 2), size=32)


# -- dynamics and reward ---------------------------------------------------------------------
def place(env: SeekAvoidV1Env, state, scene=(0, 0, 0), seed=0):
    return env.reset(seed=seed, options={"scene": scene, "state": state})


@pytest.mark.parametrize("scene", [(0, 0, 0), (1, 1, 1), (3, 2, 2), (2, 3, 3)])
def test_reward_depends_on_identity_only(scene):
    """Same cells, any room and object set: onto the good object +1, onto the bad one −1."""
    env = SeekAvoidV1Env(size=32)
    place(env, (1, 1, 2, 1, 1, 2), scene=scene)
    _, r, _, _, info = env.step(3)  # right, onto good
    assert r == 1.0
    ax, ay, gx, gy, bx, by = info["state"].tolist()
    assert (ax, ay) == (2, 1) and (bx, by) == (1, 2) and (gx, gy) not in {(2, 1), (1, 2)}
    place(env, (1, 1, 2, 1, 1, 2), scene=scene)
    _, r, _, _, info = env.step(1)  # down, onto bad
    ax, ay, gx, gy, bx, by = info["state"].tolist()
    assert r == -1.0 and (gx, gy) == (2, 1) and (bx, by) not in {(1, 2), (2, 1)}
    # swap which object sits where: the reward follows identity, not the cell
    place(env, (1, 1, 1, 2, 2, 1), scene=scene)
    assert env.step(3)[1] == -1.0


def test_returns_of_fixed_actions_do_not_depend_on_scene():
    """A fixed action sequence from fixed cells earns the same rewards in every scene (respawns
    draw from the same seeded stream), so nothing but identity and position decides reward."""
    actions = np.random.default_rng(0).integers(4, size=60)
    env = SeekAvoidV1Env(size=32)
    runs = []
    for scene in SCENE_SPACE.all_combinations()[::7]:
        place(env, (0, 0, 3, 3, 1, 2), scene=scene, seed=5)
        runs.append([env.step(a)[1] for a in actions])
    assert all(r == runs[0] for r in runs) and any(runs[0])


def test_walls_block_and_truncation():
    env = SeekAvoidV1Env(size=32, max_steps=5)
    place(env, (0, 0, 3, 3, 2, 3))
    for a in (0, 2):  # up and left into the wall
        _, r, _, _, info = env.step(a)
        assert info["state"][:2].tolist() == [0, 0] and r == 0.0
    flags = [env.step(3)[2:4] for _ in range(3)]
    assert flags == [(False, False)] * 2 + [(False, True)]


def test_oracle_beats_random_and_never_steps_on_bad():
    env = SeekAvoidV1Env(domain="source", size=32, max_steps=100)
    env.reset(seed=0)
    total = 0.0
    for _ in range(300):
        _, r, _, trunc, _ = env.step(env.oracle_action())
        assert r >= 0.0
        total += r
        if trunc:
            env.reset()
    assert total >= 60  # a pickup every ≤ 5 steps
    a, b = SeekAvoidV1Env(size=32), SeekAvoidV1Env(size=32)
    a.reset(seed=3), b.reset(seed=3)
    assert a.oracle_action() == b.oracle_action()


def test_true_state_is_cells_and_object_set():
    env = SeekAvoidV1Env(size=32)
    place(env, (0, 1, 2, 3, 3, 0), scene=(1, 0, 2))
    s = env.true_state()
    np.testing.assert_allclose(s[:6], np.array([0, 1, 2, 3, 3, 0]) / (CELLS - 1))
    np.testing.assert_array_equal(s[6:], [0, 0, 1, 0])


# -- domains ------------------------------------------------------------------------------
def high(domain: Domain, factor: str) -> np.ndarray:
    return domain.combos[:, SCENE_SPACE.index(factor)] >= 2


def test_domain_protocol():
    """A = floor, B = wall, C = object set: the room is the held-out conjunction."""
    assert set(DOMAINS) == {"all", "source", "vision", "target_floor_wall", "target_all_new"}
    # the name every env used before is still accepted, for the same preset
    assert DOMAINS["target_floor_object"] is DOMAINS["target_floor_wall"] and "target_floor_object" in DOMAINS
    vision, source = DOMAINS["vision"], DOMAINS["source"]
    assert len(DOMAINS["all"]) == np.prod(SCENE_SPACE.sizes)
    assert vision.values_seen() == {f.name: tuple(range(f.size)) for f in SCENE_SPACE.factors}
    assert not (high(vision, "floor_colour") & high(vision, "wall_colour")).any()
    assert {tuple(r) for r in source.combos.tolist()} <= {tuple(r) for r in vision.combos.tolist()}
    for name in ("floor_colour", "wall_colour", "object_set"):
        assert not high(source, name).any()
    assert source.values_seen()["object_set"] == (0, 1)  # the policy trains on both object sets
    for target in ("target_floor_wall", "target_all_new"):
        t = DOMAINS[target]
        assert not t.overlaps(vision) and not t.overlaps(source)
        assert (high(t, "floor_colour") & high(t, "wall_colour")).all()
    # DMLab's test: the source's objects in a re-textured room; then repainted objects too
    assert not high(DOMAINS["target_floor_wall"], "object_set").any()
    assert high(DOMAINS["target_all_new"], "object_set").all()
    assert not DOMAINS["target_floor_wall"].overlaps(DOMAINS["target_all_new"])


# -- ground-truth data ----------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 64])
def test_ground_truth_data(size):
    data = SeekAvoidV1GroundTruth(size=size)
    assert isinstance(data, GroundTruthData)
    assert data.factor_names[:3] == SCENE_SPACE.names == data.scene_factor_names()
    assert data.factor_sizes == (4, 4, 4) + (CELLS,) * 6
    assert data.observation_shape == (3, size, size)
    rng = np.random.default_rng(0)
    f = data.sample_factors(400, rng)
    assert f.shape == (400, 9) and f.dtype == np.int64
    assert ((f >= 0) & (f < np.array(data.factor_sizes))).all()
    cells = f[:, 3::2] + CELLS * f[:, 4::2]
    assert (cells[:, 0] != cells[:, 1]).all() and (cells[:, 1] != cells[:, 2]).all() and (cells[:, 0] != cells[:, 2]).all()
    for j in range(3, 9):  # every coordinate takes every value
        assert set(f[:, j].tolist()) == set(range(CELLS))
    x = data.sample_observations_from_factors(f[:50], rng)
    assert x.shape == (50, 3, size, size) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0


