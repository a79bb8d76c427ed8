"""The three stages (plus the report) as plain functions over a run directory.

``run_pipeline`` skips every stage whose manifest entry is complete (artifacts present, hashes
matching) and resumes an interrupted stage from its last checkpoint; ``force`` starts over. A
failed stage raises and leaves every earlier stage's artifacts as they were.
"""

from __future__ import annotations

import csv
import inspect
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from darla.config import Config, dump_config
from darla.runs import RunDir, RunDirError, check_writable, write_json_atomic
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
        log_every=v.log_every, device=cfg.device, amp=v.amp, compile=v.compile, cuda_graph=v.cuda_graph, seed=cfg.seed,
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
    summary = _vision_summary(cfg, model, frames, history, out, vision_dom)
    write_json_atomic(out / "summary.json", summary)
    artifacts = [model_path, out / "summary.json", out / "recon.png", out / "traversals.png"]
    if "selectivity" in summary:
        artifacts.append(out / "icf_traversals.png")
    if v.select == "udr":
        artifacts.append(out / "udr.json")
    if cfg.metrics.enabled:
        artifacts.append(_score_vision(cfg, model, vision_dom, out, log))
    for name in extra_encoders(cfg):
        artifacts += _train_extra_encoder(cfg, run, name, frames, vision_dom, progress, log)
    return run.complete("vision", artifacts, info, started)


def extra_encoders(cfg: Config) -> list[str]:
    """Methods whose frozen encoder is another registry model, trained in stage 1 beside vision.model."""
    return [n for n, m in cfg.methods.items() if m.encoder not in ("vision", "pixels")]


def encoder_path(run: RunDir, cfg: Config, method: str) -> Path | None:
    """The vision checkpoint a method starts from (None for pixels)."""
    enc = cfg.methods[method].encoder
    if enc == "pixels":
        return None
    return run.path("vision", "model.pt") if enc == "vision" else run.path("vision", "encoders", method, "model.pt")


def _train_extra_encoder(
    cfg: Config, run: RunDir, method: str, frames: np.ndarray, vision_dom: Domain, progress: bool, log: Log,
) -> list[Path]:
    """A comparison encoder (e.g. a β = 1 VAE, a DAE): same frames, steps, batch and seed as vision.model."""
    from vision.checkpoint import load_checkpoint
    from vision.registry import get_model_class

    m = cfg.methods[method]
    out = run.path("vision", "encoders", method)
    stage = f"vision/encoders/{method}"
    if not run.is_complete(stage):
        t0 = time.time()
        cls = get_model_class(m.encoder)
        params = _model_kwargs(cls, m.params, cfg.vision.n_frames)
        obs_shape = (frames.shape[3], frames.shape[1], frames.shape[2])
        if getattr(cls, "requires", None) == "dae" and not params.get("dae_checkpoint"):
            params["dae_checkpoint"] = str(_pretrain_dae(cfg, run, frames, obs_shape, progress, log))
        lr = cfg.vision.lr if cls.uses_lr and m.encoder == cfg.vision.model else None
        sub = replace(cfg, vision=replace(cfg.vision, model=m.encoder, lr=lr))
        path, history, info = _train_one(sub, cls, params, frames, vision_dom, cfg.seed, out, progress, log)
        model = load_checkpoint(path)
        summary = _vision_summary(cfg, model, frames, history, out, vision_dom)
        write_json_atomic(out / "summary.json", summary)
        files = [path, out / "summary.json", out / "recon.png", out / "traversals.png"]
        if "selectivity" in summary:
            files.append(out / "icf_traversals.png")
        if cfg.metrics.enabled and cfg.vision.data == "env":
            files.append(_score_vision(cfg, model, vision_dom, out, log))
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


