"""The optional SCAN stage: symbols grounded in the run's vision latents (issue 6; Higgins et al., 2018).

SCAN depends on the vision stage only. It trains on the run's frozen vision model, over a
vocabulary of the env's scene factors (``scan.factors``), and writes under ``scan/``::

    scan_forward.pt, .json       SCAN as in the paper (forward KL) and its evaluation
    scan_reverse.pt, .json       SCAN_R, the reverse-KL ablation        (scan.compare: reverse_kl)
    entangled_vision/model.pt    the vision model retrained with β = 1   (scan.compare: entangled)
    scan_entangled.pt, .json     SCAN on that entangled model
    sym2img/ recombine/ img2sym/ compare.png    pictures for the report
    results.json                 every number, and the captions of every picture

Every variant is scored by one factor classifier, trained on ground-truth renders only, with
the same evaluation seed, so the three rows of the comparison differ only in what the paper
varies: the KL direction, or the disentanglement of the vision model. Each variant (and the
entangled vision model) is a sub-stage of the manifest (``scan/scan_forward``, ...), so an
interrupted stage keeps what it finished; the entangled vision model also resumes from its
last checkpoint.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from darla.config import Config, ScanConfig
from darla.runs import RunDir
from darla.stages.common import Log, domains_of, print_log
from darla.stages.vision import model_params, train_one, vision_frames, vision_ground_truth
from vision.io import write_json_atomic
from vision.registry import get_model_class, load_checkpoint
from vision.train import resolve_device

SYM2IMG_TRAIN = 4
"""Training concepts drawn in the sym2img grids (plus :data:`SYM2IMG_HELD_OUT` held-out ones)."""
SYM2IMG_HELD_OUT = 2
GRID_SAMPLES = 8
"""Images per row of every picture."""
IMG2SYM_ROWS = 8
"""Fresh renders described in the img2sym table."""
PNG_MIN_SIDE = 96
"""Short side of the saved grids: a few rows of 32–64 px frames need little upscaling."""


class Variant(NamedTuple):
    label: str
    """Name in tables: the paper's names where it has them."""
    kl_direction: str
    entangled: bool
    """Trained on the β = 1 version of the vision model instead of the run's own."""
    stem: str
    """File stem under ``scan/``: ``<stem>.pt`` and ``<stem>.json``."""


VARIANTS: dict[str, Variant] = {
    "scan": Variant("SCAN", "forward", False, "scan_forward"),
    "reverse_kl": Variant("SCAN_R (reverse KL)", "reverse", False, "scan_reverse"),
    "entangled": Variant("SCAN on β = 1 vision", "forward", True, "scan_entangled"),
}
"""``"scan"`` always runs; the others are the ``scan.compare`` ablations, in this order."""


def variant_names(s: ScanConfig) -> list[str]:
    return ["scan", *[name for name in VARIANTS if name in s.compare]]


def variant_files(run: RunDir, name: str) -> tuple[Path, Path]:
    """(model, record) of a variant: ``scan/<stem>.pt`` and ``scan/<stem>.json``."""
    stem = VARIANTS[name].stem
    return run.path("scan", f"{stem}.pt"), run.path("scan", f"{stem}.json")


def scan_seed(cfg: Config) -> int:
    return cfg.seed if cfg.scan.seed is None else cfg.scan.seed


def scan_settings(cfg: Config, kl_direction: str = "forward"):
    """The :class:`vision.scan.train.ScanSettings` of ``cfg.scan`` (one place maps config → settings)."""
    from vision.scan.train import ScanSettings

    s = cfg.scan
    return ScanSettings(
        steps=s.steps, batch_size=s.batch_size, lr=s.lr, beta=s.beta, lam=s.lam, kl_direction=kl_direction,
        images_per_concept=s.images_per_concept, n_concepts=s.n_concepts, held_out_fraction=s.held_out_fraction,
        recombine_steps=s.recombine_steps, scan_hidden=tuple(s.hidden), recombine_hidden=tuple(s.recombine_hidden),
        seed=scan_seed(cfg),
    )


def scan_vocabulary(cfg: Config):
    """Words for ``scan.factors`` of the env's scene (all scene factors when the list is empty)."""
    from envs.registry import get_env_info
    from vision.scan.vocab import Vocabulary

    return Vocabulary(get_env_info(cfg.env.name).scene_space, cfg.scan.factors or None)


class ScanContext(NamedTuple):
    vision_model: Any
    """The run's vision model (stage 1), on the config's device."""
    data: Any
    """Ground-truth renderer over the vision domain: SCAN's images and the judge's training set."""
    vocab: Any


