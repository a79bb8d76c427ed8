"""Seek-avoid: DARLA's DeepMind Lab task as a top-down RGB grid arena.

Higgins et al. (2017) train the agent to collect good objects and avoid bad ones in a room
whose colours change between domains. Here the room is an 8×8 grid (a 1-cell wall border
around a 6×6 interior), seen from above. One *good* object (a circle, +1) and one *bad* object
(a square, −1) share the scene's object colour, so only shape tells them apart and a policy
must not key on colour. Stepping onto an object gives its reward and respawns it elsewhere;
the episode only ends by truncation at ``max_steps``.

Scene factors (:data:`SCENE_SPACE`): floor colour, wall colour, object colour, layout. The
DARLA protocol (:mod:`envs.protocol`) uses A = floor, B = object, C = wall.

The same :func:`render_scene` draws RL frames and :class:`SeekAvoidGroundTruth` metric images,
so the vision stage is scored on exactly the factors the agent must see through.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.factors import (
    Domain,
    Factor,
    FactorSpace,
    check_env_args,
    reset_scene,
    sample_uniform_factors,
    to_chw_float,
)
from envs.grid import ACTIONS, first_move, move, pickup, respawn
from envs.protocol import darla_domains, resolve_domain

GRID = 8
"""Cells per side including the 1-cell wall border."""
INTERIOR = GRID - 2
"""Walkable cells per side; positions are interior coordinates 0..INTERIOR-1."""
MIN_SIZE = 24
"""Below 3 px per cell a circle and a square render identically."""

# Colour palettes: dark floors, mid-tone walls, saturated objects, so that every pair of
# colours that can share a frame is far apart in RGB and none is near the agent's white.
FLOOR_COLOURS: dict[str, tuple[int, int, int]] = {
    "dark grey": (50, 50, 50),
    "navy": (25, 30, 105),
    "maroon": (105, 25, 40),
    "dark green": (25, 90, 45),
}
WALL_COLOURS: dict[str, tuple[int, int, int]] = {
    "light grey": (170, 170, 170),
    "teal": (30, 145, 145),
    "purple": (125, 65, 170),
    "tan": (185, 150, 95),
}
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (235, 45, 45),
    "blue": (50, 110, 255),
    "green": (60, 225, 80),
    "orange": (255, 160, 25),
}
AGENT_COLOUR: tuple[int, int, int] = (255, 255, 255)
"""White: in no palette, so the agent is never confused with a scene colour."""

# Obstacle cells per layout, in interior (x, y) coordinates; drawn in the wall colour.
LAYOUTS: dict[str, tuple[tuple[int, int], ...]] = {
    "empty": (),
    "blocks": ((1, 1), (4, 1), (1, 4), (4, 4)),
    "wall with gaps": ((3, 0), (3, 2), (3, 3), (3, 5)),  # gaps at y = 1 and y = 4
}

SCENE_SPACE = FactorSpace(
    (
        Factor("floor_colour", tuple(FLOOR_COLOURS)),
        Factor("wall_colour", tuple(WALL_COLOURS)),
        Factor("object_colour", tuple(OBJECT_COLOURS)),
        Factor("layout", tuple(LAYOUTS)),
    )
)
STATE_NAMES: tuple[str, ...] = ("agent_x", "agent_y", "good_x", "good_y", "bad_x", "bad_y")
"""Order of ``info["state"]`` and of the state factors of :class:`SeekAvoidGroundTruth`."""

DOMAINS: dict[str, Domain] = darla_domains(
    SCENE_SPACE, a="floor_colour", b="object_colour", c="wall_colour"
)


_FLOOR_RGB = np.array(list(FLOOR_COLOURS.values()), dtype=np.uint8)
_WALL_RGB = np.array(list(WALL_COLOURS.values()), dtype=np.uint8)
_OBJECT_RGB = np.array(list(OBJECT_COLOURS.values()), dtype=np.uint8)
_AGENT_RGB = np.array(AGENT_COLOUR, dtype=np.uint8)
_LAYOUT_CELLS = tuple(LAYOUTS.values())


def cell_bounds(size: int) -> np.ndarray:
    """Pixel boundaries of the GRID cells along one axis: cell i spans [b[i], b[i+1]).

    Rounded from an even split so any ``size`` works (84 px → cells of 10 or 11 px).
    """
    return np.round(np.linspace(0, size, GRID + 1)).astype(np.int64)


def _shape_masks(h: int, w: int) -> dict[str, np.ndarray]:
    """Boolean (h, w) masks of the circle, square and plus for one cell, from pixel centres."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    dy, dx = np.abs(yy - h / 2), np.abs(xx - w / 2)
    m = min(h, w)
    # The square is the circle's bounding box, so the two differ exactly in the corners: the
    # circle lacks them at every cell size >= 3 px (a smaller square would equal the circle's
    # pixels at 6 px cells, and shape is the only thing that tells reward apart).
    r = 0.45 * m
    bar = max(0.5, 0.125 * m)  # plus arm half-thickness
    return {
        "circle": dy**2 + dx**2 <= r**2,
        "square": (dy <= r) & (dx <= r),
        "plus": ((dy <= bar) & (dx <= 0.45 * m)) | ((dx <= bar) & (dy <= 0.45 * m)),
    }


