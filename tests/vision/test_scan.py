"""SCAN: vocabulary, objective (forward vs reverse KL), recombination operators, evaluation.

The toy "vision model" is a stub whose posterior is known: latent 0 carries attribute A
(mean 2·(a−1), σ = 0.1), latent 1 attribute B (same code), latents 2–3 are per-image noise
(mean ~ N(0, 1), σ = 0.1). Descriptions always name A and name B half the time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from envs.factors import Factor, FactorSpace
from envs.seek_avoid import SCENE_SPACE
from vision.base import VisionModel
from vision.scan.evaluate import accuracy, diversity
from vision.scan.model import SCAN, gaussian_kl
from vision.scan.recombine import OPERATORS, Recombinator, apply_operator, apply_operators
from vision.scan.vocab import Vocabulary
from vision.vae import BetaVAE

LATENT = 4
SIGMA_X = 0.1
TOY_SPACE = FactorSpace((Factor("a", ("a0", "a1", "a2")), Factor("b", ("b0", "b1", "b2"))))


class StubVision(VisionModel):
    """Images are (N, 1, 1, LATENT) tensors holding the posterior means; σ is a fixed 0.1."""

    name = "stub"

    def __init__(self) -> None:
        super().__init__((1, 1, LATENT), LATENT)
        self.enc = nn.Linear(LATENT, LATENT)
        with torch.no_grad():
            self.enc.weight.copy_(torch.eye(LATENT))
            self.enc.bias.zero_()
        self.logvar = nn.Parameter(torch.full((LATENT,), 2 * float(np.log(SIGMA_X))))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu = self.enc(x.flatten(1))
        return mu, self.logvar.expand_as(mu)

    def decode(self, z: Tensor) -> Tensor:
        return z.view(-1, 1, 1, LATENT)


def toy_batch(vocab: Vocabulary, n: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(y, images, factors): A always described, B described with probability ½."""
    a = torch.randint(0, 3, (n,), generator=g)
    b = torch.randint(0, 3, (n,), generator=g)
    images = torch.randn((n, 1, 1, LATENT), generator=g)
    images[:, 0, 0, 0] = 2.0 * (a - 1).float()
    images[:, 0, 0, 1] = 2.0 * (b - 1).float()
    say_b = torch.rand((n,), generator=g) < 0.5
    y = torch.zeros((n, len(vocab)))
    y[torch.arange(n), a] = 1.0
    y[torch.arange(n)[say_b], 3 + b[say_b]] = 1.0
    return y, images, torch.stack([a, b], dim=1)


def train_scan(kl_direction: str, steps: int = 400, seed: int = 0) -> tuple[SCAN, StubVision, Vocabulary]:
    torch.manual_seed(seed)
    vocab = Vocabulary(TOY_SPACE)
    vision = StubVision()
    scan = SCAN(len(vocab), LATENT, hidden=[32], kl_direction=kl_direction)
    opt = scan.configure_optimizer(lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        y, images, _ = toy_batch(vocab, 64, g)
        scan.train_step(y, images, vision, opt)
    return scan, vision, vocab


@pytest.fixture(scope="module")
def forward_scan() -> tuple[SCAN, StubVision, Vocabulary]:
    return train_scan("forward")


@pytest.fixture(scope="module")
def reverse_scan() -> tuple[SCAN, StubVision, Vocabulary]:
    return train_scan("reverse")


def symbol_sigma(scan: SCAN, vocab: Vocabulary, words: list[str]) -> np.ndarray:
    with torch.no_grad():
        q = scan.encode(torch.as_tensor(vocab.encode(words))[None])
    return torch.exp(0.5 * q.logvar)[0].numpy()


# -- gaussian_kl ----------------------------------------------------------------------------------
def test_gaussian_kl_matches_torch_closed_form():
    g = torch.Generator().manual_seed(0)
    mu_p, mu_q, lv_p, lv_q = (torch.randn((5, 3), generator=g) for _ in range(4))
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu_p, torch.exp(0.5 * lv_p)),
        torch.distributions.Normal(mu_q, torch.exp(0.5 * lv_q)),
    )
    torch.testing.assert_close(gaussian_kl(mu_p, lv_p, mu_q, lv_q), expected)
    assert torch.allclose(gaussian_kl(mu_p, lv_p, mu_p, lv_p), torch.zeros(5, 3), atol=1e-6)


