"""Stage 1, learn to see: frames from the vision domain, the vision model (and any comparison
encoders) trained on them, figures, and its disentanglement scores."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from darla.config import Config
from darla.runs import RunDir
from darla.stages.common import Log, domains_of, print_log
from envs.collect import collect_frames
from envs.factors import Domain, sample_images, to_chw_float
from envs.registry import get_env_info
from vision.checkpoint import save_checkpoint
from vision.io import write_json_atomic
from vision.registry import get_model_class, load_checkpoint, make_model, model_kwargs
from vision.train import resolve_device


def train_settings(cfg: Config, steps: int, lr: float | None, progress: bool):
    from vision.train import TrainSettings

    v = cfg.vision
    return TrainSettings(
        steps=steps, batch_size=v.batch_size, lr=lr, checkpoint_every=v.checkpoint_every,
        log_every=v.log_every, device=cfg.device, amp=v.amp, compile=v.compile, cuda_graph=v.cuda_graph,
        fused_adam=v.fused_adam, seed=init_seed(cfg), progress=progress,
    )


def init_seed(cfg: Config) -> int:
    """Stage 1's training seed (initialisations, batch order, noise): ``vision.init_seed``, else the
    run's ``seed``. The frames are always the run's seed's."""
    return cfg.vision.init_seed if cfg.vision.init_seed is not None else cfg.seed


def model_params(
    cfg: Config, run: RunDir, cls: type, params: dict[str, Any], frames: np.ndarray, progress: bool, log: Log,
) -> dict[str, Any]:
    """Constructor kwargs of ``cls`` on stage 1's frames: :func:`model_kwargs`, and for a model that
    needs a frozen DAE (β-VAE-DAE) and names none, the DAE trained first (:func:`pretrain_dae`)."""
    params = model_kwargs(cls, params, cfg.vision.n_frames)
    if getattr(cls, "requires", None) == "dae" and not params.get("dae_checkpoint"):
        obs_shape = (frames.shape[3], frames.shape[1], frames.shape[2])
        params["dae_checkpoint"] = str(pretrain_dae(cfg, run, frames, obs_shape, progress, log))
    return params


def stage_vision(cfg: Config, run: RunDir, *, progress: bool = True, log: Log = print_log) -> dict[str, Any]:
    started = time.time()
    v = cfg.vision
    vision_dom, _, _ = domains_of(cfg)
    out = run.vision_dir()
    out.mkdir(parents=True, exist_ok=True)
    frames = vision_frames(cfg, vision_dom, log)
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
        params = model_params(cfg, run, cls, v.params, frames, progress, log)
        if v.select == "udr":
            model_path, history, info = _train_and_select(cfg, run, cls, params, frames, vision_dom, progress, log)
        else:
            model_path, history, info = train_one(cfg, cls, params, frames, vision_dom, init_seed(cfg), out, progress, log)
        info["trained"] = True

    model = load_checkpoint(model_path, expect={"obs_shape": obs_shape})
    summary = _vision_summary(cfg, model, frames, history, out, vision_dom)
    write_json_atomic(out / "summary.json", summary)
    artifacts = [model_path, out / "summary.json", out / "recon.png", out / "traversals.png"]
    if "selectivity" in summary:
        artifacts.append(out / "icf_traversals.png")
    if v.select == "udr":
        artifacts.append(out / "udr.json")
    if cfg.metrics.enabled:
        artifacts.append(score_vision(cfg, model, vision_dom, out, log))
    for name in extra_encoders(cfg):
        artifacts += _train_extra_encoder(cfg, run, name, frames, vision_dom, progress, log)
    return run.complete("vision", artifacts, info, started)


def extra_encoders(cfg: Config) -> list[str]:
    """Methods whose frozen encoder is another registry model, trained in stage 1 beside vision.model."""
    return [n for n, m in cfg.methods.items() if m.encoder not in ("vision", "pixels")]


