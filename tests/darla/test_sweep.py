"""Sweeps: expansion, validation, shared stage 1, local and Ray executors, resume, the sweep report."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY
from scipy import stats as sps

import darla.pipeline as pipeline
import darla.stages.vision as vision_stage
from darla.cli import main
from darla.config import ConfigError, safe_name
from darla.report.sweep import correlations, spearman_bootstrap, write_sweep_report
from darla.runs import RunDir
from darla.sweep import load_sweep, make_run_name, run_sweep, vision_key


def small_base() -> dict:
    """TINY with smaller budgets still: a whole run in a few seconds on one core."""
    raw = copy.deepcopy(TINY)
    raw["vision"].update(n_frames=128, steps=10, checkpoint_every=5)
    raw["agent"].update(total_timesteps=128)
    raw["transfer"]["n_episodes"] = 2
    return raw


def write_sweep(tmp_path: Path, body: dict, base: dict | None = None, name: str = "s.yaml") -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base or small_base(), sort_keys=False))
    p = tmp_path / name
    p.write_text(yaml.safe_dump({"base": "base.yaml", "sweep_dir": "out", **body}, sort_keys=False))
    return p


def quiet(_: str) -> None:
    pass


# ---------------------------------------------------------------------------------------------
# expansion and validation (no training)
# ---------------------------------------------------------------------------------------------
def test_expansion_is_list_times_grid_times_seeds_with_deterministic_names(tmp_path):
    p = write_sweep(tmp_path, {
        "grid": {"vision.beta": [1.0, 4.0]},
        "list": [{"agent.hyperparams.gamma": 0.9}, {"agent.hyperparams.gamma": 0.99, "transfer.n_episodes": 1}],
        "seeds": [0, 3],
        "set": {"agent.total_timesteps": 64},
    })
    sw = load_sweep(p)
    assert len(sw.runs) == 2 * 2 * 2
    assert sw.keys == ["vision.beta", "agent.hyperparams.gamma", "transfer.n_episodes", "seed"]
    assert sw.sweep_dir == tmp_path / "out"
    first = sw.runs[0]
    assert first.overrides == {"agent.total_timesteps": 64, "vision.beta": 1.0, "agent.hyperparams.gamma": 0.9, "seed": 0}
    assert first.origins["vision.beta"] == "grid.vision.beta[0]" and first.origins["seed"] == "seeds[0]"
    assert first.origins["agent.hyperparams.gamma"] == "list[0].agent.hyperparams.gamma"
    # the name: readable pairs (shortest unique key suffixes) + 8 hex of the varying overrides' hash
    varying = {"vision.beta": 1.0, "agent.hyperparams.gamma": 0.9, "seed": 0}
    digest = hashlib.sha256(json.dumps(varying, sort_keys=True).encode()).hexdigest()[:8]
    assert first.name == f"beta-1.0__gamma-0.9__seed-0__{digest}"
    names = [r.name for r in sw.runs]
    assert len(set(names)) == len(names) and all(safe_name(n) for n in names)
    assert names == [r.name for r in load_sweep(p).runs]  # same file → same names
    for r in sw.runs:  # every run is an ordinary validated config, named after itself
        assert r.config.name == r.name and r.config.agent.total_timesteps == 64
        assert r.config.vision.params["beta"] == r.overrides["vision.beta"] and r.config.seed == r.overrides["seed"]
        assert sw.run_dir(r) == tmp_path / "out" / "runs" / r.name
    last = sw.runs[-1]
    assert last.config.transfer.n_episodes == 1 and last.config.agent.hyperparams["gamma"] == 0.99
    # stage 1 depends on beta and seed only here: 4 vision groups for 8 runs
    assert len({r.vision_key for r in sw.runs}) == 4


def test_example_sweeps_expand():
    for p in sorted((Path(__file__).resolve().parents[2] / "configs" / "sweeps").glob("*.yaml")):
        sw = load_sweep(p)
        assert sw.runs and all(r.config.name == r.name for r in sw.runs), p


def test_darla_figure_sweeps_have_four_betas_and_icf():
    """Issue 20's figure: ≥ 4 β × ≥ 3 seeds per env, and ICF as one more point (issue 19)."""
    for env in ("seek_avoid", "reacher"):
        sw = load_sweep(Path(__file__).resolve().parents[2] / "configs" / "sweeps" / f"{env}_beta.yaml")
        by_model: dict[tuple, set] = {}
        for r in sw.runs:
            v = r.config.vision
            by_model.setdefault((v.model, v.params.get("beta")), set()).add(r.config.seed)
        betas = [b for (m, b) in by_model if m != "icf"]
        assert len(betas) >= 4 and all(len(seeds) >= 3 for seeds in by_model.values()), by_model
        assert ("icf", None) in by_model
        assert len({r.vision_key for r in sw.runs}) == len(sw.runs)  # every point its own stage 1


