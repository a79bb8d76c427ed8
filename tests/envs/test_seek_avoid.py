"""Seek-avoid v0: spaces, rewards, rendering, domains, ground-truth data, frozen frames (what every env promises: test_conformance.py)."""

from __future__ import annotations

import numpy as np
import pytest

from envs.factors import Domain, GroundTruthData
from envs.seek_avoid import (
    AGENT_COLOUR,
    DOMAINS,
    FLOOR_COLOURS,
    INTERIOR,
    LAYOUTS,
    OBJECT_COLOURS,
    SCENE_SPACE,
    WALL_COLOURS,
    SeekAvoidEnv,
    SeekAvoidGroundTruth,
    cell_bounds,
    render_scene,
)

FLOOR = list(FLOOR_COLOURS.values())
WALL = list(WALL_COLOURS.values())
OBJ = list(OBJECT_COLOURS.values())


def cell_centre(size: int, x: int, y: int) -> tuple[int, int]:
    """(row, col) of the pixel at the centre of interior cell (x, y)."""
    b = cell_bounds(size)
    return (b[y + 1] + b[y + 2]) // 2, (b[x + 1] + b[x + 2]) // 2


def cell_corner(size: int, x: int, y: int) -> tuple[int, int]:
    """(row, col) of the top-left pixel of interior cell (x, y): no sprite reaches it."""
    b = cell_bounds(size)
    return b[y + 1], b[x + 1]


@pytest.mark.parametrize("size", [32, 64])
def test_spaces_and_obs(size):
    env = SeekAvoidEnv(size=size)
    obs, info = env.reset(seed=0)
    assert obs.shape == (size, size, 3) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    assert env.action_space.n == 4
    assert info["scene"].shape == (4,) and info["scene"].dtype == np.int64
    assert info["state"].shape == (6,) and info["state"].dtype == np.int64
    assert ((info["state"] >= 0) & (info["state"] < INTERIOR)).all()


def test_reset_samples_from_domain():
    env = SeekAvoidEnv(domain="source", size=32)
    for seed in range(30):
        _, info = env.reset(seed=seed)
        assert DOMAINS["source"].contains(info["scene"])


@pytest.mark.parametrize("size", [32, 48, 64, 84])
@pytest.mark.parametrize("scene", [(0, 0, 0, 0), (1, 2, 3, 1), (3, 3, 2, 2), (2, 1, 1, 0)])
def test_renderer_draws_requested_factors(size, scene):
    floor, wall, obj, layout = scene
    agent, good, bad = (0, 0), (2, 2), (5, 5)  # free in every layout
    frame = render_scene(scene, agent, good, bad, size)
    assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
    b = cell_bounds(size)
    # the 1-cell border is wall colour all round
    for border in (frame[: b[1]], frame[b[7] :], frame[:, : b[1]], frame[:, b[7] :]):
        assert (border == WALL[wall]).all()
    # obstacles in wall colour, untouched free cells in floor colour
    for x in range(INTERIOR):
        for y in range(INTERIOR):
            colour = WALL[wall] if (x, y) in LAYOUTS[list(LAYOUTS)[layout]] else FLOOR[floor]
            if (x, y) not in (agent, good, bad):
                cell = frame[b[y + 1] : b[y + 2], b[x + 1] : b[x + 2]]
                assert (cell == colour).all(), (x, y)
            elif (x, y) != bad:  # circle and plus leave the corners; a small square does not
                assert tuple(frame[cell_corner(size, x, y)]) == tuple(FLOOR[floor])
    assert tuple(frame[cell_centre(size, *good)]) == OBJ[obj]
    assert tuple(frame[cell_centre(size, *bad)]) == OBJ[obj]
    assert tuple(frame[cell_centre(size, *agent)]) == AGENT_COLOUR
    # good (circle) and bad (square) differ only in shape
    cg = frame[b[3] : b[4], b[3] : b[4]]
    cb = frame[b[6] : b[7], b[6] : b[7]]
    if cg.shape == cb.shape:
        assert (cg == OBJ[obj]).all(-1).sum() < (cb == OBJ[obj]).all(-1).sum()


def test_palettes_are_distinct():
    colours = np.array(FLOOR + WALL + OBJ + [AGENT_COLOUR], dtype=float)
    d = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert d[~np.eye(len(colours), dtype=bool)].min() > 40


def test_render_scene_rejects_bad_input():
    with pytest.raises(ValueError, match="size"):
        render_scene((0, 0, 0, 0), (0, 0), (1, 1), (2, 2), size=16)
    with pytest.raises(ValueError, match="interior"):
        render_scene((0, 0, 0, 0), (6, 0), (1, 1), (2, 2), size=32)


def place(env: SeekAvoidEnv, state, scene=(0, 0, 0, 0), seed=0):
    return env.reset(seed=seed, options={"scene": scene, "state": state})


def test_reward_and_respawn_good():
    env = SeekAvoidEnv(size=32)
    place(env, (0, 0, 1, 0, 0, 1))
    obs, r, term, trunc, info = env.step(3)  # right onto the good object
    assert r == 1.0 and not term and not trunc
    ax, ay, gx, gy, bx, by = info["state"].tolist()
    assert (ax, ay) == (1, 0) and (bx, by) == (0, 1)
    assert (gx, gy) not in {(1, 0), (0, 1)}
    np.testing.assert_array_equal(obs, render_scene(info["scene"], (ax, ay), (gx, gy), (bx, by), 32))


def test_reward_and_respawn_bad():
    env = SeekAvoidEnv(size=32)
    place(env, (0, 0, 1, 0, 0, 1))
    _, r, _, _, info = env.step(1)  # down onto the bad object
    ax, ay, gx, gy, bx, by = info["state"].tolist()
    assert r == -1.0 and (ax, ay) == (0, 1) and (gx, gy) == (1, 0)
    assert (bx, by) not in {(0, 1), (1, 0)}


