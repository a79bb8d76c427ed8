"""Colour domains for any pixel gymnasium env: a recolouring wrapper with versioned presets.

DARLA's protocol needs an env whose colours can change while its dynamics stay put. The built-in
envs draw their colours from scene factors; an external env (MiniGrid, CarRacing, Atari, ...)
has fixed colours, so :class:`RecolourObservation` remaps them after the fact, as
DMControl-GB's ``color_easy`` / ``color_hard`` do (Hansen & Wang 2021), but with discrete
factors so the DARLA protocol (:mod:`envs.protocol`) applies unchanged.

How a frame is recoloured. Each pixel falls into luminance *bands* — dark, mid, bright — with
weights that are 1 on a plateau and ramp linearly over ``±softness`` around the band edges
(Rec. 601 luma, edges at 1/3 and 2/3, softness 0.05), so smooth images stay smooth. Each band
has its own colour transform ``c ↦ gain ⊙ R(angle)·c + bias`` (``R`` rotates the hue about the
grey axis; ``c`` in [0, 1]); a pixel's new colour is the band-weighted sum, clipped to [0, 1].
A scene is one transform per band, so a preset is a :class:`~envs.factors.FactorSpace` of three
factors, ``dark_colour``, ``mid_colour`` and ``bright_colour``, 4 values each; value 0 is the
identity in every preset (scene ``(0, 0, 0)`` returns the frame untouched). The DARLA domains
over it (:func:`preset_domains`) use A = dark (backgrounds, floors), B = bright (sprites,
objects) and C = mid, so ``target_floor_object`` = held-out dark × bright transforms.

Presets are **versioned and frozen**: their numbers below never change; a different recolouring
gets a new name (``hue_v2``), so a result labelled ``palette_v1`` means the same pixels forever
(a test pins a checksum of every preset).

- ``hue_v1``: hue rotations of 0°, 90°, 180°, 270° per band, no gain or bias. Greys (black,
  white, grey walls) are left as they are: for colourful envs (CarRacing, Atari).
- ``palette_v1``: per band a hue rotation, a per-channel gain and a bias, so greys change too
  (dark pixels are lifted by ``bias ∈ [0, 0.3]``, bright ones lowered by ``bias ∈ [-0.3, 0]``):
  for envs drawn in black and grey (MiniGrid). Drawn once by :func:`random_preset` (seed 2017,
  the ranges in its docstring) and frozen here as literals.

Seeding: the wrapper draws a scene from its domain at every reset from **its own** generator,
seeded from ``reset(seed=...)``; it never touches the wrapped env's ``np_random``, so wrapping
an env does not change its episodes, rewards or dynamics (tested).

External envs in the registry: :func:`register_recoloured` builds an
:class:`~envs.registry.EnvInfo` (gymnasium id ``darla/recoloured.<name>-v0``, the preset's
factors and domains, no ground truth) and adds it to :data:`envs.registry.ENVS`, so
``make_env``, ``collect_frames`` and ``darla.pipeline`` run it like a built-in env::

    from envs.recolour import register_recoloured
    register_recoloured("car_racing", "CarRacing-v3", "hue_v1", base_kwargs={"continuous": True})
    register_recoloured("minigrid_empty", "minigrid:MiniGrid-Empty-8x8-v0", "palette_v1")

Frames come from the env's observation when it is an RGB image, else from ``render()`` (MiniGrid
observations are dicts); they are resized to ``size × size`` (INTER_AREA; non-square frames are
squashed). External envs have no ground-truth factors, so vision metrics, UDR selection and
DC-IGN cannot run on them; their ``ground_truth`` raises an error that says so.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Literal, NamedTuple, NoReturn

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.factors import Domain, Factor, FactorSpace
from envs.protocol import darla_domains, resolve_domain
from envs.registry import ENVS, EnvInfo

BANDS: tuple[str, ...] = ("dark_colour", "mid_colour", "bright_colour")
"""Factor names of every preset, in luminance order."""
_SEED_SALT = 0x5EC0_10B5
"""Mixed into the reset seed, so the wrapper's stream differs from the env's own for one seed."""


class ColourTransform(NamedTuple):
    """``c ↦ gain ⊙ R(angle)·c + bias`` on RGB in [0, 1]; ``R`` rotates hue about the grey axis."""

    angle: float = 0.0
    """Degrees."""
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def is_identity(self) -> bool:
        return self.angle % 360 == 0 and self.gain == (1.0, 1.0, 1.0) and self.bias == (0.0, 0.0, 0.0)

    def matrix(self) -> np.ndarray:
        """3×3 ``diag(gain) @ R(angle)`` (Rodrigues' rotation about (1, 1, 1)/√3)."""
        t = math.radians(self.angle)
        u = np.full(3, 1.0 / math.sqrt(3.0))
        cross = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
        rot = math.cos(t) * np.eye(3) + (1.0 - math.cos(t)) * np.outer(u, u) + math.sin(t) * cross
        if self.angle % 360 == 0:
            rot = np.eye(3)  # exact, so identity bands give back the input bit for bit
        return np.diag(self.gain) @ rot


@dataclass(frozen=True)
class RecolourPreset:
    """A frozen, named recolouring: ``transforms[band][value]`` for the three luminance bands."""

    name: str
    labels: tuple[str, ...]
    """One label per value (shared by the bands), used as the factor values' names."""
    transforms: tuple[tuple[ColourTransform, ...], ...]
    band_edges: tuple[float, float] = (1 / 3, 2 / 3)
    softness: float = 0.05

    def __post_init__(self) -> None:
        if len(self.transforms) != len(BANDS):
            raise ValueError(f"preset {self.name!r} needs one transform list per band {BANDS}")
        if any(len(t) != len(self.labels) for t in self.transforms):
            raise ValueError(f"preset {self.name!r}: every band needs {len(self.labels)} transforms")
        if not all(t[0].is_identity for t in self.transforms):
            raise ValueError(f"preset {self.name!r}: value 0 must be the identity in every band")
        lo, hi = self.band_edges
        if not 0 < lo - self.softness < lo + self.softness < hi - self.softness < hi + self.softness < 1:
            raise ValueError(f"preset {self.name!r}: band ramps overlap or leave [0, 1]")

    @property
    def space(self) -> FactorSpace:
        return FactorSpace(tuple(Factor(b, self.labels) for b in BANDS))

    def checksum(self) -> str:
        """sha256 of every number and label: pinned by the tests so a preset never drifts."""
        payload = json.dumps(
            [self.name, self.labels, [[list(t) for t in band] for band in self.transforms], self.band_edges, self.softness]
        )
        return hashlib.sha256(payload.encode()).hexdigest()


def _hue_v1() -> RecolourPreset:
    values = tuple(ColourTransform(float(a)) for a in (0, 90, 180, 270))
    return RecolourPreset("hue_v1", ("identity", "hue+90", "hue+180", "hue+270"), (values,) * 3)


def _palette_v1() -> RecolourPreset:
    # random_preset("palette_v1", seed=2017), printed once and frozen (numpy 2.4).
    T = ColourTransform
    return RecolourPreset(
        "palette_v1",
        ("identity", "palette 1", "palette 2", "palette 3"),
        (
            (T(), T(159.0, (1.03, 1.25, 0.96), (0.01, 0.23, 0.14)),
             T(-62.0, (0.78, 1.06, 1.14), (0.28, 0.21, 0.28)),
             T(37.0, (1.28, 0.97, 0.9), (0.13, 0.24, 0.16))),
            (T(), T(15.0, (1.04, 0.77, 1.04), (0.09, 0.14, 0.08)),
             T(-162.0, (1.25, 0.84, 1.06), (0.13, -0.02, 0.04)),
             T(34.0, (1.15, 1.01, 1.32), (0.0, 0.0, -0.02))),
            (T(), T(-12.0, (0.87, 0.84, 1.37), (-0.09, -0.19, -0.21)),
             T(65.0, (0.95, 1.07, 0.77), (-0.16, -0.18, -0.1)),
             T(-179.0, (0.96, 0.82, 0.67), (-0.15, -0.23, -0.25))),
        ),
    )


PRESETS: dict[str, RecolourPreset] = {"hue_v1": _hue_v1(), "palette_v1": _palette_v1()}
"""Every frozen preset by name (a literal registry; add ``*_v2`` entries, never edit one)."""


def get_preset(preset: str | RecolourPreset) -> RecolourPreset:
    """A preset by name (or passed through); a KeyError lists the valid names."""
    if isinstance(preset, RecolourPreset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise KeyError(f"unknown recolour preset {preset!r}; valid presets are {sorted(PRESETS)}") from None


def random_preset(name: str, seed: int, n_values: int = 4) -> RecolourPreset:
    """A new palette preset drawn from ``seed`` (how ``palette_v1`` was made; freeze the result).

    Values 1.. per band: hue rotation U(−180°, 180°) in whole degrees; per-channel gain
    U(0.6, 1.4); per-channel bias U(0, 0.3) for the dark band, U(−0.15, 0.15) mid,
    U(−0.3, 0) bright; all rounded to 2 decimals. NumPy may change its streams between major
    versions, so a preset meant to last must be frozen as literals, not regenerated.
    """
    rng = np.random.default_rng(seed)
    bias_ranges = ((0.0, 0.3), (-0.15, 0.15), (-0.3, 0.0))
    bands = []
    for lo, hi in bias_ranges:
        values = [ColourTransform()]
        for _ in range(n_values - 1):
            angle = float(round(rng.uniform(-180, 180)))
            gain = tuple(round(float(g), 2) for g in rng.uniform(0.6, 1.4, 3))
            bias = tuple(round(float(b), 2) + 0.0 for b in rng.uniform(lo, hi, 3))
            values.append(ColourTransform(angle, gain, bias))  # type: ignore[arg-type]
        bands.append(tuple(values))
    labels = ("identity", *(f"palette {i}" for i in range(1, n_values)))
    return RecolourPreset(name, labels, tuple(bands))


@lru_cache(maxsize=64)
def preset_domains(preset: str | RecolourPreset) -> dict[str, Domain]:
    """The DARLA protocol domains over a preset's factors (A = dark, B = bright, C = mid)."""
    p = get_preset(preset)
    return darla_domains(p.space, a="dark_colour", b="bright_colour", c="mid_colour")


# -- the transform ---------------------------------------------------------------------------
class _Compiled(NamedTuple):
    affine: tuple[np.ndarray, np.ndarray, np.ndarray]
    """Per band (dark, mid, bright) a float32 3×4 ``[diag(gain)·R | 255·bias]`` on 0..255 RGB."""
    weights: tuple[np.ndarray, np.ndarray]
    """float32 (256,) dark and bright band weights per uint8 luma (mid = 1 − dark − bright)."""
    identity: bool


def band_weights(luma: np.ndarray, preset: RecolourPreset) -> np.ndarray:
    """(N,) luma in [0, 1] → (N, 3) dark/mid/bright weights summing to 1 (flat, then linear ramps)."""
    (lo, hi), s = preset.band_edges, preset.softness
    dark = np.clip((lo + s - luma) / (2 * s), 0.0, 1.0)
    bright = np.clip((luma - (hi - s)) / (2 * s), 0.0, 1.0)
    return np.stack([dark, 1.0 - dark - bright, bright], axis=1)


@lru_cache(maxsize=1024)
def _compile(preset: RecolourPreset, scene: tuple[int, ...]) -> _Compiled:
    ts = [preset.transforms[b][v] for b, v in enumerate(scene)]
    affine = tuple(
        np.concatenate([t.matrix(), 255.0 * np.asarray(t.bias)[:, None]], axis=1).astype(np.float32) for t in ts
    )
    w = band_weights(np.arange(256) / 255.0, preset).astype(np.float32)
    weights = (np.ascontiguousarray(w[:, 0]), np.ascontiguousarray(w[:, 2]))
    return _Compiled(affine, weights, all(t.is_identity for t in ts))  # type: ignore[arg-type]


def recolour_frame(frame: np.ndarray, preset: str | RecolourPreset, scene: tuple[int, ...] | np.ndarray) -> np.ndarray:
    """Recolour one uint8 (H, W, 3) RGB frame with the preset's transforms for ``scene`` (3 classes).

    Pure and deterministic; the identity scene returns the input unchanged. Luma is OpenCV's
    uint8 ``RGB2GRAY`` (Rec. 601); the per-band affine maps run in cv2 (≈80 µs at 64×64, four
    times a numpy matmul version), as ``mid + w_dark·(dark − mid) + w_bright·(bright − mid)``.
    """
    p = get_preset(preset)
    scene = tuple(int(v) for v in scene)
    if len(scene) != len(BANDS) or not all(0 <= v < len(p.labels) for v in scene):
        raise ValueError(f"scene must be {len(BANDS)} classes < {len(p.labels)}, got {scene}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) frame, got {frame.dtype} {frame.shape}")
    c = _compile(p, scene)
    if c.identity:
        return frame
    frame = np.ascontiguousarray(frame)
    x = frame.astype(np.float32)
    luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    luma3 = cv2.merge([luma, luma, luma])
    dark_a, mid_a, bright_a = c.affine
    out = cv2.transform(x, mid_a)
    for affine, weights in ((dark_a, c.weights[0]), (bright_a, c.weights[1])):
        delta = cv2.transform(x, affine)
        delta -= out  # band − mid, weighted by the band's share of each pixel
        delta *= cv2.LUT(luma3, weights)
        out += delta
    np.clip(out, 0.0, 255.0, out=out)
    return np.rint(out, out=out).astype(np.uint8)


# -- the wrapper -----------------------------------------------------------------------------
def _is_rgb_image(space: spaces.Space) -> bool:
    return (
        isinstance(space, spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) == 3
        and space.shape[2] == 3
    )


class RecolourObservation(gym.ObservationWrapper):
    """Give a pixel env colour domains: each episode's frames are recoloured by one scene of a
    preset, drawn from ``domain`` at reset.

    ``info["scene"]`` holds the scene (int64 (3,), :data:`BANDS` order), as the built-in envs
    report theirs; a ``"scene"`` the wrapped env reported is kept as ``info["base_scene"]``.
    ``reset(options={"recolour_scene": (d, m, b)})`` fixes the scene; other options pass through.
    """

    def __init__(self, env: gym.Env, preset: str | RecolourPreset = "hue_v1", domain: str | Domain = "all") -> None:
        super().__init__(env)
        if not _is_rgb_image(env.observation_space):
            raise ValueError(
                f"RecolourObservation needs uint8 (H, W, 3) RGB observations, got {env.observation_space}; "
                "make_recoloured(..., obs='render') uses render() frames instead"
            )
        self.preset = get_preset(preset)
        self.domain = resolve_domain(preset_domains(self.preset), domain, f"recolour preset {self.preset.name!r}")
        self._rng: np.random.Generator | None = None
        self._scene = np.zeros(len(BANDS), dtype=np.int64)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        options = dict(options or {})
        fixed = options.pop("recolour_scene", None)
        if seed is not None:
            self._rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SEED_SALT]))
        elif self._rng is None:  # unseeded first reset: fresh entropy, as gymnasium does
            self._rng = np.random.default_rng()
        obs, info = self.env.reset(seed=seed, options=options or None)
        if fixed is not None:
            scene = np.asarray(fixed, dtype=np.int64).reshape(-1)
            if len(scene) != len(BANDS) or (scene < 0).any() or (scene >= len(self.preset.labels)).any():
                raise ValueError(f"recolour_scene must be {len(BANDS)} classes < {len(self.preset.labels)}, got {fixed}")
            self._scene = scene
        else:
            self._scene = self.domain.sample(self._rng)
        return self.observation(obs), self._info(info)

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self.observation(obs), reward, terminated, truncated, self._info(info)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return recolour_frame(observation, self.preset, self._scene)

    def render(self) -> Any:
        """The wrapped env's render, recoloured when it is an RGB frame (so videos match obs)."""
        frame = self.env.render()
        if isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3:
            return recolour_frame(frame, self.preset, self._scene)
        return frame

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        info = dict(info)
        if "scene" in info:
            info["base_scene"] = info["scene"]
        info["scene"] = self._scene.copy()
        return info


