"""Reacher: DARLA's Jaco reaching task as a top-down two-link arm, continuous control.

Higgins et al. (2017, sec. 4.2) train a simulated Jaco arm to reach an object on a table whose
colours change between domains. Here the table is seen from above: a planar two-link arm is
fixed at the centre of the frame and must bring its fingertip onto a round target.

World and physics (all frozen constants below; world units, the arm's reach is 1):

- link lengths ``L1 = L2 = 0.5``; joint 1 is the absolute angle of link 1 (counter-clockwise
  from +x), joint 2 the elbow angle relative to link 1, limited to ``±JOINT2_LIMIT`` so the arm
  never folds onto itself;
- **kinematic joint-velocity control**: an action ``a ∈ [-1, 1]²`` moves each joint by
  ``a · MAX_DELTA`` radians in one step (joint 1 wraps, joint 2 is clipped at its limit). There
  is no momentum on purpose: the pipeline's policy acts on the latents of *one* frame, and a
  frame shows angles, not velocities, so any hidden velocity state would make the task
  non-Markov for it;
- the target sits at polar coordinates (angle, radius), radius in ``[R_MIN, R_MAX]``, always
  reachable (the fingertip reaches radii ``2·L·cos(JOINT2_LIMIT / 2) ≈ 0.27`` to 1).

Reward (dense, documented so returns are comparable across runs): ``r = −d`` each step, ``d``
the fingertip-to-target distance (so ``r ∈ [−1.9, 0]``), plus ``REACH_BONUS`` on the step the
fingertip comes within ``REACH_TOLERANCE`` of the target centre, which also terminates the
episode (``terminate_on_reach=False`` keeps going and pays the bonus on every step inside).
Since every other reward is negative, reaching quickly is optimal. Episodes are truncated at
``max_steps``. Measured with ``max_steps=100`` over 200 seeded episodes: a uniform random
policy returns −93 ± 42 (reaches in 7.5% of episodes), the scripted inverse-kinematics
controller (:func:`scripted_action`) −5.3 ± 4.9 (reaches in all, after 11 steps on average);
``tests/envs/test_reacher.py`` checks that the controller always reaches.

Scene factors (:data:`SCENE_SPACE`): background colour, target colour, arm colour, 4 values
each. The DARLA protocol (:mod:`envs.protocol`) uses A = background, B = target, C = arm, so
``target_floor_object`` means "held-out background × target colours, familiar arm colour".

The same :func:`render_scene` (numpy + cv2, anti-aliased, sub-pixel coordinates) draws RL
frames and :class:`ReacherGroundTruth` metric images; the ground truth discretises the joint
angles and the target's polar coordinates into the bins of :data:`STATE_BINS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs import palettes
from envs.factors import (
    Domain,
    Factor,
    FactorSpace,
    check_env_args,
    factor_array,
    reset_scene,
    sample_uniform_factors,
    to_chw_float,
)
from envs.protocol import darla_domains, resolve_domain

# -- geometry and physics (frozen: changing any of these changes the task) --------------------
L1 = 0.5
L2 = 0.5
JOINT2_LIMIT = 2.6
"""Elbow limit in radians (≈149°): the arm never folds onto itself."""
MAX_DELTA = 0.15
"""Radians a joint moves in one step at |action| = 1."""
R_MIN, R_MAX = 0.35, 0.9
"""Target radius range; both ends are reachable (the fingertip covers radii ≈0.27..1)."""
REACH_TOLERANCE = 0.1
"""Fingertip-to-target distance that counts as reached (the target's drawn radius is 0.12)."""
REACH_BONUS = 1.0

# -- drawing (world units) ---------------------------------------------------------------------
VIEW = 1.15
"""Half-width of the square world window drawn into the frame (base at the centre)."""
TARGET_RADIUS = 0.12
LINK_WIDTH = 0.1
JOINT_RADIUS = 0.07
MIN_SIZE = 24
"""Below ≈10 px per world unit the links become sub-pixel."""
_SHIFT = 4
"""cv2 fractional bits: coordinates are drawn with 1/16 px precision, so the frame changes
smoothly with the angles instead of jumping pixel by pixel."""

BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "dark grey": (45, 45, 45),
    "navy": (25, 30, 100),
    "maroon": (100, 25, 40),
    "dark green": (25, 85, 45),
}
TARGET_COLOURS = palettes.SATURATED
ARM_COLOURS: dict[str, tuple[int, int, int]] = {
    "light grey": (200, 200, 200),
    "yellow": (230, 230, 70),
    "cyan": (70, 215, 225),
    "pink": (240, 130, 200),
}

