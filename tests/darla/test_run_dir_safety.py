"""darla deletes or overwrites only inside a directory it made and marked, and ``--update`` never
costs the complete run it replaces. These drive the real CLI (``darla.cli.main``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

import darla.pipeline as pipeline
from darla.cli import main
from darla.config import load_config
from darla.runs import MARKER, SUPERSEDED, RunDir, RunDirError


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (but the lock file, rewritten by each run) → its sha256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"
    }


def write_cfg(tmp_path: Path, raw: dict, name: str = "tiny.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.fixture
def source_tree(tmp_path) -> Path:
    """A stand-in for a clone: a package with a vision/ directory and a README."""
    src = tmp_path / "clone"
    (src / "vision").mkdir(parents=True)
    (src / "vision" / "__init__.py").write_text("# the package\n")
    (src / "vision" / "model.py").write_text("x = 1\n")
    (src / "agent").mkdir()
    (src / "agent" / "notes.txt").write_text("mine\n")
    (src / "README.md").write_text("# a project\n")
    (src / "config.yaml").write_text("mine: true\n")
    return src


@pytest.mark.parametrize("extra", [["--force"], []])
def test_source_tree_survives_run_dir_dot(source_tree, tiny_raw, tmp_path, capsys, monkeypatch, extra):
    before = tree(source_tree)
    cfg = write_cfg(tmp_path, tiny_raw)
    monkeypatch.chdir(source_tree)
    assert main(["pipeline", str(cfg), "--run-dir", ".", "--no-progress", *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not empty and is not a darla run directory" in err
    assert tree(source_tree) == before
    assert not (source_tree / MARKER).exists() and not (source_tree / ".lock").exists()


def test_runs_only_in_new_empty_or_marked_dirs(tiny_raw, tmp_path):
    from darla.runs import claim_dir

    claim_dir(tmp_path / "new" / "run", "run")  # created, with its parents, and marked
    assert json.loads((tmp_path / "new/run" / MARKER).read_text())["kind"] == "run"
    claim_dir(tmp_path / "new" / "run", "run")  # its own: accepted again
    (tmp_path / "empty").mkdir()
    claim_dir(tmp_path / "empty", "run")
    assert (tmp_path / "empty" / MARKER).exists()
    with pytest.raises(RunDirError, match="is a darla run directory, not a sweep directory"):
        claim_dir(tmp_path / "empty", "sweep")  # --force on a run dir given as a sweep dir, and vice versa
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="exists and is not a directory"):
        claim_dir(tmp_path / "file", "run")


def test_a_run_written_before_the_marker_is_still_resumed(tmp_path):
    """A directory holding a valid darla manifest is darla's own run: it is claimed, not refused."""
    from darla.runs import claim_dir

    old = tmp_path / "old"
    RunDir(old).root.mkdir()
    RunDir(old).write_manifest({"stages": {}, "darla_version": "0.1.0"})
    (old / "config.yaml").write_text("name: x\n")
    claim_dir(old, "run")
    assert (old / MARKER).exists()
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text('{"stages": {}}')  # no darla_version: not darla's
    with pytest.raises(RunDirError, match="not a darla run directory"):
        claim_dir(fake, "run")


def test_force_removes_a_symlink_not_what_it_points_to(tiny_raw, tmp_path):
    from darla.config import config_from_dict

    cfg = config_from_dict(tiny_raw, "tiny.yaml")
    root = tmp_path / "run"
    RunDir(root).prepare("name: tiny\n", force=False)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep")
    (root / "vision").symlink_to(precious, target_is_directory=True)
    RunDir(root).prepare("name: tiny\n", force=True)
    assert not (root / "vision").exists() and (precious / "keep.txt").read_text() == "keep"
    assert cfg.name == "tiny"


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory):
    from conftest import TINY

    base = tmp_path_factory.mktemp("complete")
    raw = json.loads(json.dumps(TINY))
    raw["agent"]["total_timesteps"] = 128
    cfg = write_cfg(base, raw)
    root = base / "run"
    assert main(["pipeline", str(cfg), "--run-dir", str(root), "--no-progress"]) == 0
    return raw, root


