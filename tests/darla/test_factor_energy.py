"""benchmarks/factor_energy.py: what each factor is worth to a pixel loss and to a DAE's feature losses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import load_benchmark

from envs.registry import get_domain, get_env_info
from vision.checkpoint import save_checkpoint
from vision.dae import DAE


def _script():
    return load_benchmark("factor_energy")


@pytest.fixture
def dae():
    torch.manual_seed(0)
    return DAE((3, 32, 32), 8, channels=[8, 8, 16], hidden=16).eval()


def test_each_factor_moves_only_itself_and_shares_sum_to_one(dae):
    fe = _script()
    data = get_env_info("seek_avoid_v1").ground_truth(32, get_domain("seek_avoid_v1", "vision"))
    energy = fe.factor_energy(data, dae, ["conv1", "bottleneck"], 40, np.random.default_rng(0), batch=16)
    assert list(energy) == list(data.factor_names)
    for e in energy.values():
        assert set(e) == {"pixels", "conv1", "bottleneck"}
        assert all(np.isfinite(v) and v >= 0 for v in e.values())
        assert e["pixels"] > 0  # every factor of v1's vision domain is visible
    share = fe.shares(energy)
    for space in ("pixels", "conv1", "bottleneck"):
        assert sum(s[space] for s in share.values()) == pytest.approx(1.0)

    # the pixel column is what it says: recomputed by hand with the same draws
    rng = np.random.default_rng(0)
    sizes = np.asarray(data.factor_sizes)
    f = data.sample_factors(16, rng)
    g = f.copy()
    g[:, 0] = (f[:, 0] + rng.integers(1, sizes[0], 16)) % sizes[0]
    assert (g[:, 0] != f[:, 0]).all() and (np.delete(g, 0, axis=1) == np.delete(f, 0, axis=1)).all()
    x = np.asarray(data.sample_observations_from_factors(f, rng), dtype=np.float32)
    y = np.asarray(data.sample_observations_from_factors(g, rng), dtype=np.float32)
    first_batch = float(((x - y) ** 2).reshape(16, -1).sum(1).sum())
    one = fe.factor_energy(data, dae, [], 16, np.random.default_rng(0), batch=16)
    assert one[data.factor_names[0]]["pixels"] == pytest.approx(first_batch / 16, rel=1e-5)


def test_cli_prints_every_layer_and_writes_json(dae, tmp_path, capsys):
    fe = _script()
    path = save_checkpoint(tmp_path / "dae.pt", dae)
    fe.main([str(path), "--env", "reacher", "--pairs", "8", "--json", str(tmp_path / "e.json")])
    out = capsys.readouterr().out
    for col in ("pixels", "conv1", "conv2", "conv3", "bottleneck", "target_angle", "joint1"):
        assert col in out
    saved = json.loads((tmp_path / "e.json").read_text())
    assert set(saved["energy"]["target_angle"]) == {"pixels", "conv1", "conv2", "conv3", "bottleneck"}
