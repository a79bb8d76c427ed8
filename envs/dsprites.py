"""dSprites (Matthey et al. 2017, deepmind/dsprites-dataset): a procedural replica and a loader.

The original is 737,280 binary 64×64 images of one white sprite; its factors, in index order,
are colour (1 value), shape (square, ellipse, heart), scale (``linspace(0.5, 1, 6)``),
orientation (``linspace(0, 2π, 40)``, so index 0 and 39 render identically), posX and posY
(``linspace(0, 1, 32)`` each). disentanglement_lib drops the constant colour factor; so do we:
:data:`FACTOR_NAMES` = (shape, scale, orientation, pos_x, pos_y), sizes (3, 6, 40, 32, 32).

:class:`DSprites` renders any factor vector on the fly, so no 3 GB array is needed. Its geometry
was measured from the dataset's traversal animation (see ``shared/notes/dsprites.md``; ≈0.95–0.997
IoU against the original frames), in continuous pixel coordinates where pixel (row r, column c)
covers ``[c, c+1) × [r, r+1)`` and its centre is ``(c + 0.5, r + 0.5)``:

- centre ``(16 + 32·pos_x, 16 + 32·pos_y)`` in (column, row) order: **pos_x moves the sprite
  along columns (left → right), pos_y along rows (top → bottom)**. Whether the original's posX is
  the column axis is not certain; this is our stated convention;
- orientation θ rotates the sprite about its centre, counter-clockwise on screen (y down): a
  pixel at offset ``(dx, dy)`` from the centre is tested at shape coordinates
  ``u = cosθ·dx − sinθ·dy, v = sinθ·dx + cosθ·dy``;
- square: half-side ``10·s``; a pixel is on when ≥ 90% of it is covered (8×8 supersampling of
  the pixels near the edge). At s = 1: 400 px when the centre sits on a pixel corner and the
  square is axis-aligned (pos 0 or 31); elsewhere the partly covered edge pixels are off, down to
  ≈19×19 px (measured over 2,000 random squares: 360–400, mean 370);
- ellipse: semi-axes ``12.75·s`` (u, horizontal at θ = 0) × ``7.25·s`` (v); pixel-centre test
  (measured 284–297 px at s = 1, mean 290; continuous area 290);
- heart: upright, lobes up; two discs of radius ``5.5·s`` centred at ``(±4.25·s, −3.75·s)``
  joined by 45° edges to a point at ``(0, +8.28·s)``, bounding box 19.5 × 17.5; pixel-centre
  test (measured 219–234 px at s = 1, mean 227 = the continuous area; the notes say ≈222).

Rendering is vectorised over images in 32×32 windows around each centre (a sprite at s = 1
reaches at most 14.2 px from it), so cost does not depend on how many distinct factor vectors are
asked for: 10,000 random images take ≈0.8 s (uint8 masks or float32 observations alike) on
one CPU core of the 2-core development machine. Chunks of 2,048 images bound working memory.

:class:`DSpritesNpz` serves the original ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` when
a user has it, with the same factors and the original flat index (:func:`index_of`).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from envs.factors import sample_uniform_factors

SHAPES: tuple[str, ...] = ("square", "ellipse", "heart")
SCALES: np.ndarray = np.linspace(0.5, 1.0, 6)
ORIENTATIONS: np.ndarray = np.linspace(0.0, 2.0 * np.pi, 40)
POSITIONS: np.ndarray = np.linspace(0.0, 1.0, 32)
for _a in (SCALES, ORIENTATIONS, POSITIONS):
    _a.setflags(write=False)

FACTOR_NAMES: tuple[str, ...] = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES: tuple[int, ...] = (3, 6, 40, 32, 32)
STRIDES: tuple[int, ...] = (245_760, 40_960, 1_024, 32, 1)
"""Flat-index strides of the original file over (shape, scale, orientation, posX, posY)."""
NUM_IMAGES = 737_280
IMAGE_SIZE = 64
ORIGINAL_FILENAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"

# Geometry at scale 1, in pixels (shared/notes/dsprites.md).
CENTRE_OFFSET, CENTRE_SPAN = 16.0, 32.0
SQUARE_HALF_SIDE = 10.0
SQUARE_MIN_COVERAGE = 0.9
SUPERSAMPLE = 8
"""Samples per pixel side for the square's coverage test (64 samples; on at ≥ 58 of them)."""
ELLIPSE_SEMI_AXES = (12.75, 7.25)
HEART_LOBE_RADIUS = 5.5
HEART_LOBE_CENTRE = (4.25, -3.75)  # (±u, v); v < 0 is up on screen
HEART_TIP = 8.28  # the point at (0, +8.28), below the centre