def _train_extra_encoder(
    cfg: Config, run: RunDir, method: str, frames: np.ndarray, vision_dom: Domain, progress: bool, log: Log,
) -> list[Path]:
    """A comparison encoder (e.g. a β = 1 VAE, a DAE): same frames, steps, batch and seed as vision.model."""
    m = cfg.methods[method]
    out = run.vision_dir(method)
    stage = f"vision/encoders/{method}"
    if not run.is_complete(stage):
        t0 = time.time()
        cls = get_model_class(m.encoder)
        params = model_params(cfg, run, cls, m.params, frames, progress, log)
        lr = cfg.vision.lr if cls.uses_lr and m.encoder == cfg.vision.model else None
        sub = replace(cfg, vision=replace(cfg.vision, model=m.encoder, lr=lr))
        path, history, info = train_one(sub, cls, params, frames, vision_dom, init_seed(cfg), out, progress, log)
        model = load_checkpoint(path)
        summary = _vision_summary(cfg, model, frames, history, out, vision_dom)
        write_json_atomic(out / "summary.json", summary)
        files = [path, out / "summary.json", out / "recon.png", out / "traversals.png"]
        if "selectivity" in summary:
            files.append(out / "icf_traversals.png")
        if cfg.metrics.enabled and cfg.vision.data == "env":
            files.append(score_vision(cfg, model, vision_dom, out, log))
        run.complete(stage, files, info, t0)
    return [run.root / rel for rel in run.stage(stage)["sha256"]]


def vision_ground_truth(cfg: Config, vision_dom: Domain):
    """The labelled renderer stage 1 sees: the env's over the vision domain, or dSprites."""
    if cfg.vision.data == "dsprites":
        from envs.dsprites import DSprites

        return DSprites()
    return get_env_info(cfg.env.name).ground_truth(cfg.env.size, vision_dom)


def vision_transitions(cfg: Config, vision_dom: Domain):
    """The one-step transitions ICF learns from: the env's TransitionSource over the vision domain
    (every state it draws or reaches is checked to lie there, so no target combination is seen)."""
    from envs.transitions import transition_source

    return transition_source(cfg.env.name, cfg.env.size, vision_dom)


