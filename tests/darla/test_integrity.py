"""Bad bytes and busy directories: corrupted manifests and checkpoints, unwritable or full disks, locks.

A corrupted file is detected by its hash and named in one clear error, never silently used; a
run dir that cannot take the run fails before any training; two processes never share one run
(or sweep) directory. Most tests fake the stages, so only two of them train anything (tiny).
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import threading
from collections import namedtuple
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import darla.pipeline as pipeline
from darla.cli import main
from darla.runs import LOCK_FILE, MANIFEST_SEAL, RunDir, RunDirError
from vision.checkpoint import SEAL, CheckpointError, read_checkpoint, save_atomic, save_checkpoint
from vision.registry import load_checkpoint
from vision.train import CHECKPOINT, TrainSettings, train_vision
from vision.vae import BetaVAE

REPO = Path(__file__).resolve().parents[2]
SETTINGS = TrainSettings(steps=6, batch_size=16, lr=1e-3, checkpoint_every=3, log_every=3, device="cpu", seed=1, progress=False)


def run(cfg, root: Path, **kw) -> RunDir:
    return pipeline.run_pipeline(cfg, run_dir=root, progress=False, log=lambda m: None, **kw)


def fake_stages(monkeypatch, calls: list[str] | None = None) -> list[str]:
    """Stages that only record themselves as complete: the pipeline's bookkeeping without training."""
    calls = [] if calls is None else calls

    def fake(name):
        def stage(cfg, rd, **kw):
            calls.append(name)
            return rd.complete(name, [], {})
        return stage

    for name in pipeline.STAGE_FUNCS:
        monkeypatch.setitem(pipeline.STAGE_FUNCS, name, fake(name))
    return calls


def tiny_model(seed: int = 0) -> BetaVAE:
    torch.manual_seed(seed)
    return BetaVAE((3, 32, 32), 4, channels=[8, 8, 16, 16], hidden=32)


def tiny_frames(n: int = 32) -> np.ndarray:
    return (np.random.default_rng(0).random((n, 32, 32, 3)) > 0.6).astype(np.uint8) * 255


def flip_tensor_byte(path: Path, tensor: torch.Tensor, offset: int = 17) -> None:
    """Flip one bit inside ``tensor``'s raw bytes where they sit in the file (torch stores its storage verbatim)."""
    needle = bytes(tensor.untyped_storage())  # storage order (channels_last weights are not contiguous())
    raw = bytearray(path.read_bytes())
    at = raw.find(needle)
    assert at >= 0 and raw.find(needle, at + 1) < 0, "tensor bytes not found once in the file"
    raw[at + offset] ^= 0x10
    path.write_bytes(bytes(raw))


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("darla: error: "), err
    assert "Traceback" not in err
    return lines[0]


