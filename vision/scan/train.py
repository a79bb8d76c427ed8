"""Training, saving, evaluating and querying SCAN on a :class:`GroundTruthData` (Higgins et al., 2018).

*Concepts.* A concept names a random subset (1..all) of the vocabulary's factors with values,
e.g. ``{object_colour: red, floor_colour: navy}``. Concepts are drawn from factor vectors the data
itself produces (so every concept has images even when the data is restricted to a domain), and
each training concept is grounded by ``images_per_concept`` renders (the paper: ≈5–10 suffice)
whose unnamed factors — vocabulary factors it leaves out and every non-vocabulary factor such as
positions — are random. A fraction of the concepts is held out: never trained on, only scored.

*Training* (:func:`train_scan`) first fits SCAN to (symbol, visual posterior) pairs of the frozen
vision model (posteriors computed once, under ``no_grad``), then the :class:`Recombinator` on
triples (y1, y2, op) of training concepts whose result is a valid description (non-empty, and no
AND of two values of one factor).

*Evaluation* (:func:`evaluate_scan`) imagines images with sym2img for training, held-out and
recombined concepts and scores them with :class:`FactorClassifier`, a judge trained on
ground-truth renders only (never on SCAN or the vision model), using
:func:`vision.scan.evaluate.accuracy` and :func:`vision.scan.evaluate.diversity`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from envs.factors import GroundTruthData
from vision.base import VisionModel
from vision.checkpoint import CheckpointError, read_checkpoint, save_atomic
from vision.scan.evaluate import accuracy, diversity
from vision.scan.model import SCAN, Posterior, vision_posterior
from vision.scan.recombine import OPERATORS, Recombinator, apply_operator
from vision.scan.vocab import Vocabulary

FORMAT = "darla-scan/1"

Concept = dict[str, int]
"""{vocabulary factor name: value index} — the factors a description names."""


@dataclass(frozen=True)
class ScanSettings:
    steps: int = 2000
    """SCAN optimisation steps."""
    batch_size: int = 32
    """(symbol, image) pairs per SCAN step and triples per recombinator step."""
    lr: float = 1e-4
    """Adam learning rate, for SCAN and for the recombinator (the paper's 1e-4)."""
    beta: float = 1.0
    """Weight of KL(q(z_y|y) ‖ N(0, I)) (paper: 1)."""
    lam: float = 10.0
    """Weight of the KL between visual and symbol posteriors (paper: 10)."""
    kl_direction: str = "forward"
    """``"forward"`` KL(q(z_x|x) ‖ q(z_y|y)) as in the paper, or ``"reverse"`` (SCAN_R ablation)."""
    images_per_concept: int = 10
    """Renders grounding each training concept (the paper grounds a concept with ≈5–10)."""
    n_concepts: int = 100
    """Distinct concepts drawn before the held-out split (fewer if the vocabulary has fewer)."""
    held_out_fraction: float = 0.2
    """Fraction of the concepts never trained on, kept for the held-out evaluation."""
    recombine_steps: int = 1000
    """Recombinator optimisation steps (after SCAN; SCAN is frozen then)."""
    scan_hidden: tuple[int, ...] = (100, 100)
    """Hidden widths of SCAN's symbol encoder and decoder MLPs."""
    recombine_hidden: tuple[int, ...] = (32, 32)
    """Hidden widths of the recombinator's per-latent MLP."""
    seed: int = 0
    """Seeds concept choice, renders, initialisation and minibatches: same seed → same weights."""

    def __post_init__(self) -> None:
        if self.steps < 0 or self.recombine_steps < 0 or self.batch_size < 1:
            raise ValueError("steps and recombine_steps must be ≥ 0 and batch_size ≥ 1")
        if self.images_per_concept < 1 or self.n_concepts < 2:
            raise ValueError("images_per_concept must be ≥ 1 and n_concepts ≥ 2")
        if not 0.0 <= self.held_out_fraction < 1.0:
            raise ValueError(f"held_out_fraction must lie in [0, 1), got {self.held_out_fraction}")


class ScanConcepts(NamedTuple):
    """Canonical word lists of the training and held-out concepts (disjoint)."""

    train: list[list[str]]
    held_out: list[list[str]]


class ScanResult(NamedTuple):
    scan: SCAN
    recombinator: Recombinator
    history: dict[str, list[float]]
    """Per-step losses: ``scan/loss``, ``scan/recon``, ``scan/kl_prior``, ``scan/kl_vision``,
    ``recombine/loss``."""
    concepts: ScanConcepts


# -- concepts -----------------------------------------------------------------------------------
def _factor_columns(data: GroundTruthData, vocab: Vocabulary) -> dict[str, int]:
    """Vocabulary factor name → column of the data's factor vectors (matched by name)."""
    cols = {}
    for f in vocab.factors:
        if f.name not in data.factor_names:
            raise KeyError(f"vocabulary factor {f.name!r} is not a factor of the data {list(data.factor_names)}")
        col = data.factor_names.index(f.name)
        if data.factor_sizes[col] != f.size:
            raise ValueError(f"factor {f.name!r} has {data.factor_sizes[col]} values in the data, {f.size} in the vocabulary")
        cols[f.name] = col
    return cols


def concept_words(concept: Mapping[str, int], vocab: Vocabulary) -> list[str]:
    """Canonical words of a concept, in vocabulary order."""
    return vocab.decode(vocab.encode_factors(dict(concept)))


def words_to_concept(words: Sequence[str], vocab: Vocabulary) -> Concept:
    """Inverse of :func:`concept_words`; ValueError if two values of one factor are named."""
    y = vocab.encode(words)
    out: Concept = {}
    for f in vocab.factors:
        on = np.flatnonzero(y[vocab.slices[f.name]])
        if len(on) > 1:
            raise ValueError(f"description names {len(on)} values of factor {f.name!r}: {list(words)}")
        if len(on) == 1:
            out[f.name] = int(on[0])
    return out


def sample_concepts(
    data: GroundTruthData, vocab: Vocabulary, n: int, rng: np.random.Generator
) -> list[Concept]:
    """Up to ``n`` distinct concepts, each naming 1..F vocabulary factors of a data sample."""
    cols = _factor_columns(data, vocab)
    names = list(vocab.factor_names)
    n_possible = int(np.prod([f.size + 1 for f in vocab.factors])) - 1
    seen: dict[tuple[tuple[str, int], ...], Concept] = {}
    for _ in range(100):  # rounds; a domain may make some concepts rare, so cap the search
        factors = data.sample_factors(4 * n, rng)
        for row in factors:
            k = int(rng.integers(1, len(names) + 1))
            chosen = sorted(rng.choice(len(names), size=k, replace=False).tolist())
            c = {names[i]: int(row[cols[names[i]]]) for i in chosen}
            seen.setdefault(tuple(c.items()), c)
            if len(seen) >= min(n, n_possible):
                return list(seen.values())
    return list(seen.values())


def factors_for_concept(
    data: GroundTruthData, vocab: Vocabulary, concept: Mapping[str, int], n: int, rng: np.random.Generator
) -> np.ndarray:
    """(n, F_data) factor vectors from ``data.sample_factors`` that agree with ``concept``.

    Rejection sampling keeps every other factor distributed as the data has it (a domain's
    allowed combinations are respected); ValueError if the concept never occurs.
    """
    cols = _factor_columns(data, vocab)
    found: list[np.ndarray] = []
    have = 0
    for _ in range(200):
        f = data.sample_factors(max(256, 8 * n), rng)
        ok = np.ones(len(f), dtype=bool)
        for name, v in concept.items():
            ok &= f[:, cols[name]] == int(v)
        found.append(f[ok])
        have += int(ok.sum())
        if have >= n:
            return np.concatenate(found)[:n]
    raise ValueError(f"concept {dict(concept)} does not occur in the data (after 200 rounds of sampling)")


def render_concept(
    data: GroundTruthData, vocab: Vocabulary, concept: Mapping[str, int], n: int, rng: np.random.Generator
) -> np.ndarray:
    """(n, C, H, W) ground-truth renders of ``concept`` (unnamed factors random)."""
    return data.sample_observations_from_factors(factors_for_concept(data, vocab, concept, n, rng), rng)


def _valid_results(y1: np.ndarray, y2: np.ndarray, ops: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """Which triples give a valid description: non-empty, at most one value per factor."""
    candidates = np.stack([np.maximum(y1, y2), y1 * y2, y1 * (1.0 - y2)])  # OPERATORS order
    res = candidates[ops, np.arange(len(ops))]
    ok = res.sum(axis=1) > 0
    for sl in vocab.slices.values():
        ok &= res[:, sl].sum(axis=1) <= 1
    return ok


def sample_triples(
    ys: np.ndarray, vocab: Vocabulary, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` (y1, y2, op) triples over the rows of ``ys`` whose result is a valid description."""
    y1s, y2s, opss = [], [], []
    have = 0
    for _ in range(1000):
        i, j = rng.integers(len(ys), size=(2, 4 * n))
        ops = rng.integers(len(OPERATORS), size=4 * n)
        ok = _valid_results(ys[i], ys[j], ops, vocab)
        y1s.append(ys[i][ok])
        y2s.append(ys[j][ok])
        opss.append(ops[ok])
        have += int(ok.sum())
        if have >= n:
            return np.concatenate(y1s)[:n], np.concatenate(y2s)[:n], np.concatenate(opss)[:n]
    raise ValueError("could not find valid (y1, y2, op) triples among these concepts")


# -- training -----------------------------------------------------------------------------------
def train_scan(
    vision_model: VisionModel, data: GroundTruthData, vocab: Vocabulary, settings: ScanSettings = ScanSettings()
) -> ScanResult:
    """Train SCAN on the frozen ``vision_model``, then the recombinator; see the module docstring."""
    s = settings
    rng = np.random.default_rng(s.seed)
    device = next(vision_model.parameters()).device
    concepts = sample_concepts(data, vocab, s.n_concepts, rng)
    order = rng.permutation(len(concepts))
    n_held = int(round(s.held_out_fraction * len(concepts)))
    n_held = min(n_held, len(concepts) - 1)
    held = [concepts[i] for i in order[:n_held]]
    train = [concepts[i] for i in order[n_held:]]

    # The grounding set: images_per_concept renders per training concept, encoded once.
    ys = np.stack([vocab.encode_factors(c) for c in train])
    images = np.concatenate([render_concept(data, vocab, c, s.images_per_concept, rng) for c in train])
    y_pairs = torch.as_tensor(np.repeat(ys, s.images_per_concept, axis=0), device=device)
    with torch.no_grad():
        posts = [vision_posterior(vision_model, torch.as_tensor(chunk, device=device))
                 for chunk in np.array_split(images, max(1, len(images) // 256))]
    mu_x = torch.cat([p.mu for p in posts])
    logvar_x = torch.cat([p.logvar for p in posts])

    history: dict[str, list[float]] = {
        k: [] for k in ("scan/loss", "scan/recon", "scan/kl_prior", "scan/kl_vision", "recombine/loss")
    }
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(s.seed)  # initialisation and the reparameterisation noise
        scan = SCAN(len(vocab), vision_model.latent_dim, hidden=s.scan_hidden, beta=s.beta,
                    lam=s.lam, kl_direction=s.kl_direction).to(device)
        opt = scan.configure_optimizer(lr=s.lr)
        for _ in range(s.steps):
            idx = torch.as_tensor(rng.integers(len(y_pairs), size=s.batch_size), device=device)
            opt.zero_grad(set_to_none=True)
            out = scan.loss(y_pairs[idx], mu_x[idx], logvar_x[idx])
            if not torch.isfinite(out.total):
                raise FloatingPointError(f"non-finite SCAN loss {out.total.item()}")
            out.total.backward()
            opt.step()
            history["scan/loss"].append(float(out.total.detach()))
            for k, v in out.terms.items():
                history[k].append(float(v.detach()))

        scan.requires_grad_(False)  # frozen while the recombinator learns
        recombinator = Recombinator(hidden=s.recombine_hidden).to(device)
        ropt = torch.optim.Adam(recombinator.parameters(), lr=s.lr)
        for _ in range(s.recombine_steps):
            y1, y2, ops = (torch.as_tensor(a, device=device) for a in sample_triples(ys, vocab, s.batch_size, rng))
            ropt.zero_grad(set_to_none=True)
            loss = recombinator.loss(scan, y1, y2, ops)
            loss.backward()
            ropt.step()
            history["recombine/loss"].append(float(loss.detach()))
        scan.requires_grad_(True)

    return ScanResult(
        scan.eval(),
        recombinator.eval(),
        history,
        ScanConcepts([concept_words(c, vocab) for c in train], [concept_words(c, vocab) for c in held]),
    )


# -- checkpoints --------------------------------------------------------------------------------
def save_scan(path: str | Path, result: ScanResult, vocab: Vocabulary) -> Path:
    """One file, written atomically: both networks, their kwargs, the vocabulary and concepts."""
    record = {
        "format": FORMAT,
        "scan": {"kwargs": dict(result.scan.hparams),
                 "state_dict": {k: v.detach().cpu() for k, v in result.scan.state_dict().items()}},
        "recombinator": {"kwargs": dict(result.recombinator.hparams),
                         "state_dict": {k: v.detach().cpu() for k, v in result.recombinator.state_dict().items()}},
        "vocab_factors": list(vocab.factor_names),
        "vocab_words": list(vocab.words),
        "concepts": {"train": result.concepts.train, "held_out": result.concepts.held_out},
    }
    save_atomic(record, path)
    return Path(path)


def load_scan(path: str | Path) -> tuple[SCAN, Recombinator, tuple[str, ...]]:
    """(SCAN, Recombinator, vocabulary factor names), in eval mode on the CPU; ``weights_only`` load.

    Raises :class:`vision.checkpoint.CheckpointError` naming the file when it is missing,
    unreadable, or not a darla SCAN checkpoint.
    """
    record = read_checkpoint(path, FORMAT, "SCAN")
    try:
        scan = SCAN(**record["scan"]["kwargs"])
        scan.load_state_dict(record["scan"]["state_dict"])
        rec = Recombinator(**record["recombinator"]["kwargs"])
        rec.load_state_dict(record["recombinator"]["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: SCAN checkpoint does not fit ({type(e).__name__}: {e})") from None
    return scan.eval(), rec.eval(), tuple(record["vocab_factors"])


# -- the judge ----------------------------------------------------------------------------------
def pooled_features(images: np.ndarray | Tensor, pool: int = 8, bins: int = 4) -> np.ndarray:
    """(N, C, H, W) in [0, 1] → hand-made features for the judge, (N, 2·C·pool² + pool² + bins^C).

    - mean-pooled ``pool``×``pool`` pixels (large structures: floor, walls);
    - per pooled cell, similarity ``exp(−‖cell − edge‖² / 0.01)`` to the frame's edge colour (the
      median of the outer ring of cells): obstacles drawn in the wall colour, whatever it is;
    - the frame's colour histogram, ``bins`` per channel, square-rooted (small sprites' colours,
      wherever they are).
    """
    x = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    x = x.astype(np.float32)
    n, c, h, w = x.shape
    if h % pool or w % pool or pool < 3:
        raise ValueError(f"image size {h}×{w} is not a multiple of pool={pool} (≥ 3)")
    cells = x.reshape(n, c, pool, h // pool, pool, w // pool).mean(axis=(3, 5))  # (n, c, p, p)
    ring = np.ones((pool, pool), dtype=bool)
    ring[1:-1, 1:-1] = False
    edge = np.median(cells[:, :, ring], axis=2)  # (n, c)
    similar = np.exp(-((cells - edge[:, :, None, None]) ** 2).sum(axis=1) / 0.01).reshape(n, -1)
    q = np.clip((x * bins).astype(np.int64), 0, bins - 1)
    code = np.zeros((n, h, w), dtype=np.int64)
    for ch in range(c):
        code = code * bins + q[:, ch]
    hist = np.stack([np.bincount(r, minlength=bins**c) for r in code.reshape(n, -1)]).astype(np.float32)
    return np.concatenate([cells.reshape(n, -1), similar, np.sqrt(hist / (h * w))], axis=1)


class FactorClassifier:
    """Per-vocabulary-factor ``LogisticRegression(C=C, max_iter=max_iter)`` on standardised
    :func:`pooled_features` (``StandardScaler`` fitted on the training renders).

    Trained on ``n_train`` ground-truth renders of ``data`` (uniform factors from
    ``data.sample_factors``); it never sees SCAN or the vision model.
    """

    def __init__(
        self,
        data: GroundTruthData,
        vocab: Vocabulary,
        rng: np.random.Generator,
        n_train: int = 2000,
        pool: int = 8,
        C: float = 1.0,
        max_iter: int = 1000,
    ) -> None:
        self.vocab = vocab
        self.pool = int(pool)
        cols = _factor_columns(data, vocab)
        factors = data.sample_factors(n_train, rng)
        feats = pooled_features(data.sample_observations_from_factors(factors, rng), self.pool)
        self.scaler = StandardScaler().fit(feats)
        feats = self.scaler.transform(feats)
        self.models: list[LogisticRegression] = []
        for f in vocab.factors:
            m = LogisticRegression(C=C, max_iter=max_iter)
            m.fit(feats, factors[:, cols[f.name]])
            self.models.append(m)

    def predict(self, images: np.ndarray | Tensor) -> np.ndarray:
        """(N, C, H, W) → (N, F_vocab) int64 predicted value per vocabulary factor."""
        feats = self.scaler.transform(pooled_features(images, self.pool))
        return np.stack([m.predict(feats) for m in self.models], axis=1).astype(np.int64)


# -- evaluation ---------------------------------------------------------------------------------
def score_images(
    images: np.ndarray | Tensor, concept: Mapping[str, int], classifier: FactorClassifier, vocab: Vocabulary
) -> tuple[float, float]:
    """(accuracy, diversity) of images meant to show ``concept`` — sym2img samples or, as a check
    of the judge, ground-truth renders."""
    pred = classifier.predict(images)
    names = list(vocab.factor_names)
    specified = {names.index(k): int(v) for k, v in concept.items()}
    unspecified = [i for i in range(len(names)) if i not in specified]
    sizes = [f.size for f in vocab.factors]
    return accuracy(pred, specified), diversity(pred, unspecified, sizes)


@torch.no_grad()
def decode_samples(post: Posterior, vision_model: VisionModel, n: int, generator: torch.Generator) -> Tensor:
    """``n`` samples of a (1, D) posterior, decoded to images (n, C, H, W) in [0, 1]."""
    d = post.mu.shape[-1]
    eps = torch.randn((n, d), generator=generator).to(post.mu.device)
    z = post.mu.reshape(1, d) + eps * torch.exp(0.5 * post.logvar.reshape(1, d))
    was_training = vision_model.training
    vision_model.eval()
    try:
        return vision_model.render(z)
    finally:
        vision_model.train(was_training)


def evaluate_scan(
    result_or_parts: ScanResult | tuple[SCAN, Recombinator, ScanConcepts],
    vision_model: VisionModel,
    data: GroundTruthData,
    vocab: Vocabulary,
    rng: np.random.Generator,
    n_samples: int = 32,
    max_concepts: int = 50,
    n_img2sym: int = 500,
    classifier: FactorClassifier | None = None,
) -> dict[str, float]:
    """sym2img accuracy/diversity for training, held-out and recombined concepts, and img2sym accuracy.

    Keys ``scan/{train,held_out,recombined}/{accuracy,diversity,n_concepts}`` (means over up to
    ``max_concepts`` concepts, ``n_samples`` imagined images each; NaN for an empty group) and
    ``scan/img2sym/accuracy`` (fraction of (image, factor) pairs whose argmax word is right, on
    ``n_img2sym`` fresh renders). Recombined concepts apply a random operator to two training
    concepts, keeping valid results.
    """
    scan, rec, concepts = result_or_parts[0], result_or_parts[1], result_or_parts[-1]
    if classifier is None:
        classifier = FactorClassifier(data, vocab, rng)
    device = next(scan.parameters()).device
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    out: dict[str, float] = {}

    def record(group: str, scores: list[tuple[float, float]]) -> None:
        arr = np.asarray(scores, dtype=np.float64).reshape(-1, 2)
        out[f"scan/{group}/accuracy"] = float(arr[:, 0].mean()) if len(arr) else float("nan")
        out[f"scan/{group}/diversity"] = float(arr[:, 1].mean()) if len(arr) else float("nan")
        out[f"scan/{group}/n_concepts"] = float(len(arr))

    for group, word_lists in (("train", concepts.train), ("held_out", concepts.held_out)):
        chosen = [word_lists[i] for i in sorted(rng.permutation(len(word_lists))[:max_concepts].tolist())]
        scores = []
        for words in chosen:
            y = torch.as_tensor(vocab.encode(words), device=device)
            imgs = decode_samples(scan.encode(y[None]), vision_model, n_samples, gen)
            scores.append(score_images(imgs, words_to_concept(words, vocab), classifier, vocab))
        record(group, scores)

    scores = []
    if concepts.train:
        ys = np.stack([vocab.encode(w) for w in concepts.train])
        y1, y2, ops = sample_triples(ys, vocab, max_concepts, rng)
        for a, b, op in zip(y1, y2, ops):
            y_res = apply_operator(torch.as_tensor(a), torch.as_tensor(b), int(op)).numpy()
            post = rec.combine(scan, torch.as_tensor(a, device=device), torch.as_tensor(b, device=device), int(op))
            imgs = decode_samples(post, vision_model, n_samples, gen)
            scores.append(score_images(imgs, words_to_concept(vocab.decode(y_res), vocab), classifier, vocab))
    record("recombined", scores)

    cols = _factor_columns(data, vocab)
    factors = data.sample_factors(n_img2sym, rng)
    images = torch.as_tensor(data.sample_observations_from_factors(factors, rng), device=device)
    probs = scan.img2sym(images, vision_model).cpu().numpy()
    right = [probs[:, vocab.slices[f.name]].argmax(axis=1) == factors[:, cols[f.name]] for f in vocab.factors]
    out["scan/img2sym/accuracy"] = float(np.mean(right))
    return out


# -- queries ------------------------------------------------------------------------------------
_OPERATOR_PATTERN = re.compile(r"\b(AND|IN\s+COMMON|IGNORE)\b")
_OPERATOR_WORDS = {"AND": "and", "IN COMMON": "in_common", "IGNORE": "ignore"}


def _parse_description(text: str, vocab: Vocabulary) -> np.ndarray:
    """Greedy longest match of words/aliases (aliases may contain spaces; commas separate)."""
    tokens = text.replace(",", " ").split()
    if not tokens:
        raise ValueError("empty description in expression")
    words, i = [], 0
    while i < len(tokens):
        for j in range(len(tokens), i, -1):
            candidate = " ".join(tokens[i:j])
            try:
                vocab.index(candidate)
            except ValueError:
                continue
            words.append(candidate)
            i = j
            break
        else:
            vocab.index(tokens[i])  # raises Vocabulary's error, listing the vocabulary
    return vocab.encode(words)


def parse_expression(text: str, vocab: Vocabulary) -> tuple[np.ndarray, list[str]]:
    """``"red object AND navy floor"`` → (k-hot y, canonical words) with set semantics.

    Descriptions are words or aliases of ``vocab``; between them the upper-case operators
    ``AND`` (union), ``IN COMMON`` (intersection), ``IGNORE`` (difference), applied left to right.
    Unknown words raise Vocabulary's ValueError (which lists the vocabulary); a description
    naming two values of one factor raises ValueError.
    """
    parts = _OPERATOR_PATTERN.split(text)
    y = _parse_description(parts[0], vocab)
    for k in range(1, len(parts), 2):
        op = _OPERATOR_WORDS[" ".join(parts[k].split())]
        y = apply_operator(torch.as_tensor(y), torch.as_tensor(_parse_description(parts[k + 1], vocab)), op).numpy()
    words = vocab.decode(y)
    words_to_concept(words, vocab)  # rejects two values of one factor
    return y.astype(np.float32), words
