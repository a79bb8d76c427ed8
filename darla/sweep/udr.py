"""Cross-run UDR for a sweep: seeds of the same stage-1 hyperparameters score each other.

UDR (Duan et al. 2020) ranks a model by how well *other seeds of the same hyperparameters* find
its latents again, so its natural population in a sweep is the set of runs that differ only in
the top-level ``seed`` (which seeds stage 1: frames, init, batch order; see :mod:`darla.sweep`).
:func:`cross_run_udr`:

1. groups the sweep's runs by :func:`population_key`, i.e. :func:`darla.sweep.groups.vision_key` of the
   run's config with ``seed`` set to 0, and for a method whose frozen encoder is another registry
   model (``vision/encoders/<method>/model.pt``) by that key plus the method's name (its encoder
   and params are part of the key already). The key is conservative: anything stage 1 reads
   besides ``seed`` splits populations. The vision model of a run with ``vision.checkpoint`` is
   left out: it is one loaded model whatever the seed;
2. keeps distinct models only: runs sharing one vision stage hold copies of one ``model.pt``, so
   models are identified by the file's sha256 (which must match the run's manifest: a model
   whose vision stage is incomplete or modified is skipped);
3. scores every population of ≥ 2 models with :func:`vision.select.udr_rank` on ``num_images``
   (1,000, as the paper) observations rendered from the vision domain's ground truth, exactly as
   ``vision.select: udr`` does in the pipeline, but with a fixed ``np.random.default_rng(0)``
   (:data:`IMAGE_SEED`) instead of the run's seed, since the models of a population have
   different seeds and must see the same images.

The sweep driver (:func:`darla.sweep.run_sweep`) calls it once its runs are done and writes
``SWEEP_DIR/udr.json`` (:data:`CACHE_FILE`): every population with its members (run, method,
model sha256) and scores, and one cache entry per scored population keyed by its models' sorted
sha256s. Running the sweep again scores only a population whose set of models changed (a run
added, a model retrained: a new key); entries of populations that no longer exist are dropped.
A population of one model has no UDR. The sweep report reads the file with
:func:`read_cross_run_udr` and loads no model: a member whose model no longer matches its run's
manifest is reported as stale, not rescored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from darla.config import ENCODER_KINDS, Config, ConfigError, config_from_dict, load_yaml
from darla.runs import RunDir, RunDirError
from darla.sweep.groups import vision_key
from envs.factors import sample_images
from vision.io import file_sha256, write_json_atomic

#: The cache beside ``sweep.json``.
CACHE_FILE = "udr.json"
CACHE_FORMAT = "darla-sweep-udr/1"
#: Images per population, as in Duan et al. 2020 and ``vision.select: udr``.
NUM_IMAGES = 1_000
#: Seed of the ``np.random.Generator`` that draws the images' factors (and renders them).
IMAGE_SEED = 0
SIMILARITY = "spearman"


@dataclass(frozen=True)
class Member:
    """One run's model in a population."""

    run: str
    #: ``""`` for the run's vision model (``vision.model``); else the method whose own encoder it is.
    method: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class RunScore:
    """The cross-run UDR of one run's model (``score`` None: its population has one model)."""

    score: float | None
    n_models: int
    population: str


def population_key(cfg: Config, method: str = "") -> str:
    """Runs with the same key differ at most in ``seed``: their (distinct) models are one population."""
    key = vision_key(replace(cfg, seed=0))
    return f"{key}/{method}" if method else key


