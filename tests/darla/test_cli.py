"""The tool commands: envs, vision traverse, vision score, and their error lines."""

from __future__ import annotations

import json

import torch

from darla.cli import main
from vision.checkpoint import save_checkpoint
from vision.vae import BetaVAE


def checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "model.pt", BetaVAE((3, 32, 32), 3, channels=[8, 8, 16, 16], hidden=32))


def test_envs_lists_factors_and_domains(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "darla/SeekAvoid-v0" in out and "factor floor_colour" in out and "domain target_all_new" in out
    # each env names its held-out pair after its own factors; the old shared name is an alias
    assert "domain target_floor_wall (also accepted as target_floor_object): " in out
    assert "domain target_background_target (also accepted as target_floor_object): " in out
    assert out.count("domain target_floor_object: ") == 1  # v0's own name, listed once


def test_vision_traverse_writes_png(tmp_path, capsys):
    ckpt = checkpoint(tmp_path)
    assert main(["vision", "traverse", str(ckpt), "--out", str(tmp_path / "t.png")]) == 0
    assert (tmp_path / "t.png").stat().st_size > 0 and "traversals:" in capsys.readouterr().out


def test_vision_score_prints_and_writes_json(tmp_path, capsys):
    ckpt = checkpoint(tmp_path)
    out = tmp_path / "s.json"
    assert main(["vision", "score", str(ckpt), "--metrics", "mig", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert 0.0 <= res["mig"]["mig"] <= 1.0 and res["mig"]["settings"] == "fast"
    assert json.loads(capsys.readouterr().out) == res


def test_vision_score_on_a_domain_is_stage_1_scoring(tmp_path, capsys):
    """--domain vision scores on the frames stage 1 scores on: the same numbers as metrics.json."""
    import numpy as np

    from envs.registry import get_domain
    from envs.seek_avoid import SeekAvoidGroundTruth
    from vision.metrics import score
    from vision.registry import load_checkpoint

    ckpt = checkpoint(tmp_path)
    out = tmp_path / "s.json"
    assert main(["vision", "score", str(ckpt), "--metrics", "dci", "--domain", "vision", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    data = SeekAvoidGroundTruth(32, get_domain("seek_avoid", "vision"))
    want = score(data, load_checkpoint(ckpt).represent, np.random.default_rng(0), ["dci"], "fast")
    assert res["dci"]["informativeness_test_per_factor"] == want["dci"]["informativeness_test_per_factor"]
    assert len(res["dci"]["informativeness_test_per_factor"]) == len(data.factor_names)
    assert "probe" not in res
    # --probe: the MLP probe as stage 1 runs it (own sample from (seed, 1), fast sizes)
    from vision.metrics.probe import SIZES, mlp_probe

    assert main(["vision", "score", str(ckpt), "--metrics", "mig", "--domain", "vision", "--probe", "--out", str(out)]) == 0
    probe = json.loads(out.read_text())["probe"]
    assert probe == mlp_probe(data, load_checkpoint(ckpt).represent, np.random.default_rng((0, 1)), *SIZES["fast"])
    capsys.readouterr()
    assert main(["vision", "score", str(ckpt), "--domain", "nowhere"]) == 1
    assert "nowhere" in capsys.readouterr().err
    assert main(["vision", "score", str(ckpt), "--data", "dsprites", "--domain", "vision"]) == 1
    assert "--domain needs --data to be an env" in capsys.readouterr().err


def test_tool_errors_are_one_line(tmp_path, capsys):
    ckpt = checkpoint(tmp_path)
    assert main(["vision", "score", str(ckpt), "--data", "atari"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("darla: error: unknown --data 'atari'; choose from reacher, seek_avoid, seek_avoid_v1, dsprites") and err.count("\n") == 1
    assert main(["vision", "score", str(ckpt), "--data", "dsprites"]) == 1  # an RGB 32 px model, 1×64×64 data
    assert "takes images (3, 32, 32), but dsprites renders (1, 64, 64)" in capsys.readouterr().err
    assert main(["vision", "score", str(ckpt), "--data", str(tmp_path / "missing.npz")]) == 1
    assert "missing.npz" in capsys.readouterr().err
    assert main(["vision", "traverse", str(tmp_path / "nope.pt")]) == 1
    assert "no vision checkpoint at" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 1
    assert "is not a darla run directory" in capsys.readouterr().err


def test_scan_commands_on_a_tiny_run(tmp_path, capsys):
    """darla scan train / imagine / describe on a 32 px run's vision model (mechanics, tiny budgets)."""
    import cv2
    import numpy as np
    import yaml
    from conftest import TINY

    from envs.seek_avoid import render_scene

    raw = json.loads(json.dumps(TINY))
    raw["runs_dir"] = str(tmp_path / "runs")
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    assert main(["vision", "train", str(cfg_path), "--no-progress"]) == 0
    run_dir = tmp_path / "runs/tiny"
    capsys.readouterr()
    assert main(["scan", "train", str(run_dir), "--steps", "30", "--recombine-steps", "10"]) == 0
    out = capsys.readouterr().out
    assert "scan/train/accuracy" in out and "scan/held_out/accuracy" in out and "scan/recombined/accuracy" in out
    report = json.loads((run_dir / "scan/scan_forward.json").read_text())
    assert report["settings"]["kl_direction"] == "forward" and 0.0 <= report["scan/img2sym/accuracy"] <= 1.0
    assert main(["scan", "imagine", str(run_dir), "navy floor AND red object", "--n", "4"]) == 0
    assert (run_dir / "scan/imagine.png").exists()
    frame = render_scene((1, 0, 0, 0), (0, 0), (2, 2), (4, 4), size=32)
    cv2.imwrite(str(tmp_path / "f.png"), cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    capsys.readouterr()
    assert main(["scan", "describe", str(run_dir), str(tmp_path / "f.png")]) == 0
    assert main(["scan", "imagine", str(run_dir), "purple sky"]) == 1
    err = capsys.readouterr().err
    assert "unknown word" in err and "the vocabulary is" in err and err.count("\n") == 1
