"""Fault injection on the real CLI: SIGKILL at random points, SIGINT, then the same command again.

Every run here is a separate ``python -m darla.cli`` process (one torch thread, like the
uninterrupted reference it is compared with), killed from outside as a crash or an impatient
user would. After the last rerun the results must equal the reference bit for bit: the vision
weights, the policy weights and every evaluation episode. Stages that were complete when a
process died must not run again (their manifest timestamps are unchanged).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from agents.train import load_agent
from darla.runs import RunDir

REPO = Path(__file__).resolve().parents[2]


def _tiny(tmp_path: Path, name: str) -> Path:
    """TINY with a vision stage long enough to be hit (≈2 s) and frequent checkpoints."""
    from conftest import TINY

    raw = copy.deepcopy(TINY)
    raw.update(name=name, runs_dir=str(tmp_path / "runs"))
    raw["vision"].update(steps=160, checkpoint_every=10)
    raw["agent"].update(total_timesteps=768, checkpoint_every=128)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    out = open(log, "a")  # noqa: SIM115 (closed by the child's exit; the parent only reads the file)
    return subprocess.Popen(
        [sys.executable, "-m", "darla.cli", *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a kill reaches any worker it spawned
    )


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Poll until ``pred()``; False if the process ended first."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        if proc.poll() is not None:
            return pred()
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the run to get there")


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 300.0) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"run did not finish; log:\n{log.read_text()[-3000:]}") from None


def _stamps(root: Path) -> dict[str, str]:
    try:
        return {k: v["finished"] for k, v in RunDir(root).manifest()["stages"].items() if v.get("status") == "complete"}
    except Exception:  # noqa: BLE001 (no manifest yet)
        return {}


def _results(root: Path) -> dict[str, object]:
    """What must not depend on interruptions: weights, policies, every evaluation episode."""
    vision = torch.load(root / "vision/model.pt", weights_only=True)["state_dict"]
    policy = load_agent(root / "agent/beta_vae/ppo_seed0/model.zip").policy.state_dict()
    return {
        "vision": {k: v.numpy() for k, v in vision.items()},
        "policy": {k: v.numpy() for k, v in policy.items()},
        "episodes": (root / "transfer/episodes.csv").read_text(),
    }


def _assert_same(a: dict, b: dict) -> None:
    for part in ("vision", "policy"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert np.array_equal(a[part][k], b[part][k]), f"{part} weight {k} differs from the uninterrupted run"
    assert a["episodes"] == b["episodes"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run of the same config, in its own process."""
    tmp = tmp_path_factory.mktemp("ref")
    cfg = _tiny(tmp, "faults")
    log = tmp / "ref.log"
    assert _finish(_start(["pipeline", str(cfg)], log), log) == 0, log.read_text()[-3000:]
    return _results(tmp / "runs/faults")


def test_sigkill_at_random_points_then_rerun_matches_an_uninterrupted_run(tmp_path, reference):
    rng = np.random.default_rng(7)
    cfg = _tiny(tmp_path, "faults")
    root = tmp_path / "runs/faults"
    log = tmp_path / "killed.log"
    # Each kill waits for its stage to be under way, then a random delay: mid-vision (between
    # checkpoints), mid-agent (between rollout checkpoints), then anywhere after that.
    points = [
        ("vision", lambda: (root / "vision/tb").exists(), rng.uniform(0.2, 1.5)),
        ("vision", lambda: (root / "vision/checkpoint_last.pt").exists(), rng.uniform(0.0, 0.8)),
        ("agent", lambda: (root / "agent/beta_vae/ppo_seed0/monitor").exists(), rng.uniform(0.0, 0.6)),
        ("later", lambda: "agent" in _stamps(root), rng.uniform(0.0, 2.0)),
    ]
    done_before: dict[str, str] = {}
    killed = 0
    for _stage, ready, delay in points:
        proc = _start(["pipeline", str(cfg)], log)
        if _wait_for(ready, proc):
            time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait()
        now = _stamps(root)
        for k, v in done_before.items():
            assert now.get(k) == v, f"stage {k} was redone after a kill"
        done_before = now
    assert killed >= 3, log.read_text()[-3000:]
    assert _finish(_start(["pipeline", str(cfg)], log), log) == 0, log.read_text()[-3000:]
    final = _stamps(root)
    for k, v in done_before.items():
        assert final[k] == v, f"stage {k} was redone after a kill"
    assert {"vision", "agent", "transfer", "report"} <= final.keys()
    assert "Traceback" not in log.read_text()
    _assert_same(_results(root), reference)