def make_recoloured(
    base_id: str,
    preset: str = "hue_v1",
    domain: str | Domain = "all",
    size: int = 64,
    max_steps: int | None = None,
    base_kwargs: Mapping[str, Any] | None = None,
    obs: Literal["auto", "observation", "render"] = "auto",
) -> gym.Env:
    """``gymnasium.make(base_id)`` → RGB frames → ``size × size`` → recoloured → time limit.

    The gymnasium entry point of every :func:`register_recoloured` env (``make_env`` passes
    ``domain``, ``size`` and ``max_steps``). ``obs="auto"`` uses the observation when it is an
    RGB image and ``render()`` frames otherwise; ``max_steps`` adds a TimeLimit on top of any the
    base env has (the shorter one ends the episode).
    """
    if obs not in ("auto", "observation", "render"):
        raise ValueError(f"obs must be 'auto', 'observation' or 'render', got {obs!r}")
    kwargs = dict(base_kwargs or {})
    env = gym.make(base_id, **kwargs) if obs != "render" else None
    if env is not None and not _is_rgb_image(env.observation_space):
        if obs == "observation":
            raise ValueError(f"{base_id} observations are {env.observation_space}, not RGB frames; use obs='render'")
        env.close()
        env = None
    if env is None:
        env = gym.wrappers.AddRenderObservation(gym.make(base_id, **{"render_mode": "rgb_array", **kwargs}), render_only=True)
    if env.observation_space.shape[:2] != (size, size):
        env = gym.wrappers.ResizeObservation(env, (int(size), int(size)))
    env = RecolourObservation(env, preset, domain)
    if max_steps is not None:
        env = gym.wrappers.TimeLimit(env, int(max_steps))
    return env


