"""Hostile and careless input on the real CLI (issue 17): bounded YAML, sizes checked against the
machine, reserved names, nothing unpickled from a run directory, late failures made early.

Each test drives ``darla`` itself (in-process through :func:`darla.cli.main`, or as a child
process where time and memory are what is measured) and asserts one line on stderr, the exit
status, and no traceback.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

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


# -- 7. nothing from a run directory is unpickled unless this user's darla signed it -----------------
class Payload:
    """Unpickling this runs ``touch MARKER``: what a hostile file in a run directory would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def rewrite_zip(src: Path, dst: Path, members: dict[str, bytes]) -> None:
    """``src`` with ``members`` replaced or added, as an attacker with the file would make it."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename not in members:
                zout.writestr(info, zin.read(info))
        for name, data in members.items():
            zout.writestr(name, data)


def poisoned_data(model_zip: Path, marker: Path) -> bytes:
    """SB3's ``data`` member with a cloudpickled payload where SB3 stores the policy class."""
    data = json.loads(zipfile.ZipFile(model_zip).read("data"))
    data["policy_class"][":serialized:"] = base64.b64encode(pickle.dumps(Payload(marker))).decode()
    return json.dumps(data).encode()


def payload_is_live(model_zip: Path, marker: Path) -> None:
    """Prove a crafted file is dangerous: SB3's own ``load`` (in a child process) runs the payload."""
    code = "import sys; from stable_baselines3 import PPO\ntry:\n    PPO.load(sys.argv[1])\nexcept Exception:\n    pass\n"
    subprocess.run([sys.executable, "-c", code, str(model_zip)], cwd=REPO, capture_output=True, timeout=120)
    assert marker.exists(), "the crafted payload does not run under SB3's load: the test would prove nothing"
    marker.unlink()


def reseal(root: Path, rel: str) -> None:
    """Re-hash ``rel`` in every manifest entry and re-seal the manifest, as an attacker can."""
    from darla.runs import RunDir
    from vision.io import file_sha256

    rd = RunDir(root)
    m = rd.manifest()
    for entry in m["stages"].values():
        if rel in entry.get("sha256", {}):
            entry["sha256"][rel] = file_sha256(root / rel)
    rd.write_manifest(m)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run through stage 2 (vision + one PPO policy), made by the real CLI."""
    import yaml
    from conftest import TINY

    tmp = tmp_path_factory.mktemp("run")
    raw = json.loads(json.dumps(TINY))
    raw["runs_dir"] = str(tmp / "runs")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["agent", "train", str(cfg), "--no-progress"]) == 0
    return cfg, tmp / "runs" / "tiny"


def copy_run(trained_run, tmp_path: Path) -> tuple[Path, Path]:
    cfg, root = trained_run
    shutil.copytree(root, tmp_path / "run")
    return cfg, tmp_path / "run"


POLICY = "agent/beta_vae/ppo_seed0"


def test_hostile_vision_pt_is_not_a_darla_checkpoint(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "model.pt"
    torch.save({"format": "darla-vision/1", "model": "beta_vae", "state_dict": {}, "x": Payload(marker)}, evil)
    for argv in (["vision", "traverse", str(evil)], ["vision", "score", str(evil)]):
        assert main(argv) == 1
        line = one_line(capsys.readouterr().err, "darla: error: ")
        assert f"{evil} is not a darla vision checkpoint" in line
        assert "truncated or corrupted" not in line and "weights_only" not in line
    assert not marker.exists()


@pytest.mark.subprocess  # payload_is_live runs SB3's load in a child
def test_hostile_model_zip_never_runs_under_transfer_eval(trained_run, tmp_path, capsys):
    """A crafted model.zip, manifest re-hashed: the policy is read as weights only, so a payload in
    SB3's data never runs (transfer goes ahead), and one in policy.pth is refused."""
    from darla.runs import RunDir

    cfg, root = copy_run(trained_run, tmp_path)
    marker = tmp_path / "PWNED"
    model_zip = root / POLICY / "model.zip"
    evil = tmp_path / "evil.zip"
    rewrite_zip(model_zip, evil, {"data": poisoned_data(model_zip, marker)})
    payload_is_live(evil, marker)
    shutil.copyfile(evil, model_zip)
    reseal(root, f"{POLICY}/model.zip")
    assert main(["transfer", "eval", str(cfg), "--run-dir", str(root), "--no-progress"]) == 0, capsys.readouterr().err
    assert not marker.exists() and (root / "transfer/episodes.csv").exists()

    buf = io.BytesIO()
    torch.save({"w": Payload(marker)}, buf)
    rewrite_zip(evil, model_zip, {"policy.pth": buf.getvalue()})
    reseal(root, f"{POLICY}/model.zip")
    RunDir(root).invalidate("transfer")
    capsys.readouterr()
    assert main(["transfer", "eval", str(cfg), "--run-dir", str(root), "--no-progress"]) == 1
    line = one_line(capsys.readouterr().err, "darla: error: ")
    assert f"{model_zip} is not a darla policy" in line and "weights_only" not in line
    assert not marker.exists()