# -- the objective ----------------------------------------------------------------------------------
def test_forward_kl_keeps_unspecified_latents_wide_and_reverse_collapses(forward_scan, reverse_scan):
    for scan, _, _ in (forward_scan, reverse_scan):
        assert scan.hparams["kl_direction"] == scan.kl_direction
    fwd = symbol_sigma(forward_scan[0], forward_scan[2], ["a=a2"])  # B unspecified
    rev = symbol_sigma(reverse_scan[0], reverse_scan[2], ["a=a2"])
    # Specified attribute's latent: narrow under both objectives.
    assert fwd[0] < 0.5 and rev[0] < 0.5
    # Unspecified factor (latent 1) and pure-noise latents (2, 3): wide under forward KL ...
    assert (fwd[1:] > 0.5).all(), fwd
    # ... and collapsed under reverse KL (mode-seeking), clearly narrower than forward.
    assert (rev[1:] < 0.5).all(), rev
    assert (rev[1:] < 0.5 * fwd[1:]).all(), (fwd, rev)
    # Naming B too narrows latent 1 under forward KL as well.
    assert symbol_sigma(forward_scan[0], forward_scan[2], ["a=a2", "b=b0"])[1] < 0.5


def test_img2sym_recovers_attributes(forward_scan):
    scan, vision, vocab = forward_scan
    images = torch.zeros((3, 1, 1, LATENT))
    images[:, 0, 0, 0] = torch.tensor([-2.0, 0.0, 2.0])  # a0, a1, a2; B latent at 0 → b1
    probs = scan.img2sym(images, vision).numpy()
    for i in range(3):
        a_probs = probs[i, vocab.slices["a"]]
        assert a_probs[i] > 0.5, probs[i]
        assert (np.delete(a_probs, i) < 0.5).all(), probs[i]
        assert f"a=a{i}" in vocab.decode(probs[i])


def test_sym2img_samples_follow_the_symbol_posterior(forward_scan):
    scan, vision, vocab = forward_scan
    y = torch.as_tensor(vocab.encode(["a=a0"]))
    imgs = scan.sym2img(y, vision, n=200, generator=torch.Generator().manual_seed(0))
    assert imgs.shape == (1, 200, 1, 1, LATENT)
    z = torch.logit(imgs[0, :, 0, 0].clamp(1e-6, 1 - 1e-6))  # stub decode = identity logits
    assert abs(z[:, 0].mean().item() + 2.0) < 0.3  # a0 ↔ latent 0 at −2
    assert z[:, 2].std().item() > 0.5  # unspecified noise latent varies
    again = scan.sym2img(y, vision, n=200, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(imgs, again)


def test_same_seed_same_result_and_vision_weights_unchanged():
    a, vision_a, _ = train_scan("forward", steps=20, seed=3)
    b, _, _ = train_scan("forward", steps=20, seed=3)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)
    assert torch.equal(vision_a.enc.weight, torch.eye(LATENT))
    assert torch.equal(vision_a.logvar, torch.full((LATENT,), 2 * float(np.log(SIGMA_X))))


def test_real_vision_model_is_frozen_and_sym2img_decodes_images():
    torch.manual_seed(0)
    vision = BetaVAE((3, 32, 32), latent_dim=4, channels=[8, 8, 16, 16], hidden=32)
    vision.train()
    before = {k: v.clone() for k, v in vision.state_dict().items()}
    vocab = Vocabulary(SCENE_SPACE, factors=["floor_colour", "object_colour"])
    scan = SCAN(len(vocab), vision.latent_dim, hidden=[16])
    opt = scan.configure_optimizer(lr=1e-3)
    assert not {id(p) for p in vision.parameters()} & {
        id(p) for group in opt.param_groups for p in group["params"]
    }
    y = torch.as_tensor(np.stack([vocab.encode(["navy floor", "red object"])] * 8))
    images = torch.rand((8, 3, 32, 32))
    for _ in range(3):
        terms = scan.train_step(y, images, vision, opt)
    assert set(terms) >= {"scan/loss", "scan/recon", "scan/kl_prior", "scan/kl_vision"}
    assert all(p.grad is None for p in vision.parameters())
    assert vision.training  # mode restored
    for k, v in vision.state_dict().items():
        assert torch.equal(v, before[k]), k
    imgs = scan.sym2img(y[0], vision, n=2)
    assert imgs.shape == (1, 2, 3, 32, 32) and 0 <= imgs.min() and imgs.max() <= 1
    assert scan.img2sym(images, vision).shape == (8, len(vocab))


def test_scan_rejects_unknown_kl_direction():
    with pytest.raises(ValueError, match="forward"):
        SCAN(4, 2, kl_direction="sideways")