def _vision_frames(cfg: Config, vision_dom: Domain, log: Log) -> np.ndarray:
    """uint8 (N, H, W, C) training frames: a random policy in the vision domain, or dSprites renders."""
    v = cfg.vision
    if v.data == "dsprites":
        log(f"[vision] rendering {v.n_frames} dSprites images (uniform factors)")
        data = vision_ground_truth(cfg, vision_dom)
        rng = np.random.default_rng(cfg.seed)
        images = data.sample_observations_from_factors(data.sample_factors(v.n_frames, rng), rng)
        return (images.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
    steps = v.episode_steps or cfg.env.max_steps
    log(f"[vision] collecting {v.n_frames} random-policy frames in domain {vision_dom.name!r} (episodes of {steps} steps)")
    return collect_frames(cfg.env.name, vision_dom, v.n_frames, seed=cfg.seed, size=cfg.env.size, max_steps=steps).frames


def _train_one(
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
    model = cls(obs_shape, latent_dim=v.latent_dim, **params)
    if transitions is not None:
        model.attach_data(transitions, np.random.default_rng(seed))
    elif hasattr(model, "attach_data"):  # DC-IGN draws one-factor-varies batches from the renderer
        model.attach_data(vision_ground_truth(cfg, vision_dom), np.random.default_rng(seed))
    resuming = f" (resuming from {CHECKPOINT})" if (out / CHECKPOINT).exists() else ""
    log(f"[vision] training {v.model} ({v.latent_dim} latents, seed {seed}) for {v.steps} steps on {resolve_device(cfg.device)}{resuming}")
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


def load_vision(run: RunDir):
    from vision.checkpoint import file_sha256, load_checkpoint

    path = run.path("vision", "model.pt")
    return load_checkpoint(path), file_sha256(path)


# ---------------------------------------------------------------------------------------------
# stage 2: learn to act
# ---------------------------------------------------------------------------------------------
def agent_dir(run: RunDir, method: str, algo: str, seed: int) -> Path:
    return run.path("agent", method, f"{algo}_seed{seed}")


def load_method_encoder(run: RunDir, cfg: Config, method: str):
    """(encoder model or None, its checkpoint's sha256 or None) for a method."""
    from vision.checkpoint import file_sha256, load_checkpoint

    path = encoder_path(run, cfg, method)
    if path is None:
        return None, None
    return load_checkpoint(path), file_sha256(path)


def agent_spec(cfg: Config, method: str, seed: int, encoder) -> Any:
    """The :class:`~agents.train.AgentSpec` of one (method, seed): agent settings + the method's overrides."""
    from agents.train import AgentSpec

    a, m = cfg.agent, cfg.methods[method]
    _, source, _ = domains_of(cfg)
    if m.finetune:
        pixel_model, pixel_kwargs = encoder.name, dict(encoder.hparams)
    else:  # pixels from scratch: a plain VAE encoder at vision's latent size and architecture
        arch = {k: cfg.vision.params[k] for k in ("channels", "hidden") if k in cfg.vision.params}
        pixel_model, pixel_kwargs = "vae", {"latent_dim": cfg.vision.latent_dim, **arch}
    return AgentSpec(
        env_name=cfg.env.name, domain=source.name, size=cfg.env.size, max_steps=cfg.env.max_steps,
        algo=a.algo, total_timesteps=a.total_timesteps, n_envs=a.n_envs, seed=seed,
        hyperparams={**a.hyperparams, **m.hyperparams}, policy_kwargs={**a.policy_kwargs, **m.policy_kwargs},
        checkpoint_every=a.checkpoint_every, observe=m.observe, pixel_model=pixel_model,
        pixel_model_kwargs=pixel_kwargs, finetune=m.finetune, augment=m.augment,
        eval_every=a.eval_every, eval_episodes=a.eval_episodes, select=a.select, log_targets=a.log_targets,
    )


def stage_agent(cfg: Config, run: RunDir, *, progress: bool = True, log: Log = _print) -> dict[str, Any]:
    """Every method × seed, each resumable and skipped once complete (``agent/<method>/<algo>_seed<k>``).

    ``agent.workers > 1`` trains that many runs at once in separate processes; each finished run
    is recorded in the manifest as it ends, so a failure keeps every run that finished.
    """
    from agents.train import CHECKPOINT

    started = time.time()
    a = cfg.agent
    _, source, _ = domains_of(cfg)
    jobs = []
    for method, m in cfg.methods.items():
        for seed in a.seeds:
            if run.is_complete(f"agent/{method}/{a.algo}_seed{seed}"):
                log(f"[agent] {method} {a.algo} seed {seed}: complete, skipping")
                continue
            what = {"latents": "frozen latents", "pixels": "pixels"}[m.observe] + (" (fine-tuned)" if m.finetune else "")
            resuming = f" (resuming from {CHECKPOINT})" if (agent_dir(run, method, a.algo, seed) / CHECKPOINT).exists() else ""
            log(f"[agent] {method}: {a.algo.upper()} seed {seed} on {what} for {a.total_timesteps} steps in {source.name!r}{resuming}")
            jobs.append((method, seed))
    if a.workers > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")  # CUDA and torch threads do not survive fork
        with ProcessPoolExecutor(min(a.workers, len(jobs)), mp_context=ctx) as pool:
            futures = {pool.submit(_agent_job, cfg.to_dict(), str(run.root), method, seed, False): (method, seed) for method, seed in jobs}
            for fut in as_completed(futures):
                method, seed = futures[fut]
                _record_agent(run, cfg, method, seed, *fut.result())
                log(f"[agent] {method} seed {seed}: done")
    else:
        for method, seed in jobs:
            _record_agent(run, cfg, method, seed, *_agent_job(cfg, run.root, method, seed, progress))
    artifacts = []
    for method in cfg.methods:
        for seed in a.seeds:
            artifacts += [run.root / rel for rel in run.stage(f"agent/{method}/{a.algo}_seed{seed}")["sha256"]]
    return run.complete("agent", artifacts, {}, started)


def _agent_job(cfg: Config | dict, root: str | Path, method: str, seed: int, progress: bool) -> tuple[float, float]:
    """Train one (method, seed); runs in a worker process when ``agent.workers > 1``."""
    from agents.train import train_agent
    from darla.config import config_from_dict

    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg, "<worker>", check_build=False, check_files=False)  # checked by the parent
        torch.set_num_threads(1)
    else:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    run = RunDir(Path(root))
    _, source, targets = domains_of(cfg)
    encoder, sha = load_method_encoder(run, cfg, method)
    t0 = time.time()
    res = train_agent(
        agent_spec(cfg, method, seed, encoder), encoder, sha, source, agent_dir(run, method, cfg.agent.algo, seed),
        device=resolve_device(cfg.device), resume=True, progress=progress,
        targets=targets if cfg.agent.log_targets else None,
    )
    return res.steps_per_s, t0


def _record_agent(run: RunDir, cfg: Config, method: str, seed: int, steps_per_s: float, t0: float) -> None:
    out = agent_dir(run, method, cfg.agent.algo, seed)
    files = [out / "model.zip", out / "meta.json"]
    if (out / "evaluations.jsonl").exists():
        files.append(out / "evaluations.jsonl")
    run.complete(f"agent/{method}/{cfg.agent.algo}_seed{seed}", files, {"steps_per_s": round(steps_per_s, 1)}, t0)


# ---------------------------------------------------------------------------------------------
# stage 3: transfer
# ---------------------------------------------------------------------------------------------
def stage_transfer(cfg: Config, run: RunDir, *, progress: bool = True, log: Log = _print) -> dict[str, Any]:
    """Zero-shot evaluation of every (method, seed) on source and targets, plus the score references.

    References on the same episodes: a uniform random policy (normalised score 0) and, where the
    env has one, its scripted oracle on the true state (normalised score 1).
    """
    from agents.train import load_agent
    from agents.transfer import RandomPolicy, episode_seeds, evaluate_transfer, run_oracle_episodes
    from envs.registry import make_env

    started = time.time()
    _, source, targets = domains_of(cfg)
    domains = {"source": source, **targets}
    device = resolve_device(cfg.device)
    t = cfg.transfer
    out = run.path("transfer")
    out.mkdir(parents=True, exist_ok=True)
    common = dict(n_episodes=t.n_episodes, seed_base=t.seed_base, size=cfg.env.size, max_steps=cfg.env.max_steps)
    rows = []
    videos: list[Path] = []
    for method in cfg.methods:
        trained_on, sha = load_method_encoder(run, cfg, method)
        pixels = cfg.methods[method].observe == "pixels"
        encoder = None if pixels else trained_on  # pixels: the policy holds its own encoder and sees frames
        for seed in cfg.agent.seeds:
            # weights only, into the policy the run's config describes: nothing in model.zip is unpickled
            model = load_agent(
                agent_dir(run, method, cfg.agent.algo, seed) / "model.zip", expect_encoder_sha256=sha,
                spec=agent_spec(cfg, method, seed, trained_on), latent_dim=None if pixels else trained_on.latent_dim,
            )
            log(f"[transfer] {method} seed {seed}: {t.n_episodes} episodes in each of {', '.join(domains)}")
            record: dict[str, tuple[np.ndarray, np.ndarray | None]] | None = {} if seed == cfg.agent.seeds[0] else None
            eps = evaluate_transfer(model, encoder, cfg.env.name, domains, deterministic=t.deterministic, device=device,
                                    record=record, **common)
            rows += [{"method": method, "algo": cfg.agent.algo, "seed": seed, **ep._asdict()} for ep in eps]
            if record is not None:  # the first seed's episode 0 per domain, for the report's video
                returns = {ep.domain: ep.ret for ep in eps if ep.episode == 0}
                videos.append(_write_videos(out / "videos" / f"{method}.npz", record, returns))
    _write_csv(out / "episodes.csv", rows)

    log("[transfer] references: a random policy and the env's oracle on the same episodes")
    env = make_env(cfg.env.name, source, size=cfg.env.size, max_steps=cfg.env.max_steps)
    random_policy = RandomPolicy(env.action_space)
    env.close()
    references: dict[str, dict[str, float | None]] = {}
    for ep in evaluate_transfer(random_policy, None, cfg.env.name, domains, **common):
        references.setdefault(ep.domain, {"random": 0.0, "oracle": None})["random"] += ep.ret / t.n_episodes
    for d, (dname, dom) in enumerate(domains.items()):
        oracle = run_oracle_episodes(cfg.env.name, dom, episode_seeds(d, t.n_episodes, t.seed_base), size=cfg.env.size, max_steps=cfg.env.max_steps)
        references[dname]["oracle"] = None if oracle is None else float(np.mean([r for r, _ in oracle]))

    summary = summarize_transfer(rows, list(domains), list(cfg.methods), list(cfg.agent.seeds), references, seed=cfg.seed)
    write_json_atomic(out / "summary.json", summary)
    _log_transfer_scalars(cfg, rows, references, out / "tb")
    return run.complete("transfer", [out / "episodes.csv", out / "summary.json", *videos], {}, started)


def _write_videos(path: Path, record: dict[str, tuple[np.ndarray, np.ndarray | None]], returns: dict[str, float]) -> Path:
    """``transfer/videos/<method>.npz``: per domain, every frame of the first seed's evaluation
    episode 0 (``frames/<domain>``), its return and its scene factor classes; ``domains`` in order."""
    import io

    from vision.checkpoint import write_bytes_atomic

    arrays: dict[str, np.ndarray] = {"domains": np.array(list(record))}
    for dname, (frames, scene) in record.items():
        arrays[f"frames/{dname}"] = frames
        arrays[f"return/{dname}"] = np.array(returns[dname])
        if scene is not None:
            arrays[f"scene/{dname}"] = scene
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buf.getvalue())
    return path


