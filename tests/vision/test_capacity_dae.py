"""Capacity-annealed β-VAE, the DAE's corruptions, and β-VAE-DAE's frozen perceptual space."""

from __future__ import annotations

import pytest
import torch

from vision.checkpoint import CheckpointError, model_record, save_atomic, save_checkpoint
from vision.dae import DAE, BetaVAEDAE
from vision.registry import load_checkpoint, load_dae, make_model
from vision.vae import BetaVAE, CapacityVAE

SMALL = {"channels": [8, 8, 16, 16], "hidden": 32}
SHAPE = (3, 32, 32)


def batch(n: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, *SHAPE, generator=g).mul(0.5).add(0.5)  # bright: corruption to 0 is visible


def test_capacity_schedule():
    m = CapacityVAE(SHAPE, 4, gamma=100.0, c_max=20.0, c_steps=1000, **SMALL)
    assert [m.capacity(s) for s in (0, 250, 500, 1000, 5000)] == [0.0, 5.0, 10.0, 20.0, 20.0]


def test_capacity_loss_is_gamma_abs_kl_minus_c():
    torch.manual_seed(0)
    m = CapacityVAE(SHAPE, 4, gamma=100.0, c_max=20.0, c_steps=1000, **SMALL)
    x = batch()
    for step in (0, 500):
        torch.manual_seed(1)
        out = m.loss(x, step)
        c = m.capacity(step)
        assert float(out.terms["capacity"]) == c
        torch.testing.assert_close(out.total, out.terms["recon"] + 100.0 * (out.terms["kl"] - c).abs())


@pytest.mark.parametrize("corruption", ["mask", "gaussian", "dropout"])
def test_dae_corruptions(corruption):
    m = DAE(SHAPE, 16, corruption=corruption, **SMALL)
    x = batch()
    torch.manual_seed(0)
    a = m.corrupt(x)
    torch.manual_seed(0)
    assert torch.equal(a, m.corrupt(x))  # seeded like everything else
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)
    if corruption in ("mask", "dropout"):
        zeroed = (a == 0).all(dim=1)  # whole pixels, every channel
        assert ((a == 0) == zeroed[:, None]).all()
        frac = zeroed.float().mean().item()
        assert 0.005 < frac < 0.8


def test_dae_mask_is_one_rectangle_per_mask():
    m = DAE(SHAPE, 16, corruption="mask", n_masks=1, **SMALL)
    torch.manual_seed(3)
    zeroed = (m.corrupt(batch()) == 0).all(dim=1)  # inputs are ≥ 0.5, so only the mask makes zeros
    for img in zeroed:
        ys, xs = torch.nonzero(img, as_tuple=True)
        assert len(ys) > 0
        box = img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        assert box.all()  # the zeroed pixels fill their bounding box: a rectangle
        assert 0.1 * 32 - 1 <= box.shape[0] <= 0.5 * 32 + 1 and 0.1 * 32 - 1 <= box.shape[1] <= 0.5 * 32 + 1


def test_dae_reconstructs_the_clean_frame():
    torch.manual_seed(0)
    m = DAE(SHAPE, 16, corruption="gaussian", noise_std=0.0, **SMALL)
    x = batch()
    from vision.base import reconstruction_loss

    expected = reconstruction_loss(m.decode(m.encode(x)[0]), x, "bernoulli")
    torch.testing.assert_close(m.loss(x, 0).total, expected)
    with pytest.raises(ValueError, match="corruption must be one of"):
        DAE(SHAPE, corruption="blur")


@pytest.fixture
def trained_dae():
    torch.manual_seed(0)
    return DAE(SHAPE, 16, **SMALL).eval()


@pytest.fixture
def dae_file(tmp_path, trained_dae):
    return save_checkpoint(tmp_path / "dae.pt", trained_dae)


@pytest.mark.parametrize("layer", ["bottleneck", "output", "conv2"])
def test_beta_vae_dae_never_updates_the_dae(trained_dae, layer):
    torch.manual_seed(0)
    m = BetaVAEDAE(SHAPE, 4, beta=2.0, dae=trained_dae, dae_layer=layer, **SMALL)
    frozen = {k: v.clone() for k, v in m.dae.state_dict().items()}
    vae_before = {k: v.clone() for k, v in m.encoder.state_dict().items()}
    (opt,) = m.configure_optimizers(1e-3)
    assert not {id(p) for p in m.dae.parameters()} & {id(p) for g in opt.param_groups for p in g["params"]}
    m.train()
    assert not m.dae.training and m.training
    for step in range(3):
        m.train_step(batch(), step, [opt])
    for k, v in m.dae.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    assert any(not torch.equal(v, vae_before[k]) for k, v in m.encoder.state_dict().items())