class _Sprites:
    """Per-size lookup: for each shape and interior cell, flat pixel indices into an HW frame.

    Flat indices make pasting a sprite one fancy assignment (``flat[idx] = colour``).
    """

    def __init__(self, size: int) -> None:
        b = cell_bounds(size)
        self.size = size
        self.bounds = b
        self.index: dict[str, list[list[np.ndarray]]] = {}
        masks: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        for shape in ("circle", "square", "plus"):
            rows: list[list[np.ndarray]] = []
            for y in range(INTERIOR):
                y0, y1 = b[y + 1], b[y + 2]
                row = []
                for x in range(INTERIOR):
                    x0, x1 = b[x + 1], b[x + 2]
                    hw = (int(y1 - y0), int(x1 - x0))
                    if hw not in masks:
                        masks[hw] = _shape_masks(*hw)
                    my, mx = np.nonzero(masks[hw][shape])
                    idx = (my + y0) * size + (mx + x0)
                    idx.setflags(write=False)
                    row.append(idx)
                rows.append(row)
            self.index[shape] = rows


@lru_cache(maxsize=16)
def _sprites(size: int) -> _Sprites:
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE} px (3 px per cell), got {size}")
    return _Sprites(size)


@lru_cache(maxsize=512)
def _background(size: int, floor: int, wall: int, layout: int) -> np.ndarray:
    """Read-only (size, size, 3) floor + border walls + layout obstacles; built once per scene."""
    b = _sprites(size).bounds
    frame = np.empty((size, size, 3), dtype=np.uint8)
    frame[:] = _WALL_RGB[wall]
    frame[b[1] : b[GRID - 1], b[1] : b[GRID - 1]] = _FLOOR_RGB[floor]
    for x, y in _LAYOUT_CELLS[layout]:
        frame[b[y + 1] : b[y + 2], b[x + 1] : b[x + 2]] = _WALL_RGB[wall]
    frame.setflags(write=False)
    return frame


def _draw(
    background: np.ndarray,
    sprites: _Sprites,
    object_rgb: np.ndarray,
    agent: Sequence[int],
    good: Sequence[int],
    bad: Sequence[int],
) -> np.ndarray:
    """Copy the background and paste bad, good, agent in that order (later ones on top)."""
    frame = background.copy()
    flat = frame.reshape(-1, 3)
    flat[sprites.index["square"][bad[1]][bad[0]]] = object_rgb
    flat[sprites.index["circle"][good[1]][good[0]]] = object_rgb
    flat[sprites.index["plus"][agent[1]][agent[0]]] = _AGENT_RGB
    return frame


def render_scene(
    scene: Sequence[int] | np.ndarray,
    agent: Sequence[int],
    good: Sequence[int],
    bad: Sequence[int],
    size: int = 64,
) -> np.ndarray:
    """Render one frame: uint8 (size, size, 3) for scene factors and interior (x, y) cells.

    Pure (cached backgrounds and masks aside); both the env and the ground-truth data call it,
    so RL frames and metric images come from one renderer. Sprites may overlap obstacles or
    each other; the draw order is bad, good, agent.
    """
    floor, wall, obj, layout = (int(v) for v in scene)
    for name, cell in (("agent", agent), ("good", good), ("bad", bad)):
        if not all(0 <= int(c) < INTERIOR for c in cell):
            raise ValueError(f"{name} cell {tuple(cell)} is outside the interior 0..{INTERIOR - 1}")
    return _draw(
        _background(size, floor, wall, layout),
        _sprites(size),
        _OBJECT_RGB[obj],
        [int(c) for c in agent],
        [int(c) for c in good],
        [int(c) for c in bad],
    )


