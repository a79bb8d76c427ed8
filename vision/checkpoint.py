"""Vision checkpoints: ``{model name, kwargs, obs_shape, state_dict}``, loaded with ``weights_only``.

A checkpoint rebuilds its model from a class and constructor kwargs (:func:`build_from_record`;
:func:`vision.registry.load_checkpoint` looks the class up by name), so nothing in the file is
unpickled as code: :func:`torch.load` runs with ``weights_only=True`` and a file that is not a
darla vision checkpoint (or is truncated) raises :class:`CheckpointError` naming the path. This
module knows no model by name: :mod:`vision.registry` builds and loads them, and models read no files.

Every record written by :func:`save_atomic` (model checkpoints, the resumable
``checkpoint_last.pt`` with its optimiser state, SCAN checkpoints) is *sealed*: its ``"sha256"``
field is :func:`record_sha256` of everything else in it (each tensor's name, dtype, shape and raw
bytes; every other value, nested dicts and lists included, in a canonical order).
:func:`read_checkpoint` recomputes it, so a flipped byte inside tensor data, which torch's zip
reader does not notice, is a :class:`CheckpointError` naming the file instead of silently
wrong weights. A record without the field is refused too.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vision.base import VisionModel
from vision.io import write_bytes_atomic

FORMAT = "darla-vision/1"
#: The record key holding :func:`record_sha256` of the rest of the record.
SEAL = "sha256"


class CheckpointError(ValueError):
    """A vision checkpoint that cannot be used: missing, corrupted, or not what was expected."""


def _feed(h: Any, obj: Any) -> None:
    """Hash ``obj`` canonically: type-tagged, length-prefixed, mapping keys in sorted order."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
        h.update(f"T{t.dtype}|{tuple(t.shape)}|{len(raw)}|".encode())
        h.update(raw)
    elif isinstance(obj, Mapping):
        h.update(f"D{len(obj)}|".encode())
        for k in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
            _feed(h, k)
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):  # torch.Size and tuples too: a list after any round trip
        h.update(f"L{len(obj)}|".encode())
        for v in obj:
            _feed(h, v)
    elif obj is None or isinstance(obj, (bool, int, float)):
        text = repr(obj)
        h.update(f"{type(obj).__name__[0]}{len(text)}|{text}".encode())
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "surrogatepass")
        h.update(f"s{len(data)}|".encode())
        h.update(data)
    else:  # what weights_only may still hold: torch.dtype, torch.device, ... (stable reprs)
        text = f"{type(obj).__module__}.{type(obj).__qualname__}:{obj!r}"
        h.update(f"o{len(text)}|{text}".encode())


def record_sha256(record: Mapping[str, Any]) -> str:
    """sha256 of a checkpoint record's content, its own :data:`SEAL` field excluded."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in record.items() if k != SEAL})
    return h.hexdigest()


def seal(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` with its content hash under :data:`SEAL` (checked by :func:`read_checkpoint`)."""
    out = {k: v for k, v in record.items() if k != SEAL}
    out[SEAL] = record_sha256(out)
    return out


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename: a kill never leaves half a file.

    A darla record (a dict with a ``"format"``) is sealed first (:func:`seal`). A full disk is an
    :class:`OSError` (``ENOSPC``) naming ``path``, and leaves no temporary file behind.
    """
    path = Path(path)
    if isinstance(obj, Mapping) and "format" in obj:
        obj = seal(obj)
    buf = io.BytesIO()  # serialise first: torch's own file writer reports a full disk as a RuntimeError
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getbuffer())


def model_record(model: VisionModel) -> dict[str, Any]:
    """What rebuilds ``model``: registry name, constructor kwargs, image shape, weights (on CPU)."""
    return {
        "format": FORMAT,
        "model": model.name,
        "obs_shape": list(model.obs_shape),
        "kwargs": dict(model.hparams),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def save_checkpoint(path: str | Path, model: VisionModel, extra: Mapping[str, Any] | None = None) -> Path:
    """Write a model checkpoint (no optimiser state) atomically; returns ``path``."""
    record = model_record(model)
    record["extra"] = dict(extra or {})
    save_atomic(record, path)
    return Path(path)


def read_checkpoint(path: str | Path, fmt: str = FORMAT, what: str = "vision") -> dict[str, Any]:
    """The raw record of a darla checkpoint of format ``fmt``; ``weights_only`` load.

    Every failure (missing, truncated, foreign, content not matching its seal) is a
    :class:`CheckpointError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no {what} checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: the error below says it all
            warnings.simplefilter("ignore")
            record = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Never torch's own message: it advises retrying with weights_only=False.
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"PK" or head[:1] == b"\x80":  # torch's zip, or a raw pickle: objects beyond tensors
            raise CheckpointError(  # which could run code: refused unread (not "corrupted")
                f"{path} is not a darla {what} checkpoint: it holds Python objects beyond tensors and plain data, "
                "which darla never loads"
            ) from None
        raise CheckpointError(
            f"{path} is not a readable {what} checkpoint (not a torch file); it is truncated or corrupted: delete or replace it"
        ) from None
    except Exception as e:  # a truncated zip, bytes that are no checkpoint at all
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"{path} is not a readable {what} checkpoint ({type(e).__name__}: {first}); "
            "it is truncated or corrupted: delete or replace it"
        ) from None
    if not isinstance(record, dict) or record.get("format") != fmt:
        raise CheckpointError(f"{path} is not a darla {what} checkpoint (format {fmt!r} expected)")
    if SEAL not in record:
        raise CheckpointError(f"{path} records no sha256 of its content, so darla cannot check it: delete or replace it")
    try:
        ok = isinstance(record[SEAL], str) and record_sha256(record) == record[SEAL]
    except Exception:  # a value the hash cannot read is corruption too
        ok = False
    if not ok:
        raise CheckpointError(
            f"{path} does not match its recorded sha256 (corrupted); delete it "
            "(a resume checkpoint is then retrained from the start) or replace it"
        )
    return record




def build_from_record(record: Mapping[str, Any], cls: type[VisionModel], path: str | Path = "<record>") -> VisionModel:
    """Rebuild a checkpoint record's model as ``cls`` (the caller has looked its name up) and load its weights."""
    name, shape, kwargs = record.get("model"), record.get("obs_shape"), record.get("kwargs")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(type(n) is int and 0 < n <= 4096 for n in shape)):
        raise CheckpointError(f"{path}: obs_shape {shape!r} is not a (channels, height, width) image shape")
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise CheckpointError(f"{path}: kwargs {kwargs!r} are not a mapping of constructor arguments")
    if not isinstance(record.get("state_dict"), Mapping):
        raise CheckpointError(f"{path} holds no state_dict mapping of weights")
    takes = {q for k in cls.__mro__ if "__init__" in vars(k) for q in inspect.signature(k.__init__).parameters}
    unknown = sorted(set(kwargs) - takes)
    if unknown:
        raise CheckpointError(f"{path} records arguments {unknown} that vision model {name!r} does not take")
    try:
        model = cls(tuple(shape), **kwargs)
    except Exception as e:  # a bogus recorded value (a string for an int, a negative width, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"{path}: its recorded arguments do not build vision model {name!r} ({type(e).__name__}: {first})"
        ) from None
    missing, unexpected = model.load_state_dict(record["state_dict"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit model {name!r} (missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )
    return model