SCENE_SPACE = FactorSpace(
    (
        Factor("background_colour", tuple(BACKGROUND_COLOURS)),
        Factor("target_colour", tuple(TARGET_COLOURS)),
        Factor("arm_colour", tuple(ARM_COLOURS)),
    )
)
STATE_NAMES: tuple[str, ...] = ("joint1", "joint2", "target_angle", "target_radius")
"""Order of ``info["state"]`` (continuous) and of the state factors of the ground truth."""
STATE_BINS: tuple[int, ...] = (16, 12, 8, 4)
"""Ground-truth classes per state factor (bin centres are rendered)."""

DOMAINS: dict[str, Domain] = darla_domains(
    SCENE_SPACE, a="background_colour", b="target_colour", c="arm_colour"
)

_BACKGROUND_RGB = tuple(BACKGROUND_COLOURS.values())
_TARGET_RGB = tuple(TARGET_COLOURS.values())
_ARM_RGB = tuple(ARM_COLOURS.values())


# -- kinematics ----------------------------------------------------------------------------------
def wrap_angle(x: float) -> float:
    """Angle in [-π, π)."""
    return (x + math.pi) % (2.0 * math.pi) - math.pi


def forward_kinematics(joint1: float, joint2: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """(elbow, fingertip) world positions for the two joint angles."""
    ex, ey = L1 * math.cos(joint1), L1 * math.sin(joint1)
    a = joint1 + joint2
    return (ex, ey), (ex + L2 * math.cos(a), ey + L2 * math.sin(a))


def target_position(angle: float, radius: float) -> tuple[float, float]:
    return radius * math.cos(angle), radius * math.sin(angle)


def inverse_kinematics(x: float, y: float) -> list[tuple[float, float]]:
    """Both (joint1, joint2) solutions (elbow one way, then the other) reaching (x, y).

    Points out of reach are projected onto the reachable annulus first, so this never fails.
    """
    r = min(max(math.hypot(x, y), 1e-9), L1 + L2)
    c2 = (r * r - L1 * L1 - L2 * L2) / (2.0 * L1 * L2)
    base = math.atan2(y, x)
    out = []
    for sign in (1.0, -1.0):
        q2 = sign * math.acos(max(-1.0, min(1.0, c2)))
        q1 = base - math.atan2(L2 * math.sin(q2), L1 + L2 * math.cos(q2))
        out.append((wrap_angle(q1), q2))
    return out


def scripted_action(state: Sequence[float]) -> np.ndarray:
    """A reaching controller from the true state (``info["state"]``): proportional control
    towards the inverse-kinematics solution that is closer in joint space and within the elbow
    limit. Used to check that the reward scale is sane and that the task is solvable.
    """
    j1, j2, angle, radius = (float(v) for v in state)
    tx, ty = target_position(angle, radius)
    best, best_cost = None, math.inf
    for q1, q2 in inverse_kinematics(tx, ty):
        if abs(q2) > JOINT2_LIMIT:
            continue
        cost = abs(wrap_angle(q1 - j1)) + abs(q2 - j2)
        if cost < best_cost:
            best, best_cost = (q1, q2), cost
    assert best is not None  # targets lie in [R_MIN, R_MAX], where both solutions are legal
    delta = np.array([wrap_angle(best[0] - j1), best[1] - j2]) / MAX_DELTA
    return np.clip(delta, -1.0, 1.0).astype(np.float32)


# -- rendering -----------------------------------------------------------------------------------
def _check_size(size: int) -> int:
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE} px, got {size}")
    return int(size)


@lru_cache(maxsize=64)
def _background(size: int, colour: int) -> np.ndarray:
    frame = np.empty((size, size, 3), dtype=np.uint8)
    frame[:] = _BACKGROUND_RGB[colour]
    frame.setflags(write=False)
    return frame