def _members(sweep_dir: Path, state: Mapping[str, Any]) -> tuple[dict[str, list[Member]], dict[str, Config], list[str]]:
    """population key → members (one per run), key → a config of the population, and skip reasons."""
    pops: dict[str, list[Member]] = {}
    cfgs: dict[str, Config] = {}
    skipped: list[str] = []
    for run in state.get("runs", []):
        rdir = sweep_dir / run["dir"]
        rd = RunDir(rdir)
        try:
            entry = rd.stage("vision")
            if not entry or entry.get("status") != "complete" or not rd.config_path.exists():
                continue  # vision not trained yet: nothing to score
            cfg = config_from_dict(load_yaml(rd.config_path), str(rd.config_path), check_build=False, check_files=False)
        except (RunDirError, ConfigError, yaml.YAMLError, OSError) as e:
            skipped.append(f"{run['name']}: {e}")
            continue
        # a loaded vision.checkpoint is the same model whatever the seed: no population
        candidates = [] if cfg.vision.checkpoint else [("", model_path(rd, ""))]
        candidates += [(n, model_path(rd, n)) for n, m in cfg.methods.items() if m.encoder not in ENCODER_KINDS]
        for method, rel in candidates:
            recorded = entry.get("sha256", {}).get(rel)
            path = rdir / rel
            if recorded is None or not path.is_file():
                continue
            digest = file_sha256(path)
            if digest != recorded:
                skipped.append(f"{run['name']}: {rel} does not match its manifest's sha256")
                continue
            key = population_key(cfg, method)
            pops.setdefault(key, []).append(Member(run["name"], method, path, digest))
            cfgs.setdefault(key, cfg)
    return pops, cfgs, skipped


def _images(cfg: Config, num_images: int) -> Any:
    """(n, C, H, W) in [0, 1] from the vision domain's ground truth, as ``_train_and_select`` renders them."""
    import numpy as np

    from darla.stages.common import domains_of
    from darla.stages.vision import vision_ground_truth

    vision_dom, _, _ = domains_of(cfg)
    data = vision_ground_truth(cfg, vision_dom)
    rng = np.random.default_rng(IMAGE_SEED)
    return sample_images(data, num_images, rng)


def _read_cache(path: Path, num_images: int) -> dict[str, Any]:
    """The cached populations if the file was written with these settings, else nothing."""
    cache = _read_json(path)
    settings = {"format": CACHE_FORMAT, "num_images": num_images, "image_seed": IMAGE_SEED, "similarity": SIMILARITY}
    if any(cache.get(k) != v for k, v in settings.items()):
        return {}
    pops = cache.get("populations")
    return pops if isinstance(pops, dict) else {}