def test_make_run_name_is_safe_and_bounded():
    name = make_run_name({"env.domains.targets": {"a b": "<x>"}, "agent.seeds": [0, 1], "vision.lr": None}, {})
    assert safe_name(name) and len(name) <= 80 + 2 + 8
    assert make_run_name({}) == hashlib.sha256(b"{}").hexdigest()[:8]


def test_vision_key_ignores_what_stage_1_never_reads(tmp_path):
    from darla.config import config_from_dict

    def key(**changes) -> str:
        raw = small_base()
        for dotted, v in changes.items():
            node = raw
            *parents, leaf = dotted.split("__")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = v
        return vision_key(config_from_dict(raw, "t.yaml"))

    ref = key()
    for same in ({"agent__total_timesteps": 64}, {"transfer__n_episodes": 7}, {"name": "other"},
                 {"env__domains": {"vision": "vision", "source": "source", "targets": {"t": "target_all_new"}}},
                 {"scan__steps": 5}, {"methods": {"px": {"encoder": "pixels"}, "d": {"encoder": "vision", "finetune": True}}}):
        assert key(**same) == ref, same
    for different in ({"vision__beta": 2.0}, {"seed": 1}, {"env__size": 48}, {"metrics": {"enabled": ["mig"]}},
                      {"vision__episode_steps": 5}, {"env__max_steps": 7}, {"metrics": {"probe": True}},
                      {"methods": {"b1": {"encoder": "beta_vae", "params": {"beta": 1.0}}}}):
        assert key(**different) != ref, different



def test_vision_config_keeps_exactly_the_keys_stage_1_reads():
    """One fact, two readers: the shared stage-1 job (vision_config) runs with every key that
    stage_of_key gives to stage 1 (what vision_key hashes), and a method's training settings
    are not among them even when stage 1 trains its encoder."""
    from darla.config import config_from_dict
    from darla.stages import stage_of_key
    from darla.sweep import stage_1_inputs, vision_config

    raw = small_base()
    raw["seed"] = 3
    raw["methods"] = {"b1": {"encoder": "beta_vae", "params": {"beta": 1.0}, "hyperparams": {"gamma": 0.9}},
                      "v": {"encoder": "vision"}}
    cfg = config_from_dict(raw, "t.yaml")
    inputs = stage_1_inputs(cfg)
    assert inputs["seed"] == 3 and inputs["methods.b1.params.beta"] == 1.0 and inputs["methods.b1.encoder"] == "beta_vae"
    assert not {k for k in inputs if k.startswith(("agent.", "transfer.", "scan.", "methods.v.", "methods.b1.hyperparams"))}
    assert stage_1_inputs(vision_config(cfg)) == inputs
    d = cfg.to_dict()
    assert stage_of_key("methods.b1.hyperparams.gamma", d, d) == "agent"
    assert stage_of_key("methods.b1.params.beta", d, d) == "vision"

