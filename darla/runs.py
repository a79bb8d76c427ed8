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
from vision.checkpoint import file_sha256 as sha256_file  # one hashing routine for every artifact
from vision.checkpoint import write_bytes_atomic

STAGES = ("vision", "agent", "transfer", "report")
#: The lock file of a run (or sweep) directory; see :meth:`RunDir.lock`.
LOCK_FILE = ".lock"
#: The manifest's own content hash (over the rest of it); absent in manifests written by hand.
MANIFEST_SEAL = "manifest_sha256"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked (config changed, corrupted artifact, ...)."""


def write_text_atomic(path: Path, text: str) -> None:
    """Write, fsync, rename (:func:`vision.checkpoint.write_bytes_atomic`): a full disk names ``path``."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


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
            if sha256_file(p) != digest:
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
            "sha256": {str(p.relative_to(self.root)): sha256_file(p) for p in artifacts},
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

    def invalidate(self, *names: str) -> None:
        m = self.manifest()
        for n in names:
            for key in [k for k in m["stages"] if k == n or k.startswith(n + "/")]:
                del m["stages"][key]
        self.write_manifest(m)

    # -- one process at a time -------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``<root>/.lock`` (exclusive ``flock``) for the duration; creates ``root``.

        Another process holding it is a :class:`RunDirError` at once (no waiting) naming its pid,
        host, start time and command. Re-entrant within one thread (a sweep's run job locks its
        run dir around ``run_pipeline``, which locks it again); another thread of this process
        is refused like another process. The kernel releases the lock when the process exits,
        even on SIGKILL, so a stale lock file is harmless: it is reused, not obeyed.
        """
        _make_dir(self.root)
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

        from darla.config import diff_configs

        if force and self.root.exists():
            for child in ("manifest.json", "vision", "agent", "transfer", "scan", "report.html", "results.json", "config.yaml"):
                p = self.root / child
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        _make_dir(self.root)
        check_writable(self.root)
        if self.config_path.exists():
            old = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
            new = yaml.safe_load(config_text)
            changed = diff_configs(old, new)
            if changed:
                raise RunDirError(
                    f"{self.root} was run with a different config (changed: {', '.join(changed)}); "
                    "use --force to start over, or another name"
                )
        else:
            write_text_atomic(self.config_path, config_text)


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