@pytest.mark.subprocess  # payload_is_live runs SB3's load in a child
def test_unsigned_checkpoint_zip_is_never_unpickled(trained_run, tmp_path, capsys):
    """A crafted resume checkpoint (payloads in SB3's data and in darla's resume state, a forged
    tag): refused before anything in it is unpickled, with one line saying how to go on."""
    from darla.runs import RunDir

    cfg, root = copy_run(trained_run, tmp_path)
    marker = tmp_path / "PWNED"
    model_zip = root / POLICY / "model.zip"
    ckpt = root / POLICY / "checkpoint.zip"
    rewrite_zip(model_zip, ckpt, {
        "data": poisoned_data(model_zip, marker), "darla_resume.pkl": pickle.dumps(Payload(marker)),
        "darla_hmac": b"0" * 64,
    })
    payload_is_live(ckpt, marker)
    RunDir(root).invalidate("agent")
    model_zip.unlink()
    assert main(["agent", "train", str(cfg), "--run-dir", str(root), "--no-progress"]) == 1
    line = one_line(capsys.readouterr().err, "darla: error: ")
    assert f"{ckpt} was not written by darla under your key" in line and "delete it to restart" in line
    assert not marker.exists() and ckpt.exists()


def test_weights_only_policy_acts_as_sb3_loaded_one(trained_run, tmp_path):
    """The rebuilt policy equals what SB3's (unsafe) load gives on a trusted file: same weights, same actions."""
    import numpy as np
    from stable_baselines3 import PPO

    from agents.train import load_agent

    _, root = trained_run
    ours = load_agent(root / POLICY / "model.zip")
    theirs = PPO.load(root / POLICY / "model.zip")  # a file this test just trained: trusted
    a, b = ours.policy.state_dict(), theirs.policy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    obs = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    assert np.array_equal(ours.predict(obs, deterministic=True)[0], theirs.predict(obs, deterministic=True)[0])


