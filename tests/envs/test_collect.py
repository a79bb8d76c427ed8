"""Random-policy frame datasets: shapes, labels, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from envs.collect import FrameDataset, collect_frames
from envs.registry import ENVS


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_and_labels(size):
    data = collect_frames("seek_avoid", "vision", n=120, seed=0, size=size, max_steps=25)
    assert isinstance(data, FrameDataset)
    assert data.frames.shape == (120, size, size, 3) and data.frames.dtype == np.uint8
    assert data.scenes.shape == (120, 4) and data.scenes.dtype == np.int64
    vision = ENVS["seek_avoid"].domains["vision"]
    assert all(vision.contains(s) for s in data.scenes)
    # 120 frames at 25 steps per episode span several episodes (scenes change at resets)
    assert len(np.unique(data.scenes, axis=0)) > 1


def test_deterministic_for_a_seed():
    a = collect_frames("seek_avoid", "source", n=80, seed=5, size=32, max_steps=30)
    b = collect_frames("seek_avoid", "source", n=80, seed=5, size=32, max_steps=30)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.scenes, b.scenes)
    c = collect_frames("seek_avoid", "source", n=80, seed=6, size=32, max_steps=30)
    assert not np.array_equal(a.frames, c.frames)
    prefix = collect_frames("seek_avoid", "source", n=50, seed=5, size=32, max_steps=30)
    np.testing.assert_array_equal(prefix.frames, a.frames[:50])


def test_frames_are_what_the_policy_sees():
    """Consecutive frames within an episode differ by at most one move (no skipped frames)."""
    data = collect_frames("seek_avoid", {"layout": [0]}, n=40, seed=0, size=32, max_steps=100)
    assert (data.scenes == data.scenes[0]).all()  # one episode
    assert len(np.unique(data.frames.reshape(40, -1), axis=0)) > 5


def test_empty_and_errors():
    assert collect_frames("seek_avoid", "all", n=0, seed=0, size=32).frames.shape == (0, 32, 32, 3)
    with pytest.raises(ValueError, match="n must be"):
        collect_frames("seek_avoid", "all", n=-1, seed=0)
    with pytest.raises(KeyError, match="valid envs"):
        collect_frames("nope", "all", n=1, seed=0)
