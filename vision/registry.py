"""Name → class lookup for vision models (a literal dict, as SB3's policy aliases)."""

from __future__ import annotations

from vision.base import VisionModel
from vision.beta_tcvae import BetaTCVAE
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
