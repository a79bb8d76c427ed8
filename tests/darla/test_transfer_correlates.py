"""benchmarks/transfer_correlates.py: Spearman ρ over encoders of what tracks transfer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_benchmark
from scipy.stats import spearmanr

DOMAINS = ["source", "target"]
FACTORS = ["good_x", "bad_x"]


def fake_encoder(tmp_path, name, *, mig, probe, ro_src, ro_tgt, src, tgt, ratio):
    run = tmp_path / name
    (run / "transfer").mkdir(parents=True)
    norm = {"source": {"iqm": src}, "target": {"iqm": tgt}}
    (run / "transfer" / "summary.json").write_text(json.dumps(
        {"domains": DOMAINS, "methods": {"m": {"normalised": norm, "transfer_ratio": {"target": ratio}}}}))
    (run / "metrics.json").write_text(json.dumps({"metrics": {"mig": {"mig": mig}}, "probe": {f: probe for f in FACTORS}}))
    (run / "readout.json").write_text(json.dumps({"encoders": {f"/x/{name}/model.pt": {"factors": {
        f: {"mlp": ro_src, "mlp target": ro_tgt} for f in FACTORS}}}}))
    return {"name": name, "run": name, "method": "m", "metrics": f"{name}/metrics.json", "readout": f"{name}/readout.json"}


def write_spec(tmp_path, entries):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(entries))
    return spec


def test_a_monotone_property_gets_rho_1_and_the_exact_p(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tc = load_benchmark("transfer_correlates")
    entries = [fake_encoder(tmp_path, f"e{i}", mig=0.01 * i, probe=0.9 - 0.1 * i, ro_src=0.5 + 0.1 * (i % 2),
                            ro_tgt=0.2 * i, src=0.5, tgt=0.1 * i + 0.05, ratio=0.3 * i)
               for i in range(4)]
    out = tc.main([str(write_spec(tmp_path, entries)), "--factors", *FACTORS, "--json", str(tmp_path / "o.json")])
    rho = out["rho"]
    # 4 encoders: only the identity and the reversal reach |ρ| = 1, so p = 2/4! exactly
    assert rho["score target ~ MIG"] == pytest.approx({"rho": 1.0, "p": 2 / 24, "n": 4})
    assert rho["ratio target ~ readout target"] == pytest.approx({"rho": 1.0, "p": 2 / 24, "n": 4})
    assert rho["score target ~ probe"] == pytest.approx({"rho": -1.0, "p": 2 / 24, "n": 4})
    assert np.isnan(rho["score target ~ score source"]["rho"])  # a constant property ranks nothing
    assert json.loads((tmp_path / "o.json").read_text())["encoders"]["e3"]["readout target"] == pytest.approx(0.6)
    assert "Spearman ρ over 4 encoders" in capsys.readouterr().out


def test_encoders_without_a_readout_count_everywhere_but_in_the_readouts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tc = load_benchmark("transfer_correlates")
    entries = [fake_encoder(tmp_path, f"e{i}", mig=0.01 * i, probe=0.1 * i, ro_src=0.1 * i, ro_tgt=0.1 * i,
                            src=0.1 * i, tgt=0.1 * i, ratio=0.1 * i) for i in range(5)]
    # e3 says it has no readout, e4 leaves the key out: both count for MIG, probe and scores only
    entries[3]["readout"] = None
    del entries[4]["readout"]
    rho = tc.main([str(write_spec(tmp_path, entries)), "--factors", *FACTORS])["rho"]
    assert rho["score target ~ probe"] == pytest.approx({"rho": 1.0, "p": 2 / 120, "n": 5})
    assert rho["score target ~ readout target"] == pytest.approx({"rho": 1.0, "p": 2 / 6, "n": 3})
    printed = capsys.readouterr().out
    assert "(n 3)" in printed and printed.count("—") == 2 * 2  # two readout rows, two encoders
    # with fewer than 3 readouts a readout's ρ is undefined, not an error
    for e in entries[1:3]:
        e["readout"] = None
    rho = tc.main([str(write_spec(tmp_path, entries)), "--factors", *FACTORS])["rho"]
    assert np.isnan(rho["ratio target ~ readout source"]["rho"]) and rho["ratio target ~ readout source"]["n"] == 1
    assert rho["ratio target ~ MIG"]["rho"] == pytest.approx(1.0)


def test_rho_is_spearmans_and_p_is_exact_or_sampled():
    tc = load_benchmark("transfer_correlates")
    rng = np.random.default_rng(0)
    for n in (5, 8, 11):
        x, y = rng.normal(size=n), rng.normal(size=n)
        x[1] = x[0]  # a tie: average ranks, as scipy's
        rho, p = tc.spearman_permutation(list(x), list(y))
        ref = spearmanr(x, y)
        assert rho == pytest.approx(ref.statistic)
        assert 0 < p <= 1 and abs(p - ref.pvalue) < 0.25  # the t-approximation is rough for small n


def test_refusals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tc = load_benchmark("transfer_correlates")
    entries = [fake_encoder(tmp_path, f"e{i}", mig=i, probe=i, ro_src=i, ro_tgt=i, src=i, tgt=i, ratio=i) for i in range(3)]
    with pytest.raises(SystemExit, match="at least 3"):
        tc.main([str(write_spec(tmp_path, entries[:2])), "--factors", *FACTORS])
    with pytest.raises(SystemExit, match="no probe of bad_y"):
        tc.main([str(write_spec(tmp_path, entries)), "--factors", "good_x", "bad_y"])
    with pytest.raises(SystemExit, match="no encoder /nowhere"):
        tc.main([str(write_spec(tmp_path, [{**entries[0], "readout_key": "/nowhere"}, *entries[1:]])), "--factors", *FACTORS])
    with pytest.raises(SystemExit, match="e0: cannot read .*nowhere.json: No such file"):
        tc.main([str(write_spec(tmp_path, [{**entries[0], "readout": "nowhere.json"}, *entries[1:]])), "--factors", *FACTORS])
    with pytest.raises(SystemExit, match="no method 'z'"):
        tc.main([str(write_spec(tmp_path, [{**entries[0], "method": "z"}, *entries[1:]])), "--factors", *FACTORS])