def test_update_with_a_bad_value_keeps_the_complete_run(complete_run, tmp_path, capsys, monkeypatch):
    raw, src = complete_run
    root = tmp_path / "run"
    shutil.copytree(src, root)
    before = tree(root)
    bad = json.loads(json.dumps(raw))
    bad["agent"]["policy_kwargs"] = {"net_arch": "banana"}
    cfg = write_cfg(tmp_path, bad)
    capsys.readouterr()
    # a bad value is refused at load, before anything in the run is touched
    assert main(["pipeline", str(cfg), "--run-dir", str(root), "--update", "--no-progress"]) == 2
    assert "agent.policy_kwargs" in capsys.readouterr().err
    assert tree(root) == before

    # a value that only fails inside a re-run stage: the update is undone, the complete run stays
    good = json.loads(json.dumps(raw))
    good["agent"]["hyperparams"]["gamma"] = 0.5
    cfg = write_cfg(tmp_path, good)

    def failing(*a, **kw):
        raise RuntimeError("the transfer stage failed")

    monkeypatch.setitem(pipeline.STAGE_FUNCS, "transfer", failing)
    with pytest.raises(RuntimeError, match="transfer stage failed"):
        pipeline.run_pipeline(
            load_config(cfg), run_dir=root, update=True,
            progress=False, log=print,
        )
    out = capsys.readouterr().out
    assert "re-running agent, transfer, report" in out and "the update failed" in out  # it did start, then failed
    assert tree(root) == before  # config, manifest, agent, transfer and report all as they were
    assert not (root / SUPERSEDED).exists()
    monkeypatch.undo()
    assert main(["report", str(root)]) == 0  # and it is still a complete run


def test_update_keeps_old_results_until_the_new_ones_are_complete(complete_run, tmp_path, monkeypatch):
    raw, src = complete_run
    root = tmp_path / "run"
    shutil.copytree(src, root)
    old_agent = tree(root / "agent")
    new = json.loads(json.dumps(raw))
    new["agent"]["hyperparams"]["gamma"] = 0.5
    cfg = write_cfg(tmp_path, new)

    real = pipeline.STAGE_FUNCS["transfer"]

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    # interrupted during the update: the old results wait aside, the new agent is complete
    monkeypatch.setitem(pipeline.STAGE_FUNCS, "transfer", interrupted)
    assert main(["pipeline", str(cfg), "--run-dir", str(root), "--update", "--no-progress"]) == 130
    assert tree(root / SUPERSEDED / "agent") == old_agent
    assert (root / SUPERSEDED / "report.html").exists() and not (root / "report.html").exists()
    assert RunDir(root).is_complete("agent") and not RunDir(root).is_complete("transfer")
    # the same command again finishes the update, and only then deletes what it superseded
    monkeypatch.setitem(pipeline.STAGE_FUNCS, "transfer", real)
    assert main(["pipeline", str(cfg), "--run-dir", str(root), "--update", "--no-progress"]) == 0
    assert not (root / SUPERSEDED).exists()
    assert all(RunDir(root).is_complete(s) for s in ("vision", "agent", "transfer", "report"))
    meta = json.loads((root / "agent/beta_vae/ppo_seed0/meta.json").read_text())
    assert meta["spec"]["hyperparams"]["gamma"] == 0.5


def test_a_killed_restore_is_finished_by_the_next_run(complete_run, tmp_path):
    raw, src = complete_run
    root = tmp_path / "run"
    shutil.copytree(src, root)
    before = tree(root)
    new = json.loads(json.dumps(raw))
    new["transfer"]["n_episodes"] = 2
    from darla.config import config_from_dict

    run = RunDir(root)
    pipeline.supersede(run, ["transfer", "report"], "changed: true\n")
    (root / SUPERSEDED / "RESTORING").write_text("")  # as if killed mid-restore
    os.replace(root / SUPERSEDED / "transfer", root / "transfer")
    with pytest.raises(RunDirError):  # the restored run still has the old config: a change needs --update
        pipeline.run_pipeline(config_from_dict(new, "t.yaml"), run_dir=root, progress=False, log=lambda m: None)
    assert tree(root) == before


def test_force_and_update_together_are_refused(tiny_raw, tmp_path, capsys):
    cfg = write_cfg(tmp_path, tiny_raw)
    assert main(["pipeline", str(cfg), "--force", "--update"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "contradict" in err
