"""Name → class lookup for vision models (a literal dict, as SB3's policy aliases)."""

from __future__ import annotations

from vision.base import VisionModel
from vision.vae import VAE, BetaVAE

VISION_MODELS: dict[str, type[VisionModel]] = {
    "vae": VAE,
    "beta_vae": BetaVAE,
}


def get_model_class(name: str) -> type[VisionModel]:
    try:
        return VISION_MODELS[name]
    except KeyError:
        raise KeyError(f"unknown vision model {name!r}; choose from {sorted(VISION_MODELS)}") from None