# -- registry ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoGroundTruth:
    """``EnvInfo.ground_truth`` of an external env: calling it explains why there is none."""

    env: str
    base_id: str
    available: ClassVar[bool] = False
    """Read by :func:`envs.registry.has_ground_truth`, so a config can be refused up front."""

    def __call__(self, size: int = 64, domain: Any = None) -> NoReturn:
        raise NotImplementedError(
            f"env {self.env!r} recolours the external env {self.base_id!r}, which has no "
            "ground-truth factors: vision metrics (metrics.enabled), UDR selection "
            "(vision.select: udr) and DC-IGN need a renderer of labelled factors; run it with "
            "metrics.enabled: [], vision.select: none and another vision model"
        )


_NAME = re.compile(r"^[A-Za-z0-9_.]+$")


def recoloured_gym_id(name: str) -> str:
    """The gymnasium id :func:`register_recoloured` registers env ``name`` under."""
    return f"darla/recoloured.{name}-v0"


def register_recoloured(
    name: str,
    base_id: str,
    preset: str = "hue_v1",
    *,
    base_kwargs: Mapping[str, Any] | None = None,
    obs: Literal["auto", "observation", "render"] = "auto",
    action_kind: Literal["discrete", "continuous"] | None = None,
    replace: bool = False,
) -> EnvInfo:
    """Register ``base_id`` recoloured by ``preset`` as env ``name`` (``ENVS`` and gymnasium).

    ``action_kind`` is read from the env's action space when not given (Discrete → discrete,
    Box → continuous; building the env once). ``base_id`` may be ``"module:EnvId"`` to import
    the module that registers it (``"minigrid:MiniGrid-Empty-8x8-v0"``). Built-in names can
    never be replaced; an earlier :func:`register_recoloured` name can with ``replace=True``.
    """
    if not _NAME.match(name):
        raise ValueError(f"env name must use letters, digits, '_' and '.', got {name!r}")
    p = get_preset(preset)
    if name in ENVS:
        if not isinstance(ENVS[name].ground_truth, NoGroundTruth):
            raise ValueError(f"{name!r} is a built-in env; choose another name")
        if not replace:
            raise ValueError(f"env {name!r} is already registered; pass replace=True to redefine it")
    kwargs = dict(base_kwargs or {})
    if action_kind is None:
        probe = gym.make(base_id, **kwargs)
        space = probe.action_space
        probe.close()
        if isinstance(space, spaces.Discrete):
            action_kind = "discrete"
        elif isinstance(space, spaces.Box):
            action_kind = "continuous"
        else:
            raise ValueError(f"{base_id} has action space {space}; the agents support Discrete and Box")
    gym_id = recoloured_gym_id(name)
    if gym_id in gym.registry:
        del gym.registry[gym_id]  # re-registration (replace=True, or a re-imported plugin)
    gym.register(
        id=gym_id,
        entry_point=make_recoloured,
        kwargs={"base_id": base_id, "preset": p.name if p is PRESETS.get(p.name) else p, "base_kwargs": kwargs, "obs": obs},
    )
    info = EnvInfo(
        gym_id=gym_id,
        scene_space=p.space,
        domains=preset_domains(p),
        ground_truth=NoGroundTruth(name, base_id),
        action_kind=action_kind,
        entry_point="envs.recolour:make_recoloured",
    )
    ENVS[name] = info
    return info


