"""Cross-run UDR: the sweep driver scores each model among the seeds of its stage-1 hyperparameters
into udr.json, and the sweep report reads it."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY

import vision.select
from darla.cli import main
from darla.config import config_from_dict
from darla.report.sweep import collect_sweep, udr_note, write_sweep_report
from darla.runs import RunDir
from darla.stages.common import domains_of
from darla.stages.vision import vision_ground_truth
from darla.sweep import load_sweep, run_sweep, vision_key
from darla.sweep.udr import CACHE_FILE, cross_run_udr, population_key
from vision.checkpoint import save_checkpoint
from vision.io import file_sha256
from vision.registry import load_checkpoint

#: Fewer images than the paper's 1,000 where a test scores again by hand; the sweep itself uses the default.
N_IMAGES = 200


def small_base() -> dict:
    """TINY with smaller budgets still: a whole run in a few seconds on one core. Vision keeps
    TINY's 30 steps: after 10, every latent's KL is still ≤ 0.01 (inactive) and UDR is 0."""
    raw = copy.deepcopy(TINY)
    raw["vision"].update(n_frames=128, beta=1.0)
    raw["agent"].update(total_timesteps=128)
    raw["transfer"]["n_episodes"] = 2
    return raw


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def trained_sweep(tmp_path_factory) -> Path:
    """Four runs, three vision models: β = 1 with seeds 0 and 1 (seed 1 twice, sharing one vision
    stage: the second run only changes transfer) and β = 4 with seed 0 alone. Tests copy it."""
    root = tmp_path_factory.mktemp("udr_sweep")
    (root / "base.yaml").write_text(yaml.safe_dump(small_base(), sort_keys=False))
    body = {"base": "base.yaml", "sweep_dir": "out", "list": [
        {"vision.beta": 1.0, "seed": 0},
        {"vision.beta": 1.0, "seed": 1},
        {"vision.beta": 1.0, "seed": 1, "transfer.n_episodes": 1},
        {"vision.beta": 4.0, "seed": 0},
    ]}
    (root / "s.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    sw = load_sweep(root / "s.yaml")
    assert len({r.vision_key for r in sw.runs}) == 3
    state = run_sweep(sw, workers=1, log=quiet)
    assert [r["status"] for r in state["runs"]] == ["complete"] * 4, state["runs"]
    return sw.sweep_dir


@pytest.fixture
def sweep_dir(trained_sweep, tmp_path) -> Path:
    dst = tmp_path / "out"
    shutil.copytree(trained_sweep, dst)
    return dst


def run_cfg(sweep_dir: Path, run: str):
    return config_from_dict(yaml.safe_load((sweep_dir / "runs" / run / "config.yaml").read_text()))


def rows_by_run(data: dict) -> dict[str, dict]:
    return {r["run"]: r for r in data["rows"] if r["encoder"] == "vision"}


def beta(sweep_dir: Path, run: str) -> float:
    return run_cfg(sweep_dir, run).vision.params["beta"]


def by_hand(sweep_dir: Path, runs: list[str], n: int) -> dict[str, float]:
    """udr_rank on the distinct models of ``runs``, on n images drawn with default_rng(0)."""
    paths = {file_sha256(sweep_dir / "runs" / r / "vision/model.pt"): sweep_dir / "runs" / r / "vision/model.pt" for r in runs}
    cfg = run_cfg(sweep_dir, runs[0])
    data = vision_ground_truth(cfg, domains_of(cfg)[0])
    rng = np.random.default_rng(0)
    images = data.sample_observations_from_factors(data.sample_factors(n, rng), rng)
    shas = sorted(paths)
    scores = vision.select.udr_rank([load_checkpoint(paths[s]) for s in shas], images)["scores"]
    return dict(zip(shas, scores))


def test_population_key_ignores_the_seed_only():
    def key(seed: int, beta: float) -> str:
        raw = small_base()
        raw["seed"], raw["vision"]["beta"] = seed, beta
        return population_key(config_from_dict(raw))

    assert key(0, 4.0) == key(1, 4.0) == key(7, 4.0) != key(0, 1.0)
    raw = small_base()
    raw["seed"] = 3
    cfg = config_from_dict(raw)
    assert vision_key(cfg) != population_key(cfg)  # seeds still split vision stages
    assert population_key(cfg, "b1") == population_key(cfg) + "/b1"


def fail(*a, **k):
    raise AssertionError("UDR recomputed")


def no_model_loads(monkeypatch) -> None:
    monkeypatch.setattr(vision.select, "udr_rank", fail)
    monkeypatch.setattr("vision.registry.load_checkpoint", fail)


def test_sweep_scores_each_model_among_its_seeds_and_the_report_reads_it(sweep_dir, capsys, monkeypatch):
    no_model_loads(monkeypatch)  # the sweep scored UDR (1,000 images, as the paper); the report reads it
    assert main(["report", str(sweep_dir)]) == 0
    monkeypatch.undo()
    capsys.readouterr()
    res = json.loads((sweep_dir / "sweep_results.json").read_text())
    rows = rows_by_run(res)
    assert len(rows) == 4
    pop = sorted(r for r in rows if beta(sweep_dir, r) == 1.0)
    alone = [r for r in rows if beta(sweep_dir, r) == 4.0]
    assert len(pop) == 3 and len(alone) == 1
    expected = by_hand(sweep_dir, pop, 1000)
    assert len(expected) == 2  # two runs share one model: three runs, two distinct models
    assert max(expected.values()) > 0.1  # active latents that agree: not a trivial 0
    for r in pop:
        row = rows[r]
        sha = file_sha256(sweep_dir / "runs" / r / "vision/model.pt")
        assert row["frozen"] and np.isfinite(row["udr"])
        assert row["udr"] == pytest.approx(expected[sha], abs=1e-12)
        assert row["udr_source"] == "seeds" and row["udr_n_models"] == 2
    seed1 = [r for r in pop if run_cfg(sweep_dir, r).seed == 1]
    assert len(seed1) == 2 and rows[seed1[0]]["udr"] == rows[seed1[1]]["udr"]  # rows sharing a model agree
    # a population of one model (β = 4 has one seed) has no UDR
    assert rows[alone[0]]["udr"] is None and rows[alone[0]]["udr_source"] is None
    sizes = sorted(p["n_models"] for p in res["udr"]["populations"])
    assert sizes == [1, 2] and res["udr"]["num_images"] == 1000
    # the per-(model, β) table and the HTML say where UDR comes from
    (g1,) = [g for g in res["groups"] if g["beta"] == "1.0"]
    assert g1["udr"] == pytest.approx(np.mean([rows[r]["udr"] for r in pop]))
    html = (sweep_dir / "sweep_report.html").read_text()
    assert "UDR: across 2 seeds of the same hyperparameters" in html and "single seed: no UDR" in html
    with open(sweep_dir / "sweep_results.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert sorted(r["udr_source"] for r in csv_rows) == ["", "seeds", "seeds", "seeds"]
    cache = json.loads((sweep_dir / CACHE_FILE).read_text())
    assert list(cache["populations"]) == [",".join(sorted(expected))]
    assert cache["populations"][",".join(sorted(expected))]["scores"] == [expected[s] for s in sorted(expected)]


def test_a_second_scoring_reuses_udr_json_and_a_retrained_model_is_stale_until_scored_again(sweep_dir, monkeypatch):
    cache_path = sweep_dir / CACHE_FILE
    cache_path.unlink()
    calls = []
    real = vision.select.udr_rank
    monkeypatch.setattr(vision.select, "udr_rank", lambda *a, **k: calls.append(1) or real(*a, **k))
    cross_run_udr(sweep_dir, num_images=N_IMAGES)
    assert calls == [1]
    first = rows_by_run(collect_sweep(sweep_dir))
    stamp = cache_path.stat().st_mtime_ns, cache_path.read_text()

    # scoring again with nothing new reads udr.json: no model is loaded, nothing is rewritten
    no_model_loads(monkeypatch)
    cross_run_udr(sweep_dir, num_images=N_IMAGES)
    assert (cache_path.stat().st_mtime_ns, cache_path.read_text()) == stamp
    again = rows_by_run(collect_sweep(sweep_dir))
    assert {r: row["udr"] for r, row in again.items()} == {r: row["udr"] for r, row in first.items()}

    # another image count is another score: recomputed (here: fails, reported, no UDR, no crash)
    cross_run_udr(sweep_dir, num_images=N_IMAGES + 1)
    other = collect_sweep(sweep_dir)
    (pop,) = [p for p in other["udr"]["populations"] if p["n_models"] == 2]
    assert "UDR recomputed" in pop["error"] and all(r["udr"] is None for r in other["rows"])
    monkeypatch.undo()
    cross_run_udr(sweep_dir, num_images=N_IMAGES)

    # retrain one model (here: perturb its weights) and record it: the report gives it no score and
    # says why, without loading a model; the next scoring sees a new set of models and scores it
    run = next(r for r, row in first.items() if row["udr"] is not None)
    path = sweep_dir / "runs" / run / "vision/model.pt"
    model = load_checkpoint(path)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p, generator=torch.Generator().manual_seed(0)))
    save_checkpoint(path, model)
    manifest = RunDir(sweep_dir / "runs" / run).manifest()
    manifest["stages"]["vision"]["sha256"]["vision/model.pt"] = file_sha256(path)
    (sweep_dir / "runs" / run / "manifest.json").write_text(json.dumps(manifest))
    no_model_loads(monkeypatch)
    stale = collect_sweep(sweep_dir)
    assert rows_by_run(stale)[run]["udr"] is None and stale["udr"]["stale"] == [f"{run}: vision/model.pt"]
    assert "retrained since udr.json was written" in udr_note(stale)
    monkeypatch.undo()
    calls.clear()
    monkeypatch.setattr(vision.select, "udr_rank", lambda *a, **k: calls.append(1) or real(*a, **k))
    cross_run_udr(sweep_dir, num_images=N_IMAGES)
    assert calls == [1]
    scored = sorted(r for r, row in first.items() if row["udr"] is not None)
    expected = by_hand(sweep_dir, scored, N_IMAGES)
    rows = rows_by_run(collect_sweep(sweep_dir))
    for r in scored:
        assert rows[r]["udr"] == pytest.approx(expected[file_sha256(sweep_dir / "runs" / r / "vision/model.pt")], abs=1e-12)
    assert rows[run]["udr"] != first[run]["udr"]
    cache = json.loads(cache_path.read_text())
    assert list(cache["populations"]) == [",".join(sorted(expected))]  # the old set is gone


def test_a_sweep_without_udr_json_is_scored_by_running_it_again(sweep_dir, trained_sweep, monkeypatch):
    (sweep_dir / CACHE_FILE).unlink()
    data = collect_sweep(sweep_dir)
    assert data["udr"]["missing"] and all(r["udr"] is None for r in data["rows"])
    assert "not scored yet" in udr_note(data)
    sw = load_sweep(trained_sweep.parent / "s.yaml", sweep_dir)
    monkeypatch.setattr("darla.sweep.executors.run_job", fail)  # every run is complete: none runs again
    run_sweep(sw, workers=1, log=quiet, udr_images=N_IMAGES)
    data = collect_sweep(sweep_dir)
    assert not data["udr"]["missing"] and sum(r["udr"] is not None for r in data["rows"]) == 3


def test_one_model_has_no_udr_and_within_run_udr_is_the_fallback(sweep_dir, monkeypatch):
    state = json.loads((sweep_dir / "sweep.json").read_text())
    # keep β = 4 and one β = 1 run: two populations of one model each
    keep = [r for r in state["runs"] if beta(sweep_dir, r["name"]) == 4.0]
    keep += [next(r for r in state["runs"] if beta(sweep_dir, r["name"]) == 1.0)]
    state["runs"] = keep
    (sweep_dir / "sweep.json").write_text(json.dumps(state))

    def never(*a, **k):
        raise AssertionError("a single model is never scored")

    monkeypatch.setattr(vision.select, "udr_rank", never)
    cross_run_udr(sweep_dir, num_images=N_IMAGES)
    data = collect_sweep(sweep_dir)
    assert [p["n_models"] for p in data["udr"]["populations"]] == [1, 1]
    assert all(r["udr"] is None and r["udr_source"] is None for r in data["rows"])
    assert json.loads((sweep_dir / CACHE_FILE).read_text())["populations"] == {}  # nothing scored, nothing cached
    # a run that selected its encoder by UDR among its own candidates keeps that score
    (sweep_dir / "runs" / keep[0]["name"] / "vision/udr.json").write_text(json.dumps({"scores": [0.3, 0.7], "best": 1}))
    rows = rows_by_run(collect_sweep(sweep_dir))
    assert rows[keep[0]["name"]]["udr"] == 0.7 and rows[keep[0]["name"]]["udr_source"] == "candidates"
    assert rows[keep[0]["name"]]["udr_n_models"] == 2 and rows[keep[1]["name"]]["udr"] is None
    html_paths = write_sweep_report(sweep_dir, reps=20)
    html = html_paths[-1].read_text()
    assert "vision.select: udr candidates" in html and "UDR: across" not in html


def test_darla_figure_on_a_trained_sweep_is_finite_and_a_monotone_metric_gets_rho_one(sweep_dir):
    """The correlation report on real run directories: every number finite; then a fake metric that
    is a strictly increasing function of each run's normalised target score gets ρ = 1, CI [1, 1]."""
    write_sweep_report(sweep_dir, reps=200)
    res = json.loads((sweep_dir / "sweep_results.json").read_text())
    rows = [r for r in res["rows"] if r["method"]]
    assert len(rows) == 4 and all(np.isfinite(r["target_score"]) for r in rows)
    assert len({r["target_score"] for r in rows}) > 1  # otherwise no ρ is defined below
    corr = res["correlations"]
    assert set(corr["views"]) == {"target_score", "target_score_learned", "transfer_ratio_mean", "source_score"}
    (udr,) = [c for name, c in corr["per_metric"].items() if name == "udr"]
    assert udr["n"] == 3  # the three β = 1 runs have a seed partner
    for view in corr["views"].values():
        for c in view["per_metric"].values():
            if c["rho"] is not None:  # undefined only where the metric or the score is constant
                assert np.isfinite([c["rho"], c["p"], *c["ci"]]).all()
    assert (sweep_dir / "darla_figure.png").stat().st_size > 1000

    by_run = {r["run"]: r["target_score"] for r in rows}
    for run, y in by_run.items():
        path = sweep_dir / "runs" / run / "vision/metrics.json"
        doc = json.loads(path.read_text()) if path.exists() else {"metrics": {}}
        doc["metrics"]["fake"] = {"fake": 2.0 ** (5 * y)}  # strictly increasing in y
        path.write_text(json.dumps(doc))
    write_sweep_report(sweep_dir, reps=200)
    corr = json.loads((sweep_dir / "sweep_results.json").read_text())["correlations"]
    fake = corr["per_metric"]["fake"]
    assert fake["n"] == 4 and fake["rho"] == pytest.approx(1.0) and fake["ci"] == pytest.approx([1.0, 1.0])
    assert corr["best"] == "fake"
