"""benchmarks/factor_value.py: the loss a decoder saves by knowing each factor, squared error and Bernoulli."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import load_benchmark
from metric_toys import ToyData

from envs.registry import get_domain, get_env_info


def _script():
    return load_benchmark("factor_value")


def test_bernoulli_kl_is_the_cross_entropy_saved():
    fv = _script()
    x = np.array([0.0, 1.0, 1.0, 0.3, 0.3])
    m = np.array([0.0, 1.0, 0.5, 0.3, 0.6])
    kl = fv.bernoulli_kl(x, m)
    assert kl[:2] == pytest.approx([0.0, 0.0], abs=1e-5)  # an exact binary pixel, drawn exactly
    assert kl[2] == pytest.approx(math.log(2))
    assert kl[3] == pytest.approx(0.0, abs=1e-12)
    assert kl[4] == pytest.approx(0.3 * math.log(0.3 / 0.6) + 0.7 * math.log(0.7 / 0.4))


def test_toy_values_match_the_conditional_mean_by_hand():
    """In the toy data pixel j *is* factor j / size, so the blind decoder's best pixel is the mean
    of the factor's values, and only pixel j is saved."""
    fv = _script()
    data = ToyData()
    n = 50
    value = fv.factor_value(data, n, np.random.default_rng(0))
    rng = np.random.default_rng(0)  # the same draws: one batch of factors per factor, in order
    for j, (name, k) in enumerate(zip(data.factor_names, data.factor_sizes)):
        f = data.sample_factors(n, rng)
        x = f[:, j] / k
        m = (k - 1) / (2 * k)
        assert value[name]["squared_error"] == pytest.approx(np.mean((x - m) ** 2), rel=1e-5)  # the toy renders float32
        expected_kl = np.mean(x * np.log(np.where(x > 0, x, 1) / m) + (1 - x) * np.log((1 - x) / (1 - m)))
        assert value[name]["bernoulli"] == pytest.approx(expected_kl, rel=1e-5)
    share = fv.shares(value)
    for c in fv.LOSSES:
        assert sum(s[c] for s in share.values()) == pytest.approx(1.0)


def test_cli_on_reacher_prints_every_factor_and_writes_json(tmp_path, capsys):
    fv = _script()
    res = fv.main(["--env", "reacher", "--size", "32", "--frames", "8", "--json", str(tmp_path / "v.json")])
    out = capsys.readouterr().out
    data = get_env_info("reacher").ground_truth(32, get_domain("reacher", "vision"))
    for name in data.factor_names:
        assert name in out
        v = res["value"][name]
        assert v["squared_error"] > 0 and v["bernoulli"] > 0  # every factor of the vision domain is visible
    saved = json.loads((tmp_path / "v.json").read_text())
    assert saved["value"] == res["value"]


@pytest.mark.parametrize("argv, names", [
    (["--env", "nope"], "unknown env 'nope'"),
    (["--domain", "nope"], "unknown domain 'nope'"),
    (["--frames", "0"], "--frames must be at least 1"),
])
def test_bad_input_is_one_line_naming_it(argv, names, tmp_path, capsys):
    fv = _script()
    with pytest.raises(SystemExit) as e:
        fv.main([*argv, "--json", str(tmp_path / "v.json")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert names in err and "Traceback" not in err
    assert not (tmp_path / "v.json").exists()
