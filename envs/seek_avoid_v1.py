"""Seek-avoid v1: DARLA's DeepMind Lab task drawn so that a reconstruction loss sees the task.

v0 (:mod:`envs.seek_avoid`) draws its good and bad objects as a 4 px circle and a 4 px square
of one colour at 32 px: about 2 % of the frame, differing in 4 corner pixels. No frozen encoder
placed them, so no policy on latents could learn. v1 keeps the task and changes the picture:

- **Few, large cells.** A :data:`CELLS` × :data:`CELLS` floor (4 × 4) inside a thin wall frame:
  each cell is 7 px at 32 px (14 px at 64), so the agent and each object cover ~5 % of the frame.
- **Identity in shape and colour, as in DMLab.** DMLab-30's ``rooms_collect_good_objects`` tells
  good from bad by two object sets, each a good and a bad object with its own shape and colour
  (can +1 / hat −1; balloon +1 / cake −1). Here likewise: an *object set* is a (good, bad) pair
  of (silhouette, colour). Sets 0 and 1 are can/hat and balloon/cake; sets 2 and 3 are the same
  two pairs repainted, so a policy that reads shape can still tell them apart on a held-out set.
- **One good and one bad object per episode.** The reward-relevant state is then six
  coordinates, each probe-able on its own (chance 1/4); stepping onto an object gives its reward
  and respawns it elsewhere, and the episode ends only by truncation at ``max_steps``, as in v0.

Scene factors (:data:`SCENE_SPACE`): floor colour, wall colour, object set. The DARLA protocol
(:mod:`envs.protocol`) uses A = floor, B = wall, C = object set, so the room (floor × wall) is the
held-out conjunction: ``target_floor_object`` is a re-textured room with the source's own
objects (DMLab's test, (hat/can, re-textured room)); ``target_all_new`` repaints the objects too.
The policy trains on both object sets (can/hat and balloon/cake) in two floors × two walls.

The same renderer draws RL frames and :class:`SeekAvoidV1GroundTruth` metric images.
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

CELLS = 4
"""Walkable cells per side; positions are cell coordinates 0..CELLS-1."""
MIN_SIZE = 24
"""Below 5 px per cell the silhouettes blur into blobs."""

FLOOR_COLOURS = palettes.FLOORS
WALL_COLOURS = palettes.WALLS
AGENT_COLOUR = palettes.AGENT_WHITE
"""White: in no palette and no object set, so the agent is never confused with a scene or object colour."""

SHAPES: tuple[str, ...] = ("agent", "can", "hat", "balloon", "cake")
"""Silhouettes; the agent is a plus, the objects are DMLab's four."""

# Object sets: (good shape, good colour), (bad shape, bad colour). 2 and 3 repaint 0 and 1.
# Bright colours: a 3k-step DAE reconstructed the white agent and not objects of mid-luminance
# colours (red, blue), whose squared error against the dark floors was a third of the agent's.
# In the source sets both good objects are greener than both bad ones, so "green means good" is
# a rule a policy can learn there. The repaints break it (the repainted can is redder than the
# repainted hat), so on ``target_all_new`` colour alone cannot tell good from bad and only shape
# can; a test checks this for every per-channel rule the source sets teach.
OBJECT_SETS: dict[str, tuple[tuple[str, tuple[int, int, int]], tuple[str, tuple[int, int, int]]]] = {
    "can/hat": (("can", (255, 230, 40)), ("hat", (255, 60, 230))),
    "balloon/cake": (("balloon", (40, 235, 255)), ("cake", (255, 150, 30))),
    "can/hat repainted": (("can", (255, 90, 90)), ("hat", (130, 255, 110))),
    "balloon/cake repainted": (("balloon", (175, 165, 255)), ("cake", (255, 160, 200))),
}

SCENE_SPACE = FactorSpace(
    (
        Factor("floor_colour", tuple(FLOOR_COLOURS)),
        Factor("wall_colour", tuple(WALL_COLOURS)),
        Factor("object_set", tuple(OBJECT_SETS)),
    )
)
DOMAINS: dict[str, Domain] = darla_domains(
    SCENE_SPACE, a="floor_colour", b="wall_colour", c="object_set"
)


_FLOOR_RGB = np.array(list(FLOOR_COLOURS.values()), dtype=np.uint8)
_WALL_RGB = np.array(list(WALL_COLOURS.values()), dtype=np.uint8)
_SHAPE_ID = {s: i for i, s in enumerate(SHAPES)}
# (set, role) → shape id and colour; role 0 = good, 1 = bad.
_SET_SHAPE = np.array([[_SHAPE_ID[g[0]], _SHAPE_ID[b[0]]] for g, b in OBJECT_SETS.values()], dtype=np.int64)
_SET_RGB = np.array([[g[1], b[1]] for g, b in OBJECT_SETS.values()], dtype=np.uint8)
_AGENT_RGB = np.array(AGENT_COLOUR, dtype=np.uint8)
_ALL_CELLS = tuple((x, y) for y in range(CELLS) for x in range(CELLS))
_CELL_SET = frozenset(_ALL_CELLS)