def test_sigint_checkpoints_exits_130_and_resumes_to_the_same_result(tmp_path, reference):
    cfg = _tiny(tmp_path, "faults")
    root = tmp_path / "runs/faults"
    log = tmp_path / "sigint.log"
    # 1. Ctrl-C during vision training, between two periodic checkpoints (every 10 steps).
    proc = _start(["pipeline", str(cfg)], log)
    _wait_for(lambda: (root / "vision/checkpoint_last.pt").exists(), proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    assert _finish(proc, log) == 130, log.read_text()[-3000:]
    text = log.read_text()
    assert "SIGINT received" in text and "interrupted; run the same command again" in text
    assert "Traceback" not in text
    step = torch.load(root / "vision/checkpoint_last.pt", weights_only=True)["train"]["step"]
    assert 0 < step < 160
    # 2. Ctrl-C during agent training: a checkpoint at the next rollout boundary, not the last periodic one.
    agent = root / "agent/beta_vae/ppo_seed0"
    proc = _start(["pipeline", str(cfg)], log)
    _wait_for(lambda: (agent / "tb").exists(), proc)  # created inside learn()
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert _finish(proc, log) == 130, log.read_text()[-3000:]
    assert RunDir(root).is_complete("vision") and not RunDir(root).is_complete("agent")
    assert (agent / "checkpoint.zip").exists() and "Traceback" not in log.read_text()
    # 3. The same command finishes the run, equal to one that was never interrupted.
    assert _finish(_start(["pipeline", str(cfg)], log), log) == 0, log.read_text()[-3000:]
    _assert_same(_results(root), reference)


# ---------------------------------------------------------------------------------------------
# a sweep
# ---------------------------------------------------------------------------------------------
def _tiny_sweep(tmp_path: Path) -> Path:
    """Two runs sharing one vision model (a grid over a stage-2 key), as in tests/darla/test_sweep.py."""
    from conftest import TINY

    base = copy.deepcopy(TINY)
    base["vision"].update(steps=120, checkpoint_every=10)
    base["agent"].update(total_timesteps=512, checkpoint_every=128)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump({"base": "base.yaml", "sweep_dir": "out", "grid": {"agent.hyperparams.gamma": [0.9, 0.99]}}))
    return p


def _sweep_results(out: Path) -> dict[str, dict]:
    state = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in state["runs"]] == ["complete"] * 2
    return {r["name"]: _results(out / r["dir"]) for r in state["runs"]}


def _sweep_stamps(out: Path) -> dict[str, str]:
    stamps = {}
    for d in [*(out / "runs").glob("*"), *(out / "vision").glob("*")] if out.exists() else []:
        stamps.update({f"{d.name}:{k}": v for k, v in _stamps(d).items()})
    return stamps


@pytest.fixture(scope="module")
def sweep_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep_ref")
    log = tmp / "ref.log"
    assert _finish(_start(["sweep", str(_tiny_sweep(tmp))], log), log) == 0, log.read_text()[-3000:]
    return _sweep_results(tmp / "out")


def test_sweep_killed_at_random_points_then_rerun_matches_an_uninterrupted_sweep(tmp_path, sweep_reference):
    rng = np.random.default_rng(11)
    spec = _tiny_sweep(tmp_path)
    out = tmp_path / "out"
    log = tmp_path / "killed.log"
    points = [  # mid shared stage 1, then mid the first run's stages 2–4
        lambda: any((out / "vision").glob("*/vision/checkpoint_last.pt")),
        lambda: any((out / "runs").glob("*/agent/*/*/tb")),
    ]
    done_before: dict[str, str] = {}
    killed = 0
    for ready in points:
        proc = _start(["sweep", str(spec)], log)
        if _wait_for(ready, proc):
            time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait()
        now = _sweep_stamps(out)
        assert all(now.get(k) == v for k, v in done_before.items()), "a completed stage was redone after a kill"
        done_before = now
    assert killed == 2, log.read_text()[-3000:]
    assert _finish(_start(["sweep", str(spec)], log), log) == 0, log.read_text()[-3000:]
    final = _sweep_stamps(out)
    assert all(final[k] == v for k, v in done_before.items()), "a completed stage was redone after a kill"
    assert "Traceback" not in log.read_text()
    got = _sweep_results(out)
    assert got.keys() == sweep_reference.keys()
    for name in got:
        _assert_same(got[name], sweep_reference[name])
