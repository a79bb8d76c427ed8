"""One-step transitions rendered from any state: "the next frames for every action from state x".

Independently Controllable Factors (:mod:`vision.icf`) learns from (s, a, s') triples. Our envs
are simulators whose whole state is a small vector, so a transition needs no rollout: draw a
state, step a copy of it under each action, render both. This module is that API, and only ICF
uses it.

An env provides a :class:`TransitionSource` (a structural protocol: no base class to inherit),
which is three vectorised functions and three attributes:

- ``domain``: the :class:`~envs.factors.Domain` the states' scenes come from. A state's leading
  ``len(domain.space)`` columns are its scene factor classes; the rest is the env's own state.
- ``action_space``: a gymnasium ``Discrete`` (every action is rendered) or ``Box``.
- ``observation_shape``: (C, H, W) of the rendered frames.
- ``sample_states(n, rng)`` → (n, D) float64 states whose scenes are rows of ``domain``.
- ``step_states(states, actions, rng)`` → (n, D): each state after one env step under its action,
  exactly as the env's ``step`` would move it (``rng`` for any randomness of the step, e.g. a
  respawn). The scene columns never change.
- ``render_states(states)`` → (n, H, W, C) uint8 frames, the env's own pixels.

Callers go through :func:`sample_states`, :func:`next_frames` and
:func:`next_frames_for_every_action` below, which check that every state drawn or reached has
its scene inside ``domain``: a source built over the vision domain can never hand a learner a
frame of a held-out (target) combination. :data:`TRANSITION_SOURCES` maps env names to their
source; :func:`transition_source` builds one.

A new env implements it in a few lines: sample its reset state (scene from ``domain``), apply its
step's dynamics to a batch of state vectors, and call its renderer (:class:`SeekAvoidV1Transitions`
is such a source).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from gymnasium import spaces

from envs import reacher, seek_avoid, seek_avoid_v1
from envs.factors import Domain
from envs.grid import ACTION_NAMES, ACTIONS
from envs.protocol import resolve_domain


@runtime_checkable
class TransitionSource(Protocol):
    """What an env provides for one-step transitions (see the module docstring)."""

    domain: Domain
    action_space: spaces.Space
    observation_shape: tuple[int, int, int]

    def sample_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, D) float64 states; the leading ``len(domain.space)`` columns are a scene of ``domain``."""
        ...

    def step_states(self, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n, D) successors of (n, D) ``states`` under (n,) or (n, d) ``actions``; scenes unchanged."""
        ...

    def render_states(self, states: np.ndarray) -> np.ndarray:
        """(n, H, W, C) uint8 frames of (n, D) ``states``."""
        ...


# -- the checked entry points (what a learner calls) ---------------------------------------------
def check_in_domain(source: TransitionSource, states: np.ndarray, what: str = "state") -> np.ndarray:
    """``states`` unchanged if every row's scene is a combination of ``source.domain``; else ValueError."""
    states = np.asarray(states)
    d = len(source.domain.space)
    if states.ndim != 2 or states.shape[1] <= d:
        raise ValueError(f"{what}s must be (n, D) with D > {d} scene columns, got shape {states.shape}")
    scenes = states[:, :d]
    if not np.array_equal(scenes, np.round(scenes)):
        raise ValueError(f"a {what}'s scene columns are not whole factor classes")
    # Mixed-radix codes make membership one np.isin over the domain's combinations.
    radix = np.cumprod((1,) + tuple(source.domain.space.sizes[:-1]), dtype=np.int64)
    codes = scenes.astype(np.int64) @ radix
    inside = np.isin(codes, source.domain.combos @ radix)
    if not inside.all():
        bad = scenes[int(np.argmin(inside))].astype(np.int64).tolist()
        raise ValueError(
            f"a {what} has scene {bad}, outside domain {source.domain.name!r}: transitions must stay in the "
            "vision domain (held-out combinations are transfer targets and are never seen)"
        )
    return states