# -- the manifest ---------------------------------------------------------------------------------
HEX = "0" * 64
BAD_MANIFESTS = {
    "truncated": None,  # a real manifest cut in half, below
    "a list": "[]",
    "no stages": '{"darla_version": "0.1"}',
    "stages a list": '{"stages": []}',
    "entry a string": '{"stages": {"vision": "complete"}}',
    "hashes a list": '{"stages": {"vision": {"status": "complete", "sha256": ["vision/model.pt"]}}}',
    "hash not hex": '{"stages": {"vision": {"status": "complete", "sha256": {"vision/model.pt": "abc"}}}}',
    "path outside": json.dumps({"stages": {"vision": {"status": "complete", "sha256": {"../../etc/passwd": HEX}}}}),
    "status a number": '{"stages": {"vision": {"status": 1}}}',
    "attempts a list": '{"stages": {}, "attempts": []}',
    "attempt a string": '{"stages": {}, "attempts": {"agent": ["2026-12-07"]}}',
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_corrupted_or_malformed_manifest_is_one_clear_error(case, tiny_cfg, tmp_path, monkeypatch):
    calls = fake_stages(monkeypatch)
    root = tmp_path / "r"
    run(tiny_cfg, root)
    manifest = root / "manifest.json"
    text = BAD_MANIFESTS[case]
    manifest.write_text(manifest.read_text()[: len(manifest.read_text()) // 2] if text is None else text)
    calls.clear()
    with pytest.raises(RunDirError) as info:
        run(tiny_cfg, root)
    msg = str(info.value)
    assert str(manifest) in msg and "\n" not in msg
    assert ("is corrupted" if text is None else "is not a valid darla manifest") in msg
    assert calls == []  # nothing ran on it
    if case == "entry a string":
        assert "stages.vision: expected a mapping" in msg
    if case == "attempt a string":
        assert "attempts.agent: expected a list of mappings" in msg


def test_manifest_is_sealed_and_a_changed_value_is_detected(tiny_cfg, tmp_path, monkeypatch):
    fake_stages(monkeypatch)
    root = tmp_path / "r"
    rd = run(tiny_cfg, root)
    data = json.loads(rd.manifest_path.read_text())
    assert len(data[MANIFEST_SEAL]) == 64 and MANIFEST_SEAL not in rd.manifest()
    # a flipped value (still valid JSON, still a valid structure): the seal no longer matches
    data["stages"]["vision"]["trained"] = True
    rd.manifest_path.write_text(json.dumps(data))
    with pytest.raises(RunDirError, match=r"manifest\.json does not match its recorded sha256"):
        run(tiny_cfg, root)
    # edited by hand on purpose: without its seal it is read as written, and resealed on the next write
    del data[MANIFEST_SEAL]
    rd.manifest_path.write_text(json.dumps(data))
    assert rd.manifest()["stages"]["vision"]["trained"] is True
    rd.invalidate("report")
    assert MANIFEST_SEAL in json.loads(rd.manifest_path.read_text())
    assert rd.manifest()["stages"]["vision"]["trained"] is True


def test_a_stage_completed_twice_in_one_second_gets_two_stamps(tmp_path):
    """The ``finished`` stamp tells a re-run from a kept stage, even on a machine fast enough to redo it at once."""
    rd = RunDir(tmp_path / "r")
    first = rd.complete("report", [], {})["finished"]
    second = rd.complete("report", [], {})["finished"]
    assert first != second and rd.stage("report")["finished"] == second


# -- vision checkpoints ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 6-step tiny β-VAE: ``model.pt`` and the resume checkpoint ``checkpoint_last.pt``."""
    out = tmp_path_factory.mktemp("vision")
    train_vision(tiny_model(), tiny_frames(), SETTINGS, out)
    return out


def test_checkpoints_are_sealed(trained):
    for name in ("model.pt", CHECKPOINT):
        record = torch.load(trained / name, weights_only=True)
        assert len(record[SEAL]) == 64
    assert read_checkpoint(trained / CHECKPOINT)["train"]["step"] == 6


def _resume(out: Path):
    return train_vision(tiny_model(seed=5), tiny_frames(), SETTINGS, out)


@pytest.mark.parametrize("where", ["weights", "optimizer state"])
def test_bit_flipped_resume_checkpoint_is_refused(where, trained, tmp_path):
    out = tmp_path / "v"
    out.mkdir()
    ckpt = out / CHECKPOINT
    ckpt.write_bytes((trained / CHECKPOINT).read_bytes())

    def biggest(record):  # the largest tensor of the part under test
        if where == "weights":
            return max(record["state_dict"].values(), key=lambda t: t.numel())
        return max((v for s in record["train"]["optimizers"][0]["state"].values() for v in s.values()), key=lambda t: t.numel())

    before = biggest(torch.load(ckpt, weights_only=True))
    flip_tensor_byte(ckpt, before)
    assert not torch.equal(biggest(torch.load(ckpt, weights_only=True)), before)  # torch alone loads it silently
    with pytest.raises(CheckpointError, match=rf"{CHECKPOINT} does not match its recorded sha256 \(corrupted\); delete it"):
        _resume(out)
    assert not (out / "model.pt").exists()  # never used, nor replaced by a fresh start


def test_truncated_resume_checkpoint_is_refused(trained, tmp_path):
    out = tmp_path / "v"
    out.mkdir()
    raw = (trained / CHECKPOINT).read_bytes()
    (out / CHECKPOINT).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError) as info:
        _resume(out)
    msg = str(info.value)
    assert str(out / CHECKPOINT) in msg and "not a readable vision checkpoint" in msg and "truncated or corrupted" in msg
    assert "\n" not in msg


def test_changed_non_tensor_field_is_refused(trained, tmp_path):
    """The seal covers the plain values too (history, settings, step), not only tensors."""
    record = torch.load(trained / CHECKPOINT, weights_only=True)
    record["train"]["history"]["loss"][0] += 1.0
    torch.save(record, tmp_path / CHECKPOINT)  # the old seal kept, the content changed
    with pytest.raises(CheckpointError, match="does not match its recorded sha256"):
        read_checkpoint(tmp_path / CHECKPOINT)


def test_corrupted_model_checkpoint_is_refused(trained, tmp_path):
    good = trained / "model.pt"
    assert load_checkpoint(good) is not None
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(good.read_bytes())
    record = torch.load(good, weights_only=True)
    flip_tensor_byte(flipped, max(record["state_dict"].values(), key=lambda t: t.numel()))
    with pytest.raises(CheckpointError, match=r"flipped\.pt does not match its recorded sha256"):
        load_checkpoint(flipped)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:-300])
    with pytest.raises(CheckpointError, match=r"cut\.pt is not a readable vision checkpoint"):
        load_checkpoint(cut)


