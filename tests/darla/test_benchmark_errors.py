"""The scripts in benchmarks/ report a failure the user can act on as darla does: one line, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from darla.cli import report_failures
from darla.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "reacher_methods.yaml"


def test_report_failures_gives_the_status_and_one_line(capsys):
    assert report_failures(lambda: {"points": []}, "x.py") == 0  # a script's result is not a status
    assert report_failures(lambda: None, "x.py") == 0
    assert report_failures(lambda: 3, "x.py") == 3
    assert report_failures(lambda: True, "x.py") == 0

    def bad_key():
        raise ConfigError("a.yaml (--set)", "vision.bta", "unknown key (did you mean 'beta'?)")

    def missing():
        raise FileNotFoundError(2, "No such file or directory", "runs/none/config.yaml")

    assert report_failures(bad_key, "x.py") == 2
    assert report_failures(missing, "x.py") == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "x.py: config error: a.yaml (--set): vision.bta: unknown key (did you mean 'beta'?)"
    assert err[1].startswith("x.py: error: ") and "runs/none/config.yaml" in err[1]
    assert len(err) == 2

    def bug():
        raise RuntimeError("a bug keeps its traceback")

    with pytest.raises(RuntimeError):
        report_failures(bug, "x.py")


def test_every_benchmark_script_reports_failures_as_darla_does():
    scripts = sorted((REPO / "benchmarks").glob("*.py"))
    assert len(scripts) > 10
    for path in scripts:
        tail = path.read_text().rstrip().splitlines()[-1].strip()
        assert tail == f'raise SystemExit(report_failures(main, "{path.name}"))', path.name


@pytest.mark.subprocess
@pytest.mark.parametrize("script, args, flag", [  # -o and --set are one option
    ("loss_gate_probe.py", [str(CONFIG), "--variant", "bern", "--out", "{tmp}"], "-o"),
    ("perception_curve.py", [str(CONFIG), "--out", "{tmp}"], "--set"),
    ("state_ceiling.py", ["--preset", "reacher_methods", "--steps", "10"], "-o"),
])
def test_a_bad_override_is_one_line_naming_file_and_key_exit_2(script, args, flag, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args, flag, "vision.bta=1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{script}: config error: ")
    assert "reacher_methods.yaml (--set): vision.bta: unknown key" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written before the config was checked
