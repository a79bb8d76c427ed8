"""Stage 3, transfer: every policy zero-shot on the source and target domains, the random and
oracle references on the same episodes, and the statistics of ``transfer/summary.json``."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from darla.config import Config
from darla.runs import RunDir
from darla.stages.agent import agent_spec, load_method_encoder
from darla.stages.common import Log, domains_of, print_log
from vision.io import replace_via_file, write_bytes_atomic, write_json_atomic
from vision.train import resolve_device


def stage_transfer(cfg: Config, run: RunDir, *, progress: bool = True, log: Log = print_log) -> dict[str, Any]:
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
                run.agent_dir(method, cfg.agent.algo, seed) / "model.zip", expect_encoder_sha256=sha,
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
    write_reset_frames(cfg, run.reset_frames())

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
    artifacts = [out / "episodes.csv", out / "summary.json", run.reset_frames(), *videos]
    return run.complete("transfer", artifacts, {}, started)


#: Seeded resets per domain in :func:`write_reset_frames`.
RESET_FRAMES_PER_DOMAIN = 4


def write_reset_frames(cfg: Config, path: Path) -> Path:
    """What each domain looks like, for the report: the frames of four seeded resets per domain.

    ``frames/<domain>``: uint8 (4, H, W, C) for the vision, source and target domains; ``meta``: a
    JSON string with the domain order, the reset seeds, each frame's scene as factor → value name
    (null where the env names no factors) and the env's ``metadata["render_key"]`` (what each drawn
    thing is; null where it has none). Each frame comes from a fresh env.
    """
    from envs.registry import get_env_info, make_env

    try:
        space = get_env_info(cfg.env.name).scene_space
    except KeyError:  # an external env: no factor names to give
        space = None
    vision, source, targets = domains_of(cfg)
    seeds = [cfg.transfer.seed_base + 7919 * k for k in range(RESET_FRAMES_PER_DOMAIN)]
    arrays: dict[str, np.ndarray] = {}
    scenes: dict[str, list[dict[str, str] | None]] = {}
    key = None
    for name, dom in {"vision": vision, "source": source, **targets}.items():
        frames = []
        scenes[name] = []
        for seed in seeds:
            env = make_env(cfg.env.name, dom, size=cfg.env.size, max_steps=cfg.env.max_steps)
            obs, info = env.reset(seed=seed)
            key = key or env.unwrapped.metadata.get("render_key")
            env.close()
            frames.append(obs)
            scene = info.get("scene")
            scenes[name].append(None if scene is None or space is None else space.describe(scene))
        arrays[f"frames/{name}"] = np.stack(frames)
    meta = {"domains": list(scenes), "seeds": seeds, "scenes": scenes, "render_key": key}
    arrays["meta"] = np.array(json.dumps(meta))
    _savez_atomic(path, arrays)
    return path


def _write_videos(path: Path, record: dict[str, tuple[np.ndarray, np.ndarray | None]], returns: dict[str, float]) -> Path:
    """``transfer/videos/<method>.npz``: per domain, every frame of the first seed's evaluation
    episode 0 (``frames/<domain>``), its return and its scene factor classes; ``domains`` in order."""
    arrays: dict[str, np.ndarray] = {"domains": np.array(list(record))}
    for dname, (frames, scene) in record.items():
        arrays[f"frames/{dname}"] = frames
        arrays[f"return/{dname}"] = np.array(returns[dname])
        if scene is not None:
            arrays[f"scene/{dname}"] = scene
    _savez_atomic(path, arrays)
    return path


def _savez_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A compressed .npz of plain arrays (no pickles), written atomically."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buf.getvalue())


def _log_transfer_scalars(cfg: Config, rows: list[dict[str, Any]], references: dict[str, dict[str, float | None]], tb: Path) -> None:
    """TensorBoard: per method and seed (one run each, transfer/tb/<method>_seed<k>), every
    evaluation episode's return per domain (step = episode index), and the domain's mean return
    and normalised score at step = the method's training budget, so runs line up with their training."""
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
                    w.add_scalar(f"transfer/mean_return/{dname}", float(np.mean(rets)), cfg.timesteps_of(method))
                    ref = references.get(dname, {})
                    if ref.get("oracle") is not None and ref["oracle"] > ref["random"]:
                        norm = (np.mean(rets) - ref["random"]) / (ref["oracle"] - ref["random"])
                        w.add_scalar(f"transfer/normalised/{dname}", float(norm), cfg.timesteps_of(method))


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    replace_via_file(path, write)


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
