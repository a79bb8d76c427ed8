"""Name → class lookup for vision models (a literal dict, as SB3's policy aliases); building a new
model from config-level arguments, which reads the files they name (models read none); and loading
a vision checkpoint, which rebuilds its model by that name (:mod:`vision.checkpoint` holds the
record format)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from vision.base import VisionModel
from vision.beta_tcvae import BetaTCVAE
from vision.checkpoint import CheckpointError, build_from_record, read_checkpoint
from vision.dae import DAE, BetaVAEDAE
from vision.dcign import DCIGN
from vision.factor_vae import FactorVAE
from vision.icf import ICF
from vision.infogan import InfoGAN
from vision.vae import VAE, BetaVAE, CapacityVAE

VISION_MODELS: dict[str, type[VisionModel]] = {
    "vae": VAE,
    "beta_vae": BetaVAE,
    "capacity_vae": CapacityVAE,
    "dae": DAE,
    "beta_vae_dae": BetaVAEDAE,
    "factor_vae": FactorVAE,
    "beta_tcvae": BetaTCVAE,
    "infogan": InfoGAN,
    "dcign": DCIGN,
    "icf": ICF,
}


def get_model_class(name: str) -> type[VisionModel]:
    try:
        return VISION_MODELS[name]
    except KeyError:
        raise KeyError(f"unknown vision model {name!r}; choose from {sorted(VISION_MODELS)}") from None


def load_dae(path: str | Path, obs_shape: Sequence[int]) -> DAE:
    """The trained :class:`DAE` in ``path``, for images of ``obs_shape`` (CPU, eval mode).

    Built without touching torch's global RNG: the model it is given to draws its own initial
    weights from the caller's seed. Raises :class:`CheckpointError` naming the file.
    """
    record = read_checkpoint(path)
    shape = record.get("obs_shape")
    shape = tuple(shape) if isinstance(shape, (list, tuple)) else shape
    if record.get("model") != "dae" or shape != tuple(obs_shape):
        raise CheckpointError(
            f"{path} holds a {record.get('model')!r} for images {shape}; β-VAE-DAE needs a 'dae' for {tuple(obs_shape)}"
        )
    with torch.random.fork_rng(devices=[]):
        dae = build_from_record(record, DAE, path)
    assert isinstance(dae, DAE)
    return dae.eval()


def model_kwargs(cls: type, params: Mapping[str, Any], n_frames: int) -> dict[str, Any]:
    """A config's settings as constructor kwargs, with what stage 1 supplies: β-TCVAE's
    ``dataset_size`` (its log q(z) estimators need N) is the number of training frames."""
    kwargs = dict(params)
    if "dataset_size" in inspect.signature(cls.__init__).parameters and "dataset_size" not in kwargs:
        kwargs["dataset_size"] = n_frames
    return kwargs


def make_model(cls: type[VisionModel] | str, obs_shape: Sequence[int], **kwargs: Any) -> VisionModel:
    """A new (untrained) model from config-level constructor arguments.

    Arguments that name files are read here: β-VAE-DAE's ``dae_checkpoint`` becomes its ``dae``
    (:func:`load_dae`). Everything else goes to the constructor unchanged.
    """
    if isinstance(cls, str):
        cls = get_model_class(cls)
    if getattr(cls, "requires", None) == "dae" and kwargs.get("dae_checkpoint") is not None:
        kwargs["dae"] = load_dae(kwargs.pop("dae_checkpoint"), obs_shape)
    return cls(tuple(obs_shape), **kwargs)


def _mismatches(record: Mapping[str, Any], expect: Mapping[str, Any]) -> list[str]:
    out = []
    kwargs = record.get("kwargs") if isinstance(record.get("kwargs"), Mapping) else {}  # build_model says what is wrong
    for key, want in expect.items():
        if key == "model":
            have = record.get("model")
        elif key == "obs_shape":
            shape = record.get("obs_shape")
            have, want = tuple(shape) if isinstance(shape, (list, tuple)) else shape, tuple(want)
        else:  # any constructor kwarg, e.g. latent_dim
            have = kwargs.get(key)
        if have != want:
            out.append(f"{key}: checkpoint has {have!r}, expected {want!r}")
    return out


def build_model(record: Mapping[str, Any], path: str | Path = "<record>") -> VisionModel:
    """Rebuild the model of a checkpoint record from the registry and load its weights."""
    name = record.get("model")
    if not isinstance(name, str) or name not in VISION_MODELS:
        raise CheckpointError(f"{path} holds vision model {name!r}, unknown here; known: {sorted(VISION_MODELS)}")
    return build_from_record(record, VISION_MODELS[name], path)


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
        flat = " ".join(str(e).split())  # torch's message spans lines; the CLI prints one
        raise CheckpointError(f"{path}: weights do not fit model {record['model']!r}: {flat[:400]}") from None
    return model.eval()
