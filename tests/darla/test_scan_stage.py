"""The optional scan stage: config section, artifacts, ablations, resume, the report section.

Tiny budgets (tests/conftest.py's TINY run: 32 px, 30 vision steps; SCAN for a few dozen steps)
test the mechanics. One slow test trains a vision model long enough to see and checks that
img2sym reads the scene's words back from fresh renders.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from darla.cli import main
from darla.config import ConfigError, config_from_dict, dump_config, load_config
from darla.pipeline import run_pipeline
from darla.report.scan import scan_results, scan_section
from darla.runs import RunDir
from darla.stages.scan import VARIANTS, entangled_model_spec, stage_scan
from vision.io import write_json_atomic

TINY_SCAN = {
    "enabled": True,
    "compare": ["reverse_kl", "entangled"],
    "steps": 30,
    "recombine_steps": 10,
    "batch_size": 16,
    "lr": 1.0e-3,
    "images_per_concept": 3,
    "n_concepts": 20,
    "hidden": [16],
    "recombine_hidden": [8],
    "eval_samples": 4,
    "eval_concepts": 3,
    "eval_img2sym": 40,
    "judge_renders": 300,
}


def write(tmp_path: Path, raw: dict) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


# -- config ------------------------------------------------------------------------------------
def test_scan_config_defaults_and_round_trip(tiny_raw):
    cfg = config_from_dict(tiny_raw, "t.yaml")
    assert cfg.scan.enabled is False and cfg.scan.compare == [] and cfg.scan.lam == 10.0
    tiny_raw["scan"] = {**TINY_SCAN, "factors": ["floor_colour", "wall_colour"], "seed": 3}
    cfg = config_from_dict(tiny_raw, "t.yaml")
    assert cfg.scan.compare == ["reverse_kl", "entangled"] and cfg.scan.hidden == [16] and cfg.scan.seed == 3
    assert config_from_dict(yaml.safe_load(dump_config(cfg)), "again.yaml") == cfg


SCAN_ERRORS = [
    ({"stepz": 3}, "scan.stepz: unknown key (did you mean 'steps'?)"),
    ({"compare": ["reverse"]}, "scan.compare[0]: must be one of ['reverse_kl', 'entangled'], got 'reverse'"),
    ({"compare": ["entangled", "entangled"]}, "scan.compare: entries must be distinct, got ['entangled', 'entangled']"),
    ({"compare": "reverse_kl"}, "scan.compare: expected a list of "),
    ({"factors": ["flor_colour"]}, "scan.factors[0]: unknown seek_avoid scene factor 'flor_colour' (did you mean 'floor_colour'?); choose from "),
    ({"factors": ["agent_x"]}, "scan.factors[0]: unknown seek_avoid scene factor 'agent_x'"),
    ({"steps": 0}, "scan.steps: must be ≥ 1, got 0"),
    ({"lam": -1.0}, "scan.lam: must be ≥ 0.0, got -1.0"),
    ({"lr": "1e-4"}, "scan.lr: expected a number (YAML reads '1e-4' as text: write 1.0e-4), got '1e-4'"),
    ({"held_out_fraction": 0.95}, "scan.held_out_fraction: must be ≤ 0.9, got 0.95"),
    ({"hidden": [16, 0]}, "scan.hidden[1]: layer widths must be ≥ 1, got 0"),
    ({"seed": -1}, "scan.seed: must be ≥ 0, got -1"),
    ({"enabled": "yes"}, "scan.enabled: expected true or false, got 'yes'"),
]


@pytest.mark.parametrize("scan,expected", SCAN_ERRORS, ids=[e[1].split(":")[0] + str(i) for i, e in enumerate(SCAN_ERRORS)])
def test_scan_config_errors_name_file_and_key(tmp_path, tiny_raw, scan, expected):
    tiny_raw["scan"] = scan
    p = write(tmp_path, tiny_raw)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value).startswith(f"{p}: {expected}"), str(ei.value)


def test_scan_needs_env_frames(tmp_path, tiny_raw):
    tiny_raw["vision"]["data"] = "dsprites"
    tiny_raw["scan"] = {"enabled": True}
    p = write(tmp_path, tiny_raw)
    with pytest.raises(ConfigError, match=re.escape(f"{p}: scan.enabled: SCAN names the env's scene factors")):
        load_config(p)


def test_entangled_model_is_the_beta_one_version(tiny_raw):
    cfg = config_from_dict(tiny_raw, "t.yaml")
    assert entangled_model_spec(cfg) == ("beta_vae", {"beta": 1.0, "channels": [8, 8, 16, 16], "hidden": 32})
    raw = copy.deepcopy(tiny_raw)
    raw["vision"].pop("beta")
    raw["vision"].update(model="capacity_vae", gamma=100.0)
    name, params = entangled_model_spec(config_from_dict(raw, "t.yaml"))
    assert name == "vae" and params == {"channels": [8, 8, 16, 16], "hidden": 32}  # no beta: the plain VAE


# -- the stage ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scan_run(tmp_path_factory):
    """(config, run) of a TINY run whose vision and scan stages (with both ablations) ran."""
    from conftest import TINY

    raw = copy.deepcopy(TINY)
    raw["runs_dir"] = str(tmp_path_factory.mktemp("scan") / "runs")
    raw["scan"] = copy.deepcopy(TINY_SCAN)
    cfg = config_from_dict(raw, "tiny.yaml")
    run = run_pipeline(cfg, progress=False, stages=("vision",), log=lambda m: None)
    stage_scan(cfg, run, progress=False, log=lambda m: None)
    return cfg, run


def test_stage_writes_every_artifact(scan_run):
    cfg, run = scan_run
    assert run.is_complete("scan")
    for sub in ("scan/scan_forward", "scan/scan_reverse", "scan/scan_entangled", "scan/entangled_vision"):
        assert run.is_complete(sub), sub
    root = run.path("scan")
    for name in ("scan_forward.pt", "scan_forward.json", "scan_reverse.pt", "scan_entangled.pt", "results.json",
                 "compare.png", "entangled_vision/model.pt"):
        assert (root / name).is_file(), name
    res = json.loads((root / "results.json").read_text())
    for item in res["sym2img"] + res["recombination"] + res["img2sym"] + [res["compare"]]:
        assert (root / item["image"]).is_file() and (root / item["image"]).read_bytes()[:4] == b"\x89PNG"
    assert {g["group"] for g in res["sym2img"]} == {"train", "held_out"}
    assert {r["operator"] for r in res["recombination"]} <= {"AND", "IN COMMON", "IGNORE"} and res["recombination"]
    assert len(res["img2sym"]) == 8 and all(len(r["true"]) == len(r["predicted"]) == 4 for r in res["img2sym"])
    # The entangled baseline is stage 1's model with β = 1, nothing else changed.
    from vision.registry import load_checkpoint

    ent, own = load_checkpoint(root / "entangled_vision/model.pt"), load_checkpoint(run.path("vision", "model.pt"))
    assert ent.hparams == {**own.hparams, "beta": 1.0} and own.hparams["beta"] == 4.0
    assert json.loads((root / "scan_reverse.json").read_text())["settings"]["kl_direction"] == "reverse"


def test_results_are_finite_and_name_each_requested_variant(scan_run):
    cfg, run = scan_run
    res = json.loads(run.path("scan", "results.json").read_text())
    assert res["variant_order"] == ["scan", "reverse_kl", "entangled"] == list(VARIANTS)
    assert res["compare"]["rows"] == [VARIANTS[n].label for n in VARIANTS]
    for name, v in res["variants"].items():
        m = v["metrics"]
        for group in ("train", "held_out", "recombined"):
            assert 0.0 <= m[f"scan/{group}/accuracy"] <= 1.0, (name, group)
            assert math.isfinite(m[f"scan/{group}/diversity"]) and m[f"scan/{group}/diversity"] >= 0.0, (name, group)
            assert m[f"scan/{group}/n_concepts"] == 3
        assert 0.0 <= m["scan/img2sym/accuracy"] <= 1.0
    assert res["variants"]["entangled"]["vision"] == "scan/entangled_vision/model.pt"
    numbers = scan_results(run)
    json.dumps(numbers, allow_nan=False)
    assert set(numbers["variants"]) == {"scan", "reverse_kl", "entangled"}
    assert numbers["variants"]["reverse_kl"]["kl_direction"] == "reverse"
    assert not any("png" in str(v) for v in numbers.values())  # numbers only, no picture paths


def test_interrupted_stage_keeps_finished_variants_and_reruns_identically(scan_run, tmp_path):
    cfg, run = scan_run
    copy_root = tmp_path / "copy"
    shutil.copytree(run.root, copy_root)
    again = RunDir(copy_root)
    before = json.loads(again.path("scan", "results.json").read_text())
    # As if killed after SCAN and the entangled model, before SCAN_R and the stage entry.
    m = again.manifest()
    for key in ("scan", "scan/scan_reverse", "scan/scan_entangled"):
        del m["stages"][key]
    write_json_atomic(again.manifest_path, m)
    logs: list[str] = []
    stage_scan(cfg, again, progress=False, log=logs.append)
    assert "[scan] SCAN: complete, skipping" in logs
    assert any(line.startswith("[scan] training SCAN_R") for line in logs)
    assert not any("entangled baseline" in line for line in logs)  # its vision model was kept
    assert json.loads(again.path("scan", "results.json").read_text()) == before  # same seed, same numbers


def test_ablations_only_when_requested(scan_run, tmp_path):
    cfg, run = scan_run
    shutil.copytree(run.root, tmp_path / "copy")
    again = RunDir(tmp_path / "copy")
    again.invalidate("scan")
    plain = dataclasses.replace(cfg, scan=dataclasses.replace(cfg.scan, compare=[]))
    stage_scan(plain, again, progress=False, log=lambda m: None)
    res = json.loads(again.path("scan", "results.json").read_text())
    assert list(res["variants"]) == ["scan"] and res["compare"] is None
    assert again.stage("scan/scan_reverse") is None and again.stage("scan/entangled_vision") is None
    html = scan_section(plain, again)
    assert "SCAN_R" not in html and "β = 1 vision" not in html


def test_scan_section_embeds_pictures_and_the_comparison(scan_run):
    cfg, run = scan_run
    html = scan_section(cfg, run)
    res = json.loads(run.path("scan", "results.json").read_text())
    n_pictures = len(res["sym2img"]) + len(res["recombination"]) + len(res["img2sym"]) + 1
    imgs = re.findall(r"<img [^>]*>", html)
    assert len(imgs) == n_pictures
    assert all('src="data:image/png;base64,' in i for i in imgs)
    assert html.startswith("<h2>SCAN") and "SCAN_R (reverse KL)" in html and "SCAN on β = 1 vision" in html
    assert "accuracy ↑" in html and "diversity ↓" in html and "img2sym" in html
    assert "held-out" in html


def test_scan_section_escapes_every_string(tmp_path, tiny_cfg):
    """Strings from results.json (words, labels, operators) never reach the HTML unescaped."""
    from vision.traverse import save_png

    run = RunDir(tmp_path / "run")
    root = run.path("scan")
    save_png(root / "x.png", np.zeros((4, 4, 3), dtype=np.uint8))
    evil = "<script>alert('x')</script>"
    metrics = {f"scan/{g}/{k}": 0.5 for g in ("train", "held_out", "recombined") for k in ("accuracy", "diversity")}
    res = {
        "vocabulary": {"factors": [evil], "words": [evil], "aliases": [evil]},
        "settings": {"images_per_concept": evil, "beta": 1.0, "lam": 10.0},
        "variant_order": ["scan"],
        "variants": {"scan": {"label": evil, "kl_direction": "forward", "vision": "vision/model.pt",
                              "n_concepts": {"train": 1, "held_out": 0}, "metrics": {**metrics, "scan/img2sym/accuracy": 1.0}}},
        "sym2img": [{"group": evil, "words": [evil], "aliases": [evil], "image": "x.png", "accuracy": 1.0, "diversity": 0.0}],
        "recombination": [{"a": [evil], "b": [evil], "operator": evil, "result": [evil], "image": "x.png",
                           "accuracy": 1.0, "diversity": 0.0}],
        "img2sym": [{"image": "x.png", "true": [evil], "predicted": [[evil, 0.9]], "correct": 1.0}],
        "compare": {"aliases": [evil], "rows": [evil], "image": "x.png"},
    }
    write_json_atomic(root / "results.json", res)
    run.complete("scan", [root / "results.json", root / "x.png"])
    html = scan_section(tiny_cfg, run)
    assert "<script" not in html and "&lt;script&gt;" in html
    assert html.count('src="data:image/png;base64,') == 4


def test_no_scan_stage_no_section(tmp_path, tiny_cfg):
    run = RunDir(tmp_path / "run")
    assert scan_results(run) is None
    assert scan_section(tiny_cfg, run) == ""


# -- the CLI reuses the stage ------------------------------------------------------------------
def test_cli_scan_train_only_overrides_scan_keys(scan_run, capsys):
    _, run = scan_run
    assert main(["scan", "train", str(run.root), "--set", "vision.beta=2.0"]) == 2
    err = capsys.readouterr().err
    assert "vision.beta: darla scan train can only override scan.* keys" in err and err.count("\n") == 1
    assert main(["scan", "train", str(run.root), "--set", "scan.lamda=2.0"]) == 2
    assert "scan.lamda: unknown key (did you mean 'lam'?)" in capsys.readouterr().err
    assert run.is_complete("scan")  # a refused command leaves the stage as it was


# -- img2sym on a vision model that has learnt the scene --------------------------------------
@pytest.mark.slow
def test_img2sym_recovers_scene_words(tmp_path):
    """SCAN reads floor colour, wall colour and layout back from fresh renders (≈1 min on 2 CPU cores).

    At 32 px a β-VAE's Bernoulli loss barely separates the dark floor colours at first (the
    posterior collapses for ~500 steps), so this vision model uses a small β (0.01), short
    episodes (more distinct scenes among the 1024 frames) and 2000 steps.
    """
    import torch
    from conftest import TINY

    from darla.stages.scan import scan_context
    from vision.scan.train import load_scan

    raw = copy.deepcopy(TINY)
    raw["runs_dir"] = str(tmp_path / "runs")
    raw["env"]["max_steps"] = 4
    raw["vision"].update(latent_dim=10, beta=0.01, n_frames=1024, steps=2000, batch_size=64, lr=3.0e-3,
                         checkpoint_every=2000, log_every=100)
    raw["scan"] = {"factors": ["floor_colour", "wall_colour", "layout"], "steps": 3000, "recombine_steps": 0,
                   "lr": 3.0e-3, "hidden": [64, 64], "images_per_concept": 10, "n_concepts": 100,
                   "eval_samples": 8, "eval_concepts": 5, "eval_img2sym": 300, "judge_renders": 500}
    cfg = config_from_dict(raw, "img2sym.yaml")
    run = run_pipeline(cfg, progress=False, stages=("vision",), log=lambda m: None)
    stage_scan(cfg, run, progress=False, log=lambda m: None)
    res = json.loads(run.path("scan", "results.json").read_text())
    assert res["variants"]["scan"]["metrics"]["scan/img2sym/accuracy"] >= 0.85

    ctx = scan_context(cfg, run)
    scan, _, names = load_scan(run.path("scan", "scan_forward.pt"))
    assert names == ("floor_colour", "wall_colour", "layout")
    rng = np.random.default_rng(123)
    factors = ctx.data.sample_factors(300, rng)
    probs = scan.img2sym(torch.as_tensor(ctx.data.sample_observations_from_factors(factors, rng)), ctx.vision_model).numpy()
    for f in ctx.vocab.factors:
        col = ctx.data.factor_names.index(f.name)
        acc = float((probs[:, ctx.vocab.slices[f.name]].argmax(axis=1) == factors[:, col]).mean())
        assert acc >= 0.75, (f.name, acc)  # chance: 0.25 for colours, 0.33 for layouts
    # Described in words: the thresholded description names the true words of most renders.
    described = [set(ctx.vocab.describe(p)) for p in probs]
    truth = [{ctx.vocab.aliases[ctx.vocab.slices[f.name].start + int(row[ctx.data.factor_names.index(f.name)])]
              for f in ctx.vocab.factors} for row in factors]
    assert np.mean([t <= d for t, d in zip(truth, described)]) >= 0.6


def test_pipeline_runs_scan_when_enabled_and_keeps_it_when_agents_rerun(tmp_path, tiny_raw, monkeypatch):
    """scan.enabled adds the stage to `darla pipeline`; it depends on vision only, so re-running
    the agent stage re-runs transfer and the report but keeps SCAN."""
    import darla.pipeline as pipeline
    from darla.stages import downstream

    tiny_raw["scan"] = {**TINY_SCAN, "compare": []}
    tiny_raw["runs_dir"] = str(tmp_path / "runs")
    cfg = config_from_dict(tiny_raw, "s.yaml")
    run = run_pipeline(cfg, progress=False, log=lambda m: None)
    stages = run.manifest()["stages"]
    assert stages["scan"]["status"] == "complete" and stages["report"]["status"] == "complete"
    html = (run.root / "report.html").read_text()
    assert "SCAN" in html and json.loads((run.root / "results.json").read_text())["scan"]["variants"]
    assert downstream("agent") == ["transfer", "report"]

    run.invalidate("agent")  # as if the policies were retrained
    calls = []
    real = pipeline.STAGE_FUNCS["scan"]
    monkeypatch.setitem(pipeline.STAGE_FUNCS, "scan", lambda *a, **k: calls.append(1) or real(*a, **k))
    run_pipeline(cfg, progress=False, log=lambda m: None)
    assert calls == [] and run.is_complete("scan") and run.is_complete("report")


def test_pipeline_skips_scan_when_disabled(tmp_path, tiny_raw):
    tiny_raw["runs_dir"] = str(tmp_path / "runs")
    run = run_pipeline(config_from_dict(tiny_raw, "s.yaml"), progress=False, log=lambda m: None)
    assert "scan" not in run.manifest()["stages"]
    assert "scan" not in json.loads((run.root / "results.json").read_text())