_WINDOW = 32
"""Side of the square window rendered around each centre: the largest sprite (the square's
half-diagonal 10·√2 ≈ 14.2 px, plus the half-diagonal of a pixel for supersampling) fits in
±15 px of any centre, and a window starting at ``floor(c) − 15`` covers that."""
_CHUNK = 2048


# -- factor index ------------------------------------------------------------------------
def _check_factors(factors: np.ndarray) -> np.ndarray:
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_NAMES):
        raise ValueError(
            f"factors must have shape (n, {len(FACTOR_NAMES)}) for {list(FACTOR_NAMES)}, "
            f"got {factors.shape}"
        )
    if not np.issubdtype(factors.dtype, np.integer):
        if not np.array_equal(factors, np.round(factors)):
            raise ValueError("factors must be integer class indices")
    factors = factors.astype(np.int64)
    if (factors < 0).any() or (factors >= np.asarray(FACTOR_SIZES)).any():
        raise ValueError(f"a factor class is out of range {FACTOR_SIZES}")
    return factors


def index_of(factors: np.ndarray) -> np.ndarray:
    """(n, 5) factor classes → (n,) int64 flat index into the original file (colour dropped)."""
    return _check_factors(factors) @ np.asarray(STRIDES, dtype=np.int64)


def factors_of(index: np.ndarray | int) -> np.ndarray:
    """Inverse of :func:`index_of`: (n,) flat indices → (n, 5) int64 classes (a scalar → (5,))."""
    idx = np.asarray(index)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if (idx < 0).any() or (idx >= NUM_IMAGES).any():
        raise ValueError(f"a flat index is outside 0..{NUM_IMAGES - 1}")
    return np.stack(np.unravel_index(idx, FACTOR_SIZES), axis=-1).astype(np.int64)


# -- rendering ---------------------------------------------------------------------------
def _square_on(
    u: np.ndarray, v: np.ndarray, cos: np.ndarray, sin: np.ndarray, s: np.ndarray
) -> np.ndarray:
    """≥90%-coverage test of (n, W, W) pixels whose centres sit at shape coordinates (u, v).

    Pixels farther than half a pixel diagonal from the square's edge are wholly in or out; only
    the band along the edge is supersampled (8×8 points, rotated like the pixel centres).
    """
    h = SQUARE_HALF_SIDE * s[:, None, None]
    d = np.maximum(np.abs(u), np.abs(v)) - h
    reach = np.sqrt(0.5)  # the pixel's half-diagonal: no rotation moves a corner farther
    on = d <= -reach
    band = np.abs(d) < reach
    i, r, c = np.nonzero(band)
    if len(i):
        k = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
        ex, ey = np.meshgrid(k, k, indexing="xy")
        ex, ey = ex.reshape(-1), ey.reshape(-1)  # sample offsets inside a pixel
        cs, sn, hh = cos[i, None], sin[i, None], h[i, 0, 0, None]
        uu = u[i, r, c][:, None] + cs * ex - sn * ey
        vv = v[i, r, c][:, None] + sn * ex + cs * ey
        inside = (np.abs(uu) <= hh) & (np.abs(vv) <= hh)
        need = int(np.ceil(SQUARE_MIN_COVERAGE * SUPERSAMPLE**2 - 1e-9))
        on[i, r, c] = inside.sum(axis=1) >= need
    return on