def _log_transfer_scalars(cfg: Config, rows: list[dict[str, Any]], references: dict[str, dict[str, float | None]], tb: Path) -> None:
    """TensorBoard: per method and seed (one run each, transfer/tb/<method>_seed<k>), every
    evaluation episode's return per domain (step = episode index), and the domain's mean return
    and normalised score at step = agent.total_timesteps, so runs line up with their training."""
    import shutil

    from torch.utils.tensorboard import SummaryWriter

    if tb.exists():
        shutil.rmtree(tb)  # a re-run rewrites the events; never two copies of one evaluation
    for method in cfg.methods:
        for seed in cfg.agent.seeds:
            mine = [r for r in rows if r["method"] == method and r["seed"] == seed]
            with SummaryWriter(str(tb / f"{method}_seed{seed}")) as w:
                for dname in dict.fromkeys(r["domain"] for r in mine):
                    rets = [r["ret"] for r in mine if r["domain"] == dname]
                    for k, ret in enumerate(rets):
                        w.add_scalar(f"transfer/episode_return/{dname}", ret, k)
                    w.add_scalar(f"transfer/mean_return/{dname}", float(np.mean(rets)), cfg.agent.total_timesteps)
                    ref = references.get(dname, {})
                    if ref.get("oracle") is not None and ref["oracle"] > ref["random"]:
                        norm = (np.mean(rets) - ref["random"]) / (ref["oracle"] - ref["random"])
                        w.add_scalar(f"transfer/normalised/{dname}", float(norm), cfg.agent.total_timesteps)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def summarize_transfer(
    rows: list[dict[str, Any]], domains: list[str], methods: list[str], seeds: list[int],
    references: dict[str, dict[str, float | None]], *, seed: int = 0,
) -> dict[str, Any]:
    """Per method and domain: returns (mean ± std, IQM [CI]), normalised scores, per-seed transfer
    ratios, whether the source score is at chance (``source_at_chance``: its transfer ratios
    mean nothing); per target: probability that each method beats the first one (rliable)."""
    from agents.stats import (
        normalise,
        per_seed_ratios,
        probability_of_improvement,
        source_at_chance,
        summarize_returns,
        transfer_ratio,
    )

    # "method_order": results.json sorts keys, and the first method is the baseline of P(> baseline).
    out: dict[str, Any] = {
        "domains": domains, "method_order": methods, "references": references, "methods": {}, "probability_of_improvement": {},
    }
    seed_means: dict[str, dict[str, dict[int, float]]] = {}
    for method in methods:
        res: dict[str, Any] = {"domains": {}, "normalised": {}, "transfer_ratio": {}, "transfer_ratio_per_seed": {}}
        seed_means[method] = {}
        for dname in domains:
            per_seed = {s: [r["ret"] for r in rows if r["method"] == method and r["domain"] == dname and r["seed"] == s] for s in seeds}
            res["domains"][dname] = summarize_returns(per_seed, seed=seed)
            seed_means[method][dname] = dict(zip(seeds, res["domains"][dname]["per_seed"]))
            ref = references.get(dname, {})
            if ref.get("oracle") is not None and ref["oracle"] > ref["random"]:
                # episode by episode, so n_episodes and episode_std describe the episodes (the
                # seed means, and so every seed-level number, are the same as normalising them)
                norm = {s: normalise(v, ref["random"], ref["oracle"]).tolist() for s, v in per_seed.items()}
                res["normalised"][dname] = summarize_returns(norm, seed=seed)
            if dname == "source" and ref.get("random") is not None:
                res["source_at_chance"] = source_at_chance(per_seed, ref["random"], seed=seed)
        src = res["domains"]["source"]["mean"]
        for dname in domains[1:]:
            res["transfer_ratio"][dname] = transfer_ratio(res["domains"][dname]["mean"], src)
            res["transfer_ratio_per_seed"][dname] = {
                str(k): v for k, v in per_seed_ratios(seed_means[method][dname], seed_means[method]["source"]).items()
            }
        out["methods"][method] = res
    if len(methods) > 1:
        base = methods[0]
        for dname in domains:
            out["probability_of_improvement"][dname] = {
                m: probability_of_improvement(list(seed_means[m][dname].values()), list(seed_means[base][dname].values()), seed=seed)
                for m in methods[1:]
            }
        out["probability_of_improvement"]["baseline"] = base
    return out