@contextmanager
def registered_recoloured(
    name: str, base_id: str, preset: str = "hue_v1", *, base_kwargs: Mapping[str, Any] | None = None,
) -> Iterator[EnvInfo]:
    """:func:`register_recoloured` (``replace=True``) for the ``with`` block only: afterwards
    :data:`~envs.registry.ENVS` and gymnasium's registry hold what they held before, an earlier
    registration of ``name`` included. For checks that must build the env and leave nothing behind."""
    gym_id = recoloured_gym_id(name)
    info_before, spec_before = ENVS.get(name), gym.registry.get(gym_id)
    try:
        yield register_recoloured(name, base_id, preset, base_kwargs=base_kwargs, replace=True)
    finally:
        if info_before is None:
            ENVS.pop(name, None)
        else:
            ENVS[name] = info_before
        if spec_before is None:
            gym.registry.pop(gym_id, None)
        else:
            gym.registry[gym_id] = spec_before


def unregister_recoloured(name: str) -> None:
    """Remove an env added by :func:`register_recoloured` (tests, notebooks)."""
    info = ENVS.get(name)
    if info is None or not isinstance(info.ground_truth, NoGroundTruth):
        raise KeyError(f"{name!r} is not a registered recoloured env")
    del ENVS[name]
    if info.gym_id in gym.registry:
        del gym.registry[info.gym_id]
