"""The run directory: layout, manifest, atomic writes, resume bookkeeping.

A stage is complete only when its manifest entry is written — after its files, atomically
(write to a temporary file, then ``os.replace``). The manifest records each artifact's sha256,
so a truncated or tampered artifact is detected before it is used. The manifest seals itself the
same way (``manifest_sha256``, over its canonical JSON) and its structure is checked on every
read, so a corrupted manifest is an error naming it, never half-used.

One process at a time: :meth:`RunDir.lock` holds an exclusive ``flock`` on ``<root>/.lock`` for
a whole pipeline run (and a sweep holds one on its sweep directory). The kernel drops it when
the process dies, however it dies, so a lock file left behind never blocks anything.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import darla
from darla.errors import UserError
from vision.io import file_sha256, write_json_atomic, write_text_atomic

#: The lock file of a run (or sweep) directory; see :meth:`RunDir.lock`.
LOCK_FILE = ".lock"
#: The file that marks a directory as darla's own (JSON: kind, created, darla_version). darla
#: deletes or overwrites only inside a directory that carries it: one darla created, or found
#: empty and claimed (:func:`claim_dir`).
MARKER = ".darla-dir"
#: Superseded results of a pending ``--update``: kept until every re-run stage is complete.
SUPERSEDED = ".superseded"
#: The manifest's own content hash (over the rest of it); absent in manifests written by hand.
MANIFEST_SEAL = "manifest_sha256"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class RunDirError(UserError, RuntimeError):
    """A run directory that cannot be used as asked (config changed, corrupted artifact, ...)."""


def _manifest_sha256(data: dict[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k != MANIFEST_SEAL}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _manifest_problem(data: Any) -> str | None:
    """What is wrong with a parsed manifest's structure (a dotted key and why), or None."""
    if not isinstance(data, dict):
        return f"the top level is a {type(data).__name__}, not a mapping"
    stages = data.get("stages")
    if not isinstance(stages, dict):
        return "stages: missing or not a mapping"
    for name, entry in stages.items():
        if not isinstance(entry, dict):
            return f"stages.{name}: expected a mapping, got {type(entry).__name__}"
        if not isinstance(entry.get("status", ""), str):
            return f"stages.{name}.status: expected a string"
        hashes = entry.get("sha256", {})
        if not isinstance(hashes, dict):
            return f"stages.{name}.sha256: expected a mapping of file → sha256"
        for rel, digest in hashes.items():
            if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
                return f"stages.{name}.sha256.{rel}: not a sha256 hex digest"
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                return f"stages.{name}.sha256.{rel}: a path outside the run directory"
    attempts = data.get("attempts", {})
    if not isinstance(attempts, dict):
        return "attempts: not a mapping"
    for name, tries in attempts.items():
        if not isinstance(tries, list) or not all(isinstance(t, dict) for t in tries):
            return f"attempts.{name}: expected a list of mappings"
    return None


def versions() -> dict[str, str]:
    import gymnasium
    import numpy
    import stable_baselines3
    import torch

    return {
        "darla": darla.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "gymnasium": gymnasium.__version__,
        "stable_baselines3": stable_baselines3.__version__,
    }