def _free_cells(layout: int) -> tuple[tuple[int, int], ...]:
    blocked = set(_LAYOUT_CELLS[layout])
    return tuple((x, y) for y in range(INTERIOR) for x in range(INTERIOR) if (x, y) not in blocked)


_FREE = tuple(_free_cells(i) for i in range(len(_LAYOUT_CELLS)))
_FREE_SETS = tuple(frozenset(cells) for cells in _FREE)


class SeekAvoidEnv(gym.Env[np.ndarray, np.int64]):
    """Top-down seek-avoid arena; observations are uint8 (size, size, 3) RGB frames.

    ``info`` (reset and step) holds ``"scene"``: int64 (4,) scene factors in
    :data:`SCENE_SPACE` order, and ``"state"``: int64 (6,) interior cells in
    :data:`STATE_NAMES` order (agent x, y, good x, y, bad x, y).
    """

    metadata = {
        "render_modes": ["rgb_array"], "render_fps": 10,
        # what each drawn thing is, for legends (darla's report)
        "render_key": {
            "white plus": "the agent", "circle in the object colour": "good object (+1)", "square in the object colour": "bad object (−1)",
            "cells in the wall colour": "border wall and the layout's obstacles",
        },
    }

    def __init__(
        self,
        domain: str | Domain = "all",
        size: int = 64,
        max_steps: int = 100,
        render_mode: str | None = None,
    ) -> None:
        check_env_args(self.metadata, render_mode, max_steps)
        self.domain = resolve_domain(DOMAINS, domain, "seek_avoid")
        self.size = int(size)
        self.max_steps = int(max_steps)
        self.render_mode = render_mode
        self._sprites = _sprites(self.size)  # validates size
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self._scene = np.zeros(len(SCENE_SPACE), dtype=np.int64)
        self._background: np.ndarray | None = None
        self._object_rgb = _OBJECT_RGB[0]
        self._free: tuple[tuple[int, int], ...] = _FREE[0]
        self._free_set: frozenset[tuple[int, int]] = _FREE_SETS[0]
        self._agent = self._good = self._bad = (0, 0)
        self._frame: np.ndarray | None = None
        self._t = 0

    # -- gymnasium API ---------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Sample a scene from the domain and three distinct free cells, from ``np_random``.

        ``options`` may fix ``"scene"`` (4 factor classes; it need not be in the domain) and/or
        ``"state"`` (6 interior cells, :data:`STATE_NAMES` order; distinct free cells), for
        tests and for rendering chosen situations.
        """
        super().reset(seed=seed)
        rng = self.np_random
        self._scene, options = reset_scene(options, SCENE_SPACE, self.domain, rng)
        floor, wall, obj, layout = (int(v) for v in self._scene)
        self._background = _background(self.size, floor, wall, layout)
        self._object_rgb = _OBJECT_RGB[obj]
        self._free, self._free_set = _FREE[layout], _FREE_SETS[layout]
        if "state" in options:
            s = [int(v) for v in np.asarray(options["state"]).reshape(-1)]
            cells = [(s[0], s[1]), (s[2], s[3]), (s[4], s[5])] if len(s) == 6 else []
            if len(set(cells)) != 3 or not all(c in self._free_set for c in cells):
                raise ValueError(
                    f"state must be 6 ints {STATE_NAMES} naming 3 distinct free cells, got {s}"
                )
            self._agent, self._good, self._bad = cells
        else:
            a, g, b = rng.choice(len(self._free), size=3, replace=False)
            self._agent, self._good, self._bad = self._free[a], self._free[g], self._free[b]
        self._t = 0
        self._frame = self._render_frame()
        return self._frame, self._info()

    def step(
        self, action: int | np.integer
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._background is None:
            raise RuntimeError("call reset() before step()")
        self._agent = move(self._agent, action, self._free_set)  # outside the interior or an obstacle → blocked
        reward, self._good, self._bad = pickup(self._agent, self._good, self._bad, self._respawn)
        self._t += 1
        self._frame = self._render_frame()
        return self._frame, reward, False, self._t >= self.max_steps, self._info()

    def render(self) -> np.ndarray | None:
        """The current frame (a copy) for ``render_mode="rgb_array"``; None otherwise."""
        if self.render_mode != "rgb_array" or self._frame is None:
            return None
        return self._frame.copy()

    # -- internals -------------------------------------------------------------------------
    def oracle_action(self) -> int:
        """The first move of a shortest path to the good object that never steps on the bad one.

        A scripted expert that reads the true state, not pixels: the 1 of normalised scores (the
        random policy is the 0). Breadth-first search on the free cells, ties broken by action
        order, so it is deterministic.
        """
        if self._background is None:
            raise RuntimeError("call reset() before oracle_action()")
        a = first_move(self._agent, self._good, self._bad, self._free_set)
        if a is not None:
            return a
        # Unreachable (the bad object blocks a corridor): any move that does not step on it.
        for a, (dx, dy) in ACTIONS.items():
            if (self._agent[0] + dx, self._agent[1] + dy) != self._bad:
                return a
        return 0

    def _respawn(self, other: tuple[int, int]) -> tuple[int, int]:
        """A uniformly random free cell that is neither the agent's nor ``other``'s."""
        return respawn(self.np_random, self._free, self._agent, other)

    def _render_frame(self) -> np.ndarray:
        assert self._background is not None
        return _draw(
            self._background, self._sprites, self._object_rgb, self._agent, self._good, self._bad
        )

    def _info(self) -> dict[str, Any]:
        return {
            "scene": self._scene.copy(),
            "state": np.array((*self._agent, *self._good, *self._bad), dtype=np.int64),
        }


class SeekAvoidGroundTruth:
    """Seek-avoid as :class:`envs.factors.GroundTruthData`: scene factors + six cell coordinates.

    Factors are independent and uniform (scene factors restricted to ``domain``'s combinations
    when one is given), so sprites may overlap obstacles or one another; :func:`render_scene`
    draws them in the order bad, good, agent, exactly as the env does.
    """

    def __init__(self, size: int = 64, domain: str | Domain | None = None) -> None:
        _sprites(size)  # validates size
        self.size = int(size)
        self.domain = None if domain is None else resolve_domain(DOMAINS, domain, "seek_avoid")
        self.factor_names: tuple[str, ...] = SCENE_SPACE.names + STATE_NAMES
        self.factor_sizes: tuple[int, ...] = SCENE_SPACE.sizes + (INTERIOR,) * len(STATE_NAMES)
        self.observation_shape: tuple[int, int, int] = (3, self.size, self.size)

    def scene_factor_names(self) -> tuple[str, ...]:
        """The leading factors, which are scene factors (the rest are state factors)."""
        return SCENE_SPACE.names

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 10) int64: scene factors (uniform, or uniform over the domain), then cells."""
        state = sample_uniform_factors((INTERIOR,) * len(STATE_NAMES), n, rng)
        if self.domain is None:
            scene = sample_uniform_factors(SCENE_SPACE.sizes, n, rng)
        else:
            scene = self.domain.sample(rng, n)
        return np.concatenate([scene, state], axis=1)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """(n, 3, size, size) float32 in [0, 1]; deterministic (``rng`` is unused)."""
        return to_chw_float(self.render_factors(factors))

    def render_factors(self, factors: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) uint8 frames for (n, 10) factors: the env's own pixels."""
        factors = np.asarray(factors, dtype=np.int64)
        if factors.ndim != 2 or factors.shape[1] != len(self.factor_names):
            raise ValueError(
                f"factors must have shape (n, {len(self.factor_names)}) for "
                f"{list(self.factor_names)}, got {factors.shape}"
            )
        sizes = np.asarray(self.factor_sizes)
        if (factors < 0).any() or (factors >= sizes).any():
            raise ValueError(f"a factor class is out of range {self.factor_sizes}")
        out = np.empty((len(factors), self.size, self.size, 3), dtype=np.uint8)
        sprites = _sprites(self.size)
        for i, row in enumerate(factors.tolist()):
            floor, wall, obj, layout, ax, ay, gx, gy, bx, by = row
            out[i] = _draw(
                _background(self.size, floor, wall, layout),
                sprites,
                _OBJECT_RGB[obj],
                (ax, ay),
                (gx, gy),
                (bx, by),
            )
        return out