def _px(size: int, x: float, y: float) -> tuple[int, int]:
    """World (x, y) → cv2 fixed-point (column, row); +y points up in the image."""
    scale = size / (2.0 * VIEW) * (1 << _SHIFT)
    return int(round((x + VIEW) * scale)), int(round((VIEW - y) * scale))


def _radius(size: int, r: float) -> int:
    return max(1, int(round(r * size / (2.0 * VIEW) * (1 << _SHIFT))))


def _target_layer(
    background: np.ndarray, target_rgb: tuple[int, int, int], angle: float, radius: float
) -> np.ndarray:
    """The background with the target drawn: constant within an episode, so the env caches it."""
    size = background.shape[0]
    frame = background.copy()
    centre = _px(size, *target_position(angle, radius))
    cv2.circle(frame, centre, _radius(size, TARGET_RADIUS), target_rgb, -1, cv2.LINE_AA, _SHIFT)
    return frame


def _draw_arm(layer: np.ndarray, arm_rgb: tuple[int, int, int], joint1: float, joint2: float) -> np.ndarray:
    """A copy of ``layer`` with the two links, the joints and the fingertip drawn on top."""
    size = layer.shape[0]
    frame = layer.copy()
    (ex, ey), (fx, fy) = forward_kinematics(joint1, joint2)
    # cv2 thickness is whole pixels; 2 at least, or an anti-aliased 1 px link between two pixel
    # columns would never show the arm colour itself
    width = max(2, int(round(LINK_WIDTH * size / (2.0 * VIEW))))
    base, elbow, tip = _px(size, 0.0, 0.0), _px(size, ex, ey), _px(size, fx, fy)
    cv2.line(frame, base, elbow, arm_rgb, width, cv2.LINE_AA, _SHIFT)
    cv2.line(frame, elbow, tip, arm_rgb, width, cv2.LINE_AA, _SHIFT)
    joint = _radius(size, JOINT_RADIUS)
    for p in (base, elbow, tip):
        cv2.circle(frame, p, joint, arm_rgb, -1, cv2.LINE_AA, _SHIFT)
    return frame


def _draw(
    background: np.ndarray,
    target_rgb: tuple[int, int, int],
    arm_rgb: tuple[int, int, int],
    state: Sequence[float],
) -> np.ndarray:
    """Background, then the target, then the arm on top (the env does the same in two steps)."""
    j1, j2, angle, radius = (float(v) for v in state)
    return _draw_arm(_target_layer(background, target_rgb, angle, radius), arm_rgb, j1, j2)


def render_scene(scene: Sequence[int] | np.ndarray, state: Sequence[float], size: int = 64) -> np.ndarray:
    """Render one uint8 (size, size, 3) frame for scene factor classes and a continuous state
    (joint1, joint2, target_angle, target_radius). Pure (cached backgrounds aside); the env and
    the ground-truth data both call it, so RL frames and metric images come from one renderer.
    """
    background, target, arm = (int(v) for v in scene)
    return _draw(_background(_check_size(size), background), _TARGET_RGB[target], _ARM_RGB[arm], state)