def test_respawn_avoids_obstacles():
    env = SeekAvoidEnv(size=32)
    blocks = set(LAYOUTS["blocks"])
    for seed in range(20):
        place(env, (0, 0, 1, 0, 0, 1), scene=(0, 0, 0, 1), seed=seed)
        _, _, _, _, info = env.step(3)
        assert tuple(info["state"][2:4].tolist()) not in blocks


def test_walls_and_obstacles_block():
    env = SeekAvoidEnv(size=32)
    place(env, (0, 0, 5, 5, 4, 5))
    for a in (0, 2):  # up and left into the border
        _, r, _, _, info = env.step(a)
        assert info["state"][:2].tolist() == [0, 0] and r == 0.0
    place(env, (0, 1, 5, 5, 4, 5), scene=(0, 0, 0, 1))  # (1, 1) is a block
    _, _, _, _, info = env.step(3)
    assert info["state"][:2].tolist() == [0, 1]
    _, _, _, _, info = env.step(1)
    assert info["state"][:2].tolist() == [0, 2]


def test_truncation_at_max_steps():
    env = SeekAvoidEnv(size=32, max_steps=5)
    env.reset(seed=0)
    flags = [env.step(i % 4)[2:4] for i in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]


# -- domains ------------------------------------------------------------------------------
def high(domain: Domain, factor: str) -> np.ndarray:
    return domain.combos[:, SCENE_SPACE.index(factor)] >= 2


def test_domain_protocol():
    assert set(DOMAINS) == {"all", "source", "vision", "target_floor_object", "target_all_new"}
    vision = DOMAINS["vision"]
    assert len(DOMAINS["all"]) == np.prod(SCENE_SPACE.sizes)
    for target in ("target_floor_object", "target_all_new"):
        assert not DOMAINS[target].overlaps(vision)
        assert (high(DOMAINS[target], "floor_colour") & high(DOMAINS[target], "object_colour")).all()
    assert not high(DOMAINS["target_floor_object"], "wall_colour").any()
    assert high(DOMAINS["target_all_new"], "wall_colour").all()
    assert vision.values_seen() == {f.name: tuple(range(f.size)) for f in SCENE_SPACE.factors}
    assert not (high(vision, "floor_colour") & high(vision, "object_colour")).any()
    vision_rows = {tuple(r) for r in vision.combos.tolist()}
    assert {tuple(r) for r in DOMAINS["source"].combos.tolist()} <= vision_rows
    for name in ("floor_colour", "wall_colour", "object_colour"):
        assert not high(DOMAINS["source"], name).any()
    for d in DOMAINS.values():  # layout is free everywhere
        assert d.values_seen()["layout"] == (0, 1, 2)


# -- ground-truth data ----------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 64])
def test_ground_truth_data(size):
    data = SeekAvoidGroundTruth(size=size)
    assert isinstance(data, GroundTruthData)
    assert data.factor_names[:4] == SCENE_SPACE.names == data.scene_factor_names()
    assert data.factor_sizes == (4, 4, 4, 3, 6, 6, 6, 6, 6, 6)
    assert data.observation_shape == (3, size, size)
    rng = np.random.default_rng(0)
    f = data.sample_factors(50, rng)
    assert f.shape == (50, 10) and f.dtype == np.int64
    assert ((f >= 0) & (f < np.array(data.factor_sizes))).all()
    x = data.sample_observations_from_factors(f, rng)
    assert x.shape == (50, 3, size, size) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0


@pytest.mark.parametrize("cell", range(3, 14))
def test_circle_and_square_differ_at_every_cell_size(cell):
    """Shape is the only reward cue: the two sprites must never render the same pixels."""
    from envs.seek_avoid import _shape_masks

    m = _shape_masks(cell, cell)
    assert not (m["circle"] & ~m["square"]).any()  # the circle sits inside its bounding square
    assert (m["square"] & ~m["circle"]).sum() >= 4  # ... and lacks at least the four corners


# -- v0 is frozen ---------------------------------------------------------------------------
V0_GOLDEN_SHA256 = "927126e2c15927830f1f018b0631d108cbcefe720e41086ea9f78d13176acba9"
"""sha256 of :func:`v0_digest`. Every table measured on darla/SeekAvoid-v0 reproduces only while
the env draws, steps, rewards, respawns and samples exactly as it did; a change to v0 belongs in
a new version (v1 lives in envs/seek_avoid_v1.py)."""


def v0_digest() -> str:
    """Hash frames, rewards, states, scenes and oracle actions of seeded v0 rollouts, plus
    ground-truth samples and renders, at 32 and 64 px."""
    import hashlib

    h = hashlib.sha256()
    for size in (32, 64):
        env = SeekAvoidEnv(size=size, max_steps=30)
        obs, info = env.reset(seed=123)
        h.update(obs.tobytes())
        for a in np.random.default_rng(0).integers(4, size=80):
            h.update(np.int64(env.oracle_action()).tobytes())
            obs, r, _, trunc, info = env.step(a)
            for part in (obs, np.float64(r), info["state"], info["scene"]):
                h.update(np.asarray(part).tobytes())
            if trunc:
                obs, info = env.reset()
                h.update(obs.tobytes())
        data = SeekAvoidGroundTruth(size, domain="vision")
        f = data.sample_factors(64, np.random.default_rng(1))
        h.update(f.tobytes())
        h.update(data.render_factors(f).tobytes())
    return h.hexdigest()


def test_v0_golden_frames_unchanged():
    assert v0_digest() == V0_GOLDEN_SHA256
