"""Pictures of a vision model: reconstructions and latent traversals, as uint8 RGB grids.

A traversal row varies one latent over ``[-limit, limit]`` (in prior standard deviations)
around one frame's posterior mean, all other latents held fixed, and decodes each point; rows
are ordered by the caller (by KL to the prior, most informative first).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vision.base import VisionModel
from vision.io import write_bytes_atomic


def to_uint8_hwc(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """(n, C, H, W) floats in [0, 1] → (n, H, W, 3) uint8 (grey images repeated to RGB)."""
    x = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    img = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return np.repeat(img, 3, axis=3) if img.shape[3] == 1 else img


def tile(rows: Sequence[np.ndarray], pad: int = 1, fill: int = 255) -> np.ndarray:
    """Rows of (n_i, H, W, 3) uint8 images → one (R·(H+pad)+pad, max n·(W+pad)+pad, 3) grid."""
    h, w = rows[0].shape[1:3]
    cols = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, 3), fill, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y : y + h, x : x + w] = img
    return grid


def _device(model: VisionModel) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def reconstruction_grid(model: VisionModel, x: np.ndarray) -> np.ndarray:
    """Top row: the (n, C, H, W) inputs; bottom row: their reconstructions from the posterior mean."""
    model.eval()
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32), device=_device(model))
    return tile([to_uint8_hwc(xt), to_uint8_hwc(model.reconstruct(xt))])


@torch.no_grad()
def traversal_grid(
    model: VisionModel,
    x0: np.ndarray,
    order: Sequence[int] | None = None,
    n_steps: int = 9,
    limit: float = 2.5,
    ranges: Sequence[tuple[float, float]] | None = None,
) -> np.ndarray:
    """One row per latent (in ``order``): decode mu(x0) with that latent set to each of ``n_steps``
    values in [-limit, limit], or in row r's ``ranges[r]`` = (low, high) when given (an
    autoencoder's codes have no prior scale). The first column of each row is ``x0`` itself."""
    model.eval()
    dev = _device(model)
    x = torch.as_tensor(np.asarray(x0, dtype=np.float32)[None], device=dev)
    mu, _ = model.encode(x)
    order = list(range(model.latent_dim)) if order is None else [int(i) for i in order]
    if ranges is not None and len(ranges) != len(order):
        raise ValueError(f"ranges has {len(ranges)} rows, order {len(order)}")
    z = mu.float().repeat(len(order) * n_steps, 1)
    for r, i in enumerate(order):
        lo, hi = (-limit, limit) if ranges is None else ranges[r]
        z[r * n_steps : (r + 1) * n_steps, i] = torch.linspace(float(lo), float(hi), n_steps, device=dev)
    imgs = to_uint8_hwc(model.render(z))
    ref = to_uint8_hwc(x)
    return tile([np.concatenate([ref, imgs[r * n_steps : (r + 1) * n_steps]]) for r in range(len(order))])


def save_png(path: str | Path, rgb: np.ndarray, min_side: int = 256) -> Path:
    """Write an RGB uint8 image as PNG, upscaled (nearest) so its short side is ≥ ``min_side``."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    factor = max(1, -(-min_side // min(rgb.shape[:2])))
    if factor > 1:
        rgb = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode a {rgb.shape} image as PNG for {path}")
    # the atomic writer: a full disk or a denied permission is an OSError with its errno, naming the path
    write_bytes_atomic(path, png.tobytes())
    return path
