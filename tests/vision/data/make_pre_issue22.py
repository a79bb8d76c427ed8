"""Writes pre_issue22/ (model.pt, interrupted/checkpoint_last.pt at step 10, represent.npy): a tiny β-VAE trained by stage 1 as it was before issue 22 (plain Adam).

Run once with darla at main 75476db (before the fused Adam and the CUDA-graph step):

    python tests/vision/data/make_pre_issue22.py

tests/vision/test_speed.py loads these files with today's code: the model must give the same
``represent()`` and the resumable checkpoint must resume (fused Adam) to the weights the old code
reached, to float tolerance.
"""

from pathlib import Path

import numpy as np
import torch

from vision.train import TrainSettings, train_vision
from vision.vae import BetaVAE

OUT = Path(__file__).parent / "pre_issue22"
ARCH = {"channels": [8, 8, 8], "hidden": 16}
SETTINGS = TrainSettings(steps=12, batch_size=16, lr=1e-3, checkpoint_every=10, log_every=4, device="cpu", seed=3, progress=False)


def frames() -> np.ndarray:
    return (np.random.default_rng(0).random((64, 32, 32, 3)) > 0.6).astype(np.uint8) * 255


def model() -> BetaVAE:
    torch.manual_seed(0)
    return BetaVAE((3, 32, 32), 4, **ARCH)


if __name__ == "__main__":
    train_vision(model(), frames(), SETTINGS, OUT)  # model.pt after 12 steps
    # checkpoint_last.pt as an interrupted run leaves it: killed at step 11, after the step-10 checkpoint
    real = BetaVAE.train_step

    def dying(self, x, step, *args, **kw):
        if step == 11:
            raise KeyboardInterrupt
        return real(self, x, step, *args, **kw)

    BetaVAE.train_step = dying
    try:
        train_vision(model(), frames(), SETTINGS, OUT / "interrupted")
    except KeyboardInterrupt:
        pass
    BetaVAE.train_step = real
    (OUT / "checkpoint_last.pt").unlink()
    x = frames()[:8].transpose(0, 3, 1, 2).astype(np.float32) / 255
    from vision.checkpoint import load_checkpoint

    np.save(OUT / "represent.npy", load_checkpoint(OUT / "model.pt").represent(x))
