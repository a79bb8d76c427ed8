"""What seek-avoid v0 and v1 share: the grid rules (moves, pickups, respawns, the oracle), the
gymnasium env around them (:class:`GridEnv`) and the ground-truth data (:class:`GridGroundTruth`).

The two envs differ in their scene factors, in which cells are walkable (v0: a layout's free
interior cells; v1: an open 4 × 4 floor) and in how they draw, not in these rules; each env
names its walkable cells and draws its own frames.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.factors import Domain, FactorSpace, check_env_args, reset_scene, to_chw_float
from envs.protocol import resolve_domain

Cell = tuple[int, int]

ACTIONS: dict[int, Cell] = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0)}
"""Action → (dx, dy): up, down, left, right (y grows downwards, as in the image)."""
ACTION_NAMES: tuple[str, ...] = ("up", "down", "left", "right")


def move(agent: Cell, action, walkable: Collection[Cell]) -> Cell:
    """The agent's cell after ``action``: a move off the walkable cells is blocked."""
    try:
        dx, dy = ACTIONS[int(action)]
    except KeyError:
        raise ValueError(f"invalid action {action!r}; valid: 0..3 = {ACTION_NAMES}") from None
    target = (agent[0] + dx, agent[1] + dy)
    return target if target in walkable else agent


def pickup(agent: Cell, good: Cell, bad: Cell, respawn: Callable[[Cell], Cell]) -> tuple[float, Cell, Cell]:
    """(reward, good, bad) after the agent arrives at ``agent``.

    Reward is decided by which object the agent is on, never by its look. Objects never sit under
    the agent (they respawn elsewhere), so equality means "stepped on"; ``respawn(other)`` draws
    the picked object's new cell away from the agent and ``other``.
    """
    if agent == good:
        return 1.0, respawn(bad), bad
    if agent == bad:
        return -1.0, good, respawn(good)
    return 0.0, good, bad


def respawn(rng: np.random.Generator, cells: Sequence[Cell], agent: Cell, other: Cell) -> Cell:
    """A uniformly random cell of ``cells`` that is neither ``agent`` nor ``other``."""
    while True:  # at most 2 cells are excluded, so this ends fast
        cell = cells[int(rng.integers(len(cells)))]
        if cell != agent and cell != other:
            return cell


def first_move(start: Cell, goal: Cell, avoid: Cell, walkable: Collection[Cell]) -> int | None:
    """First action of a shortest path from ``start`` to ``goal`` that never enters ``avoid``;
    None when ``avoid`` cuts ``goal`` off. Breadth-first search, ties broken by action order, so
    it is deterministic."""
    first: dict[Cell, int] = {start: -1}
    frontier = [start]
    while frontier:
        nxt = []
        for cell in frontier:
            for a, (dx, dy) in ACTIONS.items():
                c = (cell[0] + dx, cell[1] + dy)
                if c in first or c not in walkable or c == avoid:
                    continue
                first[c] = a if cell == start else first[cell]
                if c == goal:
                    return first[c]
                nxt.append(c)
        frontier = nxt
    return None


STATE_NAMES: tuple[str, ...] = ("agent_x", "agent_y", "good_x", "good_y", "bad_x", "bad_y")
"""Order of ``info["state"]`` and of the state factors of the ground-truth data."""