# ---------------------------------------------------------------------------------------------
# report, and the whole pipeline
# ---------------------------------------------------------------------------------------------
def stage_report(cfg: Config, run: RunDir, *, progress: bool = True, log: Log = _print) -> dict[str, Any]:
    from darla.report import write_report

    started = time.time()
    paths = write_report(cfg, run)
    return run.complete("report", paths, {}, started)


def stage_scan(cfg: Config, run: RunDir, *, progress: bool = True, log: Log = _print) -> dict[str, Any]:
    """SCAN on stage 1's latents (optional: ``scan.enabled``); see :mod:`darla.scan_stage`."""
    from darla.scan_stage import stage_scan as _stage_scan

    return _stage_scan(cfg, run, progress=progress, log=log)


STAGE_FUNCS = {
    "vision": stage_vision, "agent": stage_agent, "transfer": stage_transfer, "scan": stage_scan, "report": stage_report,
}
#: What each stage reads. Re-running a stage re-runs everything downstream of it, and nothing else:
#: SCAN needs only the vision model, so retraining policies keeps it.
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "vision": (), "agent": ("vision",), "transfer": ("agent",), "scan": ("vision",), "report": ("transfer", "scan"),
}
ALL_STAGES = tuple(STAGE_FUNCS)


def downstream(name: str) -> list[str]:
    """Every stage that (transitively) reads ``name``'s artifacts."""
    out: list[str] = []
    for stage in STAGE_FUNCS:
        if stage not in out and any(d == name or d in out for d in DEPENDS_ON[stage]):
            out.append(stage)
    return out


