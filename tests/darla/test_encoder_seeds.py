"""benchmarks/encoder_seeds.py: runs of one config that differ in `seed`, pooled per method."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import load_benchmark

DOMAINS = ["source", "target"]
REFS = {"source": {"random": 0.0, "oracle": 10.0}, "target": {"random": 0.0, "oracle": 10.0}}


def fake_run(path, returns, env_seeds=(100, 101)):
    """A run directory's transfer outputs: returns[method][domain] = one return per agent seed
    (each seed's episodes all score it)."""
    (path / "transfer").mkdir(parents=True)
    methods = list(returns)
    (path / "transfer" / "summary.json").write_text(json.dumps({"domains": DOMAINS, "references": REFS, "method_order": methods}))
    with open(path / "transfer" / "episodes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "algo", "seed", "domain", "episode", "env_seed", "ret", "length"])
        for m in methods:
            for d in DOMAINS:
                for s, r in enumerate(returns[m][d]):
                    for e, es in enumerate(env_seeds):
                        w.writerow([m, "ppo", s, d, e, es, r, 100])
    return path


def test_per_run_columns_and_pooled_policies(tmp_path, capsys):
    es = load_benchmark("encoder_seeds")
    a = fake_run(tmp_path / "a", {"x": {"source": [4, 4, 4, 4], "target": [2, 2, 2, 2]},
                                  "y": {"source": [6, 6, 6, 6], "target": [6, 6, 6, 6]}})
    b = fake_run(tmp_path / "b", {"x": {"source": [8, 8, 8, 8], "target": [8, 8, 8, 8]},
                                  "y": {"source": [6, 6, 6, 6], "target": [3, 3, 3, 3]}})
    es.main([str(a), str(b), "--json", str(tmp_path / "out.json")])
    lines = {tuple(line.split()[:2]): line.split()[2:] for line in capsys.readouterr().out.splitlines()[3:]}
    assert lines[("x", "source")][:2] == ["0.40", "0.80"]  # each run's own encoder
    assert lines[("y", "target")][:2] == ["0.60", "0.30"]
    pooled = json.loads((tmp_path / "out.json").read_text())["pooled"]
    x, y = pooled["methods"]["x"], pooled["methods"]["y"]
    assert x["normalised"]["source"]["n_seeds"] == 8  # 2 runs × 4 agent seeds
    assert x["normalised"]["source"]["iqm"] == pytest.approx(0.6)  # the middle half: two 0.4s, two 0.8s
    # over encoders (then policies) the CI is the two encoders' spread
    enc = json.loads((tmp_path / "out.json").read_text())["over_encoders"]
    assert enc["iqm_ci"]["x"]["source"] == pytest.approx([0.4, 0.8])
    assert enc["iqm_ci"]["y"]["source"] == pytest.approx([0.6, 0.6])
    assert enc["probability_of_improvement"]["target"]["y"]["p"] == pytest.approx(0.5)
    assert x["transfer_ratio"]["target"] == pytest.approx(5 / 6)
    assert y["transfer_ratio"]["target"] == pytest.approx(0.75)
    poi = pooled["probability_of_improvement"]["target"]["y"]["p"]
    assert poi == pytest.approx(np.mean([[yv > xv or 0.5 * (yv == xv) for xv in [2] * 4 + [8] * 4] for yv in [6] * 4 + [3] * 4]))


def test_refuses_runs_scored_on_other_episodes(tmp_path):
    es = load_benchmark("encoder_seeds")
    r = {"x": {"source": [1, 2], "target": [1, 2]}}
    a = fake_run(tmp_path / "a", r)
    b = fake_run(tmp_path / "b", r, env_seeds=(100, 999))
    with pytest.raises(SystemExit, match="scored on"):
        es.main([str(a), str(b)])
    with pytest.raises(SystemExit, match="not in every run"):
        es.main([str(a), str(a), "--methods", "x", "z"])
    with pytest.raises(SystemExit, match="no transfer/episodes.csv"):
        (b / "transfer" / "episodes.csv").unlink()
        es.main([str(a), str(b)])


def test_refuses_a_domain_without_an_oracle(tmp_path):
    es = load_benchmark("encoder_seeds")
    a = fake_run(tmp_path / "a", {"x": {"source": [1, 2], "target": [1, 2]}})
    summary = json.loads((a / "transfer" / "summary.json").read_text())
    summary["references"]["target"]["oracle"] = None
    (a / "transfer" / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SystemExit, match="no oracle reference for target"):
        es.main([str(a), str(a)])