def scan_context(cfg: Config, run: RunDir) -> ScanContext:
    """What SCAN needs from a run; FileNotFoundError/ValueError (one line each) when it cannot have it."""
    if cfg.vision.data != "env":
        raise ValueError(f"{run.root}: SCAN names the env's scene factors; this run's vision model was trained on {cfg.vision.data}")
    if not run.is_complete("vision"):
        raise FileNotFoundError(f"{run.root}: stage 'vision' is not complete; run `darla vision train` first")
    model = load_checkpoint(run.vision_model()).to(resolve_device(cfg.device))
    vision_dom, _, _ = domains_of(cfg)
    return ScanContext(model, vision_ground_truth(cfg, vision_dom), scan_vocabulary(cfg))


# ---------------------------------------------------------------------------------------------
# the entangled (β = 1) vision model
# ---------------------------------------------------------------------------------------------
def entangled_model_spec(cfg: Config) -> tuple[str, dict[str, Any]]:
    """(registry name, constructor kwargs) of the β = 1 version of ``cfg.vision``.

    A model whose constructor takes ``beta`` keeps its class with β = 1 (DARLA_ENT's recipe);
    any other (capacity, factor, total-correlation, DC-IGN, InfoGAN, DAE) becomes the plain
    :class:`vision.vae.VAE` — β = 1 by definition — with the architecture kwargs it shares.
    """
    v = cfg.vision
    cls = get_model_class(v.model)
    if "beta" in inspect.signature(cls.__init__).parameters:
        return v.model, {**v.params, "beta": 1.0}
    vae_params = inspect.signature(get_model_class("vae").__init__).parameters
    return "vae", {k: val for k, val in v.params.items() if k in vae_params}


def train_entangled_vision(cfg: Config, run: RunDir, progress: bool, log: Log):
    """Train (or resume, or reuse) the β = 1 vision model into ``scan/entangled_vision/``.

    Same frames, latents, steps, batch size, learning rate and seed as stage 1, so only β differs.
    """
    out = run.path("scan", "entangled_vision")
    name, params = entangled_model_spec(cfg)
    if not run.is_complete("scan/entangled_vision"):
        t0 = time.time()
        vision_dom, _, _ = domains_of(cfg)
        frames = vision_frames(cfg, vision_dom, log)
        cls = get_model_class(name)
        params = model_params(cfg, run, cls, params, frames, progress, log)
        ent_cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, model=name, params=params))
        log(f"[scan] entangled baseline: {name} with β = 1 (DARLA_ENT / SCAN's entangled ablation)")
        path, _, info = train_one(ent_cfg, cls, params, frames, vision_dom, cfg.seed, out, progress, log)
        run.complete("scan/entangled_vision", [path], {"model": name, **info}, t0)
    return load_checkpoint(out / "model.pt").to(resolve_device(cfg.device))


# ---------------------------------------------------------------------------------------------
# one variant: train, save, evaluate
# ---------------------------------------------------------------------------------------------
def _evaluate(parts, vision_model, ctx: ScanContext, cfg: Config, classifier) -> dict[str, float]:
    from vision.scan.train import evaluate_scan

    s = cfg.scan
    # The same evaluation seed for every variant: same concepts scored, same triples, same renders.
    return evaluate_scan(
        parts, vision_model, ctx.data, ctx.vocab, np.random.default_rng(scan_seed(cfg) + 1),
        n_samples=s.eval_samples, max_concepts=s.eval_concepts, n_img2sym=s.eval_img2sym, classifier=classifier,
    )


def run_variant(
    name: str, cfg: Config, run: RunDir, ctx: ScanContext, vision_model, classifier, log: Log
) -> dict[str, Any]:
    """Train, save and score one variant (skipped when its sub-stage is complete); its JSON record."""
    from vision.scan.train import save_scan, train_scan

    var = VARIANTS[name]
    pt, js = variant_files(run, name)
    if run.is_complete(f"scan/{var.stem}"):
        log(f"[scan] {var.label}: complete, skipping")
        return json.loads(js.read_text())
    t0 = time.time()
    settings = scan_settings(cfg, var.kl_direction)
    log(f"[scan] training {var.label}: {settings.steps} + {settings.recombine_steps} recombinator steps, "
        f"{len(ctx.vocab)} words over {', '.join(ctx.vocab.factor_names)}")
    result = train_scan(vision_model, ctx.data, ctx.vocab, settings)
    save_scan(pt, result, ctx.vocab)
    metrics = _evaluate(result, vision_model, ctx, cfg, classifier)
    record = {
        "variant": name,
        "label": var.label,
        "settings": dataclasses.asdict(settings),
        "vision": "scan/entangled_vision/model.pt" if var.entangled else "vision/model.pt",
        "concepts": {"train": result.concepts.train, "held_out": result.concepts.held_out},
        "final_loss": {k: v[-1] for k, v in result.history.items() if v},
        **metrics,
    }
    write_json_atomic(js, record)
    run.complete(f"scan/{var.stem}", [pt, js], {}, t0)
    return record


