"""dSprites: factors, original index order, rendered geometry, determinism, the .npz loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from envs.dsprites import (
    FACTOR_NAMES,
    FACTOR_SIZES,
    NUM_IMAGES,
    STRIDES,
    DSprites,
    DSpritesNpz,
    factors_of,
    index_of,
    render,
)
from envs.factors import GroundTruthData

SQUARE, ELLIPSE, HEART = 0, 1, 2


def area(shape: int, scale: int = 5, orientation: int = 0, x: int = 0, y: int = 0) -> int:
    return int(render(np.array([[shape, scale, orientation, x, y]])).sum())


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """(row, col) centroid in pixel-index coordinates (pixel j's centre is at j)."""
    r, c = np.nonzero(mask)
    return float(r.mean()), float(c.mean())


def centre_index(pos: int) -> float:
    """Where the sprite centre 16 + 32·pos lies in pixel-index coordinates."""
    return 16.0 + 32.0 * pos / 31 - 0.5


# -- factors and index ------------------------------------------------------------------
def test_factor_names_sizes_and_protocol():
    data = DSprites()
    assert data.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y") == FACTOR_NAMES
    assert data.factor_sizes == (3, 6, 40, 32, 32) == FACTOR_SIZES
    assert data.observation_shape == (1, 64, 64)
    assert int(np.prod(FACTOR_SIZES)) == NUM_IMAGES
    assert isinstance(data, GroundTruthData)


def test_sample_factors_uniform_range_and_seeded():
    data = DSprites()
    f = data.sample_factors(5000, np.random.default_rng(0))
    assert f.shape == (5000, 5) and f.dtype == np.int64
    for k, size in enumerate(FACTOR_SIZES):
        assert set(np.unique(f[:, k]).tolist()) == set(range(size))
    np.testing.assert_array_equal(f, data.sample_factors(5000, np.random.default_rng(0)))


def test_index_strides_match_the_original_file():
    assert STRIDES == (245_760, 40_960, 1_024, 32, 1)
    eye = np.eye(5, dtype=np.int64)
    np.testing.assert_array_equal(index_of(eye), STRIDES)
    np.testing.assert_array_equal(index_of(np.array(FACTOR_SIZES)[None] - 1), [NUM_IMAGES - 1])


def test_index_round_trip_and_order():
    idx = np.arange(NUM_IMAGES)
    f = factors_of(idx)
    np.testing.assert_array_equal(index_of(f), idx)
    # The last factor (pos_y) varies fastest, as in the original's C-order latents_classes.
    np.testing.assert_array_equal(f[:3], [[0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 2]])
    np.testing.assert_array_equal(f[32], [0, 0, 0, 1, 0])
    rand = DSprites().sample_factors(100, np.random.default_rng(1))
    np.testing.assert_array_equal(factors_of(index_of(rand)), rand)
    np.testing.assert_array_equal(factors_of(245_760 + 33), [1, 0, 0, 1, 1])


def test_bad_factors_are_refused():
    with pytest.raises(ValueError, match="shape"):
        render(np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="out of range"):
        render(np.array([[3, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="outside"):
        factors_of(NUM_IMAGES)


# -- geometry ----------------------------------------------------------------------------
def test_areas_at_scale_one():
    # Centre on a pixel corner (pos 0), axis-aligned: the square is exactly 20×20.
    assert area(SQUARE) == pytest.approx(400, rel=0.05)
    assert area(ELLIPSE) == pytest.approx(288, rel=0.05)
    assert area(HEART) == pytest.approx(222, rel=0.08)
    # Elsewhere the ellipse and heart keep their area; the ≥90%-coverage square loses its
    # partially covered edge rows and columns at fractional centres (≈19×19 = 361).
    for o, x, y in [(5, 7, 3), (10, 15, 16), (20, 31, 9)]:
        assert area(ELLIPSE, 5, o, x, y) == pytest.approx(288, rel=0.05)
        assert area(HEART, 5, o, x, y) == pytest.approx(222, rel=0.08)
        assert 355 <= area(SQUARE, 5, o, x, y) <= 400


def test_area_grows_with_scale():
    for shape in (SQUARE, ELLIPSE, HEART):
        for o, x, y in [(0, 0, 0), (13, 20, 11)]:
            areas = [area(shape, s, o, x, y) for s in range(6)]
            assert all(a < b for a, b in zip(areas, areas[1:])), (shape, areas)


def test_orientation_0_and_39_render_identically():
    f = np.array(
        [[s, sc, 0, x, y] for s in range(3) for sc in (0, 5) for x in (0, 13) for y in (4, 31)]
    )
    g = f.copy()
    g[:, 2] = 39
    np.testing.assert_array_equal(render(f), render(g))
    assert not np.array_equal(render(f), render(f + [0, 0, 5, 0, 0]))  # rotation does something


def test_position_moves_the_centroid():
    # pos_x → column, pos_y → row; centres at 16 + 32·pos, one step = 32/31 px.
    for shape in (SQUARE, ELLIPSE):  # point-symmetric: centroid = centre
        for x, y in [(0, 0), (1, 3), (15, 30), (31, 31)]:
            r, c = centroid(render(np.array([[shape, 5, 7, x, y]]))[0])
            assert c == pytest.approx(centre_index(x), abs=0.1)
            assert r == pytest.approx(centre_index(y), abs=0.1)
    r0, c0 = centroid(render(np.array([[HEART, 3, 0, 0, 10]]))[0])
    r1, c1 = centroid(render(np.array([[HEART, 3, 0, 31, 10]]))[0])
    assert c1 - c0 == pytest.approx(32.0, abs=0.2) and r1 == pytest.approx(r0, abs=0.2)


def test_ellipse_is_horizontal_and_heart_rotates_counter_clockwise():
    rows, cols = np.nonzero(render(np.array([[ELLIPSE, 5, 0, 15, 15]]))[0])
    assert np.ptp(cols) > np.ptp(rows) + 8  # 25.5 px wide, 14.5 px tall
    centre = centre_index(15)
    r, c = centroid(render(np.array([[HEART, 5, 0, 15, 15]]))[0])
    assert r < centre - 1 and c == pytest.approx(centre, abs=0.1)  # lobes up: mass above centre
    # Orientation 10 is 2π·10/39 ≈ 92°: counter-clockwise on screen takes "up" to "left".
    r, c = centroid(render(np.array([[HEART, 5, 10, 15, 15]]))[0])
    assert c < centre - 1 and r == pytest.approx(centre, abs=0.3)


def test_images_binary_float_and_deterministic():
    data = DSprites()
    f = data.sample_factors(300, np.random.default_rng(2))
    x = data.sample_observations_from_factors(f, np.random.default_rng(3))
    assert x.shape == (300, 1, 64, 64) and x.dtype == np.float32
    assert set(np.unique(x).tolist()) == {0.0, 1.0}
    assert (x.reshape(300, -1).sum(1) > 0).all()
    y = data.sample_observations_from_factors(f, np.random.default_rng(99))
    np.testing.assert_array_equal(x, y)


# -- loader ------------------------------------------------------------------------------
def write_fake(path: Path, n: int = 20, seed: int = 0, **override) -> tuple[np.ndarray, np.ndarray]:
    """A tiny stand-in for the original file: right keys, ``n`` images in shuffled order."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(NUM_IMAGES, size=n, replace=False)
    classes = np.concatenate([np.zeros((n, 1), np.int64), factors_of(idx)], axis=1)
    imgs = render(classes[:, 1:])
    arrays = {"imgs": imgs, "latents_classes": classes, "latents_values": classes.astype(float)}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return imgs, classes


def test_loader_serves_the_file_images(tmp_path):
    path = tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    imgs, classes = write_fake(path)
    data = DSpritesNpz(path, allow_partial=True)
    assert isinstance(data, GroundTruthData) and not data.complete and len(data) == 20
    assert data.factor_sizes == FACTOR_SIZES and data.observation_shape == (1, 64, 64)
    order = np.array([5, 0, 19, 5])
    x = data.sample_observations_from_factors(classes[order, 1:], np.random.default_rng(0))
    assert x.shape == (4, 1, 64, 64) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], imgs[order])
    f = data.sample_factors(50, np.random.default_rng(0))
    present = {tuple(r) for r in classes[:, 1:].tolist()}
    assert {tuple(r) for r in f.tolist()} <= present
    absent = factors_of(np.setdiff1d(np.arange(100), index_of(classes[:, 1:]))[:1])
    with pytest.raises(KeyError, match="no image"):
        data.sample_observations_from_factors(absent, np.random.default_rng(0))


def test_loader_refuses_a_partial_file_by_default(tmp_path):
    path = tmp_path / "few.npz"
    write_fake(path)
    with pytest.raises(ValueError, match=r"few\.npz.*20 of the 737280"):
        DSpritesNpz(path)


def test_loader_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "dsprites.npz"
    with pytest.raises(FileNotFoundError, match=r"nowhere.dsprites\.npz"):
        DSpritesNpz(path)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"imgs": None}, r"missing key\(s\) \['imgs'\]"),
        ({"latents_classes": None}, r"missing key\(s\) \['latents_classes'\]"),
        ({"imgs": np.zeros((20, 32, 32), np.uint8)}, r"'imgs' must have shape \(N, 64, 64\)"),
        ({"latents_classes": np.zeros((20, 5), np.int64)}, r"'latents_classes' must have shape"),
        ({"latents_classes": np.zeros((19, 6), np.int64)}, r"'latents_classes' must have shape"),
        ({"imgs": np.full((20, 64, 64), 255, np.uint8)}, "binary"),
        ({"latents_classes": np.full((20, 6), 1, np.int64)}, "colour class"),
    ],
)
def test_loader_malformed_files_name_the_path(tmp_path, override, message):
    path = tmp_path / "bad.npz"
    write_fake(path, **override)
    with pytest.raises(ValueError, match=message) as err:
        DSpritesNpz(path, allow_partial=True)
    assert str(path) in str(err.value)


def test_loader_not_an_npz_names_the_path(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match="garbage.npz") as err:
        DSpritesNpz(path)
    assert str(path) in str(err.value)
