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

import numpy as np

from envs import palettes
from envs.factors import Domain, Factor, FactorSpace, factor_array, sample_uniform_factors
from envs.grid import STATE_NAMES as STATE_NAMES
from envs.grid import GridEnv, GridGroundTruth, draw_sprites
from envs.protocol import darla_domains

GRID = 8
"""Cells per side including the 1-cell wall border."""
INTERIOR = GRID - 2
"""Walkable cells per side; positions are interior coordinates 0..INTERIOR-1."""
MIN_SIZE = 24
"""Below 3 px per cell a circle and a square render identically."""

# Dark floors, mid-tone walls, saturated objects: far apart in RGB, none near the agent's white.
FLOOR_COLOURS = palettes.FLOORS
WALL_COLOURS = palettes.WALLS
OBJECT_COLOURS = palettes.SATURATED
AGENT_COLOUR = palettes.AGENT_WHITE

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
    return draw_sprites(background, (
        (sprites.index["square"][bad[1]][bad[0]], object_rgb),
        (sprites.index["circle"][good[1]][good[0]], object_rgb),
        (sprites.index["plus"][agent[1]][agent[0]], _AGENT_RGB),
    ))


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


class SeekAvoidEnv(GridEnv):
    """Top-down seek-avoid arena; observations are uint8 (size, size, 3) RGB frames.

    ``info`` (reset and step) holds ``"scene"``: int64 (4,) scene factors in
    :data:`SCENE_SPACE` order, and ``"state"``: int64 (6,) interior cells in
    :data:`STATE_NAMES` order (agent x, y, good x, y, bad x, y). A layout's obstacles block
    moves; placements and respawns use its free cells.
    """

    metadata = {
        "render_modes": ["rgb_array"], "render_fps": 10,
        # what each drawn thing is, for legends (darla's report)
        "render_key": {
            "white plus": "the agent", "circle in the object colour": "good object (+1)", "square in the object colour": "bad object (−1)",
            "cells in the wall colour": "border wall and the layout's obstacles",
        },
    }
    scene_space = SCENE_SPACE
    domains = DOMAINS
    env_name = "seek_avoid"
    cells_noun = "free cells"
    sprites_for = staticmethod(_sprites)

    def __init__(
        self,
        domain: str | Domain = "all",
        size: int = 64,
        max_steps: int = 100,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(domain, size, max_steps, render_mode)
        self._object_rgb = _OBJECT_RGB[0]

    def _set_scene(self, scene: np.ndarray) -> None:
        floor, wall, obj, layout = (int(v) for v in scene)
        self._background = _background(self.size, floor, wall, layout)
        self._object_rgb = _OBJECT_RGB[obj]
        self._cells, self._cell_set = _FREE[layout], _FREE_SETS[layout]

    def _render_frame(self) -> np.ndarray:
        assert self._background is not None
        return _draw(
            self._background, self._sprites, self._object_rgb, self._agent, self._good, self._bad
        )


class SeekAvoidGroundTruth(GridGroundTruth):
    """Seek-avoid as :class:`envs.factors.GroundTruthData`: scene factors + six cell coordinates.

    Factors are independent and uniform (scene factors restricted to ``domain``'s combinations
    when one is given), so sprites may overlap obstacles or one another; :func:`render_scene`
    draws them in the order bad, good, agent, exactly as the env does.
    """

    scene_space = SCENE_SPACE
    domains = DOMAINS
    env_name = "seek_avoid"
    cells_per_side = INTERIOR
    sprites_for = staticmethod(_sprites)

    def __init__(self, size: int = 64, domain: str | Domain | None = None) -> None:
        super().__init__(size, domain)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 10) int64: scene factors (uniform, or uniform over the domain), then cells."""
        state = sample_uniform_factors((INTERIOR,) * len(STATE_NAMES), n, rng)
        if self.domain is None:
            scene = sample_uniform_factors(SCENE_SPACE.sizes, n, rng)
        else:
            scene = self.domain.sample(rng, n)
        return np.concatenate([scene, state], axis=1)

    def render_factors(self, factors: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) uint8 frames for (n, 10) factors: the env's own pixels."""
        factors = factor_array(factors, self.factor_names)
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