# -- recombination ----------------------------------------------------------------------------------
def test_operator_set_semantics():
    y1 = torch.tensor([1.0, 1.0, 0.0, 0.0])
    y2 = torch.tensor([0.0, 1.0, 1.0, 0.0])
    assert apply_operator(y1, y2, "and").tolist() == [1, 1, 1, 0]
    assert apply_operator(y1, y2, "IN COMMON").tolist() == [0, 1, 0, 0]
    assert apply_operator(y1, y2, "ignore").tolist() == [1, 0, 0, 0]
    ops = torch.tensor([OPERATORS["and"], OPERATORS["in_common"], OPERATORS["ignore"]])
    batched = apply_operators(y1.expand(3, 4), y2.expand(3, 4), ops)
    assert batched.tolist() == [[1, 1, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]]
    with pytest.raises(ValueError, match="in_common"):
        apply_operator(y1, y2, "or")


def test_recombinator_is_shared_across_dims_and_learns(forward_scan):
    scan, _, vocab = forward_scan
    torch.manual_seed(0)
    rec = Recombinator(hidden=[32, 32])
    # One network for every latent dim: permuting dims permutes the output.
    mu, lv = torch.randn(2, LATENT), torch.randn(2, LATENT)
    ops = torch.tensor([0, 2])
    perm = torch.tensor([2, 0, 3, 1])
    out, out_p = rec(mu, lv, mu.flip(0), lv.flip(0), ops), rec(
        mu[:, perm], lv[:, perm], mu.flip(0)[:, perm], lv.flip(0)[:, perm], ops
    )
    torch.testing.assert_close(out.mu[:, perm], out_p.mu)

    g = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(rec.parameters(), lr=1e-2)
    scan_before = [p.clone() for p in scan.parameters()]

    def batch(n: int = 64) -> tuple[Tensor, Tensor, Tensor]:
        y1, _, _ = toy_batch(vocab, n, g)
        y2, _, _ = toy_batch(vocab, n, g)
        return y1, y2, torch.randint(0, len(OPERATORS), (n,), generator=g)

    eval_batch = batch(256)
    with torch.no_grad():
        initial = rec.loss(scan, *eval_batch).item()
    for _ in range(200):
        opt.zero_grad()
        rec.loss(scan, *batch()).backward()
        opt.step()
    with torch.no_grad():
        final = rec.loss(scan, *eval_batch).item()
    assert final < 0.5 * initial, (initial, final)
    for p, q in zip(scan.parameters(), scan_before):
        assert torch.equal(p, q)
    y_a, y_b = (torch.as_tensor(vocab.encode([w])) for w in ("a=a0", "b=b1"))
    assert rec.combine(scan, y_a, y_b, "and").mu.shape == (1, LATENT)


# -- evaluation ----------------------------------------------------------------------------------
def test_accuracy():
    pred = np.array([[0, 1, 2], [0, 1, 0], [0, 2, 1]])
    assert accuracy(pred, {0: 0}) == 1.0
    assert accuracy(pred, {0: 0, 1: 1}) == pytest.approx(2 / 3)
    assert accuracy(pred, {}) == 1.0


def test_diversity_uniform_vs_collapsed():
    sizes = (2, 4, 3)
    uniform = np.stack([np.zeros(12, int), np.tile(np.arange(4), 3), np.tile(np.arange(3), 4)], axis=1)
    assert diversity(uniform, [1, 2], sizes) == pytest.approx(0.0, abs=1e-4)
    collapsed = uniform.copy()
    collapsed[:, 1] = 3
    d = diversity(collapsed, [1, 2], sizes)
    assert d == pytest.approx(np.log(4) / 2, rel=1e-3) and d > 0.5
    assert diversity(uniform, [], sizes) == 0.0


# -- vocabulary ----------------------------------------------------------------------------------
def test_vocabulary_round_trip_and_aliases():
    vocab = Vocabulary(SCENE_SPACE)
    assert len(vocab) == sum(SCENE_SPACE.sizes)
    assert "floor_colour=navy" in vocab.words and "navy floor" in vocab.aliases
    assert "blocks layout" in vocab.aliases
    y = vocab.encode(["navy floor", "object_colour=red"])
    assert y.shape == (len(vocab),) and y.sum() == 2
    assert vocab.decode(y) == ["floor_colour=navy", "object_colour=red"]
    assert vocab.describe(y) == ["navy floor", "red object"]
    assert vocab.decode(vocab.encode([])) == []
    np.testing.assert_array_equal(vocab.encode_factors({"floor_colour": 1, "object_colour": 0}), y)
    sub = Vocabulary(SCENE_SPACE, factors=["object_colour"])
    assert sub.words == tuple(f"object_colour={c}" for c in SCENE_SPACE.factors[2].values)


def test_vocabulary_unknown_word_lists_vocabulary():
    vocab = Vocabulary(TOY_SPACE)
    with pytest.raises(ValueError, match=r"unknown word 'purple'.*a=a0"):
        vocab.encode(["purple"])
    with pytest.raises(KeyError, match="factors are"):
        Vocabulary(TOY_SPACE, factors=["c"])