# -- 8. late failures made early: exit 2, one line naming the key or argument -------------------------
def test_vision_checkpoint_is_checked_at_load_before_any_frame(tiny_raw, tmp_path, capsys, monkeypatch):
    """Not a checkpoint, a hostile one, one with bogus recorded kwargs, one that does not fit:
    each refused by `darla pipeline` with exit 2, before stage 1 collects a frame."""
    import yaml

    import darla.stages.vision
    from vision.checkpoint import save_atomic, save_checkpoint
    from vision.vae import BetaVAE

    def must_not_collect(*a, **k):
        raise AssertionError("frames were collected")

    monkeypatch.setattr(darla.stages.vision, "collect_frames", must_not_collect)
    torch.manual_seed(0)
    good = save_checkpoint(tmp_path / "good.pt", BetaVAE((3, 32, 32), 4, channels=[8, 8, 16, 16], hidden=32))
    record = torch.load(good, weights_only=True)
    # resealed (save_atomic), as anyone can: the seal is integrity, not authenticity
    save_atomic({**record, "kwargs": {**record["kwargs"], "hidden": "wide"}}, tmp_path / "bogus.pt")
    save_atomic({**record, "kwargs": {**record["kwargs"], "hiden": 32}}, tmp_path / "typo.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    marker = tmp_path / "PWNED"
    torch.save({"format": "darla-vision/1", "x": Payload(marker)}, tmp_path / "evil.pt")
    cases = {
        "text.pt": "is not a readable vision checkpoint (not a torch file)",
        "evil.pt": "is not a darla vision checkpoint",
        "bogus.pt": "its recorded arguments do not build vision model 'beta_vae'",
        "typo.pt": "records arguments ['hiden'] that vision model 'beta_vae' does not take",
    }
    tiny_raw["runs_dir"] = str(tmp_path / "runs")
    for name, message in cases.items():
        tiny_raw["vision"]["checkpoint"] = str(tmp_path / name)
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(yaml.safe_dump(tiny_raw))
        assert main(["pipeline", str(cfg), "--no-progress"]) == 2, name
        line = one_line(capsys.readouterr().err)
        assert line.startswith(f"darla: config error: {cfg}: vision.checkpoint: {tmp_path / name}") and message in line, line
    tiny_raw["vision"].update(checkpoint=str(good), latent_dim=6)
    cfg.write_text(yaml.safe_dump(tiny_raw))
    assert main(["pipeline", str(cfg), "--no-progress"]) == 2
    assert "does not fit this config: latent_dim: checkpoint has 4, expected 6" in one_line(capsys.readouterr().err)
    assert not marker.exists() and not (tmp_path / "runs").exists()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width × height`` (a few hundred bytes; decoding it would need GBs)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("argv, message", [
    (["vision", "traverse", "CKPT", "--env", "nope"], "--env: unknown env 'nope'; choose from reacher, seek_avoid"),
    (["scan", "imagine", "RUN", "red object", "--n", "-3"], "--n: the number of samples must be in 1 … 256, got -3"),
    (["scan", "imagine", "RUN", "red object", "--n", "0"], "--n: the number of samples must be in 1 … 256, got 0"),
    (["scan", "describe", "RUN", "HUGE"], "IMAGE: HUGE is 60000×60000; vision models take at most 4096×4096"),
    (["scan", "describe", "RUN", "TEXT"], "IMAGE: TEXT is not an image Pillow can read"),
    (["vision", "traverse", "CKPT", "--out", "NEW/dir/t.png"], "--out: directory NEW/dir does not exist; create it first"),
    (["vision", "score", "CKPT", "--out", "NEW/s.json"], "--out: directory NEW does not exist"),
    (["scan", "imagine", "RUN", "red object", "--out", "NEW/i.png"], "--out: directory NEW does not exist"),
    (["pipeline", "CFG", "--update", "--force"], "--update and --force contradict each other"),
])
def test_bad_arguments_are_exit_2_one_line(argv, message, tmp_path, capsys):
    paths = {"CKPT": tmp_path / "model.pt", "RUN": tmp_path / "run", "HUGE": tmp_path / "huge.png",
             "TEXT": tmp_path / "notes.png", "NEW": tmp_path / "new", "CFG": MALFORMED / "_base" / "tiny.yaml"}
    paths["HUGE"].write_bytes(png_header(60_000, 60_000))
    paths["TEXT"].write_text("not an image\n")

    def sub(text: str) -> str:
        for k, v in paths.items():
            text = text.replace(k, str(v))
        return text

    assert main([sub(a) for a in argv]) == 2
    assert sub(message) in one_line(capsys.readouterr().err, "darla: error: ")
    assert not paths["NEW"].exists() and not paths["RUN"].exists()


# -- 9. messages that name the path; a preflight sized by what is left ------------------------------
def fake_stages(monkeypatch, fail: dict[str, OSError] | None = None) -> list[str]:
    """Stages that only record themselves complete (or raise ``fail[name]``): the bookkeeping, no training."""
    import darla.pipeline as pipeline

    calls: list[str] = []

    def fake(name):
        def stage(cfg, rd, **kw):
            calls.append(name)
            if fail and name in fail:
                raise fail[name]
            return rd.complete(name, [], {})
        return stage

    for name in pipeline.STAGE_FUNCS:
        monkeypatch.setitem(pipeline.STAGE_FUNCS, name, fake(name))
    return calls


def free_space(monkeypatch, free: int) -> None:
    from collections import namedtuple

    import darla.runs

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(darla.runs.shutil, "disk_usage", lambda p: usage(100 * 2**30, 100 * 2**30 - free, free))


def test_full_disk_then_a_resume_that_needs_little_space(tiny_raw, tmp_path, capsys, monkeypatch):
    """ENOSPC from a write() that names no file: the line names the stage's directory. The resume
    is then sized by the stages left, so freeing a little space is enough; a fresh run is not."""
    import errno

    import yaml

    from darla.config import load_config
    from darla.pipeline import space_needed
    from darla.runs import RunDir
    from darla.stages import ALL_STAGES

    tiny_raw["runs_dir"] = str(tmp_path / "runs")
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_raw))
    root = tmp_path / "runs" / "tiny"
    calls = fake_stages(monkeypatch, {"agent": OSError(errno.ENOSPC, "No space left on device")})
    assert main(["pipeline", str(cfg_path), "--no-progress"]) == 1
    line = one_line(capsys.readouterr().err, "darla: error: ")
    assert line == (f"darla: error: no space left on device writing {root / 'agent'}; free some space "
                    "(or use another --run-dir), then run the same command again to resume")
    assert calls == ["vision", "agent"] and RunDir(root).is_complete("vision")

    cfg = load_config(cfg_path)
    resume, left = space_needed(cfg, RunDir(root), ALL_STAGES)
    fresh, _ = space_needed(cfg, RunDir(tmp_path / "empty"), ALL_STAGES)
    assert left == ["agent", "transfer", "report"] and resume < fresh
    free_space(monkeypatch, (resume + fresh) // 2)  # enough for what is left, not for a whole run
    calls = fake_stages(monkeypatch)
    monkeypatch.setattr("darla.cli._print_summary", lambda root: None)  # the fake report wrote no results.json
    assert main(["pipeline", str(cfg_path), "--no-progress"]) == 0, capsys.readouterr().err
    assert calls == ["agent", "transfer", "report"]
    capsys.readouterr()
    assert main(["pipeline", str(cfg_path), "--no-progress", "--run-dir", str(tmp_path / "fresh")]) == 1
    line = one_line(capsys.readouterr().err, "darla: error: ")
    assert f"MiB free under {tmp_path / 'fresh'}; need at least" in line
    assert "for the stages left (vision, agent, transfer, report)" in line


def test_permission_denied_names_the_path(tiny_raw, tmp_path, capsys, monkeypatch):
    import errno

    import yaml

    tiny_raw["runs_dir"] = str(tmp_path / "runs")
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_raw))
    fake_stages(monkeypatch, {"transfer": PermissionError(errno.EACCES, "Permission denied")})
    assert main(["pipeline", str(cfg_path), "--no-progress"]) == 1
    line = one_line(capsys.readouterr().err, "darla: error: ")
    assert line.startswith(f"darla: error: permission denied writing {tmp_path / 'runs' / 'tiny' / 'transfer'}; check the permissions")