def draw_sprites(background: np.ndarray, sprites: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """A copy of the (H, W, 3) ``background`` with each ``(flat pixel indices, rgb)`` pasted in
    order (later ones on top): one fancy assignment per sprite."""
    frame = background.copy()
    flat = frame.reshape(-1, 3)
    for index, rgb in sprites:
        flat[index] = rgb
    return frame


class GridEnv(gym.Env[np.ndarray, np.int64]):
    """A top-down grid arena with an agent, one good object (+1) and one bad object (−1).

    Observations are uint8 (size, size, 3) RGB frames. Stepping onto an object gives its reward
    and respawns it elsewhere; the episode only ends by truncation at ``max_steps``. ``info``
    (reset and step) holds ``"scene"``: int64 scene factors in ``scene_space`` order, and
    ``"state"``: int64 (6,) cells in :data:`STATE_NAMES` order (agent x, y, good x, y, bad x, y).

    A subclass names its scene factors, domains and sprite tables (``sprites_for(size)``, which
    refuses a size it cannot draw), sets up a scene's drawing and walkable cells
    (:meth:`_set_scene`) and draws a frame (:meth:`_render_frame`).
    """

    scene_space: ClassVar[FactorSpace]
    domains: ClassVar[Mapping[str, Domain]]
    env_name: ClassVar[str]
    """The registry's short name, for error messages."""
    cells_noun: ClassVar[str] = "cells"
    """What a state's cells must be, in the error for a bad ``options["state"]``."""
    sprites_for: ClassVar[Callable[[int], Any]]
    """size → the env's (cached) sprite tables; ValueError for a size it cannot draw."""

    def __init__(self, domain: str | Domain, size: int, max_steps: int, render_mode: str | None) -> None:
        check_env_args(self.metadata, render_mode, max_steps)
        self.domain = resolve_domain(self.domains, domain, self.env_name)
        self.size = int(size)
        self.max_steps = int(max_steps)
        self.render_mode = render_mode
        self._sprites = self.sprites_for(self.size)  # validates size
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self._scene = np.zeros(len(self.scene_space), dtype=np.int64)
        self._background: np.ndarray | None = None
        self._cells: tuple[Cell, ...] = ()  # walkable, in the order placements and respawns draw from
        self._cell_set: frozenset[Cell] = frozenset()
        self._agent = self._good = self._bad = (0, 0)
        self._frame: np.ndarray | None = None
        self._t = 0

    def _set_scene(self, scene: np.ndarray) -> None:
        """Set ``_background``, what the sprites look like, and ``_cells``/``_cell_set`` for ``scene``."""
        raise NotImplementedError

    def _render_frame(self) -> np.ndarray:
        raise NotImplementedError

    # -- gymnasium API ---------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Sample a scene from the domain and three distinct walkable cells, from ``np_random``.

        ``options`` may fix ``"scene"`` (its factor classes; it need not be in the domain) and/or
        ``"state"`` (6 cells, :data:`STATE_NAMES` order, three distinct walkable cells), for
        tests and for rendering chosen situations.
        """
        super().reset(seed=seed)
        rng = self.np_random
        self._scene, options = reset_scene(options, self.scene_space, self.domain, rng)
        self._set_scene(self._scene)
        if "state" in options:
            s = [int(v) for v in np.asarray(options["state"]).reshape(-1)]
            cells = [(s[0], s[1]), (s[2], s[3]), (s[4], s[5])] if len(s) == 6 else []
            if len(set(cells)) != 3 or not all(c in self._cell_set for c in cells):
                raise ValueError(f"state must be 6 ints {STATE_NAMES} naming 3 distinct {self.cells_noun}, got {s}")
            self._agent, self._good, self._bad = cells
        else:
            a, g, b = rng.choice(len(self._cells), size=3, replace=False)
            self._agent, self._good, self._bad = self._cells[a], self._cells[g], self._cells[b]
        self._t = 0
        self._frame = self._render_frame()
        return self._frame, self._info()

    def step(
        self, action: int | np.integer
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._background is None:
            raise RuntimeError("call reset() before step()")
        self._agent = move(self._agent, action, self._cell_set)  # into a wall or an obstacle → blocked
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
        random policy is the 0). Breadth-first search on the walkable cells, ties broken by
        action order, so it is deterministic. When the bad object cuts the good one off (v0's
        corridors; never on v1's open floor), any move that does not step on it.
        """
        if self._background is None:
            raise RuntimeError("call reset() before oracle_action()")
        a = first_move(self._agent, self._good, self._bad, self._cell_set)
        if a is not None:
            return a
        for a, (dx, dy) in ACTIONS.items():
            if (self._agent[0] + dx, self._agent[1] + dy) != self._bad:
                return a
        return 0

    def _respawn(self, other: Cell) -> Cell:
        """A uniformly random walkable cell that is neither the agent's nor ``other``'s."""
        return respawn(self.np_random, self._cells, self._agent, other)

    def _info(self) -> dict[str, Any]:
        return {
            "scene": self._scene.copy(),
            "state": np.array((*self._agent, *self._good, *self._bad), dtype=np.int64),
        }


class GridGroundTruth:
    """A grid env as :class:`envs.factors.GroundTruthData`: its scene factors, then the six cell
    coordinates of :data:`STATE_NAMES`; images are the env's own pixels (:meth:`render_factors`).

    A subclass names its scene factors, domains, cells per side and sprite tables (as
    :class:`GridEnv`), and samples and renders factors.
    """

    scene_space: ClassVar[FactorSpace]
    domains: ClassVar[Mapping[str, Domain]]
    env_name: ClassVar[str]
    cells_per_side: ClassVar[int]
    sprites_for: ClassVar[Callable[[int], Any]]

    def __init__(self, size: int, domain: str | Domain | None = None) -> None:
        self.sprites_for(size)  # validates size
        self.size = int(size)
        self.domain = None if domain is None else resolve_domain(self.domains, domain, self.env_name)
        self.factor_names: tuple[str, ...] = self.scene_space.names + STATE_NAMES
        self.factor_sizes: tuple[int, ...] = self.scene_space.sizes + (self.cells_per_side,) * len(STATE_NAMES)
        self.observation_shape: tuple[int, int, int] = (3, self.size, self.size)

    def scene_factor_names(self) -> tuple[str, ...]:
        """The leading factors, which are scene factors (the rest are state factors)."""
        return self.scene_space.names

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def render_factors(self, factors: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """(n, 3, size, size) float32 in [0, 1]; deterministic (``rng`` is unused)."""
        return to_chw_float(self.render_factors(factors))

