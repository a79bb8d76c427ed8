"""A corpus of malformed configs and sweep files: each gives one line on stderr, exit 2, no traceback.

Every file in ``tests/darla/malformed/`` starts with ``# expect: <text>``: the dotted key (or the
YAML position) its error line must name, beside the file's own path. ``config_*.yaml`` go through
``darla pipeline FILE``, ``sweep_*.yaml`` through ``darla sweep FILE``; nothing may start training,
so the test fails loudly if a file is (by mistake) valid.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import darla.pipeline
import darla.sweep
from darla.cli import main

CORPUS = Path(__file__).parent / "malformed"
FILES = sorted(CORPUS.glob("*.yaml"))


def expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: <key>'"
    return first.removeprefix("# expect: ").strip()


def test_corpus_is_large_enough():
    assert len([f for f in FILES if f.name.startswith("config_")]) >= 15
    assert len([f for f in FILES if f.name.startswith("sweep_")]) >= 15
    assert len(FILES) >= 30


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_malformed_file_gives_one_line(path: Path, capsys, monkeypatch):
    def must_not_run(*a, **k):
        raise AssertionError(f"{path.name} was accepted: it started a run")

    monkeypatch.setattr(darla.pipeline, "run_pipeline", must_not_run)
    monkeypatch.setattr(darla.sweep, "run_sweep", must_not_run)
    cmd = "sweep" if path.name.startswith("sweep_") else "pipeline"
    code = main([cmd, str(path), "--no-progress"] if cmd == "pipeline" else [cmd, str(path)])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"darla: config error: {path}: "), err
    assert expected(path) in err, err
    assert "Traceback" not in err and out == ""
