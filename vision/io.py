"""Atomic file writes and file hashes: the standard library only, so every layer above may use them.

One writer for the whole project (checkpoints, manifests, JSON, logs rewritten on resume, figures):
write a temporary file beside the target, fsync, rename. A kill never leaves half a file, and a
failure (a full disk: ``ENOSPC``) is an :class:`OSError` naming the target that leaves no
temporary file behind. Nothing here imports torch: writing a manifest costs no model library.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_bytes_atomic(path: str | Path, data: bytes | memoryview) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename is None:  # write()/fsync() errors name no file
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Indented JSON with sorted keys and a final newline."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def replace_via_file(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` beside ``path``, fsync, rename: for writers that need a file name (SB3 writes
    zips by path and appends to them; file copies). Same guarantees as :func:`write_bytes_atomic`.

    The temporary keeps ``path``'s suffix: SB3 appends ``.zip`` to a name without it.
    """
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except BaseException as e:
        tmp.unlink(missing_ok=True)  # a full disk or a kill leaves no half-written temporary behind
        if isinstance(e, OSError) and e.filename is None:  # zipfile's write() names no file
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    os.replace(tmp, path)