def cross_run_udr(
    sweep_dir: Path, state: Mapping[str, Any] | None = None, *, num_images: int = NUM_IMAGES,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """UDR of every run's model among the seeds of its hyperparameters; cached in ``udr.json``.

    Returns ``scores`` ({(run, method): :class:`RunScore`}, method ``""`` for ``vision.model``),
    ``populations`` (JSON-safe summaries, one per population, with its runs and per-model
    scores; ``error`` where scoring failed), ``num_images``, ``image_seed`` and ``skipped``.
    """
    sweep_dir = Path(sweep_dir)
    if state is None:
        state = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8"))
    pops, cfgs, skipped = _members(sweep_dir, state)
    cache_path = sweep_dir / CACHE_FILE
    cached = _read_cache(cache_path, num_images)
    fresh: dict[str, Any] = {}
    images_by_key: dict[str, Any] = {}
    scores: dict[tuple[str, str], RunScore] = {}
    summaries: list[dict[str, Any]] = []
    for key, members in pops.items():
        shas = sorted({m.sha256 for m in members})
        summary: dict[str, Any] = {
            "key": key, "method": members[0].method, "n_models": len(shas), "models": shas,
            "runs": [m.run for m in members], "cached": False, "scores": None,
        }
        if len(shas) >= 2:
            ckey = ",".join(shas)
            entry = cached.get(ckey)
            if isinstance(entry, dict) and entry.get("models") == shas and len(entry.get("scores") or []) == len(shas):
                summary["cached"] = True
            else:
                try:
                    entry = _score(members, shas, cfgs[key], num_images, images_by_key)
                except Exception as e:  # one bad population (shape mismatch, unreadable model) spares the rest
                    summary["error"] = f"{type(e).__name__}: {e}"
                    entry = None
                    if log:
                        log(f"[udr] population {key}: {summary['error']}")
            if entry is not None:
                fresh[ckey] = {**entry, "key": key}
                summary["scores"] = dict(zip(shas, entry["scores"]))
        summaries.append(summary)
        by_sha = summary["scores"] or {}
        for m in members:
            scores[(m.run, m.method)] = RunScore(by_sha.get(m.sha256), len(shas), key)
    members = [{"run": m.run, "method": m.method, "sha256": m.sha256, "population": key}
               for key, ms in pops.items() for m in ms]
    doc = {"format": CACHE_FORMAT, "num_images": num_images, "image_seed": IMAGE_SEED, "similarity": SIMILARITY,
           "populations": fresh,
           # without "cached", which says what this call computed, not what the sweep holds
           "summary": {"populations": [{k: v for k, v in s.items() if k != "cached"} for s in summaries],
                       "members": members, "skipped": skipped}}
    if doc != _read_json(cache_path):  # a second sweep with nothing new writes nothing
        write_json_atomic(cache_path, doc)
    return {"scores": scores, "populations": summaries, "num_images": num_images, "image_seed": IMAGE_SEED, "skipped": skipped}


def read_cross_run_udr(sweep_dir: Path) -> dict[str, Any]:
    """What :func:`cross_run_udr` last wrote to ``udr.json``, in its return shape, loading no model.

    A member whose model's sha256 in its run's manifest is no longer the one scored (the model was
    retrained since) gets no score and is named in ``stale``; ``missing`` is True where the sweep
    has not scored UDR yet (no ``udr.json``, or one without its summary).
    """
    sweep_dir = Path(sweep_dir)
    doc = _read_json(sweep_dir / CACHE_FILE)
    summary = doc.get("summary") if isinstance(doc, dict) else None
    out: dict[str, Any] = {"scores": {}, "populations": [], "num_images": None, "image_seed": None, "skipped": [],
                           "stale": [], "missing": not isinstance(summary, dict)}
    if out["missing"]:
        return out
    out.update(num_images=doc.get("num_images"), image_seed=doc.get("image_seed"),
               populations=list(summary.get("populations") or []), skipped=list(summary.get("skipped") or []))
    by_key = {p["key"]: p for p in out["populations"]}
    runs = {r["name"]: r for r in _read_json(sweep_dir / "sweep.json").get("runs", [])}
    for m in summary.get("members") or []:
        pop = by_key.get(m["population"], {})
        score = (pop.get("scores") or {}).get(m["sha256"])
        run = runs.get(m["run"])
        recorded, rel = None, m["method"] or "vision model"
        if run is not None:
            rd = RunDir(sweep_dir / run["dir"])
            rel = model_path(rd, m["method"])
            try:
                recorded = (rd.stage("vision") or {}).get("sha256", {}).get(rel)
            except RunDirError:
                pass
        if recorded != m["sha256"]:
            out["stale"].append(f"{m['run']}: {rel}")
            score = None
        out["scores"][(m["run"], m["method"])] = RunScore(score, int(pop.get("n_models", 0)), m["population"])
    return out


def model_path(rd: RunDir, method: str) -> str:
    """The run-relative path (as its manifest records it) of the vision model (``method`` ``""``)
    or of a method's own encoder."""
    return rd.vision_model(method or None).relative_to(rd.root).as_posix()


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} where it is missing or not one."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _score(members: list[Member], shas: list[str], cfg: Config, num_images: int, images_by_key: dict[str, Any]) -> dict[str, Any]:
    """UDR of the population's distinct models (in ``shas`` order)."""
    from vision.registry import load_checkpoint
    from vision.select import udr_rank

    path_of = {m.sha256: m.path for m in members}
    models = [load_checkpoint(path_of[s]) for s in shas]
    ikey = population_key(cfg)  # images depend on env and vision domain only: shared by a run's encoders
    if ikey not in images_by_key:
        images_by_key[ikey] = _images(cfg, num_images)
    res = udr_rank(models, images_by_key[ikey], similarity=SIMILARITY)
    return {
        "models": shas, "model_names": [m.name for m in models], "scores": res["scores"],
        "udr_pairwise": res["udr_pairwise"], "num_active": res["num_active"],
    }