def _ellipse_on(u: np.ndarray, v: np.ndarray, s: np.ndarray) -> np.ndarray:
    a, b = (x * s[:, None, None] for x in ELLIPSE_SEMI_AXES)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _heart_on(u: np.ndarray, v: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Union of the two lobes and the convex pentagon (tip, two tangent points, lobe centres).

    The 45° edges ``|u| + v = 8.28·s`` are tangent to the lobes (distance 7.78/√2 = 5.50); the
    pentagon is ``|u| + v ≤ 8.28·s``, ``|u| − v ≤ 8·s`` (the radius to the tangent point) and
    ``v ≥ −3.75·s`` (the segment joining the lobe centres).
    """
    s = s[:, None, None]
    au, av = np.abs(u) / s, v / s  # symmetric in u: test the right lobe with |u|
    cu, cv = HEART_LOBE_CENTRE
    lobe = (au - cu) ** 2 + (av - cv) ** 2 <= HEART_LOBE_RADIUS**2
    tangent_radius = cu - cv  # the radius line through (cu, cv) at 45°: u − v = cu − cv = 8
    pentagon = (au + av <= HEART_TIP) & (au - av <= tangent_radius) & (av >= cv)
    return lobe | pentagon


def _render_chunk(factors: np.ndarray) -> np.ndarray:
    n = len(factors)
    shape = factors[:, 0]
    s = SCALES[factors[:, 1]]
    theta = ORIENTATIONS[factors[:, 2]]
    cx = CENTRE_OFFSET + CENTRE_SPAN * POSITIONS[factors[:, 3]]  # column coordinate
    cy = CENTRE_OFFSET + CENTRE_SPAN * POSITIONS[factors[:, 4]]  # row coordinate
    ox = np.floor(cx).astype(np.int64) - (_WINDOW // 2 - 1)
    oy = np.floor(cy).astype(np.int64) - (_WINDOW // 2 - 1)
    j = np.arange(_WINDOW) + 0.5
    dx = (ox - cx)[:, None, None] + j[None, None, :]
    dy = (oy - cy)[:, None, None] + j[None, :, None]
    cos, sin = np.cos(theta), np.sin(theta)
    c3, s3 = cos[:, None, None], sin[:, None, None]
    u = c3 * dx - s3 * dy
    v = s3 * dx + c3 * dy

    win = np.zeros((n, _WINDOW, _WINDOW), dtype=bool)
    for k, test in enumerate(SHAPES):
        sel = np.flatnonzero(shape == k)
        if not len(sel):
            continue
        if test == "square":
            win[sel] = _square_on(u[sel], v[sel], cos[sel], sin[sel], s[sel])
        elif test == "ellipse":
            win[sel] = _ellipse_on(u[sel], v[sel], s[sel])
        else:
            win[sel] = _heart_on(u[sel], v[sel], s[sel])

    # ox, oy lie in [1, 33], so windows end by pixel 64: paste into a 1-px-larger canvas and crop.
    canvas = np.zeros((n, IMAGE_SIZE + 1, IMAGE_SIZE + 1), dtype=np.uint8)
    rows = oy[:, None] + np.arange(_WINDOW)
    cols = ox[:, None] + np.arange(_WINDOW)
    canvas[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]] = win
    return canvas[:, :IMAGE_SIZE, :IMAGE_SIZE]


def render(factors: np.ndarray) -> np.ndarray:
    """(n, 5) factor classes → (n, 64, 64) uint8 masks in {0, 1}. Pure and deterministic."""
    factors = _check_factors(factors)
    out = np.empty((len(factors), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i in range(0, len(factors), _CHUNK):
        out[i : i + _CHUNK] = _render_chunk(factors[i : i + _CHUNK])
    return out


class DSprites:
    """Procedural dSprites as :class:`envs.factors.GroundTruthData` (no data file needed).

    Factors (shape, scale, orientation, pos_x, pos_y) with sizes (3, 6, 40, 32, 32); images are
    (1, 64, 64) float32 in {0, 1}. pos_x moves the sprite along columns, pos_y along rows (see
    the module docstring for the full geometry).
    """

    def __init__(self) -> None:
        self.factor_names: tuple[str, ...] = FACTOR_NAMES
        self.factor_sizes: tuple[int, ...] = FACTOR_SIZES
        self.observation_shape: tuple[int, int, int] = (1, IMAGE_SIZE, IMAGE_SIZE)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 5) int64 classes, uniform and independent per factor."""
        return sample_uniform_factors(self.factor_sizes, n, rng)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """(n, 1, 64, 64) float32 in {0, 1}; deterministic (``rng`` is unused)."""
        return render(factors)[:, None].astype(np.float32)


class DSpritesNpz:
    """The original dSprites file as :class:`envs.factors.GroundTruthData` (colour dropped).

    ``path`` is DeepMind's ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (keys ``imgs``
    (N, 64, 64) of 0/1 and ``latents_classes`` (N, 6) over colour, shape, scale, orientation,
    posX, posY). Rows are looked up by :func:`index_of`, so any row order works. The whole image
    array is held in memory (≈3 GB of uint8 for the full file).

    A file lacking some of the 737,280 factor combinations is refused unless
    ``allow_partial=True``; :meth:`sample_factors` then draws uniformly over the rows present,
    so factors are no longer independent — metrics need the complete file.
    """

    def __init__(self, path: str | os.PathLike[str], *, allow_partial: bool = False) -> None:
        self.path = Path(path)
        imgs, classes = _load_npz(self.path)
        flat = index_of(classes[:, 1:])
        lookup = np.full(NUM_IMAGES, -1, dtype=np.int64)
        lookup[flat] = np.arange(len(flat))
        if (lookup >= 0).sum() != len(flat):
            raise ValueError(f"{self.path}: latents_classes lists a factor combination twice")
        self.complete = len(flat) == NUM_IMAGES
        if not self.complete and not allow_partial:
            raise ValueError(
                f"{self.path}: holds {len(flat)} of the {NUM_IMAGES} dSprites images; "
                f"pass allow_partial=True to use a subset"
            )
        self._imgs = imgs
        self._lookup = lookup
        self._present = np.sort(flat)
        self.factor_names: tuple[str, ...] = FACTOR_NAMES
        self.factor_sizes: tuple[int, ...] = FACTOR_SIZES
        self.observation_shape: tuple[int, int, int] = (1, IMAGE_SIZE, IMAGE_SIZE)

    def __len__(self) -> int:
        return len(self._imgs)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 5) int64 classes: uniform per factor (complete file) or over the rows present."""
        if self.complete:
            return sample_uniform_factors(self.factor_sizes, n, rng)
        return factors_of(self._present[rng.integers(len(self._present), size=n)])

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """(n, 1, 64, 64) float32 in {0, 1}: the file's images for these factors (``rng`` unused)."""
        rows = self._lookup[index_of(factors)]
        if (rows < 0).any():
            missing = np.asarray(factors)[rows < 0][0].tolist()
            raise KeyError(f"{self.path} has no image for factors {missing} ({list(FACTOR_NAMES)})")
        return self._imgs[rows][:, None].astype(np.float32)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate ``imgs`` and ``latents_classes``; every error names ``path``."""
    if not path.is_file():
        raise FileNotFoundError(
            f"dSprites file not found: {path} (download {ORIGINAL_FILENAME} from "
            f"https://github.com/deepmind/dsprites-dataset, or use the procedural DSprites)"
        )
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a .npz archive (expected {ORIGINAL_FILENAME})")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = {"imgs", "latents_classes"} - keys
            if not missing:
                imgs, classes = npz["imgs"], npz["latents_classes"]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: cannot read as a .npz archive ({e})") from e
    if missing:
        raise ValueError(
            f"{path}: not a dSprites .npz — missing key(s) {sorted(missing)}; "
            f"keys present: {sorted(keys)}"
        )
    if imgs.ndim != 3 or imgs.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{path}: 'imgs' must have shape (N, 64, 64), got {imgs.shape}")
    if classes.ndim != 2 or classes.shape != (len(imgs), 1 + len(FACTOR_NAMES)):
        raise ValueError(
            f"{path}: 'latents_classes' must have shape ({len(imgs)}, 6) (colour, shape, scale, "
            f"orientation, posX, posY), got {classes.shape}"
        )
    if not (np.issubdtype(imgs.dtype, np.integer) or imgs.dtype == bool) or (
        imgs.size and (imgs.min() < 0 or imgs.max() > 1)
    ):
        raise ValueError(f"{path}: 'imgs' must hold binary 0/1 integers (dtype {imgs.dtype})")
    if not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"{path}: 'latents_classes' must be integers, got dtype {classes.dtype}")
    if (classes[:, 0] != 0).any():
        raise ValueError(f"{path}: the colour class (column 0 of 'latents_classes') must be 0")
    sizes = np.asarray(FACTOR_SIZES)
    if (classes[:, 1:] < 0).any() or (classes[:, 1:] >= sizes).any():
        raise ValueError(f"{path}: a class in 'latents_classes' is outside {FACTOR_SIZES}")
    return imgs.astype(np.uint8, copy=False), classes.astype(np.int64, copy=False)