def test_unsealed_checkpoint_is_refused_and_scan_records_are_sealed(trained, tmp_path):
    record = torch.load(trained / "model.pt", weights_only=True)
    del record[SEAL]
    torch.save(record, tmp_path / "unsealed.pt")
    with pytest.raises(CheckpointError, match=r"unsealed\.pt records no sha256"):
        load_checkpoint(tmp_path / "unsealed.pt")
    # save_atomic seals any darla record (SCAN's too) and never mutates the caller's dict
    scan = {"format": "darla-scan/1", "scan": {"state_dict": {"w": torch.arange(64.0)}}, "vocab_words": ["a"]}
    save_atomic(scan, tmp_path / "scan.pt")
    assert SEAL not in scan
    assert read_checkpoint(tmp_path / "scan.pt", "darla-scan/1", "SCAN")["vocab_words"] == ["a"]
    flip_tensor_byte(tmp_path / "scan.pt", torch.arange(64.0), offset=100)
    with pytest.raises(CheckpointError, match="scan.pt does not match its recorded sha256"):
        read_checkpoint(tmp_path / "scan.pt", "darla-scan/1", "SCAN")


def test_save_atomic_full_disk_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    import builtins

    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, _):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builtins, "open", lambda p, mode="r", *a, **k: Full(real_open(p, mode, *a, **k)) if "w" in mode else real_open(p, mode, *a, **k))
    with pytest.raises(OSError) as info:
        save_checkpoint(tmp_path / "m.pt", tiny_model())
    monkeypatch.setattr(builtins, "open", real_open)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


# -- the CLI on a bad run directory, a full disk, a corrupted resume checkpoint --------------------
def _config_file(tiny_raw, tmp_path: Path, **vision) -> Path:
    tiny_raw["runs_dir"] = str(tmp_path / "runs")
    tiny_raw["vision"].update(vision)
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(tiny_raw))
    return p


