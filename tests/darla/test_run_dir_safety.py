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


def with_gamma(raw: dict) -> dict:
    """A copy of ``raw`` with a stage-2 change that every policy reads."""
    new = json.loads(json.dumps(raw))
    new["agent"]["hyperparams"]["gamma"] = 0.5
    return new


def stop_stage(monkeypatch, stage: str, exc: BaseException) -> None:
    """Make ``stage`` raise ``exc``: a failure (RuntimeError) or an interrupt (KeyboardInterrupt)."""
    def stopped(*a, **kw):
        raise exc

    monkeypatch.setitem(pipeline.STAGE_FUNCS, stage, stopped)


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
    cfg = write_cfg(tmp_path, with_gamma(raw))
    stop_stage(monkeypatch, "transfer", RuntimeError("the transfer stage failed"))
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
    cfg = write_cfg(tmp_path, with_gamma(raw))

    real = pipeline.STAGE_FUNCS["transfer"]
    # interrupted during the update: the old results wait aside, the new agent is complete
    stop_stage(monkeypatch, "transfer", KeyboardInterrupt())
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


def policy_weights(unit: Path) -> dict:
    """A stage-2 policy's weights, read from its model.zip (the zip's own timestamps aside)."""
    from agents.train import read_policy_weights

    return read_policy_weights(unit / "model.zip")


def side_by_side(raw: dict) -> dict:
    """``raw`` with a pixels method beside the default one and a second policy seed."""
    new = json.loads(json.dumps(raw))
    new["methods"] = {"beta_vae": {"encoder": "vision"}, "pixels": {"encoder": "pixels"}}
    new["agent"]["seeds"] = [0, 1]
    return new