def sample_states(source: TransitionSource, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` states of ``source``, checked to lie in its domain."""
    return check_in_domain(source, source.sample_states(n, rng))


def next_frames(
    source: TransitionSource, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(n, H, W, C) uint8: the frame after one step from each state under its action."""
    nxt = check_in_domain(source, source.step_states(check_in_domain(source, states), np.asarray(actions), rng), "next state")
    if not np.array_equal(nxt[:, : len(source.domain.space)], np.asarray(states)[:, : len(source.domain.space)]):
        raise ValueError("step_states changed a scene column: a step moves the env's state, never its scene")
    return source.render_states(nxt)


def next_frames_for_every_action(
    source: TransitionSource, states: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(n, A, H, W, C) uint8: from each of the (n, D) states, the next frame under each of the A
    actions of a ``Discrete`` action space (in action order), one vectorised step of n·A states."""
    space = source.action_space
    if not isinstance(space, spaces.Discrete):
        raise TypeError(f"every action can be rendered only for a Discrete action space, not {space}")
    states = np.asarray(states)
    n, a = len(states), int(space.n)
    actions = np.tile(np.arange(a, dtype=np.int64) + int(space.start), n)
    frames = next_frames(source, np.repeat(states, a, axis=0), actions, rng)
    return frames.reshape(n, a, *frames.shape[1:])


# -- helpers for implementations -----------------------------------------------------------------
def _fixed_columns(names: Sequence[str], fixed: Mapping[str, float] | None, env: str) -> dict[int, float]:
    out = {}
    for k, v in dict(fixed or {}).items():
        if k not in names:
            raise KeyError(f"unknown {env} state column {k!r} to fix; columns are {list(names)}")
        out[names.index(k)] = float(v)
    return out


def _scenes(domain: Domain, fixed: dict[int, float], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` scenes uniform over the domain's combinations that agree with ``fixed`` scene columns."""
    combos = domain.combos
    for j, v in fixed.items():
        if j < combos.shape[1]:
            combos = combos[combos[:, j] == int(v)]
    if len(combos) == 0:
        raise ValueError(f"no combination of domain {domain.name!r} has the fixed scene values {fixed}")
    return combos[rng.integers(len(combos), size=n)].astype(np.float64)


# -- seek-avoid ----------------------------------------------------------------------------------
def _grid_batch(states: np.ndarray, actions: np.ndarray, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """A float64 copy of ``states`` to step, and one checked discrete action per state."""
    s = np.asarray(states, dtype=np.float64).copy()
    a = np.asarray(actions, dtype=np.int64).reshape(-1)
    if len(a) != len(s) or (a < 0).any() or (a >= n_actions).any():
        raise ValueError(f"need one action in 0..{n_actions - 1} per state, got {a.tolist()[:8]}")
    return s, a


_DELTAS = np.array([ACTIONS[a] for a in range(len(ACTIONS))], dtype=np.int64)
"""Action → (dx, dy) as an array, for both seek-avoid sources (they share :mod:`envs.grid`)."""
# free[layout, y, x]: whether an interior cell is walkable
_SA_FREE = np.ones((len(seek_avoid.LAYOUTS), seek_avoid.INTERIOR, seek_avoid.INTERIOR), dtype=bool)
for _i, _cells in enumerate(seek_avoid.LAYOUTS.values()):
    for _x, _y in _cells:
        _SA_FREE[_i, _y, _x] = False


class SeekAvoidTransitions:
    """Seek-avoid v0 as a :class:`TransitionSource`.

    A state is the 10 columns of :class:`~envs.seek_avoid.SeekAvoidGroundTruth` (floor, wall, object
    colour, layout, agent x, y, good x, y, bad x, y), drawn as ``SeekAvoidEnv.reset`` draws them:
    a scene of ``domain`` and three distinct free cells. ``step_states`` is ``SeekAvoidEnv.step``
    on a batch: walls and obstacles block, an object stepped on respawns on a random free cell
    that is neither the agent's nor the other object's (drawn from ``rng``).

    ``fixed`` pins columns by name (``{"layout": 0, "good_x": 0, ...}``), for controlled studies
    such as "the agent's position alone"; fixed cells must be free and distinct.
    """

    def __init__(self, size: int = 64, domain: str | Domain = "vision", fixed: Mapping[str, float] | None = None) -> None:
        self.truth = seek_avoid.SeekAvoidGroundTruth(size)
        self.domain = resolve_domain(seek_avoid.DOMAINS, domain, "seek_avoid")
        self.names: tuple[str, ...] = self.truth.factor_names
        self.fixed = _fixed_columns(self.names, fixed, "seek_avoid")
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.action_names = ACTION_NAMES  # optional: labels the report's per-action table
        self.observation_shape = self.truth.observation_shape

    def sample_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        d = len(seek_avoid.SCENE_SPACE)
        out = np.empty((n, len(self.names)), dtype=np.float64)
        out[:, :d] = _scenes(self.domain, self.fixed, n, rng)
        for i in range(n):
            free = _SA_FREE[int(out[i, 3])]
            cells = {}  # object index (0 agent, 1 good, 2 bad) → (x, y)
            for o in range(3):
                jx, jy = d + 2 * o, d + 2 * o + 1
                if jx in self.fixed or jy in self.fixed:
                    if jx not in self.fixed or jy not in self.fixed:
                        raise ValueError(f"fix both {self.names[jx]} and {self.names[jy]}, or neither")
                    cells[o] = (int(self.fixed[jx]), int(self.fixed[jy]))
            taken = set(cells.values())
            if len(taken) < len(cells) or not all(free[y, x] for x, y in taken):
                raise ValueError(f"fixed cells {cells} must be distinct free cells of layout {int(out[i, 3])}")
            options = [(x, y) for y, x in zip(*np.nonzero(free)) if (x, y) not in taken]
            pick = rng.choice(len(options), size=3 - len(cells), replace=False)
            rest = iter(pick.tolist())
            for o in range(3):
                x, y = cells[o] if o in cells else options[next(rest)]
                out[i, d + 2 * o], out[i, d + 2 * o + 1] = x, y
        return out

    def step_states(self, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s, a = _grid_batch(states, actions, len(_DELTAS))
        d = len(seek_avoid.SCENE_SPACE)
        layout = s[:, 3].astype(np.int64)
        agent = s[:, d : d + 2].astype(np.int64)
        target = agent + _DELTAS[a]
        inside = ((target >= 0) & (target < seek_avoid.INTERIOR)).all(axis=1)
        tx, ty = np.clip(target, 0, seek_avoid.INTERIOR - 1).T
        moves = inside & _SA_FREE[layout, ty, tx]
        agent = np.where(moves[:, None], target, agent)
        for i, col, other in _pickups(s, d, agent):
            free = _SA_FREE[layout[i]]
            options = [(x, y) for y, x in zip(*np.nonzero(free)) if (x, y) not in (tuple(agent[i]), other)]
            s[i, col : col + 2] = options[int(rng.integers(len(options)))]
        return s

    def render_states(self, states: np.ndarray) -> np.ndarray:
        return self.truth.render_factors(np.asarray(states).astype(np.int64))


def _pickups(s: np.ndarray, d: int, agent: np.ndarray) -> list[tuple[int, int, tuple[int, int]]]:
    """Moves the agent columns of ``s`` (scene columns ``d``) to ``agent``, and lists each row where it
    steps on an object: (row, the picked object's x column, the other object's cell). The env checks
    the good object first, so an agent on both picks the good one."""
    s[:, d : d + 2] = agent
    good, bad = s[:, d + 2 : d + 4].astype(np.int64), s[:, d + 4 : d + 6].astype(np.int64)
    hit_good = (agent == good).all(axis=1)
    hit_bad = (agent == bad).all(axis=1) & ~hit_good
    return [
        (int(i), d + 2 if hit_good[i] else d + 4, tuple(bad[i] if hit_good[i] else good[i]))
        for i in np.nonzero(hit_good | hit_bad)[0]
    ]


# -- seek-avoid v1 -------------------------------------------------------------------------------
_V1_N_CELLS = seek_avoid_v1.CELLS * seek_avoid_v1.CELLS


class SeekAvoidV1Transitions:
    """Seek-avoid v1 as a :class:`TransitionSource`.

    A state is the 9 columns of :class:`~envs.seek_avoid_v1.SeekAvoidV1GroundTruth` (floor, wall,
    object set, agent x, y, good x, y, bad x, y), drawn as ``SeekAvoidV1Env.reset`` draws them: a
    scene of ``domain`` and three distinct cells of the open 4 × 4 floor. ``step_states`` is
    ``SeekAvoidV1Env.step`` on a batch: the frame blocks, an object stepped on respawns on a random
    cell that is neither the agent's nor the other object's, by the env's own rejection draw from
    ``rng`` (so a generator in the env's state gives the env's cell). Frames come from
    :func:`envs.seek_avoid_v1.render_batch`, the env's renderer.

    ``fixed`` pins columns by name, as for :class:`SeekAvoidTransitions`; fixed cells must be distinct.
    """

    def __init__(self, size: int = 32, domain: str | Domain = "vision", fixed: Mapping[str, float] | None = None) -> None:
        self.truth = seek_avoid_v1.SeekAvoidV1GroundTruth(size)  # validates size
        self.size = self.truth.size
        self.domain = resolve_domain(seek_avoid_v1.DOMAINS, domain, "seek_avoid_v1")
        self.names: tuple[str, ...] = self.truth.factor_names
        self.fixed = _fixed_columns(self.names, fixed, "seek_avoid_v1")
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.action_names = ACTION_NAMES
        self.observation_shape = self.truth.observation_shape
        d = len(seek_avoid_v1.SCENE_SPACE)
        self._cells: dict[int, int] = {}  # object (0 agent, 1 good, 2 bad) → fixed cell code y·CELLS + x
        for o in range(3):
            jx, jy = d + 2 * o, d + 2 * o + 1
            if (jx in self.fixed) != (jy in self.fixed):
                raise ValueError(f"fix both {self.names[jx]} and {self.names[jy]}, or neither")
            if jx in self.fixed:
                x, y = self.fixed[jx], self.fixed[jy]
                if not all(v == int(v) and 0 <= v < seek_avoid_v1.CELLS for v in (x, y)):
                    raise ValueError(f"fixed cell ({x}, {y}) is not a cell of the {seek_avoid_v1.CELLS} × {seek_avoid_v1.CELLS} floor")
                self._cells[o] = int(x) + seek_avoid_v1.CELLS * int(y)
        if len(set(self._cells.values())) < len(self._cells):
            raise ValueError(f"fixed cells of {[('agent', 'good', 'bad')[o] for o in self._cells]} must be distinct")

    def sample_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        d = len(seek_avoid_v1.SCENE_SPACE)
        out = np.empty((n, len(self.names)), dtype=np.float64)
        out[:, :d] = _scenes(self.domain, self.fixed, n, rng)
        # Distinct cells uniformly, as the env's reset: the first of a random order of the cells
        # that no fixed object takes.
        keys = rng.random((n, _V1_N_CELLS))
        keys[:, list(self._cells.values())] = np.inf
        free = np.argsort(keys, axis=1)
        rest = iter(range(3))
        for o in range(3):
            code = np.full(n, self._cells[o]) if o in self._cells else free[:, next(rest)]
            out[:, d + 2 * o], out[:, d + 2 * o + 1] = code % seek_avoid_v1.CELLS, code // seek_avoid_v1.CELLS
        return out

    def step_states(self, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s, a = _grid_batch(states, actions, len(_DELTAS))
        d = len(seek_avoid_v1.SCENE_SPACE)
        agent = s[:, d : d + 2].astype(np.int64)
        target = agent + _DELTAS[a]
        moves = ((target >= 0) & (target < seek_avoid_v1.CELLS)).all(axis=1)  # the wall frame blocks
        agent = np.where(moves[:, None], target, agent)
        for i, col, other in _pickups(s, d, agent):
            while True:  # the env's own draw: a uniform cell, redrawn while it is taken
                code = int(rng.integers(_V1_N_CELLS))
                cell = (code % seek_avoid_v1.CELLS, code // seek_avoid_v1.CELLS)
                if cell != tuple(agent[i]) and cell != other:
                    break
            s[i, col : col + 2] = cell
        return s

    def render_states(self, states: np.ndarray) -> np.ndarray:
        s = np.asarray(states).astype(np.int64)
        d = len(seek_avoid_v1.SCENE_SPACE)
        return seek_avoid_v1.render_batch(s[:, :d], s[:, d:], self.size)


# -- reacher -------------------------------------------------------------------------------------
class ReacherTransitions:
    """Reacher as a :class:`TransitionSource`.

    A state is the 3 scene classes then (joint1, joint2, target_angle, target_radius), drawn
    uniformly as ``ReacherEnv.reset`` draws them (without its redraw of starts within reach).
    ``step_states`` is ``ReacherEnv.step`` on a batch: actions clipped to [-1, 1], joint 1 moves by
    ``a₀·MAX_DELTA`` and wraps, joint 2 by ``a₁·MAX_DELTA`` and stops at ``±JOINT2_LIMIT``.
    ``fixed`` pins columns by name, as for :class:`SeekAvoidTransitions`.
    """

    def __init__(self, size: int = 64, domain: str | Domain = "vision", fixed: Mapping[str, float] | None = None) -> None:
        self.size = int(size)
        self.domain = resolve_domain(reacher.DOMAINS, domain, "reacher")
        self.names: tuple[str, ...] = reacher.SCENE_SPACE.names + reacher.STATE_NAMES
        self.fixed = _fixed_columns(self.names, fixed, "reacher")
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.observation_shape = (3, self.size, self.size)
        reacher.render_scene((0, 0, 0), (0.0, 0.0, 0.0, 0.5), self.size)  # validates size

    def sample_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        d = len(reacher.SCENE_SPACE)
        out = np.empty((n, len(self.names)), dtype=np.float64)
        out[:, :d] = _scenes(self.domain, self.fixed, n, rng)
        lo = np.array([-math.pi, -reacher.JOINT2_LIMIT, -math.pi, reacher.R_MIN])
        hi = np.array([math.pi, reacher.JOINT2_LIMIT, math.pi, reacher.R_MAX])
        out[:, d:] = rng.uniform(lo, hi, size=(n, 4))
        for j, v in self.fixed.items():
            out[:, j] = v
        return out

    def step_states(self, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = np.asarray(states, dtype=np.float64).copy()
        a = np.asarray(actions, dtype=np.float64).reshape(len(s), -1)
        if a.shape[1] != 2 or not np.isfinite(a).all():
            raise ValueError(f"need 2 finite action values per state, got shape {a.shape}")
        a = np.clip(a, -1.0, 1.0)
        d = len(reacher.SCENE_SPACE)
        s[:, d] = (s[:, d] + reacher.MAX_DELTA * a[:, 0] + math.pi) % (2.0 * math.pi) - math.pi  # wrap_angle
        s[:, d + 1] = np.clip(s[:, d + 1] + reacher.MAX_DELTA * a[:, 1], -reacher.JOINT2_LIMIT, reacher.JOINT2_LIMIT)
        return s

    def render_states(self, states: np.ndarray) -> np.ndarray:
        s = np.asarray(states, dtype=np.float64)
        d = len(reacher.SCENE_SPACE)
        out = np.empty((len(s), self.size, self.size, 3), dtype=np.uint8)
        for i, row in enumerate(s):
            out[i] = reacher.render_scene(row[:d].astype(np.int64), row[d:], self.size)
        return out


TRANSITION_SOURCES: dict[str, Callable[..., TransitionSource]] = {
    "seek_avoid": SeekAvoidTransitions,
    "seek_avoid_v1": SeekAvoidV1Transitions,
    "reacher": ReacherTransitions,
}
"""Env short name → ``source(size, domain, fixed=None)``. An env without an entry cannot train ICF."""


def transition_source(env: str, size: int, domain: str | Domain, fixed: Mapping[str, float] | None = None) -> TransitionSource:
    """The :class:`TransitionSource` of env ``env`` over ``domain``; a KeyError names the envs that have one."""
    try:
        make = TRANSITION_SOURCES[env]
    except KeyError:
        raise KeyError(
            f"env {env!r} renders no one-step transitions (ICF needs them); envs that do: {sorted(TRANSITION_SOURCES)}"
        ) from None
    return make(size, domain, fixed)
