"""Stage 2, learn to act: one policy per (method, seed) on the source domain, each resumable,
in worker processes when ``agent.workers > 1``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from darla.config import Config, config_from_dict, register_external_env
from darla.runs import RunDir, agent_unit
from darla.stages.common import Log, domains_of, encoder_path, print_log
from vision.io import file_sha256
from vision.registry import load_checkpoint
from vision.train import resolve_device


def load_method_encoder(run: RunDir, cfg: Config, method: str):
    """(encoder model or None, its checkpoint's sha256 or None) for a method."""
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
        algo=a.algo, total_timesteps=cfg.timesteps_of(method), n_envs=a.n_envs, seed=seed,
        hyperparams={**a.hyperparams, **m.hyperparams}, policy_kwargs={**a.policy_kwargs, **m.policy_kwargs},
        checkpoint_every=a.checkpoint_every, observe=m.observe, pixel_model=pixel_model,
        pixel_model_kwargs=pixel_kwargs, finetune=m.finetune, augment=m.augment,
        eval_every=a.eval_every, eval_episodes=a.eval_episodes, select=a.select, log_targets=a.log_targets,
    )


def stage_agent(cfg: Config, run: RunDir, *, progress: bool = True, log: Log = print_log) -> dict[str, Any]:
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
            if run.is_complete(agent_unit(method, a.algo, seed)):
                log(f"[agent] {method} {a.algo} seed {seed}: complete, skipping")
                continue
            what = {"latents": "frozen latents", "pixels": "pixels"}[m.observe] + (" (fine-tuned)" if m.finetune else "")
            resuming = f" (resuming from {CHECKPOINT})" if (run.agent_dir(method, a.algo, seed) / CHECKPOINT).exists() else ""
            log(f"[agent] {method}: {a.algo.upper()} seed {seed} on {what} for {cfg.timesteps_of(method)} steps in {source.name!r}{resuming}")
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
            artifacts += [run.root / rel for rel in run.stage(agent_unit(method, a.algo, seed))["sha256"]]
    return run.complete("agent", artifacts, {}, started)


def _agent_job(cfg: Config | dict, root: str | Path, method: str, seed: int, progress: bool) -> tuple[float, float]:
    """Train one (method, seed); runs in a worker process when ``agent.workers > 1``."""
    from agents.train import train_agent

    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg, "<worker>", check_build=False, check_files=False)  # checked by the parent
        register_external_env(cfg.env, "<worker>")  # a spawned process: the parent's registrations are not here
        torch.set_num_threads(1)
    else:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    run = RunDir(Path(root))
    _, source, targets = domains_of(cfg)
    encoder, sha = load_method_encoder(run, cfg, method)
    t0 = time.time()
    res = train_agent(
        agent_spec(cfg, method, seed, encoder), encoder, sha, source, run.agent_dir(method, cfg.agent.algo, seed),
        device=resolve_device(cfg.device), resume=True, progress=progress,
        targets=targets if cfg.agent.log_targets else None,
    )
    return res.steps_per_s, t0


def _record_agent(run: RunDir, cfg: Config, method: str, seed: int, steps_per_s: float, t0: float) -> None:
    out = run.agent_dir(method, cfg.agent.algo, seed)
    files = [out / "model.zip", out / "meta.json"]
    if (out / "evaluations.jsonl").exists():
        files.append(out / "evaluations.jsonl")
    run.complete(agent_unit(method, cfg.agent.algo, seed), files, {"steps_per_s": round(steps_per_s, 1)}, t0)