#: Config keys that no stage's results depend on: what the run is called, how many processes.
EXECUTION_ONLY = ("name", "runs_dir", "agent.workers")


def stage_of_key(key: str, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first stage whose results depend on dotted config ``key`` (None: no stage's do).

    Stage 1 reads seed, device, env (its vision domain), vision, metrics, and methods whose
    encoder is another registry model (trained beside vision.model); stage 2 the source domain,
    agent and the other methods (and the targets, for ``agent.log_targets``).
    """
    from darla.config import ENCODER_KINDS

    if key in EXECUTION_ONLY:
        return None
    parts = key.split(".")
    if parts[0] in ("agent", "transfer", "scan"):
        return parts[0]
    if key.startswith(("env.domains.source", "env.domains.targets")):
        return "agent"
    if parts[0] == "methods":
        names = [parts[1]] if len(parts) > 1 else sorted({*(old.get("methods") or {}), *(new.get("methods") or {})})
        for cfg in (old, new):
            for n in names:
                if ((cfg.get("methods") or {}).get(n) or {}).get("encoder", "vision") not in ENCODER_KINDS:
                    return "vision"
        return "agent"
    return "vision"


def reconcile_config(run: RunDir, cfg: Config, update: bool) -> tuple[list[str], list[str]]:
    """A re-run whose config differs from the run's: (changed keys, stages to re-run), or a refusal.

    Keys that change no result (:data:`EXECUTION_ONLY`) are accepted. With ``update``, keys
    read only from stage 2 on are accepted too: the stages they touch and everything downstream
    are to be re-run (:func:`supersede`), stage 1 is kept. A change that touches stage 1 is
    refused, naming the keys. Nothing is written or deleted here.
    """
    import yaml

    from darla.config import diff_configs, load_yaml

    if not run.config_path.exists():
        return [], []
    old, new = load_yaml(run.config_path) or {}, yaml.safe_load(dump_config(cfg))
    changed = diff_configs(old, new)
    if not changed:
        return [], []
    reads = {k: stage_of_key(k, old, new) for k in changed}
    touched = [s for s in ALL_STAGES if s in reads.values()]
    keys = ", ".join(changed)
    if "vision" in touched or (touched and not update):
        vision_keys = [k for k, s in reads.items() if s == "vision"]
        how = (
            f"{', '.join(vision_keys)} change{'s' if len(vision_keys) == 1 else ''} stage 1: use --force to start over, or another name"
            if vision_keys else
            f"add --update to keep stage 1 and re-run {', '.join(touched)} and what depends on them, or use --force to start over"
        )
        raise RunDirError(f"{run.root} was run with a different config (changed: {keys}); {how}")
    return changed, [s for s in ALL_STAGES if s in touched or any(s in downstream(t) for t in touched)]


#: The files of each stage outside its own directory.
STAGE_FILES: dict[str, tuple[str, ...]] = {"report": ("report.html", "results.json")}


def supersede(run: RunDir, redo: list[str], config_text: str) -> None:
    """Move the results of ``redo`` aside into ``<run>/.superseded`` and adopt the new config.

    The run's config and manifest as they were go there too, so :func:`restore_superseded` can
    put the complete run back if the update fails; :func:`discard_superseded` deletes them once
    every re-run stage is complete. An update on top of a pending one keeps what is already
    aside (the last complete results) and drops the pending update's own, never-final, output.
    """
    from darla.runs import SUPERSEDED, remove_path, write_text_atomic

    aside = run.path(SUPERSEDED)
    pending = aside.is_dir()
    aside.mkdir(exist_ok=True)
    if not pending:
        for name in ("manifest.json", "config.yaml"):
            if run.path(name).exists():
                shutil.copy2(run.path(name), aside / (name + ".tmp"))
                os.replace(aside / (name + ".tmp"), aside / name)
    for stage in redo:
        for name in (stage, *STAGE_FILES.get(stage, ())):
            src = run.path(name)
            if not (src.exists() or src.is_symlink()):
                continue
            if (aside / name).exists() or (aside / name).is_symlink():
                remove_path(src)  # the pending update's output; the complete result is already aside
            else:
                os.replace(src, aside / name)
    run.invalidate(*redo)
    write_text_atomic(run.config_path, config_text)


def restore_superseded(run: RunDir) -> bool:
    """Put a pending update's superseded results, config and manifest back (False: none pending).

    Idempotent, so an interrupted restore is finished by the next run: a ``RESTORING`` mark is
    written first and removed last.
    """
    from darla.runs import SUPERSEDED, remove_path, write_text_atomic

    aside = run.path(SUPERSEDED)
    if not aside.is_dir():
        return False
    write_text_atomic(aside / "RESTORING", "")
    for item in sorted(aside.iterdir()):
        if item.name in ("RESTORING", "manifest.json", "config.yaml"):
            continue
        remove_path(run.path(item.name))
        os.replace(item, run.path(item.name))
    for name in ("config.yaml", "manifest.json"):
        if (aside / name).exists():
            os.replace(aside / name, run.path(name))
    (aside / "RESTORING").unlink()
    aside.rmdir()
    return True


def discard_superseded(run: RunDir) -> None:
    from darla.runs import SUPERSEDED, remove_path

    remove_path(run.path(SUPERSEDED))


def _has_work(run: RunDir, stages: list[str]) -> bool:
    """Whether any of ``stages`` will run (a stage whose artifacts fail their check will too: the
    stage loop below reports it, in order)."""
    for name in stages:
        try:
            if not run.is_complete(name):
                return True
        except RunDirError:
            return True
    return False


def run_pipeline(
    cfg: Config,
    *,
    run_dir: Path | None = None,
    force: bool = False,
    update: bool = False,
    progress: bool = True,
    stages: tuple[str, ...] = ALL_STAGES,
    log: Log = _print,
) -> RunDir:
    """Run (or continue) every stage of ``cfg`` in ``run_dir`` (default ``runs_dir/name``).

    ``scan`` runs only when ``scan.enabled`` is true. The run dir is locked for the whole run
    (:meth:`RunDir.lock`): another process on it raises :class:`RunDirError` at once. With
    ``update``, the superseded results stay in ``.superseded`` until every stage is complete,
    and an update whose stage fails puts the complete run back as it was.
    """
    from darla.runs import SUPERSEDED, write_text_atomic

    if force and update:
        raise ValueError("--force and --update contradict each other: --force starts over, --update keeps stage 1")
    if cfg.vision.data == "dsprites" and tuple(stages) != ("vision",):
        raise ValueError("vision.data: dsprites is for stage 1 alone (darla vision train): it has no policy to train")
    run = RunDir(Path(run_dir) if run_dir is not None else Path(cfg.runs_dir) / cfg.name)
    with run.lock():  # one process per run dir; a second one fails at once, naming the first
        if run.path(SUPERSEDED, "RESTORING").exists():  # a restore that was killed: finish it first
            restore_superseded(run)
        changed, redo = ([], []) if force else reconcile_config(run, cfg, update)
        try:
            if redo:
                supersede(run, redo, dump_config(cfg))
                log(f"[run] config changed ({', '.join(changed)}): re-running {', '.join(redo)}; stage 1 is kept, "
                    f"the old results wait in {SUPERSEDED}/ until the new ones are complete")
            elif changed:  # keys that change no result: the run keeps its results under the new config
                write_text_atomic(run.config_path, dump_config(cfg))
            run.prepare(dump_config(cfg), force=force)
            need, left = space_needed(cfg, run, stages)
            check_writable(run.root, need, f" for the stages left ({', '.join(left)})" if left else "")
            if _has_work(run, [s for s in stages if s != "scan" or cfg.scan.enabled]):
                from darla.runs import provenance

                run.record_provenance(provenance(str(resolve_device(cfg.device))))
            for name in stages:
                if name == "scan" and not cfg.scan.enabled:
                    continue
                if run.is_complete(name):
                    log(f"[{name}] complete, skipping")
                    continue
                run.invalidate(*downstream(name))
                t0 = time.time()
                try:
                    STAGE_FUNCS[name](cfg, run, progress=progress, log=log)
                except OSError as e:
                    if e.filename is None and e.errno is not None:  # a write() deep in a library names no file
                        raise OSError(e.errno, e.strerror, str(run.path(name) if name != "report" else run.root)) from e
                    raise
                log(f"[{name}] done in {time.time() - t0:.1f} s")
        except Exception:
            # An update that fails (a bad value, a full disk) must not cost the complete run it
            # replaces. An interrupt is not a failure: it leaves the update to be continued.
            if restore_superseded(run):
                log(f"[run] the update failed: {run.root} is back to its last complete results and config")
            raise
        if run.path(SUPERSEDED).exists() and all(
            run.is_complete(s) for s in ALL_STAGES if s != "scan" or cfg.scan.enabled
        ):
            discard_superseded(run)
    return run


_MIB = 2**20


def _vision_params(cfg: Config, model: str, params: dict[str, Any]) -> int:
    """Parameters of a vision model as configured, counted on the meta device (no memory, no init)."""
    from vision.registry import VISION_MODELS

    size, channels = (64, 1) if cfg.vision.data == "dsprites" else (cfg.env.size, 3)
    try:
        with torch.device("meta"):
            net = VISION_MODELS[model]((channels, size, size), latent_dim=cfg.vision.latent_dim, **params)
        return sum(p.numel() for p in net.parameters())
    except Exception:  # noqa: BLE001 (a model that reads files as it is built: β-VAE-DAE and its DAE, as two VAEs)
        arch = {k: params[k] for k in ("channels", "hidden") if k in params}
        return 2 * _vision_params(cfg, "vae", arch) if model != "vae" else 10_000_000


def space_needed(cfg: Config, run: RunDir, stages: tuple[str, ...]) -> tuple[int, list[str]]:
    """Bytes the stages not yet complete will write, generously (×1.5, + 2 MiB); and their names.

    Vision: per model, its weights 4× (model.pt, and the resume checkpoint with Adam's two
    moments) + figures and logs. Agent: per (method, seed) not yet done, the policy 3× (model.zip,
    checkpoint.zip with the optimiser) + its replay buffer (off-policy: the observations it will
    have stored) + logs. A resume after a full disk is sized by what is left, not by a constant.
    """
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    from agents.algos import ALGOS

    def done(name: str) -> bool:
        entry = run.stage(name)
        return bool(entry) and entry.get("status") == "complete"

    v, a = cfg.vision, cfg.agent
    vision_params = _vision_params(cfg, v.model, v.params)
    # a pixel policy's conv encoder: a VAE at vision's architecture (agent_spec), decoder included: generous
    pixel_params = _vision_params(cfg, "vae", {k: v.params[k] for k in ("channels", "hidden") if k in v.params})
    image = (1 if v.data == "dsprites" else 3) * cfg.env.size**2
    need, left = 0, []
    for name in stages:
        if (name == "scan" and not cfg.scan.enabled) or done(name):
            continue
        left.append(name)
        if name == "vision":
            models = [vision_params] * max(1, len(v.seeds))
            models += [_vision_params(cfg, m.encoder, m.params) for n, m in cfg.methods.items()
                       if m.encoder not in ("vision", "pixels") and not done(f"vision/encoders/{n}")]
            need += sum(16 * p + 2 * _MIB for p in models)
        elif name == "agent":
            off_policy = issubclass(ALGOS[a.algo], OffPolicyAlgorithm)
            for method, m in cfg.methods.items():
                policy = pixel_params if m.observe == "pixels" else 100_000
                obs = image if m.observe == "pixels" else 4 * v.latent_dim
                buffer = 2 * obs * min(int({**a.hyperparams, **m.hyperparams}.get("buffer_size", 1_000_000)), a.total_timesteps)
                per_run = 12 * policy + (buffer if off_policy else 0) + _MIB
                need += per_run * sum(not done(f"agent/{method}/{a.algo}_seed{s}") for s in a.seeds)
        else:
            need += {"transfer": _MIB, "scan": 4 * _MIB, "report": 4 * _MIB}[name]
    return int(1.5 * need) + 2 * _MIB, left


__all__ = ["run_pipeline", "stage_vision", "stage_agent", "stage_transfer", "stage_scan", "stage_report", "RunDirError"]
