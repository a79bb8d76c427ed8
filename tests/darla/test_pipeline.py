"""The whole pipeline in-process at 32 px with tiny budgets: artifacts, determinism, resume."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import darla.pipeline as pipeline
import darla.stages as stages
import darla.stages.vision as vision_stage
from darla.cli import main
from darla.config import diff_configs
from darla.runs import RunDir, RunDirError

ARTIFACTS = [
    "config.yaml", "manifest.json", "vision/model.pt", "vision/summary.json", "vision/recon.png",
    "vision/traversals.png", "agent/beta_vae/ppo_seed0/model.zip", "agent/beta_vae/ppo_seed0/meta.json",
    "transfer/episodes.csv", "transfer/summary.json", "transfer/reset_frames.npz", "results.json", "report.html",
]


def run(cfg, root: Path, **kw) -> RunDir:
    return pipeline.run_pipeline(cfg, run_dir=root, progress=False, log=lambda m: None, **kw)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One complete tiny run shared by the read-only tests below."""
    from conftest import TINY

    from darla.config import config_from_dict

    root = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = config_from_dict(json.loads(json.dumps(TINY)), "tiny.yaml")
    return cfg, run(cfg, root)


def test_every_artifact(finished):
    cfg, rd = finished
    for rel in ARTIFACTS:
        assert (rd.root / rel).exists(), rel
    m = rd.manifest()
    for stage in ("vision", "agent", "transfer", "report"):
        assert m["stages"][stage]["status"] == "complete"
    res = json.loads((rd.root / "results.json").read_text())
    assert res["transfer"]["domains"] == ["source", "target_floor_object"]
    assert list(res["transfer"]["methods"]) == ["beta_vae"]  # no methods: → vision's frozen encoder
    doms = res["transfer"]["methods"]["beta_vae"]["domains"]
    for dom in doms.values():  # 1 training seed × 3 episodes, real numbers
        assert dom["n_seeds"] == 1 and dom["n_episodes"] == 3 and np.isfinite(dom["mean"])
    for ref in res["transfer"]["references"].values():  # seek-avoid has an oracle: it beats random
        assert ref["oracle"] > ref["random"]
    assert set(res["transfer"]["methods"]["beta_vae"]["normalised"]) == {"source", "target_floor_object"}
    assert len(res["vision"]["kl_per_dim"]) == 4
    lines = (rd.root / "transfer/episodes.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 2 * 3  # header + 2 domains × 3 episodes
    html = (rd.root / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6 and "<script" not in html
    meta = json.loads((rd.root / "agent/beta_vae/ppo_seed0/meta.json").read_text())
    assert meta["encoder_sha256"] == m["stages"]["vision"]["sha256"]["vision/model.pt"]


def test_same_seed_same_results(finished, tmp_path):
    cfg, rd = finished
    again = run(cfg, tmp_path / "again")
    assert (again.root / "results.json").read_text() == (rd.root / "results.json").read_text()


def test_vision_init_seed_moves_the_model_not_the_frames(tiny_cfg, tmp_path):
    """``vision.init_seed`` reseeds stage 1's training alone: the frames stay the run's seed's."""
    from darla.stages.common import domains_of
    from darla.stages.vision import vision_frames
    from vision.io import file_sha256

    def model_sha(cfg, name):
        return file_sha256(run(cfg, tmp_path / name, stages=("vision",)).root / "vision/model.pt")

    default = model_sha(tiny_cfg, "default")
    same = replace(tiny_cfg, vision=replace(tiny_cfg.vision, init_seed=tiny_cfg.seed))
    other = replace(tiny_cfg, vision=replace(tiny_cfg.vision, init_seed=tiny_cfg.seed + 7))
    assert model_sha(same, "same") == default  # init_seed = seed is the default's training
    assert model_sha(other, "other") != default
    frames = [vision_frames(c, domains_of(c)[0], lambda m: None) for c in (tiny_cfg, other)]
    assert np.array_equal(*frames)


def test_rerun_skips_completed_stages(finished, monkeypatch):
    cfg, rd = finished
    before = rd.manifest()
    for name in ("stage_vision", "stage_agent", "stage_transfer", "stage_report"):
        monkeypatch.setitem(pipeline.STAGE_FUNCS, name.split("_")[1], lambda *a, **k: pytest.fail("re-ran a stage"))
    run(cfg, rd.root)
    assert rd.manifest() == before


def test_interrupted_run_resumes_without_redoing(tiny_cfg, tmp_path, monkeypatch):
    root = tmp_path / "r"
    real_transfer = pipeline.STAGE_FUNCS["transfer"]

    def interrupted(*a, **k):
        time.sleep(0.3)
        raise KeyboardInterrupt

    monkeypatch.setitem(pipeline.STAGE_FUNCS, "transfer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_cfg, root)
    rd = RunDir(root)
    assert rd.is_complete("vision") and rd.is_complete("agent") and not rd.is_complete("transfer")
    stamps = {k: v["finished"] for k, v in rd.manifest()["stages"].items()}
    first = rd.manifest()["attempts"]["transfer"]
    assert len(first) == 1 and first[0]["outcome"] == "interrupted" and first[0]["wall_time_s"] >= 0.3

    calls = []
    monkeypatch.setitem(pipeline.STAGE_FUNCS, "vision", lambda *a, **k: pytest.fail("vision redone"))
    monkeypatch.setitem(pipeline.STAGE_FUNCS, "agent", lambda *a, **k: pytest.fail("agent redone"))
    monkeypatch.setitem(pipeline.STAGE_FUNCS, "transfer", lambda *a, **k: calls.append(1) or real_transfer(*a, **k))
    run(tiny_cfg, root)
    assert calls == [1]
    m = rd.manifest()["stages"]
    assert m["vision"]["finished"] == stamps["vision"] and m["agent"]["finished"] == stamps["agent"]
    assert (root / "report.html").exists()
    # the stage's time is both attempts', not only the last one's; one-attempt stages say nothing more
    t = m["transfer"]
    assert t["attempts"] == 2 and t["wall_time_all_attempts_s"] >= t["wall_time_s"] + 0.3
    assert "attempts" not in m["vision"] and "attempts" not in m["agent"]
    assert f"transfer {t['wall_time_all_attempts_s']:.0f} s over 2 attempts" in (root / "report.html").read_text()


def test_a_killed_attempt_is_counted_without_a_time(tiny_cfg, tmp_path):
    root = tmp_path / "k"
    run(tiny_cfg, root, stages=("vision",))
    rd = RunDir(root)
    rd.begin_attempt("agent")  # as a SIGKILLed attempt leaves it: started, never ended
    run(tiny_cfg, root)
    a = rd.manifest()["stages"]["agent"]
    assert a["attempts"] == 2 and a["attempts_without_time"] == 1 and "wall_time_all_attempts_s" not in a
    assert f"agent {a['wall_time_s']:.0f} s in the last of 2 attempts (1 ended without a recorded time)" in (
        (root / "report.html").read_text()
    )
    # an update re-runs the stage from scratch, and its time starts again
    rd.invalidate("agent")
    assert "agent" not in rd.manifest()["attempts"]


def test_vision_interrupted_mid_training_resumes_to_same_result(tiny_cfg, tmp_path, monkeypatch):
    """Kill stage 1 after its first checkpoint; the resumed run equals an uninterrupted one."""
    from vision.vae import BetaVAE

    ref = run(tiny_cfg, tmp_path / "ref", stages=("vision",))
    real_step = BetaVAE.train_step

    def dying_step(self, x, step, *a, **k):
        if step == 15:
            raise KeyboardInterrupt
        return real_step(self, x, step, *a, **k)

    monkeypatch.setattr(BetaVAE, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_cfg, tmp_path / "cut", stages=("vision",))
    assert (tmp_path / "cut/vision/checkpoint_last.pt").exists()
    monkeypatch.setattr(BetaVAE, "train_step", real_step)
    cut = run(tiny_cfg, tmp_path / "cut", stages=("vision",))
    a = json.loads((ref.root / "vision/summary.json").read_text())
    b = json.loads((cut.root / "vision/summary.json").read_text())
    assert a["kl_per_dim"] == b["kl_per_dim"]


def test_failed_stage_keeps_earlier_artifacts(tiny_cfg, tmp_path, monkeypatch):
    root = tmp_path / "f"
    monkeypatch.setitem(pipeline.STAGE_FUNCS, "agent", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        run(tiny_cfg, root)
    rd = RunDir(root)
    assert rd.is_complete("vision") and (root / "vision/model.pt").exists()


def test_changed_config_is_refused(finished):
    cfg, rd = finished
    changed = replace(cfg, vision=replace(cfg.vision, params={**cfg.vision.params, "beta": 8.0}))
    with pytest.raises(RunDirError, match=r"different config \(changed: vision\.beta\)"):
        run(changed, rd.root)


def test_corrupted_artifact_is_detected(tiny_cfg, tmp_path):
    root = tmp_path / "c"
    run(tiny_cfg, root, stages=("vision",))
    p = root / "vision/model.pt"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(RunDirError, match="does not match the sha256 recorded"):
        run(tiny_cfg, root)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(RunDirError, match="manifest.json is corrupted"):
        run(tiny_cfg, root)


def test_cli_pipeline_prints_summary_and_report_path(tmp_path, tiny_raw, capsys):
    tiny_raw["runs_dir"] = str(tmp_path / "runs")
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(tiny_raw))
    assert main(["pipeline", str(p), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "transfer ratio" in out and "target_floor_object" in out
    assert f"report: {(tmp_path / 'runs/tiny/report.html').resolve()}" in out
    # force starts over; report rewrites from a finished run
    assert main(["report", str(tmp_path / "runs/tiny")]) == 0
    (tmp_path / "runs/tiny/vision/model.pt").write_bytes(b"garbage")
    assert main(["pipeline", str(p), "--no-progress"]) == 1
    assert "does not match the sha256" in capsys.readouterr().err


def test_report_escapes_names(tiny_raw, tmp_path):
    """A target domain named like markup shows as text: no tag from a config reaches the HTML."""
    from darla.config import config_from_dict

    tiny_raw["env"]["domains"]["targets"] = {"<script>alert(1)</script>": "target_floor_object"}
    tiny_raw["agent"]["total_timesteps"] = 64
    cfg = config_from_dict(tiny_raw, "t.yaml")
    rd = run(cfg, tmp_path / "esc")
    html = (rd.root / "report.html").read_text()
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_beta_vae_dae_trains_its_dae_first(tiny_raw, tmp_path):
    from darla.config import config_from_dict
    from vision.dae import BetaVAEDAE
    from vision.registry import load_checkpoint

    tiny_raw["vision"].update(model="beta_vae_dae", beta=2.0, steps=6, checkpoint_every=3)
    tiny_raw["vision"]["dae"] = {"steps": 4, "params": {"latent_dim": 8, "channels": [8, 8, 16, 16], "hidden": 32}}
    cfg = config_from_dict(tiny_raw, "t.yaml")
    rd = run(cfg, tmp_path / "bvd", stages=("vision",))
    stages = rd.manifest()["stages"]
    assert stages["vision/dae"]["status"] == "complete" and stages["vision"]["status"] == "complete"
    model = load_checkpoint(rd.root / "vision/model.pt", expect={"model": "beta_vae_dae"})
    dae = load_checkpoint(rd.root / "vision/dae/model.pt", expect={"model": "dae", "latent_dim": 8})
    assert isinstance(model, BetaVAEDAE)
    for k, v in dae.state_dict().items():  # the frozen DAE inside is the pretrained one, unchanged
        assert torch.equal(model.dae.state_dict()[k], v)


def test_vision_select_udr_trains_candidates_and_picks_one(tiny_raw, tmp_path, capsys):
    from darla.config import config_from_dict

    tiny_raw["vision"].update(select="udr", seeds=[3, 4], steps=6, checkpoint_every=3)
    cfg = config_from_dict(tiny_raw, "t.yaml")
    rd = run(cfg, tmp_path / "udr", stages=("vision",))
    udr = json.loads((rd.root / "vision/udr.json").read_text())
    assert udr["seeds"] == [3, 4] and udr["chosen_seed"] in (3, 4) and len(udr["scores"]) == 2
    chosen = rd.root / f"vision/candidates/seed{udr['chosen_seed']}/model.pt"
    assert (rd.root / "vision/model.pt").read_bytes() == chosen.read_bytes()
    stages = rd.manifest()["stages"]
    assert stages["vision/seed3"]["status"] == stages["vision/seed4"]["status"] == "complete"
    # the CLI ranks the same candidates
    assert main(["vision", "select", str(rd.root / "vision/candidates/seed3/model.pt"),
                 str(rd.root / "vision/candidates/seed4/model.pt"), "--n-images", "200"]) == 0
    out = capsys.readouterr().out
    assert "UDR (spearman)" in out and "seed3/model.pt" in out
    assert main(["vision", "select", str(chosen)]) == 1
    assert "UDR ranks ≥ 2 models" in capsys.readouterr().err


def test_metrics_scored_on_the_env_and_shown_with_settings(tiny_raw, tmp_path):
    from darla.config import config_from_dict
    from darla.report.run import carried_rows
    from envs.registry import get_domain
    from envs.seek_avoid import SeekAvoidGroundTruth

    tiny_raw["metrics"] = {"enabled": ["mig", "beta_vae", "dci"], "settings": "fast"}
    tiny_raw["agent"]["total_timesteps"] = 64
    lines: list[str] = []
    cfg = config_from_dict(tiny_raw, "t.yaml")
    rd = pipeline.run_pipeline(cfg, run_dir=tmp_path / "m", progress=False, log=lines.append)
    m = json.loads((rd.root / "vision/metrics.json").read_text())
    assert m["data"] == "seek_avoid" and m["domain"] == "vision" and m["settings"] == "fast"
    assert 0.0 <= m["metrics"]["mig"]["mig"] <= 1.0 and 0.0 <= m["metrics"]["beta_vae"]["beta_vae"] <= 1.0
    truth = SeekAvoidGroundTruth(tiny_raw["env"]["size"], get_domain("seek_avoid", "vision"))
    assert m["factors"] == {"names": list(truth.factor_names), "sizes": list(truth.factor_sizes)}
    res = json.loads((rd.root / "results.json").read_text())
    assert res["vision"]["metrics"]["mig"]["mig"] == m["metrics"]["mig"]["mig"]
    html = (rd.root / "report.html").read_text()
    assert "<th>settings</th>" in html and "num_train=1000" in html  # MIG's fast settings, shown
    # What each encoder carries: DCI's per-factor test accuracy beside chance, in the report.
    names, chance, rows = carried_rows(res)
    assert names == m["factors"]["names"] and chance == [1 / s for s in m["factors"]["sizes"]]
    acc = m["metrics"]["dci"]["informativeness_test_per_factor"]
    assert rows[0][0] == "vision" and [a for a in rows[0][1] if a is not None] == acc
    assert "What each encoder carries" in html and f"<td>{acc[0]:.2f}</td>" in html
    # ... and in the log, as soon as stage 1 is scored.
    said = [m for m in lines if m.startswith(f"[vision] {cfg.vision.model}: DCI test accuracy per factor (chance): ")]
    assert len(said) == 1 and f"agent_x {acc[names.index('agent_x')]:.2f} (0.17)" in said[0]
    # With dci, the MLP probe too (metrics.probe unset): the saved model's, on its own sample.
    from vision.metrics.probe import SIZES, mlp_probe
    from vision.registry import load_checkpoint

    model = load_checkpoint(rd.root / "vision/model.pt")
    want = mlp_probe(truth, model.represent, np.random.default_rng((cfg.seed, 1)), *SIZES["fast"])
    assert m["probe"] == want and res["vision"]["probe"] == want
    assert carried_rows(res, probe=True)[2] == [("vision", [want[n] for n in names])]
    assert f"{cfg.vision.model} (vision), MLP probe</td>" in html and f"{cfg.vision.model} (vision), DCI</td>" in html
    said = [m for m in lines if m.startswith(f"[vision] {cfg.vision.model}: MLP probe test accuracy per factor (chance): ")]
    assert len(said) == 1 and f"agent_x {want['agent_x']:.2f} (0.17)" in said[0]


@pytest.mark.parametrize("enabled, probe, scored", [
    (["mig"], None, False), (["mig"], True, True), (["mig", "dci"], False, False), ([], True, True),
])
def test_metrics_probe_runs_when_asked_or_with_dci(tiny_cfg, tmp_path, enabled, probe, scored):
    from darla.config import MetricsConfig
    from envs.registry import get_domain
    from vision.vae import BetaVAE

    cfg = replace(tiny_cfg, metrics=MetricsConfig(enabled=enabled, probe=probe))
    torch.manual_seed(0)
    model = BetaVAE((3, 32, 32), 4, channels=[8, 8, 16])
    lines: list[str] = []
    path = vision_stage.score_vision(cfg, model, get_domain("seek_avoid", "vision"), tmp_path, lines.append)
    m = json.loads(path.read_text())
    assert ("probe" in m) == scored and any("MLP probe" in line for line in lines) == scored
    if scored:
        assert sorted(m["probe"]) == sorted(m["factors"]["names"]) and all(0.0 <= a <= 1.0 for a in m["probe"].values())


def test_vision_on_dsprites_trains_and_scores_stage_1_only(tiny_raw, tmp_path, capsys):
    from darla.config import config_from_dict
    from vision.registry import load_checkpoint

    tiny_raw["vision"].update(data="dsprites", steps=4, checkpoint_every=2)
    tiny_raw["metrics"] = {"enabled": ["mig"], "settings": "fast"}
    rd = run(config_from_dict(tiny_raw, "t.yaml"), tmp_path / "ds", stages=("vision",))
    model = load_checkpoint(rd.root / "vision/model.pt")
    assert model.obs_shape == (1, 64, 64)
    m = json.loads((rd.root / "vision/metrics.json").read_text())
    assert m["data"] == "dsprites" and m["domain"] is None and 0.0 <= m["metrics"]["mig"]["mig"] <= 1.0
    # the whole pipeline makes no sense on dSprites: one config line, exit 2
    tiny_raw["runs_dir"] = str(tmp_path / "runs")
    p = tmp_path / "ds.yaml"
    p.write_text(yaml.safe_dump(tiny_raw))
    assert main(["pipeline", str(p), "--no-progress"]) == 2
    assert "vision.data: dsprites has no policy to train" in capsys.readouterr().err


def test_vision_checkpoint_must_match_the_config(tiny_raw, tmp_path, capsys):
    from vision.checkpoint import save_checkpoint
    from vision.vae import BetaVAE

    other = save_checkpoint(tmp_path / "other.pt", BetaVAE((3, 32, 32), 6, channels=[8, 8, 16, 16], hidden=32))
    tiny_raw["vision"]["checkpoint"] = str(other)
    tiny_raw["runs_dir"] = str(tmp_path / "runs")
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(tiny_raw))
    assert main(["vision", "train", str(p), "--no-progress"]) == 2  # a config error, at load (issue 17)
    err = capsys.readouterr().err
    assert "other.pt does not fit this config: latent_dim: checkpoint has 6, expected 4" in err and err.count("\n") == 1
    assert err.startswith(f"darla: config error: {p}: vision.checkpoint: ") and not (tmp_path / "runs").exists()
    tiny_raw["vision"]["latent_dim"] = 6  # now it fits: used as is, not trained
    p.write_text(yaml.safe_dump(tiny_raw))
    assert main(["vision", "train", str(p), "--no-progress", "--force"]) == 0
    assert json.loads((tmp_path / "runs/tiny/manifest.json").read_text())["stages"]["vision"]["trained"] is False


def test_methods_side_by_side_with_seeds_and_source_selection(tiny_raw, tmp_path, capsys):
    """Frozen β-VAE, a frozen β = 1 VAE trained beside it, pixels + RAD jitter, DARLA_FT; 2 seeds each."""
    arch = {"channels": [8, 8, 16, 16], "hidden": 32}
    tiny_raw["methods"] = {
        "darla": {"encoder": "vision"},
        "vae_b1": {"encoder": "beta_vae", "params": {"beta": 1.0, **arch}},
        "pixels_aug": {"encoder": "pixels", "augment": "colour_jitter"},
        "darla_ft": {"encoder": "vision", "finetune": True},
    }
    tiny_raw["agent"].update(seeds=[0, 1], total_timesteps=128, eval_every=64, eval_episodes=2, select="best_source")
    tiny_raw["transfer"]["n_episodes"] = 2
    tiny_raw["runs_dir"] = str(tmp_path / "runs")
    cfg_path = tmp_path / "m.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_raw, sort_keys=False))
    assert main(["pipeline", str(cfg_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    root = tmp_path / "runs" / "tiny"
    assert (root / "vision/encoders/vae_b1/model.pt").exists()
    for method in tiny_raw["methods"]:
        for seed in (0, 1):
            meta = json.loads((root / f"agent/{method}/ppo_seed{seed}/meta.json").read_text())
            assert meta["selected"]["by"] == "best_source"
            assert meta["spec"]["observe"] == ("pixels" if method in ("pixels_aug", "darla_ft") else "latents")
        assert method in out  # the console table names every method
    res = json.loads((root / "results.json").read_text())
    t = res["transfer"]
    assert set(t["methods"]) == set(tiny_raw["methods"])  # results.json sorts keys; the baseline is the first in config order
    assert t["probability_of_improvement"]["baseline"] == "darla"
    assert t["method_order"] == list(tiny_raw["methods"])  # config order, for the tables and the baseline
    assert set(t["probability_of_improvement"]["target_floor_object"]) == {"vae_b1", "pixels_aug", "darla_ft"}
    for m in t["methods"].values():
        assert m["domains"]["source"]["n_seeds"] == 2 and m["domains"]["source"]["n_episodes"] == 4
        assert set(m["transfer_ratio_per_seed"]["target_floor_object"]) == {"0", "1"}
    rows = (root / "transfer/episodes.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4 * 2 * 2 * 2  # methods × seeds × domains × episodes
    html = (root / "report.html").read_text()
    for method in tiny_raw["methods"]:
        assert f"<td>{method}</td>" in html
    table = html[html.index("Zero-shot transfer"):]
    first_rows = [table.index(f"<tr><td>{m}</td><td>source</td>") for m in tiny_raw["methods"]]
    assert first_rows == sorted(first_rows)  # the summary table follows the config's method order
    assert "vae_b1 (beta_vae)" in html  # the extra encoder's reconstructions and traversals


def test_agent_workers_train_runs_in_parallel_processes(tiny_raw, tmp_path):
    tiny_raw["methods"] = {"darla": {"encoder": "vision"}, "pixels": {"encoder": "pixels"}}
    tiny_raw["agent"].update(seeds=[0, 1], total_timesteps=128, workers=2)
    tiny_raw["runs_dir"] = str(tmp_path / "runs")
    from darla.config import config_from_dict

    rd = run(config_from_dict(tiny_raw, "w.yaml"), tmp_path / "w")
    m = rd.manifest()["stages"]
    for method in ("darla", "pixels"):
        for seed in (0, 1):
            entry = m[f"agent/{method}/ppo_seed{seed}"]
            assert entry["status"] == "complete" and entry["steps_per_s"] > 0
    assert m["report"]["status"] == "complete"


def test_changed_stage_2_config_reruns_from_stage_2_only_with_update(tiny_cfg, tmp_path, capsys):
    """--update keeps stage 1 for a change that only stage 2 on reads; execution-only keys pass silently."""
    root = tmp_path / "u"
    run(tiny_cfg, root)
    stamps = {k: v["finished"] for k, v in RunDir(root).manifest()["stages"].items()}
    # how many processes train agents changes no result: accepted, nothing re-runs
    workers = replace(tiny_cfg, agent=replace(tiny_cfg.agent, workers=2))
    run(workers, root)
    assert {k: v["finished"] for k, v in RunDir(root).manifest()["stages"].items()} == stamps
    assert "workers: 2" in (root / "config.yaml").read_text()

    gamma = replace(workers, agent=replace(workers.agent, hyperparams={**workers.agent.hyperparams, "gamma": 0.5}))
    with pytest.raises(RunDirError, match=r"changed: agent\.hyperparams\.gamma\); add --update to keep stage 1"):
        run(gamma, root)
    assert {k: v["finished"] for k, v in RunDir(root).manifest()["stages"].items()} == stamps  # refused: untouched

    (root / "agent/beta_vae/ppo_seed0/stale.txt").write_text("from the old config")
    pipeline.run_pipeline(gamma, run_dir=root, update=True, progress=False, log=print)
    assert "config changed (agent.hyperparams.gamma): re-running agent, transfer, report; stage 1 is kept" in capsys.readouterr().out
    after = RunDir(root).manifest()["stages"]
    assert after["vision"]["finished"] == stamps["vision"]  # stage 1 kept
    assert all(after[k]["finished"] != stamps[k] for k in ("agent", "transfer", "report"))
    assert not (root / "agent/beta_vae/ppo_seed0/stale.txt").exists()  # old stage-2 artifacts are gone
    meta = json.loads((root / "agent/beta_vae/ppo_seed0/meta.json").read_text())
    assert meta["spec"]["hyperparams"]["gamma"] == 0.5

    beta = replace(gamma, vision=replace(gamma.vision, params={**gamma.vision.params, "beta": 8.0}))
    with pytest.raises(RunDirError, match=r"vision\.beta changes stage 1: use --force"):
        pipeline.run_pipeline(beta, run_dir=root, update=True, progress=False, log=print)


def test_stage_of_key():
    old = {"methods": {"a": {"encoder": "vision"}, "b": {"encoder": "dae"}}}
    assert stages.stage_of_key("agent.workers", old, old) is None
    assert stages.stage_of_key("transfer.n_episodes", old, old) == "transfer"
    assert stages.stage_of_key("env.domains.targets.t1", old, old) == "agent"
    assert stages.stage_of_key("env.domains.vision", old, old) == "vision"
    assert stages.stage_of_key("env.size", old, old) == "vision"
    assert stages.stage_of_key("methods.a.augment", old, old) == "agent"
    assert stages.stage_of_key("methods.b.params.beta", old, old) == "vision"  # an encoder trained in stage 1
    assert stages.stage_of_key("methods.c", old, {"methods": {"c": {"encoder": "pixels"}}}) == "agent"
    assert stages.stage_of_key("seed", old, old) == "vision"


def test_agent_units_unchanged():
    """Which complete policies a stage-2 change leaves alone: those of untouched methods, for the
    seeds both configs list; a key every policy reads leaves none."""
    old = {"agent": {"algo": "ppo", "seeds": [0, 1]}, "env": {"size": 32, "domains": {"source": "source"}},
           "methods": {"a": {"encoder": "vision"}, "b": {"encoder": "pixels"}}}

    def with_(**kw):
        new = json.loads(json.dumps(old))
        for key, value in kw.items():
            *path, last = key.split("__")
            d = new
            for p in path:
                d = d.setdefault(p, {})
            d[last] = value
        return new

    def kept(new):
        return stages.agent_units_unchanged(diff_configs(old, new), old, new)

    every = {f"agent/{m}/ppo_seed{s}" for m in "ab" for s in (0, 1)}
    assert kept(with_(methods__c={"encoder": "pixels"})) == every  # a method added
    assert kept(with_(agent__seeds=[0, 2])) == {"agent/a/ppo_seed0", "agent/b/ppo_seed0"}  # seed 1 dropped, 2 added
    assert kept(with_(methods__a__augment="colour_jitter")) == {"agent/b/ppo_seed0", "agent/b/ppo_seed1"}
    assert kept({**old, "methods": {"b": {"encoder": "pixels"}}}) == {"agent/b/ppo_seed0", "agent/b/ppo_seed1"}  # a removed
    assert kept(with_(transfer__n_episodes=5, agent__workers=4)) == every  # later stages, no result
    assert kept(with_(agent__hyperparams__gamma=0.5)) is None  # shared by every policy
    assert kept(with_(agent__algo="sac")) is None
    assert kept(with_(env__domains__source="other")) is None
    assert kept(with_(env__size=64)) is None  # stage 1's (refused by an update, and every policy reads it)


def test_vision_episode_steps_sets_the_collection_episodes_only(tiny_cfg):
    """Stage 1's frames come from episodes of ``vision.episode_steps`` (default: env.max_steps)."""
    from envs.collect import collect_frames
    from envs.registry import get_domain

    dom = get_domain(tiny_cfg.env.name, tiny_cfg.env.domains.vision)
    n = tiny_cfg.vision.n_frames

    def frames(**vision):
        logs = []
        out = vision_stage.vision_frames(replace(tiny_cfg, vision=replace(tiny_cfg.vision, **vision)), dom, logs.append)
        return out, logs[-1]

    default, said = frames()
    assert f"episodes of {tiny_cfg.env.max_steps} steps" in said
    assert np.array_equal(default, collect_frames(tiny_cfg.env.name, dom, n, tiny_cfg.seed, tiny_cfg.env.size, max_steps=tiny_cfg.env.max_steps).frames)
    short, said = frames(episode_steps=3)
    assert "episodes of 3 steps" in said
    assert np.array_equal(short, collect_frames(tiny_cfg.env.name, dom, n, tiny_cfg.seed, tiny_cfg.env.size, max_steps=3).frames)
    # a reset every 3 frames: frame 3 is a new episode's (another scene or placement), not the 4th step
    assert np.array_equal(short[:3], default[:3]) and not np.array_equal(short, default)