def vision_frames(cfg: Config, vision_dom: Domain, log: Log) -> np.ndarray:
    """uint8 (N, H, W, C) training frames: a random policy in the vision domain, or dSprites renders."""
    v = cfg.vision
    if v.data == "dsprites":
        log(f"[vision] rendering {v.n_frames} dSprites images (uniform factors)")
        data = vision_ground_truth(cfg, vision_dom)
        rng = np.random.default_rng(cfg.seed)
        images = sample_images(data, v.n_frames, rng)
        return (images.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
    steps = v.episode_steps or cfg.env.max_steps
    log(f"[vision] collecting {v.n_frames} random-policy frames in domain {vision_dom.name!r} (episodes of {steps} steps)")
    return collect_frames(cfg.env.name, vision_dom, v.n_frames, seed=cfg.seed, size=cfg.env.size, max_steps=steps).frames


def train_one(
    cfg: Config, cls: type, params: dict[str, Any], frames: np.ndarray, vision_dom: Domain,
    seed: int, out: Path, progress: bool, log: Log,
) -> tuple[Path, dict[str, list[float]], dict[str, Any]]:
    """Train one vision model with ``seed`` (init, batch order, noise) into ``out``."""
    from vision.train import CHECKPOINT, train_vision

    v = cfg.vision
    obs_shape = (frames.shape[3], frames.shape[1], frames.shape[2])
    transitions = None
    if getattr(cls, "learns_from", "frames") == "transitions":  # ICF: (s, a, s') from the env, vision domain only
        from vision.icf import action_kwargs

        transitions = vision_transitions(cfg, vision_dom)
        if "n_actions" not in params and "action_dim" not in params:
            params = {**params, **action_kwargs(transitions.action_space)}
    torch.manual_seed(seed)  # here, after any DAE pretraining, so a resumed run inits the same
    model = make_model(cls, obs_shape, latent_dim=v.latent_dim, **params)
    if transitions is not None:
        model.attach_data(transitions, np.random.default_rng(seed))
    elif hasattr(model, "attach_data"):  # DC-IGN draws one-factor-varies batches from the renderer
        model.attach_data(vision_ground_truth(cfg, vision_dom), np.random.default_rng(seed))
    resuming = f" (resuming from {CHECKPOINT})" if (out / CHECKPOINT).exists() else ""
    log(f"[vision] training {v.model} ({v.latent_dim} latents, seed {seed}) for {v.steps} steps on {resolve_device(cfg.device)}{resuming}")
    settings = replace(train_settings(cfg, v.steps, v.lr, progress), seed=seed)
    result = train_vision(model, frames, settings, out, resume=True, tb_dir=out / "tb", extra={"config_model": v.model, "seed": seed})
    # The thread count is part of the result: a CPU step sums in an order that depends on it, so the
    # same seed on 1 and on 2 threads drifts apart from the first hundred steps on.
    info = {"images_per_s": round(result.images_per_s, 1), "steps": result.steps, "torch_threads": torch.get_num_threads()}
    return result.model_path, result.history, info


def _train_and_select(
    cfg: Config, run: RunDir, cls: type, params: dict[str, Any], frames: np.ndarray, vision_dom: Domain,
    progress: bool, log: Log,
) -> tuple[Path, dict[str, list[float]], dict[str, Any]]:
    """``vision.select: udr``: one model per candidate seed, the stage-2 encoder chosen by UDR (no labels)."""
    import shutil

    from vision.select import udr_rank

    out = run.vision_dir()
    candidates: dict[int, Path] = {}
    histories: dict[int, dict[str, list[float]]] = {}
    for seed in cfg.vision.seeds:
        cdir = out / "candidates" / f"seed{seed}"
        name = f"vision/seed{seed}"
        if not run.is_complete(name):
            t0 = time.time()
            path, history, info = train_one(cfg, cls, params, frames, vision_dom, seed, cdir, progress, log)
            write_json_atomic(cdir / "history.json", history)
            run.complete(name, [path, cdir / "history.json"], info, t0)
        candidates[seed] = cdir / "model.pt"
        histories[seed] = json.loads((cdir / "history.json").read_text())
    data = vision_ground_truth(cfg, vision_dom)
    rng = np.random.default_rng(cfg.seed)
    images = sample_images(data, 1000, rng)
    models = [load_checkpoint(p) for p in candidates.values()]
    ranking = udr_rank(models, images)
    best = list(candidates)[ranking["best"]]
    log(f"[vision] UDR scores {dict(zip(candidates, [round(x, 3) for x in ranking['scores']]))}: seed {best} encodes for stage 2")
    write_json_atomic(out / "udr.json", {"seeds": list(candidates), "chosen_seed": best, **ranking})
    shutil.copyfile(candidates[best], out / "model.pt")
    return out / "model.pt", histories[best], {"udr_chosen_seed": best}


def pretrain_dae(cfg: Config, run: RunDir, frames: np.ndarray, obs_shape, progress: bool, log: Log) -> Path:
    """β-VAE-DAE needs a frozen DAE: train one first, into vision/dae/ (resumable on its own)."""
    from vision.train import train_vision

    dae_dir = run.dae_dir()
    dae_path = dae_dir / "model.pt"
    entry = run.stage("vision/dae")
    if entry and entry.get("status") == "complete" and run.is_complete("vision/dae"):
        return dae_path
    started = time.time()
    d = cfg.vision.dae
    cls = get_model_class("dae")
    log(f"[vision] pretraining the DAE for {d.steps} steps (β-VAE-DAE's perceptual space)")
    torch.manual_seed(init_seed(cfg))
    model = cls(obs_shape, **d.params)
    settings = train_settings(cfg, d.steps, d.lr, progress)
    train_vision(model, frames, settings, dae_dir, resume=True, tb_dir=dae_dir / "tb")
    run.complete("vision/dae", [dae_path], {}, started)
    return dae_path


def _vision_summary(cfg: Config, model, frames: np.ndarray, history: dict, out: Path, vision_dom: Domain) -> dict[str, Any]:
    from vision.traverse import reconstruction_grid, save_png, traversal_grid

    rng = np.random.default_rng(cfg.seed + 1)
    idx = rng.choice(len(frames), size=min(1000, len(frames)), replace=False)
    x = to_chw_float(frames[idx])
    kl = model.kl_per_dim(x)
    order = np.argsort(-kl)
    save_png(out / "recon.png", reconstruction_grid(model, x[:8]))
    save_png(out / "traversals.png", traversal_grid(model, x[0], order=order))
    tail = {k: [float(vv) for vv in v] for k, v in history.items()}
    summary = {
        "model": model.name,
        "hparams": model.hparams,
        "kl_per_dim": [float(k) for k in kl],
        "kl_order": [int(i) for i in order],
        "active_dims": int((kl > 0.01).sum()),
        "history": tail,
    }
    if getattr(model, "learns_from", "frames") == "transitions":
        summary["selectivity"] = _icf_selectivity(cfg, model, x, out, vision_dom)
    return summary


def _icf_selectivity(cfg: Config, model, x: np.ndarray, out: Path, vision_dom: Domain) -> dict[str, Any]:
    """ICF: what each policy moves (selectivity matrix, per-latent selectivity, per-action Δf) on
    fresh vision-domain states, and ``icf_traversals.png``: each latent over the range its codes
    take on ``x``, most selective latent first."""
    from vision.icf import code_ranges
    from vision.traverse import save_png, traversal_grid

    source = vision_transitions(cfg, vision_dom)
    model.attach_data(source, np.random.default_rng(cfg.seed + 2))
    report = model.selectivity_report(512, np.random.default_rng(cfg.seed + 3))
    if getattr(source, "action_names", None):
        report["action_names"] = list(source.action_names)
    order = [int(i) for i in np.argsort(-np.asarray(report["selectivity"]), kind="stable")]
    ranges = code_ranges(model.represent(x))
    save_png(out / "icf_traversals.png", traversal_grid(model, x[0], order=order, ranges=[ranges[i] for i in order]))
    return {**report, "order": order, "code_ranges": ranges}


def score_vision(cfg: Config, model, vision_dom: Domain, out: Path, log: Log) -> Path:
    from vision.metrics import METRICS, score

    names = list(METRICS) if "all" in cfg.metrics.enabled else list(cfg.metrics.enabled)
    dsprites = cfg.vision.data == "dsprites"
    where = "dsprites" if dsprites else cfg.env.name
    log(f"[vision] scoring {', '.join(names)} ({cfg.metrics.settings}) on {where}'s ground-truth factors")
    data = vision_ground_truth(cfg, vision_dom)
    results = score(data, model.represent, np.random.default_rng(cfg.seed), metrics=names, settings=cfg.metrics.settings)
    path = out / "metrics.json"
    domain = None if dsprites else vision_dom.name
    factors = {"names": list(data.factor_names), "sizes": [int(s) for s in data.factor_sizes]}
    probe = None
    if cfg.metrics.probe or (cfg.metrics.probe is None and "dci" in results):
        from vision.metrics.probe import probe_for_seed

        probe = probe_for_seed(data, model.represent, cfg.seed, cfg.metrics.settings)
    write_json_atomic(path, {
        "data": where, "domain": domain, "settings": cfg.metrics.settings, "factors": factors, "metrics": results,
        **({"probe": probe} if probe is not None else {}),
    })
    # what the latents carry, before hours of RL are spent on them
    label = out.name if out.parent.name == "encoders" else cfg.vision.model  # vision/encoders/<method>
    chance = {n: 1 / s for n, s in zip(factors["names"], factors["sizes"])}
    if "dci" in results:
        from vision.metrics.dci import accuracy_by_factor

        acc = accuracy_by_factor(results["dci"])
        log(f"[vision] {label}: DCI test accuracy per factor (chance): " + ", ".join(
            f"{n} {acc[j]:.2f} ({chance[n]:.2f})" for j, n in enumerate(factors["names"]) if j in acc
        ))
    if probe is not None:
        log(f"[vision] {label}: MLP probe test accuracy per factor (chance): " + ", ".join(
            f"{n} {a:.2f} ({chance[n]:.2f})" for n, a in probe.items()
        ))
    return path