# -- the env -------------------------------------------------------------------------------------
class ReacherEnv(gym.Env[np.ndarray, np.ndarray]):
    """Top-down two-link reacher; observations are uint8 (size, size, 3) RGB frames.

    Actions: float32 Box(-1, 1, (2,)), joint-velocity commands (see the module docstring).
    ``info`` (reset and step) holds ``"scene"``: int64 (3,) in :data:`SCENE_SPACE` order,
    ``"state"``: float64 (4,) in :data:`STATE_NAMES` order, ``"distance"`` (fingertip to target)
    and ``"is_success"`` (within ``REACH_TOLERANCE``; SB3's Monitor and EvalCallback read it).
    """

    metadata = {
        "render_modes": ["rgb_array"], "render_fps": 20,
        # what each drawn thing is, for legends (darla's report)
        "render_key": {
            "two links in the arm colour": "the arm (fixed at the centre; its free end is the fingertip)",
            "disc in the target colour": "the target to reach",
        },
    }

    def __init__(
        self,
        domain: str | Domain = "all",
        size: int = 64,
        max_steps: int = 100,
        terminate_on_reach: bool = True,
        render_mode: str | None = None,
    ) -> None:
        check_env_args(self.metadata, render_mode, max_steps)
        self.domain = resolve_domain(DOMAINS, domain, "reacher")
        self.size = _check_size(size)
        self.max_steps = int(max_steps)
        self.terminate_on_reach = bool(terminate_on_reach)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), dtype=np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self._scene = np.zeros(len(SCENE_SPACE), dtype=np.int64)
        self._background: np.ndarray | None = None
        self._layer: np.ndarray | None = None  # background + target, fixed within an episode
        self._target_rgb = _TARGET_RGB[0]
        self._arm_rgb = _ARM_RGB[0]
        self._state = np.zeros(len(STATE_NAMES), dtype=np.float64)
        self._target_xy = (0.0, 0.0)
        self._frame: np.ndarray | None = None
        self._t = 0

    # -- gymnasium API ---------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Sample a scene from the domain, joint angles and a target, all from ``np_random``.

        The fingertip never starts within reach of the target. ``options`` may fix ``"scene"``
        (3 factor classes; it need not be in the domain) and/or ``"state"`` (joint1, joint2,
        target_angle, target_radius), for tests and for rendering chosen situations.
        """
        super().reset(seed=seed)
        rng = self.np_random
        self._scene, options = reset_scene(options, SCENE_SPACE, self.domain, rng)
        background, target, arm = (int(v) for v in self._scene)
        self._background = _background(self.size, background)
        self._target_rgb, self._arm_rgb = _TARGET_RGB[target], _ARM_RGB[arm]
        if "state" in options:
            state = np.asarray(options["state"], dtype=np.float64).reshape(-1)
            if len(state) != 4 or not np.isfinite(state).all():
                raise ValueError(f"state must be 4 finite numbers {STATE_NAMES}, got {state}")
            if abs(state[1]) > JOINT2_LIMIT or not R_MIN <= state[3] <= R_MAX:
                raise ValueError(
                    f"state needs |joint2| <= {JOINT2_LIMIT} and target_radius in "
                    f"[{R_MIN}, {R_MAX}], got {state.tolist()}"
                )
            state[0], state[2] = wrap_angle(state[0]), wrap_angle(state[2])
            self._set_state(state)
        else:
            while True:  # a start already within reach is rare (<1%); redraw it
                self._set_state(
                    np.array(
                        [
                            rng.uniform(-math.pi, math.pi),
                            rng.uniform(-JOINT2_LIMIT, JOINT2_LIMIT),
                            rng.uniform(-math.pi, math.pi),
                            rng.uniform(R_MIN, R_MAX),
                        ]
                    )
                )
                if self._distance() >= 2 * REACH_TOLERANCE:
                    break
        self._t = 0
        self._layer = _target_layer(self._background, self._target_rgb, self._state[2], self._state[3])
        self._frame = self._render_frame()
        return self._frame, self._info(self._distance())

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._background is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        a0, a1 = (float(a[0]), float(a[1])) if a.shape == (2,) else (math.nan, math.nan)
        if not (math.isfinite(a0) and math.isfinite(a1)):
            raise ValueError(f"action must be 2 finite numbers in [-1, 1], got {action!r}")
        # clipped, as SB3 clips, so an out-of-bounds action never moves a joint faster
        a0, a1 = min(max(a0, -1.0), 1.0), min(max(a1, -1.0), 1.0)
        state = self._state.copy()  # a new array: infos handed out earlier keep their values
        state[0] = wrap_angle(state[0] + MAX_DELTA * a0)
        state[1] = min(max(state[1] + MAX_DELTA * a1, -JOINT2_LIMIT), JOINT2_LIMIT)
        self._set_state(state)
        d = self._distance()
        reached = d < REACH_TOLERANCE
        reward = -d + (REACH_BONUS if reached else 0.0)
        self._t += 1
        self._frame = self._render_frame()
        terminated = reached and self.terminate_on_reach
        return self._frame, float(reward), terminated, self._t >= self.max_steps, self._info(d)

    def render(self) -> np.ndarray | None:
        """The current frame (a copy) for ``render_mode="rgb_array"``; None otherwise."""
        if self.render_mode != "rgb_array" or self._frame is None:
            return None
        return self._frame.copy()

    def oracle_action(self) -> np.ndarray:
        """:func:`scripted_action` on the true state: the scripted expert whose return is the 1
        of normalised scores (the random policy is the 0); it reads the state, not pixels."""
        if self._background is None:
            raise RuntimeError("call reset() before oracle_action()")
        return scripted_action(self._state)

    # -- internals -------------------------------------------------------------------------
    def _set_state(self, state: np.ndarray) -> None:
        self._state = state
        self._target_xy = target_position(state[2], state[3])

    def _distance(self) -> float:
        _, (fx, fy) = forward_kinematics(self._state[0], self._state[1])
        return math.hypot(fx - self._target_xy[0], fy - self._target_xy[1])

    def _render_frame(self) -> np.ndarray:
        assert self._layer is not None
        return _draw_arm(self._layer, self._arm_rgb, self._state[0], self._state[1])

    def _info(self, distance: float) -> dict[str, Any]:
        return {
            "scene": self._scene.copy(),
            "state": self._state.copy(),
            "distance": distance,
            "is_success": distance < REACH_TOLERANCE,
        }


# -- ground truth --------------------------------------------------------------------------------
def state_from_bins(bins: np.ndarray) -> np.ndarray:
    """(n, 4) state-factor classes → (n, 4) continuous states at the bin centres.

    joint1 and target_angle bins split [-π, π); joint2 bins split [-JOINT2_LIMIT, JOINT2_LIMIT];
    target_radius bins split [R_MIN, R_MAX].
    """
    b = np.asarray(bins, dtype=np.float64)
    centre = (b + 0.5) / np.asarray(STATE_BINS, dtype=np.float64)  # in (0, 1)
    lo = np.array([-math.pi, -JOINT2_LIMIT, -math.pi, R_MIN])
    hi = np.array([math.pi, JOINT2_LIMIT, math.pi, R_MAX])
    return lo + centre * (hi - lo)


class ReacherGroundTruth:
    """Reacher as :class:`envs.factors.GroundTruthData`: 3 colour factors + 4 binned state factors.

    Factors are independent and uniform (scene factors restricted to ``domain``'s combinations
    when one is given); each state class renders at its bin centre (:func:`state_from_bins`)
    with :func:`render_scene`, exactly as the env draws that state.
    """

    def __init__(self, size: int = 64, domain: str | Domain | None = None) -> None:
        self.size = _check_size(size)
        self.domain = None if domain is None else resolve_domain(DOMAINS, domain, "reacher")
        self.factor_names: tuple[str, ...] = SCENE_SPACE.names + STATE_NAMES
        self.factor_sizes: tuple[int, ...] = SCENE_SPACE.sizes + STATE_BINS
        self.observation_shape: tuple[int, int, int] = (3, self.size, self.size)

    def scene_factor_names(self) -> tuple[str, ...]:
        """The leading factors, which are scene factors (the rest are state factors)."""
        return SCENE_SPACE.names

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 7) int64: scene factors (uniform, or uniform over the domain), then state bins."""
        state = sample_uniform_factors(STATE_BINS, n, rng)
        if self.domain is None:
            scene = sample_uniform_factors(SCENE_SPACE.sizes, n, rng)
        else:
            scene = self.domain.sample(rng, n)
        return np.concatenate([scene, state], axis=1)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n, 3, size, size) float32 in [0, 1]; deterministic (``rng`` is unused)."""
        return to_chw_float(self.render_factors(factors))

    def render_factors(self, factors: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) uint8 frames for (n, 7) factors: the env's own pixels."""
        factors = factor_array(factors, self.factor_names)
        if (factors < 0).any() or (factors >= np.asarray(self.factor_sizes)).any():
            raise ValueError(f"a factor class is out of range {self.factor_sizes}")
        states = state_from_bins(factors[:, len(SCENE_SPACE) :])
        out = np.empty((len(factors), self.size, self.size, 3), dtype=np.uint8)
        for i, (row, state) in enumerate(zip(factors.tolist(), states)):
            background, target, arm = row[:3]
            out[i] = _draw(_background(self.size, background), _TARGET_RGB[target], _ARM_RGB[arm], state)
        return out