def test_a_zip_write_that_fails_names_the_zip(tmp_path):
    """SB3 writes its zips itself; zipfile's write() errors carry no file name: the atomic writer adds it."""
    import errno

    from agents.train import save_atomic

    class Model:
        def save(self, path):
            open(path, "wb").close()
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        save_atomic(Model(), tmp_path / "model.zip")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "model.zip")
    assert list(tmp_path.iterdir()) == []


def test_weights_only_dqn_keeps_its_exploration_rate(tmp_path):
    """DQN acts ε-greedily with the ε it had reached; SB3 keeps it in the pickled data darla no longer
    reads, so load_agent recomputes it from the schedule and meta.json's step count."""
    from stable_baselines3 import DQN

    from agents.train import AgentSpec, load_agent, train_agent
    from envs.registry import get_domain
    from vision.vae import BetaVAE

    torch.manual_seed(0)
    enc = BetaVAE((3, 32, 32), 4, channels=[8, 8, 16, 16], hidden=32).eval()
    spec = AgentSpec("seek_avoid", "source", size=32, max_steps=20, algo="dqn", total_timesteps=2000, n_envs=2, seed=0,
                     hyperparams={"learning_starts": 16, "buffer_size": 500, "train_freq": 8, "exploration_fraction": 2.0,
                                  "exploration_initial_eps": 1.0, "exploration_final_eps": 0.0},
                     policy_kwargs={"net_arch": [16]})
    res = train_agent(spec, enc, "h", get_domain("seek_avoid", "source"), tmp_path, progress=False, tensorboard=False)
    ours, theirs = load_agent(res.model_path), DQN.load(res.model_path)  # trusted: trained here
    assert 0.4 < theirs.exploration_rate < 0.6  # mid-schedule: a wrong ε would show
    assert abs(ours.exploration_rate - theirs.exploration_rate) < 1e-3


def test_a_missing_policy_file_is_named_as_missing_not_as_corrupted(tmp_path):
    from agents.train import read_policy_weights
    from vision.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="no such policy file") as missing:
        read_policy_weights(tmp_path / "model.zip")
    with pytest.raises(CheckpointError, match="is a directory, not a policy zip") as folder:
        read_policy_weights(tmp_path)
    for err in (missing, folder):
        assert "truncated or corrupted" not in str(err.value)
