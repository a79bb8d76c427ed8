"""SCAN training, checkpoints, the factor-classifier judge, evaluation and expression parsing.

Tiny budgets throughout: seek-avoid at 32 px over the ``vision`` domain, an untrained small
β-VAE (the mechanics, not the quality, are under test), a few dozen optimisation steps.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from envs.registry import get_domain
from envs.seek_avoid import SCENE_SPACE, SeekAvoidGroundTruth
from vision.checkpoint import CheckpointError
from vision.scan.train import (
    FactorClassifier,
    ScanSettings,
    concept_words,
    evaluate_scan,
    factors_for_concept,
    load_scan,
    parse_expression,
    render_concept,
    sample_concepts,
    save_scan,
    score_images,
    train_scan,
)
from vision.scan.vocab import Vocabulary
from vision.vae import BetaVAE

TINY = ScanSettings(
    steps=15,
    batch_size=16,
    lr=1e-3,
    images_per_concept=3,
    n_concepts=20,
    held_out_fraction=0.2,
    recombine_steps=8,
    scan_hidden=(16,),
    recombine_hidden=(8,),
    seed=7,
)


@pytest.fixture(scope="module")
def data() -> SeekAvoidGroundTruth:
    return SeekAvoidGroundTruth(32, get_domain("seek_avoid", "vision"))


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary(SCENE_SPACE)


def small_vae() -> BetaVAE:
    torch.manual_seed(0)
    return BetaVAE((3, 32, 32), latent_dim=6, channels=[8, 8, 16, 16], hidden=32)


@pytest.fixture(scope="module")
def trained(data, vocab):
    """(result, vision model, its state_dict before training)."""
    vision = small_vae()
    vision.train()
    before = {k: v.clone() for k, v in vision.state_dict().items()}
    return train_scan(vision, data, vocab, TINY), vision, before


@pytest.fixture(scope="module")
def classifier(data, vocab) -> FactorClassifier:
    return FactorClassifier(data, vocab, np.random.default_rng(1))


# -- training ------------------------------------------------------------------------------------
def test_same_seed_same_weights_and_history(trained, data, vocab):
    result, vision, _ = trained
    again = train_scan(vision, data, vocab, TINY)
    for a, b in ((result.scan, again.scan), (result.recombinator, again.recombinator)):
        for (k, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(pa, pb), k
    assert result.history == again.history
    assert result.concepts == again.concepts
    assert len(result.history["scan/loss"]) == TINY.steps
    assert len(result.history["recombine/loss"]) == TINY.recombine_steps
    assert all(math.isfinite(v) for vs in result.history.values() for v in vs)
    other = train_scan(vision, data, vocab, dataclasses.replace(TINY, seed=8))
    assert not torch.equal(next(other.scan.parameters()), next(result.scan.parameters()))


def test_vision_model_unchanged(trained):
    _, vision, before = trained
    for k, v in vision.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert vision.training  # mode restored
    assert all(p.grad is None for p in vision.parameters())


def test_held_out_concepts_never_trained_on(trained):
    concepts = trained[0].concepts
    train = {tuple(c) for c in concepts.train}
    held = {tuple(c) for c in concepts.held_out}
    assert len(held) == round(TINY.held_out_fraction * TINY.n_concepts) and len(train) == len(concepts.train)
    assert len(train) + len(held) == TINY.n_concepts
    assert not train & held
    assert all(1 <= len(c) <= 4 for c in concepts.train + concepts.held_out)


def test_concept_renders_respect_the_concept_and_the_domain(data, vocab):
    rng = np.random.default_rng(0)
    concepts = sample_concepts(data, vocab, 30, rng)
    assert len({tuple(c.items()) for c in concepts}) == 30
    concept = {"object_colour": 2, "layout": 1}
    f = factors_for_concept(data, vocab, concept, 40, rng)
    assert (f[:, 2] == 2).all() and (f[:, 3] == 1).all()
    assert all(data.domain.contains(row[:4]) for row in f)
    assert len(np.unique(f[:, 0])) > 1  # unnamed factors vary
    assert concept_words(concept, vocab) == ["object_colour=green", "layout=blocks"]


def test_save_load_round_trip(trained, data, vocab, tmp_path):
    result, vision, _ = trained
    path = save_scan(tmp_path / "scan.pt", result, vocab)
    scan, rec, names = load_scan(path)
    assert names == vocab.factor_names
    images = torch.as_tensor(data.sample_observations_from_factors(data.sample_factors(8, np.random.default_rng(2)), np.random.default_rng(2)))
    torch.testing.assert_close(scan.img2sym(images, vision), result.scan.img2sym(images, vision), rtol=0, atol=0)
    for (k, a), (_, b) in zip(rec.state_dict().items(), result.recombinator.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(CheckpointError, match="no SCAN checkpoint"):
        load_scan(tmp_path / "missing.pt")
    torch.save({"format": "something-else"}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a darla SCAN checkpoint"):
        load_scan(tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_scan(tmp_path / "junk.pt")


# -- the judge and the scores --------------------------------------------------------------------
def test_factor_classifier_is_accurate_on_fresh_renders(classifier, data):
    rng = np.random.default_rng(3)
    f = data.sample_factors(500, rng)
    pred = classifier.predict(data.sample_observations_from_factors(f, rng))
    assert pred.shape == (500, 4) and pred.dtype == np.int64
    acc = (pred == f[:, :4]).mean(axis=0)
    assert (acc >= 0.95).all(), acc


def test_accuracy_is_one_on_ground_truth_renders(classifier, data, vocab):
    rng = np.random.default_rng(4)
    for concept in ({"object_colour": 0}, {"floor_colour": 1, "layout": 2}, {"wall_colour": 3, "object_colour": 1}):
        renders = render_concept(data, vocab, concept, 48, rng)
        acc, div = score_images(renders, concept, classifier, vocab)
        assert acc == 1.0, concept
        assert div < 0.3, concept  # unnamed factors vary as in the data
    # The judge discriminates: red renders are not "blue object", and a constant scene is not diverse.
    red = render_concept(data, vocab, {"object_colour": 0}, 32, rng)
    assert score_images(red, {"object_colour": 1}, classifier, vocab)[0] == 0.0
    same = np.repeat(red[:1], 32, axis=0)
    assert score_images(same, {"object_colour": 0}, classifier, vocab)[1] > 1.0


def test_evaluate_scan_reports_three_groups(trained, data, vocab, classifier):
    result, vision, _ = trained
    scores = evaluate_scan(result, vision, data, vocab, np.random.default_rng(5), n_samples=4,
                           max_concepts=3, n_img2sym=40, classifier=classifier)
    for group in ("train", "held_out", "recombined"):
        assert scores[f"scan/{group}/n_concepts"] == 3
        assert 0.0 <= scores[f"scan/{group}/accuracy"] <= 1.0
        assert math.isfinite(scores[f"scan/{group}/diversity"]) and scores[f"scan/{group}/diversity"] >= 0
    assert 0.0 <= scores["scan/img2sym/accuracy"] <= 1.0
    parts = (result.scan, result.recombinator, result.concepts)
    assert evaluate_scan(parts, vision, data, vocab, np.random.default_rng(5), n_samples=4,
                         max_concepts=3, n_img2sym=40, classifier=classifier) == scores


# -- expressions ---------------------------------------------------------------------------------
def test_parse_expression_operators(vocab):
    y, words = parse_expression("red object AND navy floor", vocab)
    assert words == ["floor_colour=navy", "object_colour=red"]
    np.testing.assert_array_equal(y, vocab.encode(words))
    _, words = parse_expression("red object, navy floor IN COMMON blue object navy floor", vocab)
    assert words == ["floor_colour=navy"]
    _, words = parse_expression("wall with gaps layout teal wall IGNORE teal wall", vocab)
    assert words == ["layout=wall with gaps"]
    _, words = parse_expression("object_colour=red AND teal wall IGNORE object_colour=red", vocab)
    assert words == ["wall_colour=teal"]


def test_parse_expression_errors(vocab):
    with pytest.raises(ValueError, match=r"unknown word 'pink'.*floor_colour=navy"):
        parse_expression("pink object AND navy floor", vocab)
    with pytest.raises(ValueError, match="two values|2 values"):
        parse_expression("red object AND blue object", vocab)
    with pytest.raises(ValueError, match="empty description"):
        parse_expression("AND red object", vocab)