def test_update_that_adds_a_method_and_a_seed_trains_only_those(complete_run, tmp_path, capsys):
    """A side by side grows without re-training what it has: the complete policy is kept as it
    was (files and manifest entry), and it is the policy the new config trains from scratch."""
    raw, src = complete_run
    root = tmp_path / "run"
    shutil.copytree(src, root)
    kept = "agent/beta_vae/ppo_seed0"
    files, entry = tree(root / kept), RunDir(root).stage(kept)
    cfg = write_cfg(tmp_path, side_by_side(raw))
    capsys.readouterr()
    assert main(["pipeline", str(cfg), "--run-dir", str(root), "--update", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "re-running agent, transfer, report; stage 1 and 1 complete policy it leaves alone are kept" in out
    assert "beta_vae ppo seed 0: complete, skipping" in out
    assert tree(root / kept) == files and RunDir(root).stage(kept) == entry
    run = RunDir(root)
    assert all(run.is_complete(f"agent/{m}/ppo_seed{s}") for m in ("beta_vae", "pixels") for s in (0, 1))
    assert all(run.is_complete(s) for s in ("vision", "agent", "transfer", "report"))
    assert not (root / SUPERSEDED).exists()
    results = json.loads((root / "results.json").read_text())["transfer"]
    assert set(results["methods"]) == {"beta_vae", "pixels"}

    fresh = tmp_path / "fresh"  # the same config from scratch: the same policies, bit for bit
    assert main(["pipeline", str(cfg), "--run-dir", str(fresh), "--no-progress"]) == 0
    for m in ("beta_vae", "pixels"):
        for s in (0, 1):
            a, b = policy_weights(root / f"agent/{m}/ppo_seed{s}"), policy_weights(fresh / f"agent/{m}/ppo_seed{s}")
            assert a.keys() == b.keys() and all(torch_equal(a[k], b[k]) for k in a), (m, s)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_a_failed_update_on_a_pending_partial_one_puts_the_exact_run_back(complete_run, tmp_path, monkeypatch, capsys):
    """A partial update left pending (interrupted), then a full one that fails: the complete run
    comes back file for file, the kept policy's copy and the new policies gone with the update."""
    raw, src = complete_run
    root = tmp_path / "run"
    shutil.copytree(src, root)
    before = tree(root)
    grown = side_by_side(raw)
    cfg = write_cfg(tmp_path, grown)
    stop_stage(monkeypatch, "transfer", KeyboardInterrupt())
    assert main(["pipeline", str(cfg), "--run-dir", str(root), "--update", "--no-progress"]) == 130
    assert RunDir(root).is_complete("agent/pixels/ppo_seed1") and (root / SUPERSEDED / "agent").is_dir()

    # on top of it, a change that reaches every policy: nothing is kept, and it fails
    cfg = write_cfg(tmp_path, with_gamma(grown))
    stop_stage(monkeypatch, "agent", RuntimeError("the agent stage failed"))
    capsys.readouterr()
    with pytest.raises(RuntimeError, match="agent stage failed"):
        pipeline.run_pipeline(load_config(cfg), run_dir=root, update=True, progress=False, log=print)
    out = capsys.readouterr().out
    assert "stage 1 is kept" in out and "the update failed" in out
    assert tree(root) == before
    assert not (root / SUPERSEDED).exists()


def test_an_interrupted_partial_update_continues_and_keeps_its_policies(complete_run, tmp_path, monkeypatch):
    """Killed after the old results went aside but before the kept policy was copied back: the
    same command again copies it back and trains only the new policies."""
    raw, src = complete_run
    root = tmp_path / "run"
    shutil.copytree(src, root)
    kept = "agent/beta_vae/ppo_seed0"
    files = tree(root / kept)
    copies = []

    def killed(src_dir, dst):
        copies.append(dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_copy_back", killed)
    cfg = write_cfg(tmp_path, side_by_side(raw))
    assert main(["pipeline", str(cfg), "--run-dir", str(root), "--update", "--no-progress"]) == 130
    assert copies == [root / kept] and not (root / "agent").exists()
    monkeypatch.undo()
    trained = []
    real = pipeline.STAGE_FUNCS["agent"]

    def agent(cfg, run, **kw):
        trained.extend(u for u in run.manifest()["stages"] if u.startswith("agent/"))
        return real(cfg, run, **kw)

    monkeypatch.setitem(pipeline.STAGE_FUNCS, "agent", agent)
    assert main(["pipeline", str(cfg), "--run-dir", str(root), "--update", "--no-progress"]) == 0
    assert trained == [kept]  # complete when the agent stage began: only the new ones were trained
    assert tree(root / kept) == files and not (root / SUPERSEDED).exists()
    assert RunDir(root).is_complete("agent/pixels/ppo_seed1")


def test_a_run_made_before_a_setting_existed_still_resumes_and_updates(complete_run, tmp_path, capsys):
    """A run whose config.yaml predates settings darla added since (absent from it) reads them at
    their defaults: the same config is the same run, and --update still adds a method. A key the
    file has with another value is still a change."""
    raw, src = complete_run
    root = tmp_path / "run"
    shutil.copytree(src, root)
    written = yaml.safe_load((root / "config.yaml").read_text())
    for section, key in (("vision", "fused_adam"), ("vision", "cuda_graph"), ("agent", "log_targets")):
        assert key in written[section]
        del written[section][key]
    (root / "config.yaml").write_text(yaml.safe_dump(written, sort_keys=False))
    before = tree(root)
    cfg = write_cfg(tmp_path, raw)
    capsys.readouterr()
    assert main(["pipeline", str(cfg), "--run-dir", str(root), "--no-progress"]) == 0
    assert "[agent] complete, skipping" in capsys.readouterr().out
    assert tree(root) == before  # nothing re-ran, and the file is left as it was

    plain = json.loads(json.dumps(raw))
    plain["vision"]["fused_adam"] = False  # not the default: a change to stage 1, refused
    assert main(["pipeline", str(write_cfg(tmp_path, plain)), "--run-dir", str(root), "--no-progress"]) == 1
    assert "changed: vision.fused_adam" in capsys.readouterr().err
    assert tree(root) == before

    assert main(["pipeline", str(write_cfg(tmp_path, side_by_side(raw))), "--run-dir", str(root), "--update", "--no-progress"]) == 0
    assert "stage 1 and 1 complete policy it leaves alone are kept" in capsys.readouterr().out
    assert RunDir(root).is_complete("report") and RunDir(root).is_complete("agent/pixels/ppo_seed1")