def metric_keys(record: dict[str, Any]) -> dict[str, float]:
    """The ``scan/...`` numbers of a variant record (evaluate_scan's keys)."""
    return {k: v for k, v in record.items() if k.startswith("scan/")}


# ---------------------------------------------------------------------------------------------
# pictures
# ---------------------------------------------------------------------------------------------
def _save_rows(path: Path, rows: list[np.ndarray]) -> str:
    from vision.traverse import save_png, tile

    save_png(path, tile(rows), min_side=PNG_MIN_SIDE)
    return path.name


def _aliases(words: list[str], vocab) -> list[str]:
    return [vocab.aliases[vocab.index(w)] for w in words]


def _pictures(cfg: Config, run: RunDir, ctx: ScanContext, models: dict[str, tuple], records: dict[str, dict], classifier) -> tuple[dict[str, Any], list[Path]]:
    """sym2img, recombination and variant-comparison grids, and the img2sym table; (captions, files)."""
    from vision.scan.recombine import OPERATORS, apply_operator
    from vision.scan.train import (
        decode_samples,
        render_concept,
        sample_triples,
        score_images,
        words_to_concept,
    )
    from vision.traverse import to_uint8_hwc

    vocab, data = ctx.vocab, ctx.data
    scan, rec, vision_model = models["scan"]
    device = next(scan.parameters()).device
    seed = scan_seed(cfg) + 2
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    root = run.path("scan")
    files: list[Path] = []

    def imagine(sc, vm, words: list[str]) -> torch.Tensor:
        y = torch.as_tensor(vocab.encode(words), device=device)
        return decode_samples(sc.encode(y[None]), vm, GRID_SAMPLES, gen)

    def scored(images, words: list[str]) -> dict[str, float]:
        acc, div = score_images(images, words_to_concept(words, vocab), classifier, vocab)
        return {"accuracy": acc, "diversity": div}

    concepts = records["scan"]["concepts"]
    sym2img = []
    chosen = [("train", w) for w in concepts["train"][:SYM2IMG_TRAIN]] + [("held_out", w) for w in concepts["held_out"][:SYM2IMG_HELD_OUT]]
    for i, (group, words) in enumerate(chosen):
        truth = render_concept(data, vocab, words_to_concept(words, vocab), GRID_SAMPLES, rng)
        imgs = imagine(scan, vision_model, words)
        path = root / "sym2img" / f"{i}.png"
        _save_rows(path, [to_uint8_hwc(truth), to_uint8_hwc(imgs)])
        files.append(path)
        sym2img.append({"group": group, "words": words, "aliases": _aliases(words, vocab),
                        "image": f"sym2img/{path.name}", **scored(imgs, words)})

    recombination = []
    op_names = {v: k.replace("_", " ").upper() for k, v in OPERATORS.items()}
    if concepts["train"]:
        ys = np.stack([vocab.encode(w) for w in concepts["train"]])
        try:
            y1s, y2s, ops = sample_triples(ys, vocab, 64, rng)
        except ValueError:
            y1s, y2s, ops = ys[:0], ys[:0], np.zeros(0, dtype=np.int64)
        for op in range(len(OPERATORS)):
            hits = np.flatnonzero(ops == op)
            if not len(hits):
                continue
            a, b = y1s[hits[0]], y2s[hits[0]]
            ta, tb = torch.as_tensor(a, device=device), torch.as_tensor(b, device=device)
            result_words = vocab.decode(apply_operator(torch.as_tensor(a), torch.as_tensor(b), op).numpy())
            imgs = decode_samples(rec.combine(scan, ta, tb, op), vision_model, GRID_SAMPLES, gen)
            rows = [imagine(scan, vision_model, vocab.decode(a)), imagine(scan, vision_model, vocab.decode(b)), imgs]
            path = root / "recombine" / f"{op}.png"
            _save_rows(path, [to_uint8_hwc(r) for r in rows])
            files.append(path)
            recombination.append({
                "a": _aliases(vocab.decode(a), vocab), "b": _aliases(vocab.decode(b), vocab),
                "operator": op_names[op], "result": _aliases(result_words, vocab),
                "image": f"recombine/{path.name}", **scored(imgs, result_words),
            })

    # img2sym: fresh renders, the true words of the vocabulary's factors, what SCAN reads.
    cols = {f.name: data.factor_names.index(f.name) for f in vocab.factors}
    factors = data.sample_factors(IMG2SYM_ROWS, rng)
    images = data.sample_observations_from_factors(factors, rng)
    probs = scan.img2sym(torch.as_tensor(images, device=device), vision_model).cpu().numpy()
    img2sym = []
    for i in range(IMG2SYM_ROWS):
        path = root / "img2sym" / f"{i}.png"
        _save_rows(path, [to_uint8_hwc(images[i : i + 1])])
        files.append(path)
        true, read, right = [], [], 0
        for f in vocab.factors:
            sl = vocab.slices[f.name]
            k = int(probs[i, sl].argmax())
            true.append(vocab.aliases[sl.start + int(factors[i, cols[f.name]])])
            read.append([vocab.aliases[sl.start + k], round(float(probs[i, sl.start + k]), 3)])
            right += int(k == factors[i, cols[f.name]])
        img2sym.append({"image": f"img2sym/{path.name}", "true": true, "predicted": read,
                        "correct": right / len(vocab.factors)})

    compare = None
    if len(models) > 1 and concepts["train"]:
        words = concepts["train"][0]
        rows = [to_uint8_hwc(imagine(sc, vm, words)) for sc, _, vm in models.values()]
        path = root / "compare.png"
        _save_rows(path, rows)
        files.append(path)
        compare = {"aliases": _aliases(words, vocab), "rows": [VARIANTS[n].label for n in models], "image": "compare.png"}
    return {"sym2img": sym2img, "recombination": recombination, "img2sym": img2sym, "compare": compare}, files


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------
def stage_scan(cfg: Config, run: RunDir, *, progress: bool = True, log: Log = print_log) -> dict[str, Any]:
    """Train SCAN (and the ``scan.compare`` ablations) on the run's vision model, score, draw; see the module docstring."""
    from vision.scan.train import FactorClassifier, load_scan

    started = time.time()
    ctx = scan_context(cfg, run)
    run.path("scan").mkdir(parents=True, exist_ok=True)
    log(f"[scan] training the judge: a factor classifier on {cfg.scan.judge_renders} ground-truth renders")
    classifier = FactorClassifier(ctx.data, ctx.vocab, np.random.default_rng(scan_seed(cfg) + 3), n_train=cfg.scan.judge_renders)
    records: dict[str, dict[str, Any]] = {}
    models: dict[str, tuple] = {}
    artifacts: list[Path] = []
    for name in variant_names(cfg.scan):
        var = VARIANTS[name]
        vision_model = train_entangled_vision(cfg, run, progress, log) if var.entangled else ctx.vision_model
        records[name] = run_variant(name, cfg, run, ctx, vision_model, classifier, log)
        pt, js = variant_files(run, name)
        scan, rec, _ = load_scan(pt)
        device = next(vision_model.parameters()).device
        models[name] = (scan.to(device), rec.to(device), vision_model)
        artifacts += [pt, js]
        if var.entangled:
            artifacts.append(run.path("scan", "entangled_vision", "model.pt"))

    pictures, files = _pictures(cfg, run, ctx, models, records, classifier)
    results = {
        "vocabulary": {"factors": list(ctx.vocab.factor_names), "words": list(ctx.vocab.words), "aliases": list(ctx.vocab.aliases)},
        "settings": {**dataclasses.asdict(cfg.scan), "seed": scan_seed(cfg)},
        "variant_order": list(records),  # JSON objects are written with sorted keys
        "variants": {
            name: {"label": VARIANTS[name].label, "kl_direction": VARIANTS[name].kl_direction,
                   "vision": r["vision"], "n_concepts": {k: len(v) for k, v in r["concepts"].items()},
                   "metrics": metric_keys(r)}
            for name, r in records.items()
        },
        **pictures,
    }
    write_json_atomic(run.path("scan", "results.json"), results)
    for name, r in records.items():
        m = metric_keys(r)
        log(f"[scan] {VARIANTS[name].label}: accuracy train {m['scan/train/accuracy']:.2f} / held-out "
            f"{m['scan/held_out/accuracy']:.2f} / recombined {m['scan/recombined/accuracy']:.2f}; "
            f"img2sym {m['scan/img2sym/accuracy']:.2f}")
    return run.complete("scan", [*artifacts, *files, run.path("scan", "results.json")], {"variants": list(records)}, started)


__all__ = ["stage_scan", "scan_context", "scan_settings", "scan_vocabulary", "VARIANTS", "variant_files", "entangled_model_spec"]
