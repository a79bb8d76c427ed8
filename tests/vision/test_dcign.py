"""DC-IGN: the clamp's forward/backward, one-factor-varies batches inside the domain, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.registry import get_domain
from envs.seek_avoid import SeekAvoidGroundTruth
from vision.checkpoint import save_checkpoint
from vision.dcign import DCIGN, GroupClamp
from vision.registry import load_checkpoint

SMALL = {"channels": [8, 8, 16, 16], "hidden": 32}
N_FACTORS = 10  # seek-avoid: 4 scene factors + 6 cell coordinates


@pytest.fixture(scope="module")
def data() -> SeekAvoidGroundTruth:
    return SeekAvoidGroundTruth(size=32, domain=get_domain("seek_avoid", "vision"))


def model(data, latent: int = 12, seed: int = 0, **kw) -> DCIGN:
    torch.manual_seed(seed)
    m = DCIGN((3, 32, 32), latent, **SMALL, **kw)
    m.attach_data(data, np.random.default_rng(seed))
    return m


def test_clamp_forward_is_the_batch_mean_and_backward_is_z_minus_mean():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    active = torch.tensor([False, True, True, False, False])
    out = GroupClamp.apply(z, active)
    mean = z.detach().mean(0)
    torch.testing.assert_close(out[:, ~active], mean[~active].expand(6, 3))
    assert torch.equal(out[:, active], z[:, active])  # the active group passes unchanged
    w = torch.randn(6, 5, generator=g, dtype=torch.float64)  # an arbitrary upstream gradient
    (grad,) = torch.autograd.grad((out * w).sum(), z)
    # Hand computation: clamped units get the gradient of ½Σ_n (z_n − z̄)², i.e. z − z̄ ...
    (hand,) = torch.autograd.grad(0.5 * (z - z.mean(0)).pow(2).sum(), z)
    torch.testing.assert_close(hand, z.detach() - mean)
    torch.testing.assert_close(grad[:, ~active], hand[:, ~active])
    # ... and the active group gets the ordinary gradient of the upstream loss.
    (plain,) = torch.autograd.grad((z * w).sum(), z)
    torch.testing.assert_close(grad[:, active], plain[:, active])


def test_batches_vary_exactly_one_factor_and_render_their_factors(data):
    m = model(data)
    varied = set()
    for step in range(30):
        b = m.batch_for_step(step, 16)
        assert b.factors.shape == (16, N_FACTORS) and b.images.shape == (16, 3, 32, 32)
        others = np.delete(b.factors, b.factor, axis=1)
        assert (others == others[0]).all(), f"step {step}: a factor other than {b.factor} varies"
        if len(np.unique(b.factors[:, b.factor])) > 1:
            varied.add(b.factor)
        np.testing.assert_array_equal(b.images, data.sample_observations_from_factors(b.factors, None))
    assert len(varied) >= 6  # uniform batch types: most factors came up and varied


def test_batches_stay_inside_the_domain(data):
    domain = data.domain
    # Only floor and object colour vary: exactly the pair whose high/high combination is held out.
    m = model(data, factor_weights=[1.0, 0.0, 1.0] + [0.0] * 7)
    seen_high = {0: False, 2: False}
    for step in range(40):
        b = m.batch_for_step(step, 16)
        assert b.factor in (0, 2)
        for scene in b.factors[:, : len(domain.space)]:
            assert domain.contains(scene), f"step {step}: scene {scene.tolist()} is held out"
        seen_high[b.factor] |= bool((b.factors[:, b.factor] >= 2).any())
    assert all(seen_high.values())  # high values were drawn, so the constraint was exercised


def test_same_step_same_batch_and_resume_draws_the_same(data):
    m = model(data)
    a, b = m.batch_for_step(7, 8), m.batch_for_step(7, 8)
    assert a.factor == b.factor and np.array_equal(a.factors, b.factors) and np.array_equal(a.images, b.images)
    assert any(not np.array_equal(a.factors, m.batch_for_step(s, 8).factors) for s in range(8, 12))
    fresh = model(data)  # a resumed run attaches with the same seeded rng
    assert np.array_equal(fresh.batch_for_step(7, 8).factors, a.factors)


def test_train_steps_lower_the_loss_on_its_own_batch_type(data):
    m = model(data)
    (opt,) = m.configure_optimizers(1e-3)
    b = m.batch_for_step(0, 16)
    x = torch.as_tensor(b.images)

    def fixed_noise_loss() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return float(m.grouped_loss(x, b.factor).total)

    before = fixed_noise_loss()
    for _ in range(5):
        terms = m.train_step(torch.zeros(16, 3, 32, 32), 0, [opt])  # x's content is ignored
        assert float(terms["active_factor"]) == b.factor and not terms["loss"].requires_grad
    assert fixed_noise_loss() < before


def test_train_step_ignores_the_loop_batch_content(data):
    runs = []
    for fill in (0.0, 1.0):
        m = model(data)
        (opt,) = m.configure_optimizers(1e-3)
        torch.manual_seed(5)
        m.train_step(torch.full((8, 3, 32, 32), fill), 3, [opt])
        runs.append(m.state_dict())
    for k, v in runs[0].items():
        assert torch.equal(v, runs[1][k]), k


def test_plain_loss_terms_and_shapes(data):
    m = model(data, beta=2.0)
    x = torch.as_tensor(m.batch_for_step(0, 8).images)
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (8, 12) and m.decode(mu).shape == x.shape
    out = m.loss(x, 0)
    assert set(out.terms) == {"recon", "kl", "kl_per_dim"} and out.terms["kl_per_dim"].shape == (12,)
    assert torch.isfinite(out.total)
    torch.testing.assert_close(out.total, out.terms["recon"] + 2.0 * out.terms["kl"])
    assert m.groups[0] == (0, 2) and m.groups[-1] == (11, 12)  # 12 latents over 10 factors, contiguous


def test_missing_data_and_bad_arguments(data):
    m = DCIGN((3, 32, 32), 12, **SMALL)
    with pytest.raises(RuntimeError, match="call attach_data"):
        m.train_step(torch.zeros(4, 3, 32, 32), 0, m.configure_optimizers(1e-3))
    with pytest.raises(ValueError, match=r"latent_dim 4 .* 10 factors"):
        DCIGN((3, 32, 32), 4, **SMALL).attach_data(data, np.random.default_rng(0))
    with pytest.raises(ValueError, match="factor_weights has 3 entries"):
        DCIGN((3, 32, 32), 12, factor_weights=[1.0, 1.0, 10.0], **SMALL).attach_data(data, np.random.default_rng(0))
    with pytest.raises(ValueError, match="factor_weights must be"):
        DCIGN((3, 32, 32), 12, factor_weights=[-1.0] * 10)
    with pytest.raises(ValueError, match="beta must be"):
        DCIGN((3, 32, 32), 12, beta=-1.0)


def test_checkpoint_round_trip_and_deterministic_represent(data, tmp_path):
    m = model(data, beta=3.0, factor_weights=[1.0] * 10)
    m.train_step(torch.zeros(8, 3, 32, 32), 0, m.configure_optimizers(1e-3))
    x = m.batch_for_step(1, 10).images
    a = m.represent(x)
    np.testing.assert_array_equal(a, m.represent(x))
    back = load_checkpoint(save_checkpoint(tmp_path / "m.pt", m), expect={"model": "dcign", "latent_dim": 12})
    assert isinstance(back, DCIGN) and back.beta == 3.0 and back.factor_weights == [1.0] * 10
    np.testing.assert_array_equal(a, back.represent(x))