def test_unwritable_run_dir_is_one_line(tiny_raw, tmp_path, capsys, monkeypatch):
    calls = fake_stages(monkeypatch)
    cfg = _config_file(tiny_raw, tmp_path)
    (tmp_path / "afile").write_text("not a directory")
    assert main(["pipeline", str(cfg), "--no-progress", "--run-dir", str(tmp_path / "afile" / "run")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot create run directory {tmp_path / 'afile' / 'run'}: a parent of it is a file" in line
    assert main(["pipeline", str(cfg), "--no-progress", "--run-dir", str(tmp_path / "afile")]) == 1
    assert "it exists and is not a directory" in one_error_line(capsys.readouterr().err)
    assert calls == []


def test_full_disk_fails_before_any_training(tiny_raw, tmp_path, capsys, monkeypatch):
    import darla.runs

    calls = fake_stages(monkeypatch)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(darla.runs.shutil, "disk_usage", lambda p: usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    cfg = _config_file(tiny_raw, tmp_path)
    assert main(["pipeline", str(cfg), "--no-progress"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"only 1 MiB free under {tmp_path / 'runs' / 'tiny'}" in line and "free some space" in line
    assert calls == [] and not (tmp_path / "runs/tiny/manifest.json").exists()


def test_disk_full_mid_stage_keeps_earlier_stages_and_is_one_line(tiny_raw, tmp_path, capsys, monkeypatch):
    """A real (tiny) vision stage, then ENOSPC when the agent stage saves: vision stays complete and intact."""
    import agents.train

    cfg = _config_file(tiny_raw, tmp_path, steps=6, checkpoint_every=3, n_frames=64)
    root = tmp_path / "runs/tiny"

    def full(model, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(agents.train, "save_atomic", full)
    assert main(["pipeline", str(cfg), "--no-progress"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "no space left on device writing " + str(root / "agent") in line and "run the same command again" in line
    rd = RunDir(root)
    assert rd.is_complete("vision") and not rd.is_complete("agent")  # hashes of vision/ re-checked
    assert isinstance(load_checkpoint(root / "vision/model.pt"), BetaVAE)
    with rd.lock():  # released on the error
        pass

    # the resume checkpoint of stage 1, bit-flipped, is refused on the next run (never used)
    ckpt = root / "vision" / CHECKPOINT
    flip_tensor_byte(ckpt, next(iter(torch.load(ckpt, weights_only=True)["state_dict"].values())), offset=3)
    rd.invalidate("vision")
    assert main(["vision", "train", str(cfg), "--no-progress"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"{ckpt} does not match its recorded sha256 (corrupted); delete it" in line


# -- the lock ----------------------------------------------------------------------------------------
@contextmanager
def held_by_another_thread(root: Path, kind: str = "run"):
    """Hold ``RunDir(root).lock(kind)`` in another thread (to flock, another thread is another holder)."""
    got, release, errors = threading.Event(), threading.Event(), []

    def hold():
        try:
            with RunDir(root).lock(kind):
                got.set()
                release.wait(30)
        except BaseException as e:  # noqa: BLE001 — reported below
            errors.append(e)
            got.set()

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    got.wait(30)
    assert not errors, errors
    try:
        yield
    finally:
        release.set()
        t.join(30)


def test_locked_run_dir_is_refused_at_once_and_free_after(tiny_cfg, tmp_path, monkeypatch):
    calls = fake_stages(monkeypatch)
    root = tmp_path / "r"
    with held_by_another_thread(root):
        with pytest.raises(RunDirError) as info:
            run(tiny_cfg, root)
        msg = str(info.value)
        assert msg.startswith(f"{root} is in use by another darla process (pid ") and msg.endswith("wait for it or stop it")
        assert "started " in msg
        assert calls == [] and not (root / "config.yaml").exists()
    run(tiny_cfg, root)
    assert calls[:3] == ["vision", "agent", "transfer"]
    assert (root / LOCK_FILE).read_text() == ""  # released: emptied, left in place


def test_lock_is_reentrant_in_one_thread(tiny_cfg, tmp_path, monkeypatch):
    """A sweep's run job locks its run dir around run_pipeline, which locks it again."""
    calls = fake_stages(monkeypatch)
    rd = RunDir(tmp_path / "r")
    with rd.lock():
        info = json.loads((rd.root / LOCK_FILE).read_text())
        assert {"pid", "host", "started", "command"} <= set(info)
        run(tiny_cfg, rd.root)
        assert (rd.root / LOCK_FILE).read_text()  # still held by the outer one
    assert "vision" in calls


def test_stale_lock_file_of_a_dead_process_does_not_block(tiny_cfg, tmp_path, monkeypatch):
    calls = fake_stages(monkeypatch)
    root = tmp_path / "r"
    root.mkdir()
    (root / LOCK_FILE).write_text(json.dumps({"pid": 999999999, "host": "gone", "started": "yesterday", "command": "darla pipeline"}))
    run(tiny_cfg, root)
    assert "vision" in calls


def test_lock_of_a_killed_process_is_released(tiny_cfg, tmp_path, monkeypatch):
    """Another process holds the lock: refused with its pid; SIGKILL it, and the run goes ahead."""
    calls = fake_stages(monkeypatch)
    root = tmp_path / "r"
    code = ("import sys; from pathlib import Path; from darla.runs import RunDir\n"
            "with RunDir(Path(sys.argv[1])).lock():\n    print('locked', flush=True); sys.stdin.readline()\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(root)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=rf"in use by another darla process \(pid {holder.pid}, started .*-c"):
            run(tiny_cfg, root)
    finally:
        holder.kill()
        holder.wait(30)
    assert json.loads((root / LOCK_FILE).read_text())["pid"] == holder.pid  # its details stay behind ...
    run(tiny_cfg, root)  # ... and block nothing
    assert "vision" in calls


def test_sweep_dir_lock_is_its_own(tiny_raw, tmp_path, monkeypatch):
    """A second sweep driver is refused; the sweep's lock does not block its runs' locks."""
    from darla.sweep import load_sweep, run_sweep

    base = _config_file(tiny_raw, tmp_path)
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(yaml.safe_dump({"base": base.name, "grid": {"vision.beta": [1.0, 2.0]}, "sweep_dir": "sw"}))
    sw = load_sweep(sweep_file)
    with held_by_another_thread(sw.sweep_dir, "sweep"):
        with pytest.raises(RunDirError, match=r"sw is in use by another darla process"):
            run_sweep(sw, log=lambda m: None)
        assert not (sw.sweep_dir / "sweep.json").exists()
    with RunDir(sw.sweep_dir).lock("sweep"):  # this thread drives the sweep; a run of it locks its own dir
        with RunDir(sw.run_dir(sw.runs[0])).lock():
            pass