def git_state(where: Path | None = None) -> dict[str, Any] | None:
    """The commit of the git checkout ``where`` (default: darla's own source) and whether tracked
    files differ from it; None when it is not a git checkout or git is unavailable."""
    import subprocess

    where = where or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: str) -> dict[str, Any]:
    """Where and how a run was started: command line, git state, device, CPU, host, time."""
    import torch

    dev = {"device": device, "cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.startswith("cuda") and torch.cuda.is_available():
        dev["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return {
        "command": " ".join(sys.argv)[:1000],
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "git": git_state(),
        **dev,
    }


def agent_unit(method: str, algo: str, seed: int) -> str:
    """One policy of stage 2: its manifest name, and its folder relative to the run dir."""
    return f"agent/{method}/{algo}_seed{seed}"


@dataclass
class RunDir:
    root: Path

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    # -- where the stages write: the run directory's layout is spelled here ------------------
    def vision_dir(self, method: str | None = None) -> Path:
        """Stage 1's folder, ``vision/``; with ``method``, that method's own encoder, ``vision/encoders/<method>/``."""
        return self.path("vision") if method is None else self.path("vision", "encoders", method)

    def vision_model(self, method: str | None = None) -> Path:
        """The vision checkpoint in :meth:`vision_dir`."""
        return self.vision_dir(method) / "model.pt"

    def dae_dir(self) -> Path:
        """The frozen DAE a β-VAE-DAE is trained against, ``vision/dae/``."""
        return self.path("vision", "dae")

    def agent_dir(self, method: str, algo: str, seed: int) -> Path:
        """One policy of stage 2, ``agent/<method>/<algo>_seed<seed>/`` (:func:`agent_unit`)."""
        return self.path(agent_unit(method, algo, seed))

    def reset_frames(self) -> Path:
        """Stage 3's seeded reset frames of every domain, for the report: ``transfer/reset_frames.npz``."""
        return self.path("transfer", "reset_frames.npz")

    # -- manifest --------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The manifest, structure and seal checked (the seal itself is not in the returned dict)."""
        if not self.manifest_path.exists():
            return {"stages": {}}
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunDirError(
                f"{self.manifest_path} is corrupted ({e}); move it away to re-run every stage, or use --force"
            ) from None
        except OSError as e:
            raise RunDirError(f"cannot read {self.manifest_path}: {e.strerror or e}") from None
        problem = _manifest_problem(data)
        if problem:
            raise RunDirError(
                f"{self.manifest_path} is not a valid darla manifest ({problem}); "
                "move it away to re-run every stage, or use --force"
            )
        recorded = data.pop(MANIFEST_SEAL, None)
        if recorded is not None and recorded != _manifest_sha256(data):
            raise RunDirError(
                f"{self.manifest_path} does not match its recorded sha256 (corrupted, or edited by hand: "
                f"then delete its {MANIFEST_SEAL!r} line); move it away to re-run every stage, or use --force"
            )
        return data

    def write_manifest(self, data: dict[str, Any]) -> None:
        """Write the manifest atomically, sealed with :data:`MANIFEST_SEAL`."""
        # Sealed as it will read back (tuples become lists, int keys strings): hash the round trip.
        body = json.loads(json.dumps({k: v for k, v in data.items() if k != MANIFEST_SEAL}))
        write_json_atomic(self.manifest_path, {**body, MANIFEST_SEAL: _manifest_sha256(body)})

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.manifest()["stages"].get(name)

    def is_complete(self, name: str) -> bool:
        """Complete = a manifest entry exists and every recorded artifact still has its hash."""
        entry = self.stage(name)
        if not entry or entry.get("status") != "complete":
            return False
        for rel, digest in entry.get("sha256", {}).items():
            p = self.root / rel
            if not p.exists():
                raise RunDirError(f"stage {name!r} is marked complete but {p} is missing; re-run with --force")
            if file_sha256(p) != digest:
                raise RunDirError(
                    f"stage {name!r}: {p} does not match the sha256 recorded in the manifest "
                    "(truncated or modified); re-run with --force"
                )
        return True

    def complete(self, name: str, artifacts: list[Path], info: dict[str, Any] | None = None, started: float | None = None) -> dict[str, Any]:
        """Record stage ``name`` as complete (call after its files are written)."""
        m = self.manifest()
        entry = {
            "status": "complete",
            "sha256": {str(p.relative_to(self.root)): file_sha256(p) for p in artifacts},
            # microseconds: a stage re-run within the same second must still get a new stamp
            "finished": datetime.now().astimezone().isoformat(timespec="microseconds"),
            **({"wall_time_s": round(time.time() - started, 3)} if started else {}),
            **(info or {}),
        }
        m["stages"][name] = entry
        m["darla_version"] = darla.__version__
        m["versions"] = versions()
        self.write_manifest(m)
        return entry

    def begin_attempt(self, name: str) -> None:
        """Note that stage ``name`` starts now (kept under the manifest's ``attempts``).

        A stage that is stopped and resumed runs in several attempts, and its ``wall_time_s`` is
        the last one's; the attempts let :meth:`end_attempt` give the stage's whole time, or say
        that an attempt ended without one (SIGKILL, power loss)."""
        m = self.manifest()
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        m.setdefault("attempts", {}).setdefault(name, []).append({"started": started})
        self.write_manifest(m)

    def end_attempt(self, name: str, seconds: float, outcome: str) -> None:
        """Record how the current attempt at ``name`` ended; a complete stage that took more than
        one attempt gets ``attempts`` and, when every attempt's time is known,
        ``wall_time_all_attempts_s`` (otherwise ``attempts_without_time``)."""
        m = self.manifest()
        attempts = m.get("attempts", {}).get(name)
        if not attempts:
            return
        attempts[-1].update({"wall_time_s": round(seconds, 3), "outcome": outcome})
        entry = m["stages"].get(name)
        if outcome == "complete" and entry is not None and len(attempts) > 1:
            entry["attempts"] = len(attempts)
            unknown = sum("wall_time_s" not in a for a in attempts)
            if unknown:
                entry["attempts_without_time"] = unknown
            else:
                entry["wall_time_all_attempts_s"] = round(sum(a["wall_time_s"] for a in attempts), 3)
        self.write_manifest(m)

    def record_provenance(self, info: dict[str, Any]) -> None:
        """Keep ``info`` (:func:`provenance`) as the manifest's ``provenance``: the latest
        invocation's, as every stage it runs is recorded beside it with its own finish time."""
        m = self.manifest()
        m["provenance"] = info
        m["versions"] = versions()
        self.write_manifest(m)

    def invalidate(self, *names: str, keep: set[str] | frozenset[str] = frozenset()) -> None:
        """Forget stages ``names`` and every unit inside them (``name/...``), but the units in ``keep``."""
        m = self.manifest()
        for n in names:
            for key in [k for k in m["stages"] if (k == n or k.startswith(n + "/")) and k not in keep]:
                del m["stages"][key]
            m.get("attempts", {}).pop(n, None)  # a re-run stage's time starts again
        self.write_manifest(m)

    # -- one process at a time -------------------------------------------------------------
    @contextmanager
    def lock(self, kind: str = "run") -> Iterator[None]:
        """Hold ``<root>/.lock`` (exclusive ``flock``) for the duration; creates ``root``.

        ``root`` must be darla's own directory of ``kind`` (:func:`claim_dir`): a new or empty
        directory is claimed, a non-empty one that is not darla's is refused before anything is
        written into it.

        Another process holding it is a :class:`RunDirError` at once (no waiting) naming its pid,
        host, start time and command. Re-entrant within one thread (a sweep's run job locks its
        run dir around ``run_pipeline``, which locks it again); another thread of this process
        is refused like another process. The kernel releases the lock when the process exits,
        even on SIGKILL, so a stale lock file is harmless: it is reused, not obeyed.
        """
        claim_dir(self.root, kind)
        path = self.root / LOCK_FILE
        key = os.path.realpath(path)
        me = threading.get_ident()
        held = _HELD.get(key)
        if held is not None and held[2] == me:
            held[1] += 1
            try:
                yield
            finally:
                held[1] -= 1
            return
        fd = _acquire(self.root, path)
        _HELD[key] = [fd, 1, me]
        try:
            yield
        finally:
            del _HELD[key]
            try:
                os.ftruncate(fd, 0)  # nobody holds it now
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- lifecycle -------------------------------------------------------------------------
    def prepare(self, config_text: str, force: bool) -> None:
        """Create the run dir, or check a re-run uses the same config. ``force`` starts over."""
        import yaml

        from darla.config import diff_configs, read_run_config

        claim_dir(self.root, "run")  # what --force deletes below is inside darla's own run dir
        if force:
            for child in ("manifest.json", "vision", "agent", "transfer", "scan", "report.html", "results.json",
                          "config.yaml", SUPERSEDED):
                remove_path(self.root / child)
        check_writable(self.root)
        if self.config_path.exists():
            old = read_run_config(self.config_path)
            new = yaml.safe_load(config_text)
            changed = diff_configs(old, new)
            if changed:
                raise RunDirError(
                    f"{self.root} was run with a different config (changed: {', '.join(changed)}); "
                    "use --force to start over, or another name"
                )
        else:
            write_text_atomic(self.config_path, config_text)


def remove_path(p: Path) -> None:
    """Delete a file or a directory tree; a symlink is removed itself, never what it points to."""
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.is_dir():
        shutil.rmtree(p)


def _is_darla_run(root: Path) -> bool:
    """A run directory written before darla marked its directories: a valid darla manifest."""
    try:
        data = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "darla_version" in data and _manifest_problem(data) is None


def _marker_kind(root: Path) -> str | None:
    try:
        data = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return "unreadable"
    return str(data.get("kind")) if isinstance(data, dict) else "unreadable"


def claim_dir(root: Path, kind: str) -> None:
    """Make ``root`` darla's own directory of ``kind`` ("run" or "sweep"), or refuse in one line.

    A missing directory is created and marked; an empty one (or one holding only a lock file)
    is marked; one already marked with ``kind`` is accepted. A run directory whose valid
    manifest shows darla wrote it is marked too. Anything else (a source tree, a home
    directory, a sweep directory given as a run directory) is a :class:`RunDirError`: darla
    never writes, let alone deletes, in a directory that is not its own.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise RunDirError(f"cannot use {root} as a darla {kind} directory: it exists and is not a directory")
    found = _marker_kind(root) if root.is_dir() else None
    if found == kind:
        return
    if found is not None:
        what = f"a darla {found} directory" if found in ("run", "sweep") else f"marked by an unreadable {MARKER}"
        raise RunDirError(f"{root} is {what}, not a {kind} directory; choose another directory")
    if root.is_dir():
        try:
            entries = {p.name for p in root.iterdir()}
        except OSError as e:
            raise RunDirError(f"cannot read directory {root}: {e.strerror or e}") from None
        legacy = (kind == "run" and _is_darla_run(root)) or (kind == "sweep" and (root / "sweep.json").is_file())
        if entries - {LOCK_FILE} and not legacy:
            raise RunDirError(
                f"{root} is not empty and is not a darla {kind} directory (no {MARKER}); "
                f"darla writes only into a new or empty directory: choose another"
            )
    else:
        _make_dir(root)
    info = {"kind": kind, "created": datetime.now().astimezone().isoformat(timespec="seconds"),
            "darla_version": darla.__version__}
    write_json_atomic(root / MARKER, info)


def check_writable(root: Path, need_bytes: int = 2**20, why: str = "") -> None:
    """Fail early, before any training, if the run dir cannot take the artifacts.

    The default only asks for room to write at all; :func:`darla.pipeline.space_needed` sizes
    what the stages left to run will write (a resume after a full disk may need little).
    """
    probe = root / f".write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"cannot write to run directory {root}: {e.strerror or e}") from None
    free = shutil.disk_usage(root).free
    if free < need_bytes:
        raise RunDirError(
            f"only {free / 2**20:.0f} MiB free under {root}; need at least {need_bytes / 2**20:.0f} MiB{why} "
            "(free some space, or use another --run-dir)"
        )


#: Locks this process holds: real path of the lock file → [fd, depth, owning thread id].
_HELD: dict[str, list[int]] = {}


def _make_dir(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a parent that is a file, read-only filesystem, no permission, full disk
        if isinstance(e, FileExistsError):
            what = "it exists and is not a directory"
        elif e.errno == errno.ENOTDIR:
            what = "a parent of it is a file, not a directory"
        else:
            what = e.strerror or str(e)
        raise RunDirError(f"cannot create run directory {root}: {what}") from None


def _acquire(root: Path, path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise RunDirError(f"cannot write to run directory {root}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _holder(fd)
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunDirError(f"{root} is in use by another darla process ({holder}); wait for it or stop it") from None
        raise RunDirError(f"cannot lock {path}: {e.strerror or e}") from None
    info = {
        "pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv)[:500],
    }
    try:  # who holds it, for the message another process shows; the flock is the lock itself
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    except OSError:
        pass  # a full disk: check_writable says so next, clearly
    return fd


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        where = f" on {info['host']}" if info.get("host") and info["host"] != socket.gethostname() else ""
        cmd = f": {info['command'][:200]}" if info.get("command") else ""
        return f"pid {info['pid']}{where}, started {info.get('started', '?')}{cmd}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "pid unknown: it has not written its details yet"