def cell_bounds(size: int) -> np.ndarray:
    """Pixel boundaries of the cells along one axis: cell i spans [b[i], b[i+1]).

    A wall frame of ``round(size / 16)`` px (2 px at 32) surrounds the floor; the floor is split
    evenly, rounded, so any ``size`` works.
    """
    border = max(1, round(size / 16))
    return np.round(np.linspace(border, size - border, CELLS + 1)).astype(np.int64)


def shape_masks(h: int, w: int) -> dict[str, np.ndarray]:
    """Boolean (h, w) silhouettes for one cell, from pixel centres in unit cell coordinates.

    Each has a different outline and a different area, so the shapes differ in many pixels at
    every cell size, not in a few corners: can an upright bar, hat a wide brim under a crown,
    balloon a disc on a string, cake a wide slab under a candle; the agent a thick plus.
    """
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    v, u = (v + 0.5) / h, (u + 0.5) / w
    du, dv = np.abs(u - 0.5), np.abs(v - 0.5)
    bar = max(0.17, 0.5 / min(h, w))  # at least one pixel wide
    return {
        "agent": ((du <= bar) & (dv <= 0.45)) | ((dv <= bar) & (du <= 0.45)),
        "can": (du <= 0.36) & (dv <= 0.48),
        "hat": ((du <= 0.5) & (v >= 0.58) & (v <= 0.9)) | ((du <= 0.22) & (v >= 0.05) & (v <= 0.58)),
        "balloon": ((u - 0.5) ** 2 + (v - 0.4) ** 2 <= 0.42**2) | ((du <= 0.5 / w) & (v >= 0.6) & (v <= 0.98)),
        "cake": ((du <= 0.5) & (v >= 0.45) & (v <= 0.95)) | ((du <= max(0.08, 0.5 / w)) & (v >= 0.05) & (v <= 0.45)),
    }


class _Sprites:
    """Per-size lookup of flat pixel indices into an (H·W) frame, per shape and cell.

    ``index[shape][cell]`` (cell = y·CELLS + x) are one sprite's pixels; ``padded`` is the same as
    one (shapes, cells, K) array, each row padded by repeating its first index (painting a pixel
    twice is harmless), so a batch of frames is painted by one fancy assignment per sprite.
    """

    def __init__(self, size: int) -> None:
        b = cell_bounds(size)
        self.size, self.bounds = size, b
        self.index: list[list[np.ndarray]] = []
        for shape in SHAPES:
            row = []
            for y, x in ((y, x) for y in range(CELLS) for x in range(CELLS)):
                y0, y1, x0, x1 = b[y], b[y + 1], b[x], b[x + 1]
                my, mx = np.nonzero(shape_masks(int(y1 - y0), int(x1 - x0))[shape])
                idx = (my + y0) * size + (mx + x0)
                idx.setflags(write=False)
                row.append(idx)
            self.index.append(row)
        k = max(len(i) for row in self.index for i in row)
        self.padded = np.stack(
            [np.stack([np.pad(i, (0, k - len(i)), mode="edge") for i in row]) for row in self.index]
        )
        self.padded.setflags(write=False)


@lru_cache(maxsize=16)
def _sprites(size: int) -> _Sprites:
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE} px, got {size}")
    return _Sprites(size)


@lru_cache(maxsize=16)
def _backgrounds(size: int) -> np.ndarray:
    """Read-only (floors, walls, size, size, 3): wall frame around a plain floor, per colour pair."""
    b = cell_bounds(size)
    out = np.empty((len(_FLOOR_RGB), len(_WALL_RGB), size, size, 3), dtype=np.uint8)
    out[:] = _WALL_RGB[None, :, None, None, :]
    out[:, :, b[0] : b[-1], b[0] : b[-1]] = _FLOOR_RGB[:, None, None, None, :]
    out.setflags(write=False)
    return out


def render_batch(scenes: np.ndarray, states: np.ndarray, size: int = 32) -> np.ndarray:
    """(n, size, size, 3) uint8 frames for (n, 3) scene factors and (n, 6) cell coordinates.

    Vectorised over the batch: a background gather, then one fancy assignment per sprite, drawn
    bad, good, agent (later on top; the env never overlaps them, independent samples may).
    """
    scenes = np.asarray(scenes, dtype=np.int64).reshape(-1, len(SCENE_SPACE))
    states = np.asarray(states, dtype=np.int64).reshape(-1, len(STATE_NAMES))
    if len(scenes) != len(states):
        raise ValueError(f"{len(scenes)} scenes but {len(states)} states")
    if (scenes < 0).any() or (scenes >= np.asarray(SCENE_SPACE.sizes)).any():
        raise ValueError(f"a scene factor is out of range {SCENE_SPACE.sizes}")
    if (states < 0).any() or (states >= CELLS).any():
        raise ValueError(f"a cell coordinate is outside 0..{CELLS - 1}")
    sprites = _sprites(size)
    n = len(scenes)
    frames = _backgrounds(size)[scenes[:, 0], scenes[:, 1]]  # fancy indexing copies
    flat = frames.reshape(n, size * size, 3)
    rows = np.arange(n)[:, None]
    obj = scenes[:, 2]
    cells = states[:, 0::2] + CELLS * states[:, 1::2]  # (n, 3): agent, good, bad
    for role, col in ((1, 2), (0, 1)):  # bad, then good
        flat[rows, sprites.padded[_SET_SHAPE[obj, role], cells[:, col]]] = _SET_RGB[obj, role][:, None, :]
    flat[rows, sprites.padded[_SHAPE_ID["agent"], cells[:, 0]]] = _AGENT_RGB
    return frames


