"""VecEncode: observe the world through a frozen vision model.

The encoder lives *outside* the policy, in a VecEnvWrapper, on purpose (STYLE.md): SB3's
``ortho_init`` would re-initialise any Linear/Conv inside the policy — including a "frozen"
pretrained encoder — and ``set_training_mode`` would flip it back to train mode. Outside the
policy it is never touched by the optimiser, and all envs' frames are encoded in one batch.
"""

from __future__ import annotations

import warnings

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

    def __init__(
        self,
        venv: VecEnv,
        encoder: VisionModel,
        device: str | torch.device = "cpu",
        cuda_graphs: bool | None = None,
    ) -> None:
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
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs=True needs a CUDA device, got {self.device}")
        # None: on wherever the encoder runs on CUDA. Replaying a captured graph launches the
        # encoder's dozen small kernels as one, which is most of an encode at these sizes.
        self.cuda_graphs = self.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        self._graphs: dict[tuple[int, ...], _GraphedEncode | None] = {}
        latent = spaces.Box(-np.inf, np.inf, shape=(encoder.latent_dim,), dtype=np.float32)
        super().__init__(venv, observation_space=latent)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encoder.encode(x.permute(0, 3, 1, 2).float().div_(255.0))
        return mu.float()

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, C) uint8 → (N, latent_dim) float32 posterior means."""
        frames = np.ascontiguousarray(frames)
        if self.cuda_graphs:
            if frames.shape not in self._graphs:  # one graph per batch size: n_envs, plus terminals
                self._graphs[frames.shape] = _GraphedEncode.capture(self._forward, frames.shape, self.device)
            graphed = self._graphs[frames.shape]
            if graphed is not None:
                return graphed(frames)
        return self._forward(torch.from_numpy(frames).to(self.device)).cpu().numpy()

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


class _GraphedEncode:
    """One CUDA graph of ``fn`` for one uint8 batch shape, fed and read through pinned buffers.

    The graph reads a static device input and writes a static device output; a call copies the
    frames into the pinned host buffer, then host → device, replays, copies device → host, and
    synchronises once. Same kernels as the eager forward, so the same numbers.
    """

    def __init__(self, graph, host_in, dev_in, dev_out, host_out) -> None:
        self.graph, self.host_in, self.dev_in, self.dev_out, self.host_out = graph, host_in, dev_in, dev_out, host_out

    @classmethod
    def capture(cls, fn, shape: tuple[int, ...], device: torch.device) -> _GraphedEncode | None:
        try:
            dev_in = torch.zeros(shape, dtype=torch.uint8, device=device)
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):  # warm-up off the capture stream, as torch's docs ask
                for _ in range(3):
                    fn(dev_in)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                dev_out = fn(dev_in)
        except RuntimeError as e:  # an encoder with a capture-unsafe op: stay eager
            warnings.warn(f"VecEncode: CUDA graph capture failed ({e}); encoding eagerly", stacklevel=3)
            return None
        host_in = torch.empty(shape, dtype=torch.uint8).pin_memory()
        host_out = torch.empty(dev_out.shape, dtype=dev_out.dtype).pin_memory()
        return cls(graph, host_in, dev_in, dev_out, host_out)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        self.host_in.numpy()[...] = frames
        self.dev_in.copy_(self.host_in, non_blocking=True)
        self.graph.replay()
        self.host_out.copy_(self.dev_out, non_blocking=True)
        torch.cuda.current_stream(self.dev_in.device).synchronize()
        return self.host_out.numpy().copy()