def reference_features(dae: DAE, layer: str):
    """J written out from the DAE's own layers: the bottleneck, or the k-th conv map after its ReLU
    (``convk``) or before it (``convk_pre``)."""
    if layer == "bottleneck":
        return dae.encoder
    convs = [m for m in dae.encoder.conv if isinstance(m, torch.nn.Conv2d)][: int(layer[4:].removesuffix("_pre"))]

    def j(im):
        for i, conv in enumerate(convs):
            im = conv(im)
            if i < len(convs) - 1 or not layer.endswith("_pre"):
                im = torch.relu(im)
        return im

    return j


@pytest.mark.parametrize(("layer", "shape"), [
    ("bottleneck", (8, 16)), ("conv1", (8, 8, 16, 16)), ("conv2", (8, 8, 8, 8)), ("conv4", (8, 16, 2, 2)),
    ("conv1_pre", (8, 8, 16, 16)), ("conv2_pre", (8, 8, 8, 8)),
])
def test_beta_vae_dae_loss_is_the_squared_error_in_the_daes_layer(trained_dae, layer, shape):
    torch.manual_seed(0)
    m = BetaVAEDAE(SHAPE, 4, beta=3.0, dae=trained_dae, dae_layer=layer, **SMALL)
    x = batch()
    torch.manual_seed(7)
    out = m.loss(x, 0)
    torch.manual_seed(7)
    mu, logvar = m.encode(x)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    j = reference_features(m.dae, layer)
    assert j(x).shape == shape
    expected = (j(torch.sigmoid(m.decode(z))) - j(x)).pow(2).flatten(1).sum(1).mean()
    torch.testing.assert_close(out.terms["recon"], expected)
    torch.testing.assert_close(out.total, expected + 3.0 * out.terms["kl"])


def test_beta_vae_dae_refuses_a_conv_layer_the_dae_lacks(trained_dae):
    for layer in ("conv5", "conv5_pre"):
        with pytest.raises(ValueError, match="the DAE has 4 conv layers"):
            BetaVAEDAE(SHAPE, 4, dae=trained_dae, dae_layer=layer, **SMALL)
    with pytest.raises(ValueError, match="dae_layer must be one of"):
        BetaVAEDAE(SHAPE, 4, dae=trained_dae, dae_layer="fc1", **SMALL)


def test_beta_vae_dae_reconstructs_through_the_dae(trained_dae):
    """Its pixels are unconstrained by the loss; the recon grid shows what the DAE makes of them."""
    torch.manual_seed(0)
    m = BetaVAEDAE(SHAPE, 4, dae=trained_dae, **SMALL).eval()
    x = batch()
    mu, _ = m.encode(x)
    raw = torch.sigmoid(m.decode(mu))
    through = torch.sigmoid(m.dae.decode(m.dae.encode(raw)[0]))
    out = m.reconstruct(x)
    torch.testing.assert_close(out, through)
    assert out.shape == x.shape and not torch.allclose(out, raw)


def test_beta_vae_dae_traversals_and_scan_images_go_through_the_dae(trained_dae):
    """Every picture of the model (traversal rows, SCAN's decoded samples) comes from ``render``."""
    import numpy as np

    from vision.scan.model import Posterior
    from vision.scan.train import decode_samples
    from vision.traverse import to_uint8_hwc, traversal_grid

    torch.manual_seed(0)
    m = BetaVAEDAE(SHAPE, 4, dae=trained_dae, **SMALL).eval()
    x0 = batch(1)[0]
    grid = traversal_grid(m, x0.numpy(), order=[0], n_steps=3, limit=1.0)
    mu, _ = m.encode(x0[None])
    z = mu.repeat(3, 1)
    z[:, 0] = torch.linspace(-1.0, 1.0, 3)
    through = to_uint8_hwc(m.dae.reconstruct(torch.sigmoid(m.decode(z))))
    h, w = SHAPE[1:]
    for k in range(3):  # tile(): 1-px padding; column 0 is x0 itself
        x = 1 + (k + 1) * (w + 1)
        np.testing.assert_array_equal(grid[1 : 1 + h, x : x + w], through[k])
    g = torch.Generator().manual_seed(0)
    post = Posterior(mu, torch.zeros_like(mu))
    imgs = decode_samples(post, m, 2, g)
    g = torch.Generator().manual_seed(0)
    zs = mu + torch.randn((2, 4), generator=g) * 1.0
    torch.testing.assert_close(imgs, m.dae.reconstruct(torch.sigmoid(m.decode(zs))))


def test_beta_vae_dae_holds_its_own_frozen_copy_of_the_dae(trained_dae):
    torch.manual_seed(0)
    m = BetaVAEDAE(SHAPE, 4, dae=trained_dae, **SMALL)
    assert m.dae is not trained_dae and all(p.requires_grad for p in trained_dae.parameters())  # the caller's is untouched
    for k, v in trained_dae.state_dict().items():
        assert torch.equal(m.dae.state_dict()[k], v), k
    assert m.hparams["dae_kwargs"] == trained_dae.hparams and m.hparams["dae_checkpoint"] is None