def render_scene(
    scene: Sequence[int] | np.ndarray,
    agent: Sequence[int],
    good: Sequence[int],
    bad: Sequence[int],
    size: int = 32,
) -> np.ndarray:
    """One frame, uint8 (size, size, 3), for scene factors and (x, y) cells of agent, good, bad."""
    return render_batch(np.asarray(scene), np.array([*agent, *good, *bad]), size)[0]


def sample_states(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 6) int64 cells of agent, good, bad: three distinct cells, uniformly, as the env places them."""
    cells = np.argsort(rng.random((n, CELLS * CELLS)), axis=1)[:, :3]
    return np.stack([cells % CELLS, cells // CELLS], axis=2).reshape(n, 6).astype(np.int64)


class SeekAvoidV1Env(GridEnv):
    """Top-down seek-avoid on a 4 × 4 floor; observations are uint8 (size, size, 3) RGB frames.

    ``info`` (reset and step) holds ``"scene"``: int64 (3,) scene factors in
    :data:`SCENE_SPACE` order, and ``"state"``: int64 (6,) cells in :data:`STATE_NAMES` order.
    Every cell is walkable; the wall frame blocks moves off the floor.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    scene_space = SCENE_SPACE
    domains = DOMAINS
    env_name = "seek_avoid_v1"
    sprites_for = staticmethod(_sprites)

    def __init__(
        self,
        domain: str | Domain = "all",
        size: int = 32,
        max_steps: int = 100,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(domain, size, max_steps, render_mode)
        self._cells, self._cell_set = _ALL_CELLS, _CELL_SET

    def _set_scene(self, scene: np.ndarray) -> None:
        floor, wall, obj = (int(v) for v in scene)
        self._background = _backgrounds(self.size)[floor, wall]
        self._shapes = (_SET_SHAPE[obj, 0], _SET_SHAPE[obj, 1])
        self._colours = (_SET_RGB[obj, 0], _SET_RGB[obj, 1])

    def true_state(self) -> np.ndarray:
        """float32 (6 + object sets,): the cells scaled to [0, 1] and the object set one-hot —
        what a perfect encoder of the reward-relevant factors hands a policy."""
        cells = np.array([*self._agent, *self._good, *self._bad], dtype=np.float32) / (CELLS - 1)
        onehot = np.zeros(len(OBJECT_SETS), dtype=np.float32)
        onehot[int(self._scene[2])] = 1.0
        return np.concatenate([cells, onehot])

    def _render_frame(self) -> np.ndarray:
        assert self._background is not None
        index = self._sprites.index
        return draw_sprites(self._background, (
            (index[self._shapes[1]][self._bad[0] + CELLS * self._bad[1]], self._colours[1]),
            (index[self._shapes[0]][self._good[0] + CELLS * self._good[1]], self._colours[0]),
            (index[0][self._agent[0] + CELLS * self._agent[1]], _AGENT_RGB),
        ))


class SeekAvoidV1GroundTruth(GridGroundTruth):
    """Seek-avoid v1 as :class:`envs.factors.GroundTruthData`: scene factors + six cell coordinates.

    Scene factors are uniform (over ``domain``'s combinations when one is given) and independent
    of the cells. The three cells are distinct, as in the env: with 16 cells, independent cells
    would hide one sprite under another in 18 % of images, and a hidden object's cell is in no
    encoder, so a probe would be scored on noise. The cell coordinates are therefore slightly
    dependent (two objects never share a cell); ``render_factors`` draws any factors, overlaps
    included (bad, good, agent, later on top).
    """

    scene_space = SCENE_SPACE
    domains = DOMAINS
    env_name = "seek_avoid_v1"
    cells_per_side = CELLS
    sprites_for = staticmethod(_sprites)

    def __init__(self, size: int = 32, domain: str | Domain | None = None) -> None:
        super().__init__(size, domain)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 9) int64: scene factors, then agent, good and bad cells (three distinct cells)."""
        if self.domain is None:
            scene = sample_uniform_factors(SCENE_SPACE.sizes, n, rng)
        else:
            scene = self.domain.sample(rng, n)
        return np.concatenate([scene.astype(np.int64).reshape(n, -1), sample_states(n, rng)], axis=1)

    def render_factors(self, factors: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) uint8 frames for (n, 9) factors: the env's own pixels."""
        factors = factor_array(factors, self.factor_names)
        k = len(SCENE_SPACE)
        return render_batch(factors[:, :k], factors[:, k:], self.size)
