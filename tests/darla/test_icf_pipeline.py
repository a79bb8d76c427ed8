"""ICF as one more frozen encoder of the pipeline: trained in stage 1, a row in the tables, its report section."""

from __future__ import annotations

import json

import numpy as np
import pytest

import darla.pipeline as pipeline
from darla.config import ConfigError, config_from_dict


def test_icf_method_end_to_end(tiny_raw, tmp_path):
    tiny_raw["methods"] = {
        "darla": {"encoder": "vision"},
        "icf": {"encoder": "icf", "params": {"channels": [8, 8, 16], "hidden": 32}},
    }
    tiny_raw["metrics"] = {"enabled": ["mig"], "settings": "fast", "probe": True}
    tiny_raw["agent"]["total_timesteps"] = 64
    tiny_raw["transfer"]["n_episodes"] = 2
    cfg = config_from_dict(tiny_raw, "t.yaml")
    rd = pipeline.run_pipeline(cfg, run_dir=tmp_path / "r", progress=False, log=lambda m: None)
    enc = rd.root / "vision/encoders/icf"
    assert (enc / "model.pt").exists() and (enc / "icf_traversals.png").exists()
    summary = json.loads((enc / "summary.json").read_text())
    sel = summary["selectivity"]
    assert summary["hparams"]["n_actions"] == 4  # taken from the env's action space
    assert np.asarray(sel["matrix"]).shape == (4, 4) and len(sel["selectivity"]) == 4
    assert np.asarray(sel["per_action_abs"]).shape == (4, 4) and sel["action_names"] == ["up", "down", "left", "right"]
    assert all(0.0 <= s <= 1.0 for s in sel["selectivity"]) and sorted(sel["order"]) == [0, 1, 2, 3]
    assert "selectivity" in summary["history"] and "recon" in summary["history"]
    res = json.loads((rd.root / "results.json").read_text())
    assert set(res["transfer"]["methods"]) == {"darla", "icf"}
    assert res["encoders"]["icf"]["selectivity"]["matrix"] == sel["matrix"]
    assert set(res["encoders"]["icf"]["probe"]) == set(res["encoders"]["icf"]["factors"]["names"])  # per-factor probe
    html = (rd.root / "report.html").read_text()
    assert "<tr><td>icf</td><td>source</td>" in html  # its row in the transfer table
    assert "icf, MLP probe</td>" in html  # and in "What each encoder carries"
    assert "Independently Controllable Factors" in html and "icf selectivity matrix" in html and "icf ICF traversals" in html
    assert "<td>left</td>" in html  # the per-action table


def test_icf_method_end_to_end_on_seek_avoid_v1(tiny_raw, tmp_path):
    """The presets' ICF method on v1: transitions from v1's own source, at tiny sizes."""
    tiny_raw["env"]["name"] = "seek_avoid_v1"
    tiny_raw["vision"].update({"steps": 10, "n_frames": 128, "checkpoint_every": 5})
    tiny_raw["methods"] = {
        "darla": {"encoder": "vision"},
        "icf": {"encoder": "icf", "params": {"lam": 100.0, "channels": [8, 8, 16], "hidden": 32}},
    }
    tiny_raw["metrics"] = {"enabled": ["mig"], "settings": "fast", "probe": True}
    tiny_raw["agent"]["total_timesteps"] = 64
    tiny_raw["transfer"]["n_episodes"] = 2
    cfg = config_from_dict(tiny_raw, "t.yaml")
    rd = pipeline.run_pipeline(cfg, run_dir=tmp_path / "r", progress=False, log=lambda m: None)
    summary = json.loads((rd.root / "vision/encoders/icf/summary.json").read_text())
    sel = summary["selectivity"]
    assert summary["hparams"]["n_actions"] == 4 and sel["action_names"] == ["up", "down", "left", "right"]
    assert np.asarray(sel["matrix"]).shape == (4, 4) and all(0.0 <= s <= 1.0 for s in sel["selectivity"])
    res = json.loads((rd.root / "results.json").read_text())
    assert set(res["transfer"]["methods"]) == {"darla", "icf"}
    assert set(res["encoders"]["icf"]["factors"]["names"]) == {
        "floor_colour", "wall_colour", "object_set", "agent_x", "agent_y", "good_x", "good_y", "bad_x", "bad_y"
    }  # v1's factors, probed
    assert "<tr><td>icf</td><td>source</td>" in (rd.root / "report.html").read_text()


@pytest.mark.parametrize("patch, key", [
    ({"vision": {"data": "dsprites"}, "methods": {"icf": {"encoder": "icf"}}}, "vision.data"),
])
def test_icf_needs_env_transitions(tiny_raw, patch, key):
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(tiny_raw.get(k), dict):
            tiny_raw[k].update(v)
        else:
            tiny_raw[k] = v
    with pytest.raises(ConfigError) as e:
        config_from_dict(tiny_raw, "t.yaml")
    assert key in str(e.value)


def test_icf_refused_for_an_env_without_transitions(tiny_raw, monkeypatch):
    import envs.transitions as transitions

    monkeypatch.setattr(transitions, "TRANSITION_SOURCES", {"reacher": transitions.ReacherTransitions})
    tiny_raw["methods"] = {"icf": {"encoder": "icf"}}
    with pytest.raises(ConfigError) as e:
        config_from_dict(tiny_raw, "t.yaml")
    assert "methods.icf.encoder" in str(e.value) and "does not render" in str(e.value)
