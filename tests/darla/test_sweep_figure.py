"""The DARLA figure end to end: a tiny reacher sweep with every metric enabled, scored by stage 1
and correlated by ``darla report SWEEP_DIR``. Slow (every metric and the probe per model: minutes
on 2 cores); the fast checks are in test_sweep.py (fake sweep) and test_sweep_udr.py."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import yaml
from conftest import TINY

from darla.cli import main
from darla.report.sweep import FIGURE_METRICS
from darla.sweep import load_sweep, run_sweep


@pytest.mark.slow
def test_every_metric_reaches_the_darla_figure_with_finite_values(tmp_path, capsys):
    raw = copy.deepcopy(TINY)
    raw["env"]["name"] = "reacher"  # continuous returns: target scores of different runs differ
    raw["vision"].update(n_frames=128)
    raw["agent"].update(total_timesteps=128)
    raw["transfer"]["n_episodes"] = 2
    raw["metrics"] = {"enabled": ["all"], "settings": "fast", "probe": True}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    sweep = {"base": "base.yaml", "sweep_dir": "out", "grid": {"vision.beta": [0.1, 4.0]}, "seeds": [0, 1]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    state = run_sweep(load_sweep(tmp_path / "s.yaml"), workers=1, log=lambda _: None)
    assert [r["status"] for r in state["runs"]] == ["complete"] * 4

    assert main(["report", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "out" / "sweep_results.json").read_text())
    rows = [r for r in res["rows"] if r["method"]]
    assert len(rows) == 4
    for r in rows:  # every stage-1 score, DCI's three and the probe included, reaches the row
        assert set(r["metrics"]) == set(FIGURE_METRICS) - {"udr"}, r["metrics"]
        assert np.isfinite(list(r["metrics"].values())).all() and np.isfinite(r["udr"]) and np.isfinite(r["target_score"])
    corr = res["correlations"]
    assert corr["missing"] == []
    assert corr["order"] == list(FIGURE_METRICS) and set(corr["per_metric"]) == set(FIGURE_METRICS)
    for name, c in corr["per_metric"].items():
        assert c["n"] == 4, name
        if c["rho"] is not None:  # undefined only for a metric constant over the four models
            assert np.isfinite([c["rho"], c["p"], *c["ci"]]).all(), name
    assert sum(c["rho"] is not None for c in corr["per_metric"].values()) >= 8
    for name in FIGURE_METRICS:
        assert name in out
