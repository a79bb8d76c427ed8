"""Vision checkpoints: ``{model name, kwargs, obs_shape, state_dict}``, loaded with ``weights_only``.

A checkpoint rebuilds its model from the registry by name and constructor kwargs, so nothing in
the file is unpickled as code: :func:`torch.load` runs with ``weights_only=True`` and a file that
is not a darla vision checkpoint (or is truncated) raises :class:`CheckpointError` naming the
path. Loading into an expectation (``expect={"model": "beta_vae", "obs_shape": (3, 64, 64)}``)
fails with a message that names every mismatch, instead of a shape error deep inside torch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vision.base import VisionModel

FORMAT = "darla-vision/1"


class CheckpointError(ValueError):
    """A vision checkpoint that cannot be used: missing, corrupted, or not what was expected."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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

    Every failure (missing, truncated, foreign) is a :class:`CheckpointError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no {what} checkpoint at {path}")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, ... all mean "not usable"
        raise CheckpointError(f"{path} is not a readable {what} checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(record, dict) or record.get("format") != fmt:
        raise CheckpointError(f"{path} is not a darla {what} checkpoint (format {fmt!r} expected)")
    return record


def _mismatches(record: Mapping[str, Any], expect: Mapping[str, Any]) -> list[str]:
    out = []
    for key, want in expect.items():
        if key == "model":
            have = record["model"]
        elif key == "obs_shape":
            have, want = tuple(record["obs_shape"]), tuple(want)
        else:  # any constructor kwarg, e.g. latent_dim
            have = record["kwargs"].get(key)
        if have != want:
            out.append(f"{key}: checkpoint has {have!r}, expected {want!r}")
    return out


def build_model(record: Mapping[str, Any], path: str | Path = "<record>") -> VisionModel:
    """Rebuild the model of a checkpoint record from the registry and load its weights."""
    from vision.registry import VISION_MODELS

    name = record["model"]
    if name not in VISION_MODELS:
        raise CheckpointError(f"{path} holds vision model {name!r}, unknown here; known: {sorted(VISION_MODELS)}")
    model = VISION_MODELS[name](tuple(record["obs_shape"]), **record["kwargs"])
    missing, unexpected = model.load_state_dict(record["state_dict"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit model {name!r} (missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )
    return model


def load_checkpoint(path: str | Path, expect: Mapping[str, Any] | None = None) -> VisionModel:
    """Load a vision model in eval mode on the CPU; ``expect`` names required properties.

    Raises :class:`CheckpointError` naming the file and every mismatch.
    """
    record = read_checkpoint(path)
    problems = _mismatches(record, expect or {})
    if problems:
        raise CheckpointError(f"{path} does not fit this config: " + "; ".join(problems))
    try:
        model = build_model(record, path)
    except RuntimeError as e:  # size mismatch inside load_state_dict
        raise CheckpointError(f"{path}: weights do not fit model {record['model']!r}: {e}") from None
    return model.eval()
