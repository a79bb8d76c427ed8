"""Every registered vision model: shapes, finite loss, training lowers loss, checkpoints, represent.

Parametrised over ``VISION_MODELS``, so a model added to the registry is tested here the moment it
is registered; a model that needs constructor arguments must be given them in ``EXTRA`` or these
tests fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.registry import get_domain
from envs.seek_avoid import SeekAvoidGroundTruth
from envs.transitions import SeekAvoidTransitions
from vision.checkpoint import save_checkpoint
from vision.dae import DAE
from vision.registry import VISION_MODELS, load_checkpoint, make_model

SIDE = 32
SMALL = {"channels": [8, 8, 16, 16], "hidden": 32}
#: Models whose *own* objective is not "the loss on a fixed batch" are tested in their own files.
LOSS_LOWERS_ELSEWHERE = {
    "infogan": "adversarial: each player's loss is tested in test_infogan.py",
    "dcign": "trains on its own one-factor-varies batches: tested in test_dcign.py",
    "icf": "trains on its own env transitions: tested in test_icf.py",
}


@pytest.fixture(scope="module")
def dae_path(tmp_path_factory):
    torch.manual_seed(0)
    return str(save_checkpoint(tmp_path_factory.mktemp("dae") / "dae.pt", DAE((3, SIDE, SIDE), 16, **SMALL)))


def extra_kwargs(name: str, dae_path: str) -> dict:
    return {
        "beta_tcvae": {"dataset_size": 64},
        "beta_vae_dae": {"dae_checkpoint": dae_path},
    }.get(name, {})


#: DC-IGN needs a latent group per factor: seek-avoid has 10 factors.
LATENT = {"dcign": 10}


def build(name: str, dae_path: str, seed: int = 0):
    torch.manual_seed(seed)
    model = make_model(name, (3, SIDE, SIDE), latent_dim=LATENT.get(name, 4), **SMALL, **extra_kwargs(name, dae_path))
    if getattr(model, "learns_from", "frames") == "transitions":  # ICF: (s, a, s') from the env
        model.attach_data(SeekAvoidTransitions(SIDE, "vision"), np.random.default_rng(0))
    elif hasattr(model, "attach_data"):
        model.attach_data(SeekAvoidGroundTruth(SIDE, get_domain("seek_avoid", "vision")), np.random.default_rng(0))
    return model


def batch(n: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 3, SIDE, SIDE, generator=g) > 0.7).float()


@pytest.mark.parametrize("name", sorted(VISION_MODELS))
def test_shapes_and_finite_loss(name, dae_path):
    m = build(name, dae_path)
    assert m.name == name
    x = batch()
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (16, LATENT.get(name, 4))
    assert m.decode(mu).shape == x.shape
    out = m.loss(x, 0)
    assert out.total.ndim == 0 and torch.isfinite(out.total)
    assert all(torch.isfinite(v).all() for v in out.terms.values())


@pytest.mark.parametrize("name", sorted(set(VISION_MODELS) - set(LOSS_LOWERS_ELSEWHERE)))
def test_training_steps_lower_loss_on_fixed_batch(name, dae_path):
    m = build(name, dae_path)
    x = batch()
    opts = m.configure_optimizers(1e-3)

    def fixed_noise_loss() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return float(m.loss(x, 0).total)

    before = fixed_noise_loss()
    for step in range(5):
        terms = m.train_step(x, step, opts)
        assert "loss" in terms and all(not v.requires_grad for v in terms.values())
    assert fixed_noise_loss() < before


@pytest.mark.parametrize("name", sorted(VISION_MODELS))
def test_checkpoint_round_trip_and_deterministic_represent(name, dae_path, tmp_path):
    m = build(name, dae_path)
    opts = m.configure_optimizers(1e-3)
    m.train_step(batch(), 0, opts)  # weights that differ from any fresh init
    x = batch(10).numpy()
    a = m.represent(x)
    np.testing.assert_array_equal(a, m.represent(x))  # eval mode: no sampling
    np.testing.assert_allclose(a, m.represent(x, batch_size=3), rtol=1e-5, atol=1e-6)  # batching is float-exact only up to BLAS order
    back = load_checkpoint(save_checkpoint(tmp_path / "m.pt", m), expect={"model": name, "latent_dim": LATENT.get(name, 4)})
    assert type(back) is type(m)
    np.testing.assert_array_equal(a, back.represent(x))
    for k, v in m.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k


@pytest.mark.parametrize("name", sorted(VISION_MODELS))
def test_hparams_rebuild_the_same_architecture(name, dae_path):
    m = build(name, dae_path)
    again = type(m)(m.obs_shape, **m.hparams)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in m.state_dict().items()}
