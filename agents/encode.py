"""VecEncode: observe the world through a frozen vision model.

The encoder lives *outside* the policy, in a VecEnvWrapper, on purpose (STYLE.md): SB3's
``ortho_init`` would re-initialise any Linear/Conv inside the policy — including a "frozen"
pretrained encoder — and ``set_training_mode`` would flip it back to train mode. Outside the
policy it is never touched by the optimiser, and all envs' frames are encoded in one batch.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from vision.base import VisionModel


class VecEncode(VecEnvWrapper):
    """Replace uint8 (H, W, C) frames by the frozen encoder's posterior mean (latent_dim,).

    Terminal observations in ``infos[i]["terminal_observation"]`` are encoded too; otherwise
    SB3 would bootstrap truncated episodes from raw frames.
    """

    def __init__(self, venv: VecEnv, encoder: VisionModel, device: str | torch.device = "cpu") -> None:
        obs_space = venv.observation_space
        if not isinstance(obs_space, spaces.Box) or obs_space.dtype != np.uint8 or len(obs_space.shape) != 3:
            raise ValueError(f"VecEncode needs uint8 (H, W, C) image observations, got {obs_space}")
        h, w, c = obs_space.shape
        if tuple(encoder.obs_shape) != (c, h, w):
            raise ValueError(
                f"encoder expects images of shape {tuple(encoder.obs_shape)} (C, H, W) but the env "
                f"renders {(c, h, w)}: train the vision model at env.size={h}"
            )
        self.encoder = encoder.to(device).eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.device = torch.device(device)
        latent = spaces.Box(-np.inf, np.inf, shape=(encoder.latent_dim,), dtype=np.float32)
        super().__init__(venv, observation_space=latent)

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, C) uint8 → (N, latent_dim) float32 posterior means."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        mu, _ = self.encoder.encode(x)
        return mu.float().cpu().numpy()

    def reset(self) -> VecEnvObs:
        return self.encode(self.venv.reset())

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        terminal_idx = [i for i, info in enumerate(infos) if "terminal_observation" in info]
        if not terminal_idx:
            return self.encode(obs), rewards, dones, infos
        # One forward for the new and the terminal frames: a second small batch costs a second
        # set of kernel launches (most of an encode on a GPU at these sizes).
        z = self.encode(np.concatenate([obs, np.stack([infos[i]["terminal_observation"] for i in terminal_idx])]))
        n = len(obs)
        for j, i in enumerate(terminal_idx):
            infos[i]["terminal_observation"] = z[n + j]
        return z[:n], rewards, dones, infos
