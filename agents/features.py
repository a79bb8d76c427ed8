"""Policies that see pixels: the end-to-end baselines and DARLA_FT.

Frozen-latent methods keep the encoder *outside* the policy (:class:`~agents.encode.VecEncode`).
The baselines put a conv encoder *inside* it, as an SB3 features extractor trained by the RL
loss:

* ``pixels``: the vision model's encoder architecture, randomly initialised — the same network
  as DARLA's, so the comparison isolates what unsupervised pretraining buys.
* ``pixels`` + ``augment: colour_jitter``: RAD-style (Laskin et al. 2020) random colour jitter of
  every observation in the policy/value *update* batches (never while acting).
* ``finetune`` (DARLA_FT): the same network initialised from the trained vision model and then
  trained end to end, so the latents may drift from disentangled.

The extractor outputs the encoder's posterior mean, as the frozen methods observe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import Tensor, nn

AUGMENTS = ("none", "colour_jitter")


class ColourJitter(nn.Module):
    """Random brightness, contrast, saturation and hue per image, as one affine colour map.

    Each of the four jitters is linear in RGB, so their composition is ``x ↦ M x + b`` with a
    random 3×3 ``M`` per image: one batched matmul instead of an RGB→HSV round trip. Hue is a
    rotation about the grey axis (the YIQ trick). Ranges follow RAD's ColorJitter(0.4, 0.4, 0.4,
    0.5·π rad hue would be too much for colour-defined domains; we use ±0.5 rad ≈ ±29°).
    Drawn from its own ``torch.Generator`` so augmentation never touches the global RNG.
    """

    def __init__(
        self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.5, seed: int = 0
    ) -> None:
        super().__init__()
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, n: int, half_width: float, centre: float = 1.0) -> Tensor:
        return centre + (torch.rand(n, generator=self.generator) * 2 - 1) * half_width

    def matrices(self, n: int) -> tuple[Tensor, Tensor]:
        """(n, 3, 3) colour maps and (n, 3) offsets; contrast's offset needs the image mean, so
        ``b`` is returned as the contrast blend weight and applied in :meth:`forward`."""
        eye = torch.eye(3).expand(n, 3, 3)
        luma = torch.tensor([0.299, 0.587, 0.114])
        grey = luma.expand(3, 3)  # every output channel = luminance
        b = self._uniform(n, self.brightness)[:, None, None]
        s = self._uniform(n, self.saturation)[:, None, None]
        theta = self._uniform(n, self.hue, centre=0.0)
        # Rotation by θ about the (1,1,1)/√3 axis (Rodrigues), i.e. a hue shift.
        k = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / math.sqrt(3)
        cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
        rot = eye * cos + sin * k + (1 - cos) * torch.full((3, 3), 1.0 / 3)
        m = b * (s * eye + (1 - s) * grey) @ rot
        c = self._uniform(n, self.contrast)
        return m, c

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] → jittered, clipped to [0, 1]."""
        if x.shape[1] != 3:
            return x
        m, c = self.matrices(x.shape[0])
        m, c = m.to(x.device, x.dtype), c.to(x.device, x.dtype)
        y = torch.einsum("nij,njhw->nihw", m, x)
        mean = y.mean(dim=(1, 2, 3), keepdim=True)
        y = c[:, None, None, None] * y + (1 - c[:, None, None, None]) * mean
        return y.clamp_(0.0, 1.0)


class VisionFeatures(BaseFeaturesExtractor):
    """A vision model's encoder as an SB3 features extractor (output: posterior mean).

    Built from the registry by name and constructor kwargs (so a saved ``model.zip`` rebuilds it
    without the original checkpoint file); pretrained weights are loaded afterwards with
    :func:`load_pretrained`. Only the encoder is kept: decoders and discriminators are dropped.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        model: str,
        model_kwargs: Mapping[str, Any],
        augment: str = "none",
        augment_seed: int = 0,
    ) -> None:
        from vision.registry import get_model_class

        if augment not in AUGMENTS:
            raise ValueError(f"unknown augment {augment!r}; choose from {AUGMENTS}")
        shape = observation_space.shape  # SB3 hands CNN policies channel-first images
        vision = get_model_class(model)(tuple(shape), **dict(model_kwargs))
        super().__init__(observation_space, features_dim=vision.latent_dim)
        self.vision = vision
        if isinstance(getattr(vision, "encoder", None), nn.Module):  # encode() uses it alone (VAEs, DAE)
            for name in [n for n, _ in vision.named_children() if n != "encoder"]:
                # Decoders and frozen DAEs are not the policy's; Identity keeps .train()/.eval() working.
                setattr(vision, name, nn.Identity())
        self.augment = ColourJitter(seed=augment_seed) if augment == "colour_jitter" else None

    def forward(self, observations: Tensor) -> Tensor:
        x = observations
        if self.augment is not None and self.training:  # update batches only, never while acting
            x = self.augment(x)
        mu, _ = self.vision.encode(x)
        return mu


def load_pretrained(model: BaseAlgorithm, state_dict: Mapping[str, Tensor]) -> int:
    """Copy a trained vision model's encoder weights into every :class:`VisionFeatures` of ``model``.

    Needed after construction because PPO/A2C's ``ortho_init`` re-initialises the features
    extractor; copying in place keeps the optimiser's parameter references valid. Returns how
    many extractors were loaded (actor, critic and target copies each have one in SAC/DQN).
    """
    n = 0
    for module in model.policy.modules():
        if isinstance(module, VisionFeatures):
            keep = module.vision.state_dict()
            module.vision.load_state_dict({k: v for k, v in state_dict.items() if k in keep}, strict=True)
            n += 1
    if n == 0:
        raise ValueError("the policy has no VisionFeatures extractor to load weights into")
    return n
