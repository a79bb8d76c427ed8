"""Convolutional encoder/decoder sized from the image shape.

Burgess et al. 2018 (appendix A.1) / disentanglement_lib: 4 conv layers, 4×4 kernels, stride 2,
channels 32,32,64,64 → FC 256 → FC 256 → head; the decoder is the transpose, ReLU throughout.
Any image side works (32, 64, 84, ...): the decoder mirrors the spatial sizes the encoder saw,
using ``output_padding`` where a stride-2 layer rounded down.

That stack takes a 64 px frame down to a 4×4 map. On smaller frames the default drops trailing
layers so the map stays at least 4×4 (:func:`default_channels`: 3 layers at 32 px, not a 2×2
map). Measured on seek-avoid at 32 px (docs/experiments/seek-avoid-cpu.md): with 4 layers
no model placed the 4 px agent in 10k steps; with 3, a β = 0.01 VAE did by 7.5k.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

DEFAULT_CHANNELS: tuple[int, ...] = (32, 32, 64, 64)
MIN_MAP_SIDE = 4
"""The default conv stack stops before the feature map would get smaller than this (64 px → 4)."""


def conv_spatial_sizes(side: int, n_layers: int) -> list[int]:
    """Spatial side after each conv(k=4, s=2, p=1): floor(side / 2)."""
    sizes = [side]
    for _ in range(n_layers):
        sizes.append((sizes[-1] + 2 * 1 - 4) // 2 + 1)
    return sizes


def default_channels(obs_shape: Sequence[int]) -> tuple[int, ...]:
    """The leading :data:`DEFAULT_CHANNELS` whose stride-2 stack keeps the map ≥ :data:`MIN_MAP_SIDE`.

    (C, H, W) → 4 layers at 64 or 84 px (as in Burgess et al.), 3 at 32 px, 2 at 16 to 31 px,
    and at least 1.
    """
    side = min(int(obs_shape[1]), int(obs_shape[2]))
    n = max(
        (k for k in range(1, len(DEFAULT_CHANNELS) + 1) if conv_spatial_sizes(side, k)[-1] >= MIN_MAP_SIDE),
        default=1,
    )
    return DEFAULT_CHANNELS[:n]


def resolve_channels(obs_shape: Sequence[int], channels: Sequence[int] | None) -> tuple[int, ...]:
    """``channels`` as a tuple, or :func:`default_channels` for ``obs_shape`` when it is None.

    Every model and net resolves its ``channels`` argument here, so a model's hparams record the
    stack it was built with. Raises ValueError unless it is a non-empty list of positive ints.
    """
    if channels is None:
        return default_channels(obs_shape)
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or not channels or not all(
        isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels
    ):
        raise ValueError(f"channels must be a non-empty list of positive integers, got {channels!r}")
    return tuple(channels)


class ConvEncoder(nn.Module):
    """(N, C, H, W) → (N, out_dim). ``out_dim`` is 2·latent for a Gaussian head."""

    def __init__(
        self,
        obs_shape: Sequence[int],
        out_dim: int,
        channels: Sequence[int] | None = None,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        c, h, w = obs_shape
        channels = resolve_channels(obs_shape, channels)
        hs, ws = conv_spatial_sizes(h, len(channels)), conv_spatial_sizes(w, len(channels))
        if hs[-1] < 1 or ws[-1] < 1:
            raise ValueError(f"image {h}×{w} is too small for {len(channels)} stride-2 conv layers")
        layers: list[nn.Module] = []
        prev = c
        for ch in channels:
            layers += [nn.Conv2d(prev, ch, 4, 2, 1), nn.ReLU(inplace=True)]
            prev = ch
        self.conv = nn.Sequential(*layers)
        self.flat_dim = prev * hs[-1] * ws[-1]
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.flat_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(hidden, out_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer (before the head)."""
        return self.fc(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    """(N, in_dim) → (N, C, H, W) logits, mirroring :class:`ConvEncoder`."""

    def __init__(
        self,
        in_dim: int,
        obs_shape: Sequence[int],
        channels: Sequence[int] | None = None,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        c, h, w = obs_shape
        channels = resolve_channels(obs_shape, channels)
        hs, ws = conv_spatial_sizes(h, len(channels)), conv_spatial_sizes(w, len(channels))
        rev = list(channels)[::-1]
        self.start_shape = (rev[0], hs[-1], ws[-1])
        self.fc = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, rev[0] * hs[-1] * ws[-1]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        outs = rev[1:] + [c]
        n = len(channels)
        for i, (cin, cout) in enumerate(zip(rev, outs)):
            # Output side of ConvTranspose(k=4, s=2, p=1) is 2·in (+ output_padding).
            target_h, target_w = hs[n - 1 - i], ws[n - 1 - i]
            src_h, src_w = hs[n - i], ws[n - i]
            pad = (target_h - 2 * src_h, target_w - 2 * src_w)
            layers.append(nn.ConvTranspose2d(cin, cout, 4, 2, 1, output_padding=pad))
            if i < n - 1:
                layers.append(nn.ReLU(inplace=True))
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, *self.start_shape)
        return self.deconv(h)


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int], act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """A plain MLP: Linear-act-...-Linear."""
    layers: list[nn.Module] = []
    prev = in_dim
    for h in hidden:
        layers += [nn.Linear(prev, h), act()]
        prev = h
    layers.append(nn.Linear(prev, out_dim))
    return nn.Sequential(*layers)