@pytest.mark.parametrize("body, key", [
    ({"grid": {"vision.beta": [1.0, "x"]}}, "grid.vision.beta[1]"),
    ({"grid": {"vision.betta": [1.0]}}, "grid.vision.betta"),
    ({"list": [{}, {"agent.algo": "ppo2"}]}, "list[1].agent.algo"),
    ({"seeds": [0, -2]}, "seeds[1]"),
    ({"grid": {"vision.n_frames": [64, 16]}}, "grid.vision.n_frames[1]"),  # < 64: its own minimum
    ({"seeds": [0], "set": {"vision.batch_size": 4096}}, "set.vision.batch_size"),
    ({"seeds": [0], "learned_min": 1.5}, "learned_min"),
    ({"seeds": [0], "learned_min": True}, "learned_min"),
    ({"seeds": [0], "learned_min": "0.5"}, "learned_min"),
])
def test_validation_errors_name_the_sweep_file_and_key(tmp_path, body, key):
    p = write_sweep(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        load_sweep(p)
    assert e.value.source == str(p) and e.value.key == key
    assert str(e.value).startswith(f"{p}: {key}: ")


def test_errors_from_combinations_name_the_run(tmp_path):
    base = small_base()
    base["vision"]["batch_size"] = 128
    p = write_sweep(tmp_path, {"grid": {"vision.n_frames": [128, 64]}}, base=base)
    with pytest.raises(ConfigError, match=r"grid\.vision\.n_frames\[1\]") as e:
        load_sweep(p)
    assert e.value.key == "vision.batch_size"


# ---------------------------------------------------------------------------------------------
# running: shared stage 1, local executor, resume
# ---------------------------------------------------------------------------------------------
def test_agent_only_sweep_trains_the_vision_model_once(tmp_path, monkeypatch):
    calls = []
    real = vision_stage.train_one
    monkeypatch.setattr(vision_stage, "train_one", lambda *a, **k: calls.append(1) or real(*a, **k))
    p = write_sweep(tmp_path, {"grid": {"agent.hyperparams.gamma": [0.9, 0.95, 0.99]}})
    sw = load_sweep(p)
    state = run_sweep(sw, workers=1, log=quiet)
    assert calls == [1]  # one vision model for three runs
    assert [r["status"] for r in state["runs"]] == ["complete"] * 3
    (key,) = {r.vision_key for r in sw.runs}
    shared = RunDir(sw.vision_dir(key))
    digest = shared.stage("vision")["sha256"]["vision/model.pt"]
    for r in sw.runs:
        rd = RunDir(sw.run_dir(r))
        entry = rd.stage("vision")
        assert entry["reused_from"] == f"../../vision/{key}" and entry["sha256"]["vision/model.pt"] == digest
        assert rd.is_complete("report") and (rd.root / "report.html").exists()
        meta = json.loads((rd.root / "agent/beta_vae/ppo_seed0/meta.json").read_text())
        assert meta["encoder_sha256"] == digest
    assert state["vision"][key]["status"] == "complete" and len(state["vision"][key]["runs"]) == 3


def test_local_executor_two_workers_then_rerun_continues(tmp_path, monkeypatch, capsys):
    p = write_sweep(tmp_path, {"grid": {"vision.beta": [1.0, 4.0], "agent.hyperparams.gamma": [0.9, 0.99]}})
    assert main(["sweep", str(p), "--workers", "2"]) == 0
    sw = load_sweep(p)
    state = json.loads((sw.sweep_dir / "sweep.json").read_text())
    assert [r["status"] for r in state["runs"]] == ["complete"] * 4
    assert sorted(d.name for d in (sw.sweep_dir / "vision").iterdir()) == sorted({r.vision_key for r in sw.runs})
    assert len(state["vision"]) == 2  # two betas → two vision models for four runs
    stamps = {r.name: RunDir(sw.run_dir(r)).manifest()["stages"] for r in sw.runs}

    # a second invocation does nothing: no stage, no job
    def fail(*a, **k):
        raise AssertionError("redone")

    for stage in ("vision", "agent", "transfer", "report"):
        monkeypatch.setitem(pipeline.STAGE_FUNCS, stage, fail)
    capsys.readouterr()
    assert main(["sweep", str(p)]) == 0
    assert "4 runs (4 complete), 0 vision model(s) to train" in capsys.readouterr().out
    assert {r.name: RunDir(sw.run_dir(r)).manifest()["stages"] for r in sw.runs} == stamps

    # an interrupted run (transfer lost) continues from its first incomplete stage only
    monkeypatch.undo()
    cut = sw.runs[2]
    RunDir(sw.run_dir(cut)).invalidate("transfer", "report")
    redone = []
    for stage in ("vision", "agent"):
        monkeypatch.setitem(pipeline.STAGE_FUNCS, stage, fail)
    for stage in ("transfer", "report"):
        real = pipeline.STAGE_FUNCS[stage]
        monkeypatch.setitem(pipeline.STAGE_FUNCS, stage, lambda *a, _r=real, _s=stage, **k: redone.append(_s) or _r(*a, **k))
    state = run_sweep(sw, workers=1, log=quiet)  # one job left: in this process, so the patches see it
    assert redone == ["transfer", "report"] and [r["status"] for r in state["runs"]] == ["complete"] * 4
    # and the sweep report reads every run
    assert main(["report", str(sw.sweep_dir)]) == 0
    csv_lines = (sw.sweep_dir / "sweep_results.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + 4 and "vision.beta" in csv_lines[0] and "source/iqm" in csv_lines[0]


def test_failed_vision_fails_its_runs_with_one_line_each(tmp_path, monkeypatch, capsys):
    def boom(*a, **k):
        raise RuntimeError("no frames today")

    monkeypatch.setattr(pipeline, "run_pipeline", boom)
    p = write_sweep(tmp_path, {"seeds": [0, 1]})
    assert main(["sweep", str(p)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("darla: error: 2 of 2 runs did not complete") and err.count("\n") == 1
    state = json.loads((tmp_path / "out/sweep.json").read_text())
    for r in state["runs"]:
        assert r["status"] == "failed" and "its vision stage failed (RuntimeError: no frames today)" in r["error"]
    assert all(v["status"] == "failed" for v in state["vision"].values())
    log = next((tmp_path / "out/vision").iterdir()) / "sweep.log"
    assert "Traceback" in log.read_text()  # the whole story is kept beside the run


def test_executor_errors_are_one_line(tmp_path, monkeypatch, capsys):
    import sys

    p = write_sweep(tmp_path, {"seeds": [0]})
    assert main(["sweep", str(p), "--address", "auto"]) == 1
    assert "--address names a Ray cluster" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["sweep", str(p), "--executor", "ray"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'darla[ray]'" in err and err.count("\n") == 1
    assert main(["sweep", str(p), "--dry-run"]) == 0
    assert "1 runs, 1 vision model(s)" in capsys.readouterr().out


def test_ray_executor_on_a_tiny_grid(tmp_path):
    if os.environ.get("CI"):  # the test extra installs Ray: in CI a missing Ray is a failure, not a skip
        import ray
    else:
        ray = pytest.importorskip("ray")
    p = write_sweep(tmp_path, {"grid": {"agent.hyperparams.gamma": [0.9, 0.99]}, "resources": {"num_cpus": 1}})
    sw = load_sweep(p)
    try:
        state = run_sweep(sw, executor="ray", workers=2, log=quiet)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert [r["status"] for r in state["runs"]] == ["complete"] * 2, state["runs"]
    assert state["executor"] == "ray" and len(list((sw.sweep_dir / "vision").iterdir())) == 1
    for r in sw.runs:
        rd = RunDir(sw.run_dir(r))
        assert rd.is_complete("report") and rd.stage("vision")["reused_from"].startswith("../../vision/")


# ---------------------------------------------------------------------------------------------
# the sweep report
# ---------------------------------------------------------------------------------------------
def test_spearman_and_bootstrap_ci_against_a_hand_computed_example():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    y = [2.0, 1.0, 4.0, 3.0, 5.0]
    res = spearman_bootstrap(x, y, reps=500, seed=7)
    # rank differences (−1, 1, −1, 1, 0): ρ = 1 − 6·Σd² / (n(n² − 1)) = 1 − 6·4/120 = 0.8
    assert res["rho"] == pytest.approx(0.8) and res["n"] == 5
    # the CI by hand: the same seeded index draws, ρ of each resample, constant ones dropped
    idx = np.random.default_rng(7).integers(0, 5, size=(500, 5))
    boots = []
    for row in idx:
        xs, ys = np.array(x)[row], np.array(y)[row]
        if len(set(xs)) > 1 and len(set(ys)) > 1:
            boots.append(np.corrcoef(sps.rankdata(xs), sps.rankdata(ys))[0, 1])
    assert res["reps_used"] == len(boots)
    assert res["ci"] == pytest.approx([np.quantile(boots, 0.025), np.quantile(boots, 0.975)])
    assert res["ci"][0] <= 0.8 <= res["ci"][1]
    assert spearman_bootstrap(x, y, reps=500, seed=7) == res  # a pure function of the seed
    perfect = spearman_bootstrap([1, 2, 3, 4], [10, 20, 30, 40], reps=200)
    assert perfect["rho"] == pytest.approx(1.0) and perfect["ci"] == pytest.approx([1.0, 1.0])
    assert spearman_bootstrap([1, 2, 3], [3, 2, 1])["rho"] == pytest.approx(-1.0)
    assert spearman_bootstrap([1, 2], [1, 2])["rho"] is None  # too few points
    assert spearman_bootstrap([1, 1, 1], [1, 2, 3])["rho"] is None  # constant: undefined, no warning


EVIL = "<script>alert(1)</script>"


def fake_sweep_dir(root: Path) -> Path:
    """Five finished runs on disk (no training): mig tracks transfer exactly, DCI disentanglement
    does not; the normalised target score (random 0, oracle 20 on the target) is ratio / 2."""
    betas = [1.0, 2.0, 4.0, 8.0, 16.0]
    mig = [0.1, 0.2, 0.3, 0.4, 0.5]
    dci = [0.5, 0.1, 0.4, 0.2, 0.3]
    ratio = [0.2, 0.3, 0.5, 0.6, 0.9]
    probe = [0.9, 0.8, 0.7, 0.6, 0.5]  # mean over two factors: anti-monotone in transfer
    runs = []
    for i, b in enumerate(betas):
        name = f"beta-{b}__r{i}"
        rd = root / "runs" / name
        (rd / "vision").mkdir(parents=True)
        (rd / "transfer").mkdir()
        cfg = {"name": name, "seed": 0, "vision": {"model": "beta_vae", "beta": b}, "methods": {"beta_vae": {"encoder": "vision"}}}
        (rd / "config.yaml").write_text(yaml.safe_dump(cfg))
        dci_res = {"dci": dci[i], "disentanglement": dci[i], "completeness": 0.4, "informativeness_test": 0.1 * i,
                   "informativeness_train": 0.9}
        (rd / "vision/metrics.json").write_text(json.dumps({
            "metrics": {"mig": {"mig": mig[i]}, "dci": dci_res},
            "probe": {"a": probe[i] + 0.05, "b": probe[i] - 0.05},
        }))
        src = {"mean": 10.0, "std": 0.0, "iqm": 10.0, "iqm_ci": [9.0, 11.0], "n_seeds": 2}
        tgt = {"mean": 10 * ratio[i], "std": 0.0, "iqm": 10 * ratio[i], "iqm_ci": [10 * ratio[i] - 1, 10 * ratio[i] + 1], "n_seeds": 2}
        norm = {"source": {"mean": 0.5, "iqm": 0.5, "iqm_ci": [0.45, 0.55]},
                EVIL: {"mean": ratio[i] / 2, "iqm": ratio[i] / 2, "iqm_ci": [ratio[i] / 2 - 0.05, ratio[i] / 2 + 0.05]}}
        summary = {"domains": ["source", EVIL], "references": {"source": {"random": 0.0, "oracle": 20.0}, EVIL: {"random": 0.0, "oracle": 20.0}},
                   "methods": {"beta_vae": {"domains": {"source": src, EVIL: tgt}, "normalised": norm, "transfer_ratio": {EVIL: ratio[i]},
                                            "transfer_ratio_per_seed": {}}}}
        (rd / "transfer/summary.json").write_text(json.dumps(summary))
        runs.append({"name": name, "dir": f"runs/{name}", "overrides": {"vision.beta": b, "env.domains.source": "<b>src</b>"},
                     "status": "complete"})
    runs.append({"name": "unfinished", "dir": "runs/unfinished", "overrides": {}, "status": "failed"})
    (root / "sweep.json").write_text(json.dumps({"name": "fake", "keys": ["vision.beta", "env.domains.source"], "runs": runs}))
    return root


def test_sweep_report_renders_escaped_and_names_the_best_metric(tmp_path, capsys):
    root = fake_sweep_dir(tmp_path / "sw")
    paths = write_sweep_report(root, reps=300)
    html = (root / "sweep_report.html").read_text()
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>src" not in html and "&lt;b&gt;src&lt;/b&gt;" in html
    res = json.loads((root / "sweep_results.json").read_text())
    # every stage-1 score reaches the rows: DCI as three scores, the probe as its mean over factors
    row = next(r for r in res["rows"] if r["method"])
    assert set(row["metrics"]) == {"mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "probe"}
    assert row["metrics"]["probe"] == pytest.approx(0.9)
    assert res["metrics"] == ["mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "probe"]  # figure order
    # the DARLA figure image, then one scatter per metric against the target score
    assert html.count("data:image/png;base64,") == 1 + 5
    assert (root / "darla_figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    corr = res["correlations"]
    assert corr["y"] == "target_score" and corr["per_metric"] == corr["views"]["target_score"]["per_metric"]
    assert row["target_score"] == pytest.approx(0.1) and row["source_score"] == pytest.approx(0.5)
    # every policy scored 0.5 on the source (≥ 0.3: learned), so the learned view is the target view
    assert corr["views"]["target_score_learned"]["per_metric"] == corr["views"]["target_score"]["per_metric"]
    assert corr["views"]["source_score"]["per_metric"]["mig"]["rho"] is None  # a constant source score
    for view in ("target_score", "transfer_ratio_mean"):  # target score = ratio / 2: same ranks, same ρ
        per = corr["views"][view]["per_metric"]
        assert corr["views"][view]["best"] == "mig" and per["mig"]["rho"] == pytest.approx(1.0)
        assert per["mig"]["ci"] == pytest.approx([1.0, 1.0])
        assert per["dci_disentanglement"]["rho"] == pytest.approx(
            sps.spearmanr([0.5, 0.1, 0.4, 0.2, 0.3], [0.2, 0.3, 0.5, 0.6, 0.9]).statistic)
        assert per["dci_informativeness"]["rho"] == pytest.approx(1.0)
        assert per["probe"]["rho"] == pytest.approx(-1.0) and per["probe"]["ci"] == pytest.approx([-1.0, -1.0])
        assert per["dci_completeness"]["rho"] is None  # constant metric: ρ undefined, not a number
    assert corr["missing"] == ["beta_vae", "factor_vae", "sap", "modularity", "udr"]
    assert "<b>mig</b> predicts zero-shot target performance best" in html
    assert "Not in this sweep: beta_vae, factor_vae, sap, modularity, udr" in html
    assert "Dittadi et al." in html and "min 0.50, median 0.50, max 0.50; 5 of 5 learned the source task" in html
    lines = (root / "sweep_results.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 6 and lines[-1].startswith("unfinished,failed")
    assert "target_score" in lines[0].split(",") and "metric/dci_completeness" in lines[0].split(",")
    assert len(res["groups"]) == 5 and res["groups"][0]["transfer_ratio"]["iqm"] == pytest.approx(0.2)
    assert res["groups"][0]["target_score"]["iqm"] == pytest.approx(0.1)
    assert [p.name for p in paths] == ["sweep_results.csv", "sweep_results.json", "darla_figure.png", "sweep_report.html"]
    # through the CLI: a directory with sweep.json is a sweep; the console gets the figure's table
    assert main(["report", str(root)]) == 0
    out = capsys.readouterr().out
    assert "mig *" in out and "1.00 [1.00, 1.00]" in out and "sweep_report.html" in out and "darla_figure.png" in out


def test_correlations_skip_unfrozen_and_missing_points():
    rows = [
        {"metrics": {"mig": 0.1 * i}, "udr": None, "frozen": i != 3, "transfer_ratio_mean": 0.2 * i if i != 1 else None,
         "target_score": 0.1 * i if i != 4 else None}
        for i in range(5)
    ]
    c = correlations({"metrics": ["mig"], "rows": rows}, reps=50)
    assert c["views"]["transfer_ratio_mean"]["per_metric"]["mig"]["n"] == 3  # rows 0, 2, 4
    assert c["per_metric"]["mig"]["n"] == 3 and "udr" not in c["per_metric"]  # target view: rows 0, 1, 2


def test_the_learned_view_leaves_out_policies_that_did_not_learn_the_source_task(tmp_path):
    """Four policies that learned (source ≥ LEARNED_MIN), whose target score rises with the metric,
    and three at chance with the highest metric scores: against every target score the metric
    looks unrelated, among the policies that learned it is perfectly monotone."""
    from darla.report.sweep import LEARNED_KEY, LEARNED_MIN, collect_sweep

    root = fake_sweep_dir(tmp_path / "sw")
    runs = json.loads((root / "sweep.json").read_text())["runs"]
    for i, run in enumerate(r for r in runs if r["status"] == "complete"):
        path = root / run["dir"] / "transfer/summary.json"
        summary = json.loads(path.read_text())
        norm = summary["methods"]["beta_vae"]["normalised"]
        norm["source"]["mean"] = [0.8, 0.1, 0.9, LEARNED_MIN, 0.05][i]  # runs 1 and 4 did not learn
        path.write_text(json.dumps(summary))
    rows = [r for r in collect_sweep(root)["rows"] if r["method"]]
    assert [r[LEARNED_KEY] is not None for r in rows] == [True, False, True, True, False]
    assert all(r[LEARNED_KEY] == r["target_score"] for r in rows if r[LEARNED_KEY] is not None)
    x = [0.1, 0.9, 0.2, 0.3, 0.8]   # the metric: high on the two that did not learn
    y = [0.1, 0.0, 0.2, 0.3, 0.0]   # their target score: chance
    fake = [{**r, "metrics": {"m": x[i]}, "target_score": y[i], LEARNED_KEY: y[i] if r[LEARNED_KEY] is not None else None}
            for i, r in enumerate(rows)]
    c = correlations({"metrics": ["m"], "rows": fake}, reps=200)
    learned = c["views"][LEARNED_KEY]["per_metric"]["m"]
    assert learned["n"] == 3 and learned["rho"] == pytest.approx(1.0)
    assert c["per_metric"]["m"]["n"] == 5 and c["per_metric"]["m"]["rho"] == pytest.approx(
        sps.spearmanr(x, y).statistic)
    assert c["views"]["source_score"]["per_metric"]["m"]["n"] == 5


def test_a_sweep_file_sets_its_own_learned_bar(tmp_path, capsys):
    """``learned_min`` in the sweep file reaches sweep.json, and the report's learned view, labels,
    note and console table use it instead of LEARNED_MIN: on an env where a policy that misses the
    task's point still scores 0.3-0.5, such policies leave the learned view."""
    from darla.report.sweep import LEARNED_KEY, LEARNED_MIN, collect_sweep
    from darla.sweep import sweep_state

    assert load_sweep(write_sweep(tmp_path, {"seeds": [0]})).learned_min is None
    assert "learned_min" not in sweep_state(load_sweep(write_sweep(tmp_path, {"seeds": [0]})), {}, "local")
    sw = load_sweep(write_sweep(tmp_path, {"seeds": [0], "learned_min": 0.85}))
    assert sw.learned_min == 0.85 and sweep_state(sw, {}, "local")["learned_min"] == 0.85

    root = fake_sweep_dir(tmp_path / "sw")
    state = json.loads((root / "sweep.json").read_text())
    for i, run in enumerate(r for r in state["runs"] if r["status"] == "complete"):
        path = root / run["dir"] / "transfer/summary.json"
        summary = json.loads(path.read_text())
        summary["methods"]["beta_vae"]["normalised"]["source"]["mean"] = [0.8, 0.1, 0.9, 0.85, 0.5][i]
        path.write_text(json.dumps(summary))
    default = [r[LEARNED_KEY] is not None for r in collect_sweep(root)["rows"] if r["method"]]
    assert LEARNED_MIN < 0.5 and default == [True, False, True, True, True]
    (root / "sweep.json").write_text(json.dumps({**state, "learned_min": 0.85}))
    data = collect_sweep(root)
    assert data["learned_min"] == 0.85
    assert [r[LEARNED_KEY] is not None for r in data["rows"] if r["method"]] == [False, False, True, True, False]
    write_sweep_report(root, reps=50)
    res = json.loads((root / "sweep_results.json").read_text())
    assert res["correlations"]["views"][LEARNED_KEY]["label"] == "target score, policies that learned (source ≥ 0.85)"
    assert res["correlations"]["views"][LEARNED_KEY]["per_metric"]["mig"]["n"] == 2
    assert "2 of 5 learned the source task (≥ 0.85)" in (root / "sweep_report.html").read_text()
    assert main(["report", str(root)]) == 0
    assert "ρ vs target, learned (≥ 0.85) [95% CI]" in capsys.readouterr().out


def test_a_perfectly_monotone_metric_gets_rho_one_and_a_collapsed_ci():
    """ρ is rank-based: any strictly increasing function of the target score gives 1 and every
    bootstrap resample of monotone pairs does too (ties resample together), so the CI is [1, 1];
    a strictly decreasing one gives −1 and [−1, −1]; noise gives a CI that is not a point."""
    rng = np.random.default_rng(3)
    y = rng.uniform(-0.2, 1.0, size=12)
    rows = [{"metrics": {"mono": float(np.exp(3 * v)), "anti": float(-v**3), "noise": float(rng.normal())},
             "udr": None, "frozen": True, "target_score": float(v), "transfer_ratio_mean": None} for v in y]
    c = correlations({"metrics": ["mono", "anti", "noise"], "rows": rows}, reps=400, seed=5)
    per = c["per_metric"]
    assert per["mono"]["rho"] == pytest.approx(1.0) and per["mono"]["ci"] == pytest.approx([1.0, 1.0])
    assert per["anti"]["rho"] == pytest.approx(-1.0) and per["anti"]["ci"] == pytest.approx([-1.0, -1.0])
    assert per["noise"]["ci"][1] - per["noise"]["ci"][0] > 0.2 and per["noise"]["ci"][0] <= per["noise"]["rho"] <= per["noise"]["ci"][1]
    assert c["best"] == "mono" and per["mono"]["n"] == 12
    assert correlations({"metrics": ["mono", "anti", "noise"], "rows": rows}, reps=400, seed=5) == c  # seeded
