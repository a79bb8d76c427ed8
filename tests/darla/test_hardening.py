"""Hostile and careless input on the real CLI (issue 17): bounded YAML, sizes checked against the
machine, reserved names, nothing unpickled from a run directory, late failures made early.

Each test drives ``darla`` itself (in-process through :func:`darla.cli.main`, or as a child
process where time and memory are what is measured) and asserts one line on stderr, the exit
status, and no traceback.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from darla.cli import main

REPO = Path(__file__).resolve().parents[2]
MALFORMED = Path(__file__).parent / "malformed"


def one_line(err: str, prefix: str = "darla: config error: ") -> str:
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(prefix) and "Traceback" not in err, err
    return err.strip()


# -- 3. YAML alias bombs and deep nesting --------------------------------------------------------
@pytest.mark.subprocess
@pytest.mark.parametrize("cmd, name", [("pipeline", "config_alias_bomb.yaml"), ("sweep", "sweep_alias_bomb.yaml")])
def test_alias_bomb_is_refused_within_2_s_and_200_mb(cmd, name, tmp_path):
    """A 9^9-string billion-laughs file: refused by the real CLI before it is expanded."""
    hwm = tmp_path / "vmhwm"  # VmHWM: this process's own peak (ru_maxrss would include the forking parent's)
    peak = ("import atexit, runpy, sys; out = sys.argv.pop(1); atexit.register(lambda: open(out, 'w').write("
            "next(l for l in open('/proc/self/status') if l.startswith('VmHWM')))); "
            "runpy.run_module('darla.cli', run_name='__main__')")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", peak, str(hwm), cmd, str(MALFORMED / name)], cwd=REPO,
                          capture_output=True, text=True, timeout=30)  # unbounded, it grew to GBs in a minute
    wall = time.perf_counter() - t0
    kib = int(hwm.read_text().split()[1])
    assert proc.returncode == 2, proc.stderr
    assert "an alias bomb" in one_line(proc.stderr) and proc.stdout == ""
    assert wall < 2.0, f"took {wall:.2f} s"
    assert kib < 200 * 1024, f"peak RSS {kib / 1024:.0f} MiB"


def test_100k_deep_nesting_is_one_line(tmp_path, capsys):
    """It was a 3,000-line RecursionError (and minutes of scanning); now one line, at once."""
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\nvision: " + "[" * 100_000 + "]" * 100_000 + "\n")
    t0 = time.perf_counter()
    assert main(["pipeline", str(path)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line == f"darla: config error: {path}: nesting deeper than 64 levels at line 2, column 73"
    assert time.perf_counter() - t0 < 2.0
    sweep = tmp_path / "deep_sweep.yaml"
    sweep.write_text("base: x.yaml\ngrid: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n")
    assert main(["sweep", str(sweep)]) == 2
    assert "nesting deeper than 64 levels" in one_line(capsys.readouterr().err)


def test_oversized_config_is_refused_before_parsing(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    path.write_text("name: big\n" + "#" * (2 << 20) + "\n")
    assert main(["pipeline", str(path)]) == 2
    assert "a config or sweep file is at most 1024 KiB" in one_line(capsys.readouterr().err)
