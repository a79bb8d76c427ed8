"""The grid-world rules seek-avoid v0 and v1 share: moves, pickups, respawns and the oracle.

The two envs differ in which cells are walkable (v0: a layout's free interior cells; v1: an open
4 × 4 floor) and in how they draw, not in these rules; each env passes its own walkable cells.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np

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
