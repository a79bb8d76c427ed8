"""benchmarks/perception_curve.py: stage 1's encoders scored per factor along training."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from vision.registry import load_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "perception_curve.py"


def test_curve_resumes_between_points_and_scores_the_model_it_trained(tiny_raw, tmp_path, monkeypatch, capsys):
    from envs.registry import get_domain
    from envs.seek_avoid import SeekAvoidGroundTruth
    from vision.metrics import score

    tiny_raw["methods"] = {"darla": {"encoder": "vision"}, "twin": {"encoder": "vision"}, "pixels": {"encoder": "pixels"}}
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_raw))
    out = tmp_path / "pc"
    argv = ["perception_curve.py", str(cfg_path), "--at", "4", "2", "--out", str(out), "-o", "vision.checkpoint_every=2"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:  # the script exits with report_failures' status
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert done.value.code == 0
    printed = capsys.readouterr().out
    curve = json.loads((out / tiny_raw["name"] / "curve.json").read_text())["curve"]
    # One vision model, under the first method that sees through it; no pixel method.
    assert list(curve) == ["darla"] and [p["steps"] for p in curve["darla"]] == [2, 4]
    model = load_checkpoint(out / tiny_raw["name"] / "darla" / "model.pt")
    data = SeekAvoidGroundTruth(tiny_raw["env"]["size"], get_domain("seek_avoid", "vision"))
    want = score(data, model.represent, np.random.default_rng(tiny_raw["seed"]), ["mig", "dci"], "fast")
    last = curve["darla"][-1]
    assert list(last["informativeness_test_per_factor"]) == list(data.factor_names)
    assert list(last["informativeness_test_per_factor"].values()) == want["dci"]["informativeness_test_per_factor"]
    assert last["mig"] == want["mig"]["mig"] and "agent_x" in printed
    # and an MLP probe of the same model, on its own sample (seeded from the config's seed)
    from vision.metrics.probe import mlp_probe

    assert last["probe_test_per_factor"] == mlp_probe(data, model.represent, np.random.default_rng((tiny_raw["seed"], 1)))
    assert printed.count("MLP probe  ") == 2
    # A point below the model already trained in --out is refused, not scored under the wrong label;
    # an unknown method is one clear line naming the choices.
    for extra, message in (
        ([*argv[:3], "3", *argv[5:]], "holds a model trained to step 4, past the point --at 3"),
        ([*argv, "--methods", "nope"], "no trained encoder for ['nope']; choose from ['darla']"),
    ):
        monkeypatch.setattr(sys, "argv", extra)
        with pytest.raises(SystemExit, match=re.escape(message)):
            runpy.run_path(str(SCRIPT), run_name="__main__")


def test_probe_only_skips_mig_and_dci_and_keeps_the_probe(tiny_raw, tmp_path, monkeypatch, capsys):
    from envs.registry import get_domain
    from envs.seek_avoid_v1 import SeekAvoidV1GroundTruth
    from vision.metrics.probe import mlp_probe

    tiny_raw["env"]["name"] = "seek_avoid_v1"
    tiny_raw["env"]["size"] = 32
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_raw))
    out = tmp_path / "pc"
    argv = ["perception_curve.py", str(cfg_path), "--at", "2", "--out", str(out), "--probe-only"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:  # the script exits with report_failures' status
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert done.value.code == 0
    printed = capsys.readouterr().out
    (point,) = json.loads((out / tiny_raw["name"] / "curve.json").read_text())["curve"][tiny_raw["vision"]["model"]]
    assert point["informativeness_test_per_factor"] == {} and np.isnan(point["mig"]) and np.isnan(point["dci"])
    model = load_checkpoint(out / tiny_raw["name"] / tiny_raw["vision"]["model"] / "model.pt")
    data = SeekAvoidV1GroundTruth(32, get_domain("seek_avoid_v1", "vision"))
    assert point["probe_test_per_factor"] == mlp_probe(data, model.represent, np.random.default_rng((tiny_raw["seed"], 1)))
    assert "MLP probe" in printed and "good_x" in printed
