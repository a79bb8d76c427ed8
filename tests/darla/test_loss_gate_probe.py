"""benchmarks/loss_gate_probe.py: the β-VAE-DAE's loss with its sigmoid and conv1's ReLU removed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import load_benchmark

from vision.base import ST_BOUND
from vision.dae import DAE, BetaVAEDAE

SHAPE = (3, 32, 32)


def models(variant):
    lg = load_benchmark("loss_gate_probe")
    torch.manual_seed(0)
    dae = DAE(SHAPE, latent_dim=8)
    ref = BetaVAEDAE(SHAPE, latent_dim=4, beta=0.001, dae=dae, dae_layer="conv1")
    gated = lg.GatedBetaVAEDAE(SHAPE, latent_dim=4, beta=0.001, dae=dae, dae_layer="conv1", variant=variant)
    gated.load_state_dict(ref.state_dict())
    return lg, ref, gated


@pytest.mark.parametrize("variant", ["sig_relu", "sig_st"])
def test_the_sigmoid_variants_have_the_beta_vae_daes_own_loss_value(variant):
    _, ref, gated = models(variant)
    x = torch.rand(5, *SHAPE)
    torch.manual_seed(1)
    want = ref.loss(x, 0)
    torch.manual_seed(1)  # the same reparameterisation noise
    got = gated.loss(x, 0)
    assert torch.equal(got.total, want.total) and torch.equal(got.terms["recon"], want.terms["recon"])


def test_lin_pre_is_the_squared_error_of_a_linear_filter_of_the_residual():
    _, _, gated = models("lin_pre")
    x = torch.rand(5, *SHAPE)
    torch.manual_seed(1)
    out = gated.loss(x, 0)
    torch.manual_seed(1)
    mu, logvar = gated.encode(x)
    raw = gated.decode(mu + torch.randn_like(mu) * torch.exp(0.5 * logvar))
    conv1 = gated.dae.encoder.conv[0]
    want = F.conv2d(raw - x, conv1.weight, None, conv1.stride, conv1.padding).pow(2).flatten(1).sum(1).mean()
    assert out.terms["recon"].item() == pytest.approx(want.item(), rel=1e-4)


def test_sig_pre_is_lin_pres_loss_of_the_sigmoid():
    _, _, gated = models("sig_pre")
    x = torch.rand(2, *SHAPE)
    raw = torch.randn(2, *SHAPE) * 5
    conv1 = gated.dae.encoder.conv[0]
    want = (conv1(torch.sigmoid(raw)) - conv1(x)).pow(2).sum() / 2  # mean over 2 frames
    gated.decode = lambda z: raw
    assert gated.loss(x, 0).terms["recon"].item() == pytest.approx(want.item(), rel=1e-5)


def test_st_pre_is_lin_pres_loss_of_the_sigmoid_with_sig_sts_gradient():
    _, _, gated = models("st_pre")
    x = torch.rand(2, *SHAPE)
    raw = (torch.randn(2, *SHAPE) * 5).requires_grad_(True)
    x_hat = torch.sigmoid(raw).detach().requires_grad_(True)
    conv1 = gated.dae.encoder.conv[0]
    want = (conv1(x_hat) - conv1(x)).pow(2).sum() / 2  # loss: mean over 2 frames
    want.backward()
    gated.decode = lambda z: raw
    out = gated.loss(x, 0)
    assert out.terms["recon"].item() == pytest.approx(want.item(), rel=1e-5)
    out.total.backward()
    outward = (raw.detach().abs() > ST_BOUND) & (x_hat.grad * raw.detach() < 0)
    assert 0 < outward.sum() < outward.numel()
    torch.testing.assert_close(raw.grad, x_hat.grad.masked_fill(outward, 0.0))


def test_sig_st_passes_the_gradient_of_the_sigmoids_output_to_the_logit():
    """d loss / d raw equals d loss / d x̂ of the real loss (the sigmoid's factor left out), except a
    push outward from a logit past ±ST_BOUND, which is dropped."""
    _, _, gated = models("sig_st")
    x = torch.rand(2, *SHAPE)
    raw = (torch.randn(2, *SHAPE) * 5).requires_grad_(True)
    x_hat = torch.sigmoid(raw).detach().requires_grad_(True)
    (gated.dae.features(x_hat, "conv1") - gated.dae.features(x, "conv1")).pow(2).sum().backward()
    gated.decode = lambda z: raw
    gated.loss(x, 0).total.backward()
    outward = (raw.detach().abs() > ST_BOUND) & (x_hat.grad * raw.detach() < 0)
    assert 0 < outward.sum() < outward.numel()
    torch.testing.assert_close(raw.grad, x_hat.grad.masked_fill(outward, 0.0) / 2)  # loss: mean over 2 frames


@pytest.mark.parametrize("variant, gated_out", [("sig_relu", True), ("lin_relu", False), ("lin_pre", False), ("sig_st", False),
                                               ("st_pre", False)])
def test_the_sigmoid_gates_the_gradient_that_reaches_an_undrawn_target(variant, gated_out):
    # The decoder draws a confident dark background (logit −8); the frame has a bright 3×3 target.
    _, _, gated = models(variant)
    x = torch.zeros(1, *SHAPE)
    x[..., 10:13, 10:13] = 1.0
    raw = torch.full((1, *SHAPE), -8.0, requires_grad=True)
    gated.decode = lambda z: raw  # the variant's own loss, on this decoder output
    gated.loss(x, 0).total.backward()
    at_target = raw.grad[..., 10:13, 10:13].abs().sum().item()
    # through the sigmoid the gradient is scaled by σ'(−8) ≈ 3e-4; without it, it is O(1)
    assert (at_target < 1e-2) if gated_out else (at_target > 0.1)


@pytest.mark.parametrize("gated, straight", [("sig_relu", "sig_st"), ("sig_pre", "st_pre")])
def test_the_sigmoids_gate_is_its_slope_exactly(gated, straight):
    """Where no outward push is dropped, the exact sigmoid's gradient is the straight-through one times σ'(z)."""
    x = torch.rand(2, *SHAPE)
    raw = torch.randn(2, *SHAPE) * 3
    grads = {}
    for variant in (gated, straight):
        _, _, model = models(variant)
        r = raw.clone().requires_grad_(True)
        model.decode = lambda z, r=r: r
        model.loss(x, 0).total.backward()
        grads[variant] = r.grad
    s = torch.sigmoid(raw)
    kept = raw.abs() <= ST_BOUND
    assert kept.float().mean() > 0.9
    torch.testing.assert_close(grads[gated][kept], (grads[straight] * s * (1 - s))[kept])


def test_refusals():
    lg = load_benchmark("loss_gate_probe")
    dae = DAE(SHAPE, latent_dim=8)
    with pytest.raises(ValueError, match="one of"):
        lg.GatedBetaVAEDAE(SHAPE, latent_dim=4, dae=dae, dae_layer="conv1", variant="pix_lin")
    with pytest.raises(ValueError, match="dae_layer is 'bottleneck'"):
        lg.GatedBetaVAEDAE(SHAPE, latent_dim=4, dae=dae, variant="lin_pre")


def test_pixel_variants_losses():
    """``bern`` is the β-VAE's own Bernoulli loss; ``bern_mid`` is that likelihood of 0.25 + 0.5·x
    (the encoder still sees x); ``pix_lin`` is the squared error of the raw output, ``pix_sig`` and
    ``pix_st`` that of its sigmoid."""
    lg = load_benchmark("loss_gate_probe")
    torch.manual_seed(0)
    x = torch.rand(5, *SHAPE)
    ref = lg.PIXEL_MODELS["bern"](SHAPE, latent_dim=4, beta=0.001)
    for variant, recon in [("bern", lambda raw: F.binary_cross_entropy_with_logits(raw, x, reduction="sum") / 5),
                           ("bern_mid", lambda raw: F.binary_cross_entropy_with_logits(raw, 0.25 + 0.5 * x, reduction="sum") / 5),
                           ("pix_lin", lambda raw: (raw - x).pow(2).sum() / 5),
                           ("pix_sig", lambda raw: (torch.sigmoid(raw) - x).pow(2).sum() / 5),
                           ("pix_st", lambda raw: (torch.sigmoid(raw) - x).pow(2).sum() / 5)]:
        model = lg.PIXEL_MODELS[variant](SHAPE, latent_dim=4, beta=0.001)
        model.load_state_dict(ref.state_dict())
        torch.manual_seed(1)
        out = model.loss(x, 0)
        torch.manual_seed(1)  # the same reparameterisation noise
        mu, logvar = model.encode(x)
        want = recon(model.decode(mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)))
        assert out.terms["recon"].item() == pytest.approx(want.item(), rel=1e-5), variant


def test_pix_st_has_twice_the_bernoullis_gradient_and_pix_sig_adds_the_gate():
    """With respect to the logit: the Bernoulli's gradient is σ(z) − x; ``pix_st``'s is 2(σ(z) − x)
    but for outward pushes past ±ST_BOUND; ``pix_sig``'s is 2(σ(z) − x)σ'(z)."""
    lg = load_benchmark("loss_gate_probe")
    torch.manual_seed(0)
    x = torch.rand(2, *SHAPE)
    logits = torch.randn(2, *SHAPE) * 5
    x[..., :4, :4] = 0.0  # pixels at 0 under very negative logits: the Bernoulli pushes them further out
    logits[..., :4, :4] = -9.0
    grads = {}
    for variant in ("bern", "pix_st", "pix_sig"):
        raw = logits.clone().requires_grad_(True)
        model = lg.PIXEL_MODELS[variant](SHAPE, latent_dim=4, beta=0.001)
        model.decode = lambda z, raw=raw: raw
        model.loss(x, 0).total.backward()
        grads[variant] = raw.grad
    residual = (torch.sigmoid(logits) - x) / 2  # loss: mean over 2 frames
    torch.testing.assert_close(grads["bern"], residual)
    outward = (logits.abs() > ST_BOUND) & (residual * logits < 0)
    assert outward[..., :4, :4].all() and not outward.all()
    torch.testing.assert_close(grads["pix_st"], (2 * residual).masked_fill(outward, 0.0))
    s = torch.sigmoid(logits)
    torch.testing.assert_close(grads["pix_sig"], 2 * residual * s * (1 - s))


@pytest.mark.parametrize("variant, layer", [("sig_st", "conv1"), ("st_pre", "conv1_pre")])
def test_the_straight_through_variants_are_darlas_option(variant, layer):
    """``straight_through: true`` on darla's β-VAE-DAE is the probe's variant: the same loss and gradients."""
    _, ref, gated = models(variant)
    option = BetaVAEDAE(SHAPE, latent_dim=4, beta=0.001, dae=ref.dae, dae_layer=layer, straight_through=True)
    option.load_state_dict(ref.state_dict())
    x = torch.rand(3, *SHAPE)
    grads = []
    for model in (gated, option):
        model.zero_grad()
        torch.manual_seed(1)
        model.loss(x, 0).total.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


@pytest.mark.parametrize("variant, layer, straight", [
    ("sig_relu", "conv1", False), ("sig_pre", "conv1_pre", False), ("sig_st", "conv1", True), ("st_pre", "conv1_pre", True),
])
def test_a_sigmoid_variants_checkpoint_loads_as_the_beta_vae_dae_it_trained(variant, layer, straight, tmp_path):
    from vision.checkpoint import save_checkpoint
    from vision.registry import load_checkpoint

    _, _, gated = models(variant)
    back = load_checkpoint(save_checkpoint(tmp_path / "m.pt", gated))
    assert type(back) is BetaVAEDAE and (back.dae_layer, back.straight_through) == (layer, straight)
    x = torch.rand(3, *SHAPE)
    torch.manual_seed(2)
    want = gated.loss(x, 0).total
    torch.manual_seed(2)
    assert back.loss(x, 0).total.item() == want.item()
