"""The run directory: layout, manifest, atomic writes, resume bookkeeping.

A stage is complete only when its manifest entry is written — after its files, atomically
(write to a temporary file, then ``os.replace``). The manifest records each artifact's sha256,
so a truncated or tampered artifact is detected before it is used.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import darla
from vision.checkpoint import file_sha256 as sha256_file  # one hashing routine for every artifact

STAGES = ("vision", "agent", "transfer", "report")


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked (config changed, corrupted artifact, ...)."""




def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


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
        if not self.manifest_path.exists():
            return {"stages": {}}
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunDirError(
                f"{self.manifest_path} is corrupted ({e}); move it away to re-run every stage, or use --force"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
            raise RunDirError(f"{self.manifest_path} is not a darla manifest; use --force to start over")
        return data

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
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **({"wall_time_s": round(time.time() - started, 3)} if started else {}),
            **(info or {}),
        }
        m["stages"][name] = entry
        m["darla_version"] = darla.__version__
        m["versions"] = versions()
        write_json_atomic(self.manifest_path, m)
        return entry

    def invalidate(self, *names: str) -> None:
        m = self.manifest()
        for n in names:
            for key in [k for k in m["stages"] if k == n or k.startswith(n + "/")]:
                del m["stages"][key]
        write_json_atomic(self.manifest_path, m)

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
        self.root.mkdir(parents=True, exist_ok=True)
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


def check_writable(root: Path, need_bytes: int = 50 * 2**20) -> None:
    """Fail early, before any training, if the run dir cannot take the artifacts."""
    probe = root / f".write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"cannot write to run directory {root}: {e.strerror or e}") from None
    free = shutil.disk_usage(root).free
    if free < need_bytes:
        raise RunDirError(f"only {free / 2**20:.0f} MiB free under {root}; need at least {need_bytes / 2**20:.0f} MiB")
