"""The three stages (plus the report) as plain functions over a run directory.

``run_pipeline`` skips every stage whose manifest entry is complete (artifacts present, hashes
matching) and resumes an interrupted stage from its last checkpoint; ``force`` starts over. A
failed stage raises and leaves every earlier stage's artifacts as they were.
"""

from __future__ import annotations

import csv
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from darla.config import Config, dump_config
from darla.runs import RunDir, RunDirError, write_json_atomic
from envs.collect import collect_frames
from envs.factors import Domain, to_chw_float
from envs.registry import get_domain, get_env_info

Log = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def domains_of(cfg: Config) -> tuple[Domain, Domain, dict[str, Domain]]:
    d = cfg.env.domains
    vision = get_domain(cfg.env.name, d.vision)
    source = get_domain(cfg.env.name, d.source)
    targets = {name: get_domain(cfg.env.name, spec) for name, spec in d.targets.items()}
    return vision, source, targets


def resolve_device(name: str) -> torch.device:
    from vision.train import resolve_device as _rd

    return _rd(name)


def _train_settings(cfg: Config, steps: int, lr: float | None, progress: bool):
    from vision.train import TrainSettings

    v = cfg.vision
    return TrainSettings(
        steps=steps, batch_size=v.batch_size, lr=lr, checkpoint_every=v.checkpoint_every,
        log_every=v.log_every, device=cfg.device, amp=v.amp, compile=v.compile, seed=cfg.seed,
        progress=progress,
    )


def _model_kwargs(cls: type, params: dict[str, Any], n_frames: int) -> dict[str, Any]:
    kwargs = dict(params)
    sig = inspect.signature(cls.__init__).parameters
    if "dataset_size" in sig and "dataset_size" not in kwargs:
        kwargs["dataset_size"] = n_frames  # β-TCVAE's log q(z) estimators need N
    return kwargs


# ---------------------------------------------------------------------------------------------
# stage 1: learn to see
# ---------------------------------------------------------------------------------------------
def stage_vision(cfg: Config, run: RunDir, *, progress: bool = True, log: Log = _print) -> dict[str, Any]:
    from vision.checkpoint import load_checkpoint, save_checkpoint
    from vision.registry import get_model_class

    started = time.time()
    v = cfg.vision
    vision_dom, _, _ = domains_of(cfg)
    out = run.path("vision")
    out.mkdir(parents=True, exist_ok=True)
    frames = _vision_frames(cfg, vision_dom, log)
    obs_shape = (frames.shape[3], frames.shape[1], frames.shape[2])

    if v.checkpoint:
        # The config must describe the checkpoint it names: model, latents and image size.
        model = load_checkpoint(v.checkpoint, expect={"model": v.model, "latent_dim": v.latent_dim, "obs_shape": obs_shape})
        model_path = out / "model.pt"
        save_checkpoint(model_path, model, extra={"source_checkpoint": str(v.checkpoint)})
        history: dict[str, list[float]] = {}
        info: dict[str, Any] = {"trained": False}
    else:
        cls = get_model_class(v.model)
        params = _model_kwargs(cls, v.params, v.n_frames)
        if getattr(cls, "requires", None) == "dae" and not params.get("dae_checkpoint"):
            params["dae_checkpoint"] = str(_pretrain_dae(cfg, run, frames, obs_shape, progress, log))
        if v.select == "udr":
            model_path, history, info = _train_and_select(cfg, run, cls, params, frames, vision_dom, progress, log)
        else:
            model_path, history, info = _train_one(cfg, cls, params, frames, vision_dom, cfg.seed, out, progress, log)
        info["trained"] = True

    model = load_checkpoint(model_path, expect={"obs_shape": obs_shape})
    summary = _vision_summary(cfg, model, frames, history, out)
    write_json_atomic(out / "summary.json", summary)
    artifacts = [model_path, out / "summary.json", out / "recon.png", out / "traversals.png"]
    if v.select == "udr":
        artifacts.append(out / "udr.json")
    if cfg.metrics.enabled:
        artifacts.append(_score_vision(cfg, model, vision_dom, out, log))
    return run.complete("vision", artifacts, info, started)


def vision_ground_truth(cfg: Config, vision_dom: Domain):
    """The labelled renderer stage 1 sees: the env's over the vision domain, or dSprites."""
    if cfg.vision.data == "dsprites":
        from envs.dsprites import DSprites

        return DSprites()
    return get_env_info(cfg.env.name).ground_truth(cfg.env.size, vision_dom)