def test_make_model_reads_dae_checkpoint_like_a_given_dae(dae_file, trained_dae):
    """The config's ``dae_checkpoint`` is read by the registry; the seeded build is the same either way."""
    torch.manual_seed(5)
    from_file = make_model("beta_vae_dae", SHAPE, latent_dim=4, beta=2.0, dae_checkpoint=str(dae_file), **SMALL)
    after_file = torch.rand(3)
    torch.manual_seed(5)
    given = BetaVAEDAE(SHAPE, 4, beta=2.0, dae=trained_dae, **SMALL)
    assert torch.equal(after_file, torch.rand(3))  # reading the DAE drew nothing from torch's RNG
    assert from_file.hparams == given.hparams
    for k, v in given.state_dict().items():
        assert torch.equal(from_file.state_dict()[k], v), k
    assert isinstance(load_dae(dae_file, SHAPE), DAE)


def test_beta_vae_dae_checkpoint_is_self_contained(dae_file, tmp_path):
    """A saved β-VAE-DAE (DAE architecture in ``dae_kwargs``, its weights in the state dict) reloads
    without the DAE's file and encodes exactly as the model that was saved."""
    torch.manual_seed(0)
    m = make_model(BetaVAEDAE, SHAPE, latent_dim=4, dae_checkpoint=str(dae_file), **SMALL).eval()
    p = save_checkpoint(tmp_path / "m.pt", m)
    dae_file.unlink()  # the DAE's own file is gone; its weights travel inside the model
    back = load_checkpoint(p)
    for k, v in m.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])
    x = batch(6).numpy()
    assert (back.represent(x) == m.represent(x)).all()


def test_straight_through_is_saved_and_a_checkpoint_from_before_it_loads_without_it(dae_file, tmp_path):
    torch.manual_seed(0)
    m = make_model(BetaVAEDAE, SHAPE, latent_dim=4, dae_checkpoint=str(dae_file), dae_layer="conv1_pre",
                   straight_through=True, **SMALL)
    back = load_checkpoint(save_checkpoint(tmp_path / "st.pt", m))
    assert back.straight_through and back.dae_layer == "conv1_pre" and back.hparams == m.hparams
    # a checkpoint written before the option existed has no such key: DARLA's own gradient
    record = model_record(m)
    del record["kwargs"]["straight_through"]
    save_atomic({**record, "extra": {}}, tmp_path / "old.pt")
    old = load_checkpoint(tmp_path / "old.pt")
    assert not old.straight_through
    for k, v in m.state_dict().items():
        assert torch.equal(old.state_dict()[k], v), k


def test_straight_through_changes_the_gradient_not_the_loss(trained_dae):
    x = batch()
    out = {}
    for st in (False, True):
        torch.manual_seed(0)
        m = BetaVAEDAE(SHAPE, 4, beta=0.5, dae=trained_dae, dae_layer="conv1_pre", straight_through=st, **SMALL)
        torch.manual_seed(7)
        loss = m.loss(x, 0).total
        loss.backward()
        out[st] = (loss.item(), torch.cat([p.grad.flatten() for p in m.decoder.parameters()]))
    assert out[True][0] == out[False][0]
    assert not torch.allclose(out[True][1], out[False][1])


def test_beta_vae_dae_refuses_a_wrong_or_missing_dae(tmp_path):
    with pytest.raises(ValueError, match="needs a trained DAE"):
        BetaVAEDAE(SHAPE, 4, **SMALL)
    with pytest.raises(ValueError, match="needs a trained DAE"):
        BetaVAEDAE(SHAPE, 4, dae=BetaVAE(SHAPE, 4, **SMALL), **SMALL)
    with pytest.raises(ValueError, match="reads no files.*make_model"):
        BetaVAEDAE(SHAPE, 4, dae_checkpoint=str(tmp_path / "dae.pt"), **SMALL)
    other = save_checkpoint(tmp_path / "vae.pt", BetaVAE(SHAPE, 4, **SMALL))
    with pytest.raises(CheckpointError, match="holds a 'beta_vae'.*needs a 'dae'"):
        make_model(BetaVAEDAE, SHAPE, latent_dim=4, dae_checkpoint=str(other), **SMALL)
    small = save_checkpoint(tmp_path / "d24.pt", DAE((3, 24, 24), 8, **SMALL))
    with pytest.raises(CheckpointError, match=r"for images \(3, 24, 24\)"):
        make_model(BetaVAEDAE, SHAPE, latent_dim=4, dae_checkpoint=str(small), **SMALL)
    with pytest.raises(CheckpointError, match="no vision checkpoint"):
        make_model(BetaVAEDAE, SHAPE, latent_dim=4, dae_checkpoint=str(tmp_path / "missing.pt"), **SMALL)