def _vision_frames(cfg: Config, vision_dom: Domain, log: Log) -> np.ndarray:
    """uint8 (N, H, W, C) training frames: a random policy in the vision domain, or dSprites renders."""
    v = cfg.vision
    if v.data == "dsprites":
        log(f"[vision] rendering {v.n_frames} dSprites images (uniform factors)")
        data = vision_ground_truth(cfg, vision_dom)
        rng = np.random.default_rng(cfg.seed)
        images = data.sample_observations_from_factors(data.sample_factors(v.n_frames, rng), rng)
        return (images.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
    log(f"[vision] collecting {v.n_frames} random-policy frames in domain {vision_dom.name!r}")
    return collect_frames(cfg.env.name, vision_dom, v.n_frames, seed=cfg.seed, size=cfg.env.size, max_steps=cfg.env.max_steps).frames


def _train_one(
    cfg: Config, cls: type, params: dict[str, Any], frames: np.ndarray, vision_dom: Domain,
    seed: int, out: Path, progress: bool, log: Log,
) -> tuple[Path, dict[str, list[float]], dict[str, Any]]:
    """Train one vision model with ``seed`` (init, batch order, noise) into ``out``."""
    from vision.train import train_vision

    v = cfg.vision
    obs_shape = (frames.shape[3], frames.shape[1], frames.shape[2])
    torch.manual_seed(seed)  # here, after any DAE pretraining, so a resumed run inits the same
    model = cls(obs_shape, latent_dim=v.latent_dim, **params)
    if hasattr(model, "attach_data"):  # DC-IGN draws one-factor-varies batches from the renderer
        model.attach_data(vision_ground_truth(cfg, vision_dom), np.random.default_rng(seed))
    log(f"[vision] training {v.model} ({v.latent_dim} latents, seed {seed}) for {v.steps} steps on {resolve_device(cfg.device)}")
    settings = replace(_train_settings(cfg, v.steps, v.lr, progress), seed=seed)
    result = train_vision(model, frames, settings, out, resume=True, tb_dir=out / "tb", extra={"config_model": v.model, "seed": seed})
    return result.model_path, result.history, {"images_per_s": round(result.images_per_s, 1), "steps": result.steps}


def _train_and_select(
    cfg: Config, run: RunDir, cls: type, params: dict[str, Any], frames: np.ndarray, vision_dom: Domain,
    progress: bool, log: Log,
) -> tuple[Path, dict[str, list[float]], dict[str, Any]]:
    """``vision.select: udr``: one model per candidate seed, the stage-2 encoder chosen by UDR (no labels)."""
    import shutil

    from vision.checkpoint import load_checkpoint
    from vision.select import udr_rank

    out = run.path("vision")
    candidates: dict[int, Path] = {}
    histories: dict[int, dict[str, list[float]]] = {}
    for seed in cfg.vision.seeds:
        cdir = out / "candidates" / f"seed{seed}"
        name = f"vision/seed{seed}"
        if not run.is_complete(name):
            t0 = time.time()
            path, history, info = _train_one(cfg, cls, params, frames, vision_dom, seed, cdir, progress, log)
            write_json_atomic(cdir / "history.json", history)
            run.complete(name, [path, cdir / "history.json"], info, t0)
        candidates[seed] = cdir / "model.pt"
        histories[seed] = json.loads((cdir / "history.json").read_text())
    data = vision_ground_truth(cfg, vision_dom)
    rng = np.random.default_rng(cfg.seed)
    images = data.sample_observations_from_factors(data.sample_factors(1000, rng), rng)
    models = [load_checkpoint(p) for p in candidates.values()]
    ranking = udr_rank(models, images)
    best = list(candidates)[ranking["best"]]
    log(f"[vision] UDR scores {dict(zip(candidates, [round(x, 3) for x in ranking['scores']]))}: seed {best} encodes for stage 2")
    write_json_atomic(out / "udr.json", {"seeds": list(candidates), "chosen_seed": best, **ranking})
    shutil.copyfile(candidates[best], out / "model.pt")
    return out / "model.pt", histories[best], {"udr_chosen_seed": best}


def _pretrain_dae(cfg: Config, run: RunDir, frames: np.ndarray, obs_shape, progress: bool, log: Log) -> Path:
    """β-VAE-DAE needs a frozen DAE: train one first, into vision/dae/ (resumable on its own)."""
    from vision.registry import get_model_class
    from vision.train import train_vision

    dae_dir = run.path("vision", "dae")
    dae_path = dae_dir / "model.pt"
    entry = run.stage("vision/dae")
    if entry and entry.get("status") == "complete" and run.is_complete("vision/dae"):
        return dae_path
    started = time.time()
    d = cfg.vision.dae
    cls = get_model_class("dae")
    log(f"[vision] pretraining the DAE for {d.steps} steps (β-VAE-DAE's perceptual space)")
    torch.manual_seed(cfg.seed)
    model = cls(obs_shape, **d.params)
    settings = replace(_train_settings(cfg, d.steps, d.lr, progress))
    train_vision(model, frames, settings, dae_dir, resume=True, tb_dir=dae_dir / "tb")
    run.complete("vision/dae", [dae_path], {}, started)
    return dae_path


def _vision_summary(cfg: Config, model, frames: np.ndarray, history: dict, out: Path) -> dict[str, Any]:
    from vision.traverse import reconstruction_grid, save_png, traversal_grid

    rng = np.random.default_rng(cfg.seed + 1)
    idx = rng.choice(len(frames), size=min(1000, len(frames)), replace=False)
    x = to_chw_float(frames[idx])
    kl = model.kl_per_dim(x)
    order = np.argsort(-kl)
    save_png(out / "recon.png", reconstruction_grid(model, x[:8]))
    save_png(out / "traversals.png", traversal_grid(model, x[0], order=order))
    tail = {k: [float(vv) for vv in v] for k, v in history.items()}
    return {
        "model": model.name,
        "hparams": model.hparams,
        "kl_per_dim": [float(k) for k in kl],
        "kl_order": [int(i) for i in order],
        "active_dims": int((kl > 0.01).sum()),
        "history": tail,
    }


def _score_vision(cfg: Config, model, vision_dom: Domain, out: Path, log: Log) -> Path:
    from vision.metrics import METRICS, score

    names = list(METRICS) if "all" in cfg.metrics.enabled else list(cfg.metrics.enabled)
    dsprites = cfg.vision.data == "dsprites"
    where = "dsprites" if dsprites else cfg.env.name
    log(f"[vision] scoring {', '.join(names)} ({cfg.metrics.settings}) on {where}'s ground-truth factors")
    data = vision_ground_truth(cfg, vision_dom)
    results = score(data, model.represent, np.random.default_rng(cfg.seed), metrics=names, settings=cfg.metrics.settings)
    path = out / "metrics.json"
    domain = None if dsprites else vision_dom.name
    write_json_atomic(path, {"data": where, "domain": domain, "settings": cfg.metrics.settings, "metrics": results})
    return path


def load_vision(run: RunDir):
    from vision.checkpoint import file_sha256, load_checkpoint

    path = run.path("vision", "model.pt")
    return load_checkpoint(path), file_sha256(path)


# ---------------------------------------------------------------------------------------------
# stage 2: learn to act
# ---------------------------------------------------------------------------------------------
def agent_dir(run: RunDir, algo: str, seed: int) -> Path:
    return run.path("agent", f"{algo}_seed{seed}")


def stage_agent(cfg: Config, run: RunDir, *, progress: bool = True, log: Log = _print) -> dict[str, Any]:
    from agents.train import AgentSpec, train_agent

    started = time.time()
    a = cfg.agent
    _, source, _ = domains_of(cfg)
    encoder, sha = load_vision(run)
    device = resolve_device(cfg.device)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    artifacts, rates = [], {}
    for seed in a.seeds:
        name = f"agent/{a.algo}_seed{seed}"
        out = agent_dir(run, a.algo, seed)
        if run.is_complete(name):
            log(f"[agent] {a.algo} seed {seed}: complete, skipping")
        else:
            log(f"[agent] training {a.algo.upper()} seed {seed} for {a.total_timesteps} steps in {source.name!r}")
            t0 = time.time()
            spec = AgentSpec(
                env_name=cfg.env.name, domain=source.name, size=cfg.env.size, max_steps=cfg.env.max_steps,
                algo=a.algo, total_timesteps=a.total_timesteps, n_envs=a.n_envs, seed=seed,
                hyperparams=dict(a.hyperparams), policy_kwargs=dict(a.policy_kwargs), checkpoint_every=a.checkpoint_every,
            )
            res = train_agent(spec, encoder, sha, source, out, device=device, resume=True, progress=progress)
            run.complete(name, [out / "model.zip", out / "meta.json"], {"steps_per_s": round(res.steps_per_s, 1)}, t0)
            rates[seed] = round(res.steps_per_s, 1)
        artifacts += [out / "model.zip", out / "meta.json"]
    return run.complete("agent", artifacts, {"encoder_sha256": sha}, started)


# ---------------------------------------------------------------------------------------------
# stage 3: transfer
# ---------------------------------------------------------------------------------------------
def stage_transfer(cfg: Config, run: RunDir, *, progress: bool = True, log: Log = _print) -> dict[str, Any]:
    from agents.stats import summarize_returns, transfer_ratio
    from agents.train import load_agent
    from agents.transfer import evaluate_transfer

    started = time.time()
    _, source, targets = domains_of(cfg)
    domains = {"source": source, **targets}
    encoder, sha = load_vision(run)
    device = resolve_device(cfg.device)
    out = run.path("transfer")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in cfg.agent.seeds:
        model = load_agent(agent_dir(run, cfg.agent.algo, seed) / "model.zip", expect_encoder_sha256=sha)
        log(f"[transfer] seed {seed}: {cfg.transfer.n_episodes} episodes in each of {', '.join(domains)}")
        for ep in evaluate_transfer(
            model, encoder, cfg.env.name, domains, n_episodes=cfg.transfer.n_episodes,
            seed_base=cfg.transfer.seed_base, size=cfg.env.size, max_steps=cfg.env.max_steps,
            deterministic=cfg.transfer.deterministic, device=device,
        ):
            rows.append({"method": cfg.vision.model, "algo": cfg.agent.algo, "seed": seed, **ep._asdict()})
    with open(out / "episodes.csv.tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "episodes.csv.tmp").replace(out / "episodes.csv")

    summary: dict[str, Any] = {"domains": {}, "transfer_ratio": {}}
    for dname in domains:
        per_seed = {s: [r["ret"] for r in rows if r["domain"] == dname and r["seed"] == s] for s in cfg.agent.seeds}
        summary["domains"][dname] = summarize_returns(per_seed, seed=cfg.seed)
    src = summary["domains"]["source"]["mean"]
    for dname in targets:
        summary["transfer_ratio"][dname] = transfer_ratio(summary["domains"][dname]["mean"], src)
    write_json_atomic(out / "summary.json", summary)
    return run.complete("transfer", [out / "episodes.csv", out / "summary.json"], {}, started)


# ---------------------------------------------------------------------------------------------
# report, and the whole pipeline
# ---------------------------------------------------------------------------------------------
def stage_report(cfg: Config, run: RunDir, *, progress: bool = True, log: Log = _print) -> dict[str, Any]:
    from darla.report import write_report

    started = time.time()
    paths = write_report(cfg, run)
    return run.complete("report", paths, {}, started)


STAGE_FUNCS = {"vision": stage_vision, "agent": stage_agent, "transfer": stage_transfer, "report": stage_report}


def run_pipeline(
    cfg: Config,
    *,
    run_dir: Path | None = None,
    force: bool = False,
    progress: bool = True,
    stages: tuple[str, ...] = ("vision", "agent", "transfer", "report"),
    log: Log = _print,
) -> RunDir:
    """Run (or continue) every stage of ``cfg`` in ``run_dir`` (default ``runs_dir/name``)."""
    if cfg.vision.data == "dsprites" and tuple(stages) != ("vision",):
        raise ValueError("vision.data: dsprites is for stage 1 alone (darla vision train): it has no policy to train")
    run = RunDir(Path(run_dir) if run_dir is not None else Path(cfg.runs_dir) / cfg.name)
    run.prepare(dump_config(cfg), force=force)
    order = list(STAGE_FUNCS)
    for name in stages:
        if run.is_complete(name):
            log(f"[{name}] complete, skipping")
            continue
        # Everything downstream of a stage that is re-run must be re-run too.
        run.invalidate(*order[order.index(name) + 1 :])
        t0 = time.time()
        STAGE_FUNCS[name](cfg, run, progress=progress, log=log)
        log(f"[{name}] done in {time.time() - t0:.1f} s")
    return run


__all__ = ["run_pipeline", "stage_vision", "stage_agent", "stage_transfer", "stage_report", "RunDirError"]
